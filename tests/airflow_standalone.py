"""A real Airflow for the standalone tests: ``airflow standalone`` in subprocesses, with a throwaway
AIRFLOW_HOME, against a simulator.

``airflow standalone`` starts the four Airflow 3 components (scheduler with the LocalExecutor,
dag-processor, triggerer and api-server) in one process group, after creating the metadata DB.
All four are needed: in Airflow 3 the LocalExecutor's tasks do not touch the metadata DB, they
talk to the api-server's execution API. Airflow 3 lets the LocalExecutor use SQLite (Airflow 2
refused it; 3 dropped the SequentialExecutor), so the metadata DB is a SQLite file in the
AIRFLOW_HOME.

The test drives and watches this Airflow without the ``airflow`` CLI, each call of which costs an
Airflow import (7 to 15 s here, more on a busy machine): it unpauses and triggers the DAG through
the api-server's REST API (as the simple auth manager's admin, with a password set here), and
follows the run by reading the SQLite DB directly, read-only (task states, triggers, XComs).

Everything is set through ``AIRFLOW__*`` variables of the subprocesses only: this test process's
own Airflow configuration (the session's AIRFLOW_HOME from the root conftest) is left alone.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
#: The DAG files the one ``airflow standalone`` of the session runs (booting it costs a minute).
DAG_FILES = (
    ROOT / "tests" / "standalone" / "dags" / "iotfleet_standalone_triggerer.py",
    ROOT / "example_dags" / "iotfleet_fleet_scale_out.py",
    ROOT / "tests" / "standalone" / "dags" / "iotfleet_standalone_retries.py",
)
#: Devices in the simulated fleet: the scale-out labels them all; the other test picks a few.
FLEET_SIZE = 20_000
#: Each simulated call takes this long, s.
LATENCY = 0.02
#: The simulated Control Center account allows this many requests a second, and answers 429 beyond.
CISCO_VENDOR_LIMIT = 300
#: What the Cisco connection tells the client: 10% under the account's limit, for the requests'
#: jitter on the wire, and this many calls in flight per task.
CISCO_CONNECTION_RATE = 270
CISCO_MAX_CONCURRENCY = 2
#: How often the test looks at the metadata DB, s.
POLL_INTERVAL = 0.25
#: Seconds the components get to stop on SIGTERM before the process group is killed.
STOP_GRACE = 15.0
#: Lines of the components' combined output attached to a failure.
LOG_TAIL_LINES = 200
#: Lines of each task log attached to a failure.
TASK_LOG_TAIL_LINES = 80


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def signal_group(group: int, signum: int) -> None:
    """Send ``signum`` to every process of the process group ``group``, if any is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def group_alive(group: int) -> bool:
    """Whether any process of the process group ``group`` is left."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def api_health(port: int) -> dict[str, Any] | None:
    """The api-server's health report on ``port`` (``/api/v2/monitor/health``), or None while it does
    not answer it."""
    try:
        # A bare connection first: httpx would log every refused attempt at debug level.
        socket.create_connection(("127.0.0.1", port), timeout=5.0).close()
    except OSError:
        return None
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0, trust_env=False) as client:
            answer = client.get("/api/v2/monitor/health")
    except httpx.TransportError:
        return None
    return answer.json() if answer.status_code == 200 else None


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of the file at ``path``, or why it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"<{path}: {error}>"
    return "\n".join(text.splitlines()[-lines:])


class AirflowStandalone:
    """``airflow standalone`` in its own process group, over a fresh AIRFLOW_HOME.

    :param home: the AIRFLOW_HOME to create (the metadata DB, airflow.cfg and logs go there).
    :param extra_env: more environment variables for every Airflow process (the connections).
    :param dags_folder: the DAG files to run.
    """

    def __init__(self, home: Path, extra_env: dict[str, str], dags_folder: Path) -> None:
        self.home = home
        self.dags_folder = dags_folder
        self.db_path = home / "airflow.db"
        self.output_path = home / "standalone.out"
        self.logs = home / "logs"
        self.bin = Path(sys.executable).parent
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.passwords_file = home / "passwords.json"
        self._password = secrets.token_urlsafe(16)
        self._token: str | None = None
        self.env = self._environment(extra_env)
        self.process: subprocess.Popen[bytes] | None = None
        self._output: Any = None

    def _environment(self, extra_env: dict[str, str]) -> dict[str, str]:
        # Nothing Airflow-specific leaks in from this process (the root conftest's AIRFLOW_HOME and
        # DEBUG logging, connections other tests set): the subprocesses see only what is below.
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AIRFLOW_", "AIRFLOW__", "PYTEST_"))
        }
        api = self.api_url
        env.update(
            {
                # standalone runs its components as `airflow <component>`, found on PATH.
                "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                # The LocalExecutor starts this many worker processes up front.
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
                # Every component signs or checks the tasks' execution-API tokens with this secret.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": api,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
                # The simple auth manager's admin, with a password of ours (not one it prints).
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                # Free ports, so that another Airflow on this machine cannot collide with this one.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                # Short loops: the scheduler and the triggerer (which looks for new triggers every
                # loop, about once a second) heartbeat every second.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            }
        )
        env.update(extra_env)
        return env

    # --- processes ------------------------------------------------------------------------------

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.passwords_file.write_text(json.dumps({"admin": self._password}))
        self._output = self.output_path.open("wb")
        self.process = subprocess.Popen(
            [str(self.bin / "airflow"), "standalone"],
            cwd=self.home,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends every component with it
        )

    def check_alive(self) -> None:
        assert self.process is not None, "airflow standalone was not started"
        code = self.process.poll()
        assert code is None, f"airflow standalone exited with {code}"

    def stop(self) -> None:
        """End standalone and every process of its group (components, executor workers, tasks)."""
        if self.process is None:
            return
        group = self.process.pid
        try:
            signal_group(group, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_GRACE)
            deadline = time.monotonic() + STOP_GRACE
            while group_alive(group) and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL)
        finally:
            signal_group(group, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_GRACE)
            if self._output is not None:
                self._output.close()

    def kill_task(self, pid: int) -> None:
        """SIGKILL a task's process (``task_instance.pid``), as an out-of-memory kill or a lost worker
        would end it, after checking that it is one of this Airflow's processes.

        :raises AssertionError: when ``pid`` is not a running process this ``airflow standalone`` started.
        """
        assert self.process is not None, "airflow standalone was not started"
        ancestor = pid
        while ancestor not in (self.process.pid, 0, 1):
            try:
                # /proc/<pid>/stat: "pid (name) state ppid ...", and the name may hold spaces.
                stat = Path(f"/proc/{ancestor}/stat").read_text()
            except OSError:
                break
            ancestor = int(stat.rpartition(")")[2].split()[1])
        assert ancestor == self.process.pid, f"process {pid} is not (or no longer) one of this airflow's"
        os.kill(pid, signal.SIGKILL)

    # --- the REST API -----------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """Call the api-server's REST API as the admin user; return the JSON answer, failing on an error."""
        with httpx.Client(base_url=self.api_url, timeout=timeout, trust_env=False) as client:
            if self._token is None:
                login = client.post("/auth/token", json={"username": "admin", "password": self._password})
                assert login.status_code == 201, f"login: HTTP {login.status_code}: {login.text}"
                self._token = login.json()["access_token"]
            answer = client.request(
                method, path, json=body, headers={"Authorization": f"Bearer {self._token}"}
            )
        assert answer.is_success, f"{method} {path}: HTTP {answer.status_code}: {answer.text}"
        return answer.json()

    def api_ready(self) -> bool:
        """Whether the api-server answers its health check yet."""
        return api_health(self.api_port) is not None

    # --- the metadata DB, read-only -------------------------------------------------------------

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows from the metadata DB; ``[]`` while it or the table does not exist yet.

        A fresh read-only connection each time: no transaction is left open on the live DB.
        """
        if not self.db_path.exists():
            return []
        try:
            connection = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        except sqlite3.OperationalError:
            return []
        try:
            return connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error) or "unable to open" in str(error):
                return []
            raise
        finally:
            connection.close()

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return dict(
            self.query(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", dag_id, run_id
            )
        )

    def xcoms(self, dag_id: str, run_id: str) -> dict[tuple[str, str], Any]:
        """(task id, key) -> value, for the run's unmapped task instances."""
        rows = self.query(
            "SELECT task_id, key, value FROM xcom WHERE dag_id = ? AND run_id = ? AND map_index = -1",
            dag_id,
            run_id,
        )
        values = {}
        for task_id, key, raw in rows:
            value = json.loads(raw) if isinstance(raw, str | bytes) else raw
            # Values are stored as JSON documents; older layouts nested a JSON string in them.
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            values[(task_id, key)] = value
        return values

    # --- what to attach to a failure ------------------------------------------------------------

    def task_log_files(self, dag_id: str, run_id: str) -> list[Path]:
        run_dir = self.logs / f"dag_id={dag_id}" / f"run_id={run_id}"
        return sorted(path for path in run_dir.rglob("*") if path.is_file()) if run_dir.exists() else []

    def diagnostics(self, dag_id: str | None = None, run_id: str | None = None) -> str:
        """The components' output, import errors, task states and task logs, for a failure message."""
        parts = [f"\n\n===== airflow standalone output (last {LOG_TAIL_LINES} lines) ====="]
        parts.append(tail(self.output_path, LOG_TAIL_LINES))
        with contextlib.suppress(sqlite3.Error):
            errors = self.query("SELECT filename, stacktrace FROM import_error")
            if errors:
                parts.append(f"===== DAG import errors =====\n{errors}")
        if dag_id and run_id:
            with contextlib.suppress(sqlite3.Error):
                parts.append(f"===== task states =====\n{self.task_states(dag_id, run_id)}")
            for path in self.task_log_files(dag_id, run_id):
                parts.append(f"===== {path.relative_to(self.logs)} =====\n{tail(path, TASK_LOG_TAIL_LINES)}")
        return "\n".join(parts)
