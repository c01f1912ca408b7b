"""A real Airflow cluster for the cluster tests: ``scripts/cluster.py``'s :class:`Cluster` (PostgreSQL,
Redis, the CeleryExecutor with two workers), driven through the REST API and read from PostgreSQL.

:class:`AirflowCluster` offers what :class:`tests.airflow_standalone.AirflowStandalone` offers the
standalone tests (``api``, ``query`` with ``?`` placeholders, ``task_states``, ``xcoms``, task logs,
``diagnostics``), so that the checks read the same on both. The database drivers are imported only
when a cluster is used: ``make test`` collects these tests without the ``cluster`` extra installed.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from pathlib import Path
from typing import Any

from tests.airflow_standalone import LOG_TAIL_LINES, TASK_LOG_TAIL_LINES, AirflowStandalone, tail
from tests.fakes import load_script


class AirflowCluster(AirflowStandalone):
    """The cluster of ``scripts/cluster.py`` over a fresh home, its API's admin password set here.

    :param home: an empty folder for the cluster.
    :param extra_env: more environment for every Airflow process (the connections).
    :param dags_folder: the DAG files to run.
    """

    def __init__(self, home: Path, extra_env: dict[str, str], dags_folder: Path) -> None:
        self.home = home
        self.dags_folder = dags_folder
        self.logs = home / "logs"
        self._password = secrets.token_urlsafe(16)
        self._token: str | None = None
        self.script = load_script("cluster")
        self.cluster = self.script.Cluster(
            home,
            {**extra_env, "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder)},
        )
        self.env = self.cluster.env
        self.api_port = self.cluster.api_port
        self.api_url = self.cluster.api_url
        self.output_path = self.logs / "scheduler.log"
        self.process = None

    def start(self, pools: dict[str, int] | None = None) -> None:  # type: ignore[override]
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self._password}))
        self.cluster.start(pools)

    def check_alive(self) -> None:
        exited = {
            part: code for part, code in self.cluster.exited().items() if part not in self.cluster.killed
        }
        assert not exited, f"cluster parts exited (part: exit code): {exited}"

    def stop(self) -> None:
        self.cluster.stop()

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows from the metadata DB in PostgreSQL (``?`` placeholders, as with SQLite), in a
        connection of its own, closed after: no transaction is left open on the live DB."""
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1", port=self.cluster.pg_port, user="airflow", dbname="airflow"
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), params)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def xcoms(self, dag_id: str, run_id: str) -> dict[tuple[str, str], Any]:
        """(task id, key) -> value, for the run's unmapped task instances (PostgreSQL hands the
        JSON documents back parsed)."""
        rows = self.query(
            "SELECT task_id, key, value FROM xcom WHERE dag_id = ? AND run_id = ? AND map_index = -1",
            dag_id,
            run_id,
        )
        values = {}
        for task_id, key, value in rows:
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            values[(task_id, key)] = value
        return values

    def diagnostics(self, dag_id: str | None = None, run_id: str | None = None) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            parts.append(
                f"\n===== {log.name} (last {LOG_TAIL_LINES} lines) =====\n{tail(log, LOG_TAIL_LINES)}"
            )
        if dag_id and run_id:
            with contextlib.suppress(Exception):
                parts.append(f"===== task states =====\n{self.task_states(dag_id, run_id)}")
            for path in self.task_log_files(dag_id, run_id):
                parts.append(f"===== {path.relative_to(self.logs)} =====\n{tail(path, TASK_LOG_TAIL_LINES)}")
        return "\n".join(parts)
