"""The dag-run harness: DAGs run in this process with ``dag.test()``, and what a run left in the
metadata DB read back.

Airflow 3 only runs a DAG that sits in a configured DAG bundle and has been serialised into the
metadata DB, so:

* :func:`create_metadata_db` creates the tables of the session's metadata DB (the ``airflow_db``
  fixture does, once). ``tests/conftest.py`` points ``AIRFLOW_HOME`` at a fresh temporary directory
  before Airflow is imported, so the DB is ``$AIRFLOW_HOME/airflow.db`` (SQLite) and belongs to the
  test session.
* :func:`bundle_environment` configures the ``dags-folder`` bundle with an explicit ``path``. The
  bundle's default path is ``settings.DAGS_FOLDER``, which Airflow froze when it was first imported
  (by the root conftest, long before any test), so setting ``AIRFLOW__CORE__DAGS_FOLDER`` alone would
  not reach ``dag.test()``; the bundle config list is read from the environment each time a
  ``DagBundlesManager`` is made, which ``dag.test()`` does.
* ``dag.test()`` runs the tasks in this process, through Airflow's in-process execution API (the
  first task of the session pays several seconds for building that API app); :func:`read_dag_run`
  then reads task states, XComs, rendered template fields and asset events back through the ORM.

The test DAGs of ``tests/dagtest/dags`` run against a simulator of :data:`FLEET_SIZE` devices.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: The prefix of the temporary AIRFLOW_HOME that tests/conftest.py creates.
TEMPORARY_AIRFLOW_HOME_PREFIX = "iotfleet-airflow-home-"
#: The name of the DAG bundle the runs take their DAGs from.
BUNDLE_NAME = "dags-folder"

#: The test DAGs that ``tests/dagtest`` runs.
DAGS_FOLDER = Path(__file__).parent / "dagtest" / "dags"
#: Devices in the simulated fleet the test DAGs run against; the DAGs use indices below it, and
#: index 999_999 for devices that are valid but not in the fleet.
FLEET_SIZE = 200
#: Devices per ThingSpace FOTA page, so that listing the whole account takes several pages.
VERIZON_PAGE_SIZE = 64


def create_metadata_db() -> None:
    """Create the session's Airflow metadata DB (SQLite under the temporary AIRFLOW_HOME).

    On an empty DB, ``airflow db migrate`` (``db.upgradedb``) calls exactly this ``db.initdb``:
    tables from the ORM, an alembic stamp, the default pool. In-process it takes 3 to 5 s instead of
    the CLI's 15 s (mostly imports), and it writes through the very engine the tests then read, so
    the two cannot end up pointing at different DBs.

    Skips the test unless AIRFLOW_HOME is the temporary one the root conftest made: it only sets it
    when unset, and a developer's exported AIRFLOW_HOME would otherwise get its DB migrated and test
    runs written into it.
    """
    from airflow import settings
    from airflow.utils import db

    url = str(settings.engine.url)
    home = Path(os.environ.get("AIRFLOW_HOME", "~")).expanduser()
    if not home.name.startswith(TEMPORARY_AIRFLOW_HOME_PREFIX) or url != f"sqlite:///{home}/airflow.db":
        pytest.skip(
            f"the DAG runs create and write the metadata DB, so they need the temporary AIRFLOW_HOME "
            f"of tests/conftest.py ({TEMPORARY_AIRFLOW_HOME_PREFIX}*) and its SQLite DB; got "
            f"AIRFLOW_HOME={home} and {url} (unset AIRFLOW_HOME to run them)"
        )
    db.initdb()


def bundle_environment(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``folder`` the ``dags-folder`` bundle (and the dags folder), which ``dag.test()`` syncs
    to the DB, for as long as ``monkeypatch`` holds."""
    bundles = [
        {
            "name": BUNDLE_NAME,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(folder), "refresh_interval": 0},
        }
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@dataclass
class DagRunResult:
    """What a ``dag.test()`` run left in the metadata DB."""

    dag_id: str
    run_id: str
    state: str
    #: task id (``task_id[map_index]`` for a mapped task's instances) -> state ("success", ...)
    states: dict[str, str | None]
    #: (task id as in ``states``, key) -> deserialised XCom value
    xcoms: dict[tuple[str, str], Any] = field(default_factory=dict)
    #: task id as in ``states`` -> rendered template fields, as recorded for the UI
    rendered: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: (source task_id, asset uri, extra) of every asset event the run's tasks emitted
    asset_events: list[tuple[str | None, str, dict[str, Any]]] = field(default_factory=list)
    #: task id as in ``states`` -> its last try number
    tries: dict[str, int] = field(default_factory=dict)
    #: task id as in ``states`` -> the label the grid shows for a mapped task instance (its
    #: rendered ``map_index_template``), ``None`` without one
    map_labels: dict[str, str | None] = field(default_factory=dict)

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        """The XCom ``key`` of ``task_id``; fails the test when there is none."""
        assert (task_id, key) in self.xcoms, (
            f"no XCom {key!r} from {task_id!r}; there are {sorted(self.xcoms)}"
        )
        return self.xcoms[(task_id, key)]


#: The ``run_dag`` fixture: runs a test DAG by id (``logical_date``, ``run_conf``) and reads it back.
RunDag = Callable[..., DagRunResult]


def _name(task_id: str, map_index: int) -> str:
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


def read_dag_run(dag_run: Any) -> DagRunResult:
    """What the ``dag.test()`` run ``dag_run`` left in the metadata DB."""
    from airflow.models.asset import AssetEvent
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag_id, run_id = dag_run.dag_id, dag_run.run_id
    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        rows = session.scalars(
            select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id)
        ).all()
        rendered = session.scalars(
            select(RenderedTaskInstanceFields).where(
                RenderedTaskInstanceFields.dag_id == dag_id, RenderedTaskInstanceFields.run_id == run_id
            )
        ).all()
        events = session.scalars(
            select(AssetEvent).where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id)
        ).all()
        return DagRunResult(
            dag_id=dag_id,
            run_id=run_id,
            state=str(dag_run.state),
            states={_name(ti.task_id, ti.map_index): ti.state for ti in tis},
            xcoms={
                (_name(row.task_id, row.map_index), row.key): XComModel.deserialize_value(row) for row in rows
            },
            rendered={_name(row.task_id, row.map_index): dict(row.rendered_fields) for row in rendered},
            asset_events=[(event.source_task_id, event.uri, dict(event.extra)) for event in events],
            tries={_name(ti.task_id, ti.map_index): ti.try_number for ti in tis},
            map_labels={
                _name(ti.task_id, ti.map_index): ti.rendered_map_index for ti in tis if ti.map_index >= 0
            },
        )
