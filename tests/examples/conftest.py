"""Parse and run the example DAGs of ``example_dags/`` the way Airflow does, against a simulator.

The approach is the one of ``tests/dag_runs.py`` (its ``DagRunResult`` and the temporary
AIRFLOW_HOME check are imported from there): a session-scoped metadata DB in the temporary
AIRFLOW_HOME of ``tests/conftest.py``, the ``dags-folder`` bundle pointed at ``example_dags/``
through ``AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST``, ``dag.test()`` in-process, and task
states, XComs, rendered fields and asset events read back through the ORM. Differences:

* ``IOTFLEET_INVENTORY_ROOT`` points at a session temporary directory before any example file is
  parsed (``inventory_root``, autouse): the inventory DAG reads it at import time, and the
  enrichment DAG imports the inventory module, which Python then caches for the whole session.
* DAG files are parsed with ``BundleDagBag`` (a ``DagBag`` that puts the bundle folder on
  ``sys.path``), as the dag processor, ``airflow dags test`` and ``dag.test()`` itself do: the
  enrichment DAG imports its sibling ``iotfleet_firmware_inventory``, which only resolves so.
  ``forget_example_modules()`` first drops cached example modules, as a fresh parsing process would
  not have them.
* Simulators here set the Control Center connection's rate limit like ``scripts/demo.py`` does, so
  that reading every SIM takes seconds.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig
from tests.dag_runs import TEMPORARY_AIRFLOW_HOME_PREFIX, DagRunResult, read_dag_run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = ROOT / "example_dags"
#: Each example file and the DAG ids it must define.
EXAMPLE_FILES = {
    "iotfleet_firmware_inventory.py": {"iotfleet_firmware_inventory"},
    "iotfleet_cellular_enrichment.py": {"iotfleet_cellular_enrichment"},
    "iotfleet_maintenance_window.py": {"iotfleet_maintenance_window"},
    "iotfleet_fleet_scale_out.py": {"iotfleet_fleet_scale_out"},
}
EXAMPLE_DAG_IDS = sorted(dag_id for ids in EXAMPLE_FILES.values() for dag_id in ids)
BUNDLE_NAME = "dags-folder"
#: Devices in the simulated fleet: three ThingSpace pages, and three mapped SIM batches that do
#: not line up with the pages.
FLEET_SIZE = 150
VERIZON_PAGE_SIZE = 50
SIMS_PER_BATCH = 60
#: How often the clock advancer looks at Control Center's scheduled changes, s.
ADVANCER_POLL_SECONDS = 0.2


def forget_example_modules() -> None:
    """Drop the example DAG modules Python has cached, so the next parse imports them afresh."""
    names = {Path(name).stem for name in EXAMPLE_FILES}
    for module in list(sys.modules):
        if module in names or any(module.endswith(f"_{name}") for name in names):
            del sys.modules[module]


def parse(dag_folder: Path, bundle_path: Path = EXAMPLE_DAGS) -> Any:
    """Parse ``dag_folder`` (a folder or one file) as the dag processor would, in a fresh state."""
    from airflow.dag_processing.dagbag import BundleDagBag

    forget_example_modules()
    path = list(sys.path)
    try:
        return BundleDagBag(dag_folder=str(dag_folder), bundle_path=bundle_path, bundle_name=BUNDLE_NAME)
    finally:
        sys.path[:] = path  # BundleDagBag appends the bundle for good; the parse is over


@pytest.fixture(scope="session", autouse=True)
def inventory_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``IOTFLEET_INVENTORY_ROOT`` for the session, as a ``file://`` URI of a temporary folder."""
    root = f"file://{tmp_path_factory.mktemp('inventory')}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IOTFLEET_INVENTORY_ROOT", root)
        forget_example_modules()
        yield root
    forget_example_modules()


@pytest.fixture(scope="session")
def example_db() -> None:
    """The session's metadata DB, created once (``tests/dagtest/conftest.py``'s ``airflow_db``)."""
    from airflow import settings
    from airflow.utils import db

    url = str(settings.engine.url)
    home = Path(os.environ.get("AIRFLOW_HOME", "~")).expanduser()
    if not home.name.startswith(TEMPORARY_AIRFLOW_HOME_PREFIX) or url != f"sqlite:///{home}/airflow.db":
        pytest.skip(
            f"the example DAG runs write the metadata DB, so they need the temporary AIRFLOW_HOME of "
            f"tests/conftest.py; got AIRFLOW_HOME={home} and {url} (unset AIRFLOW_HOME to run them)"
        )
    db.initdb()


def bundle_env(mp: pytest.MonkeyPatch) -> None:
    """Make ``example_dags/`` the ``dags-folder`` bundle, which ``dag.test()`` syncs to the DB."""
    bundles = [
        {
            "name": BUNDLE_NAME,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(EXAMPLE_DAGS), "refresh_interval": 0},
        }
    ]
    mp.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(EXAMPLE_DAGS))
    mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@contextmanager
def running_simulator() -> Iterator[Simulator]:
    """A simulator of ``FLEET_SIZE`` devices, its connections in the environment meanwhile."""
    sim = Simulator(SimulatorConfig(devices=FLEET_SIZE, verizon_page_size=VERIZON_PAGE_SIZE)).start()
    try:
        connections = sim.connections()
        # As scripts/demo.py: the simulator enforces no rate limit, so don't wait 5 requests/s.
        connections["cisco_control_center_default"]["extra"] = {
            "requests_per_second": 100,
            "max_concurrency": 4,
        }
        with pytest.MonkeyPatch.context() as mp:
            for conn_id, conn in connections.items():
                mp.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
            yield sim
    finally:
        sim.stop()


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with running_simulator() as sim:
        yield sim


#: What a ``dag.test()`` run of an example left in the metadata DB (``tries`` included).
ExampleRun = DagRunResult


def load_dag(dag_id: str) -> Any:
    bag = parse(EXAMPLE_DAGS)
    dag = bag.get_dag(dag_id)
    assert dag is not None, f"{dag_id} is not in {EXAMPLE_DAGS}: {sorted(bag.dag_ids)}, {bag.import_errors}"
    return dag


def run_example(dag_id: str, *, logical_date: datetime, run_conf: dict[str, Any] | None = None) -> ExampleRun:
    """Run an example DAG once with ``dag.test()``; return what it left in the metadata DB.

    Needs ``example_db`` and the bundle environment (``bundle_env``) in place. Retries keep their
    number but lose their delay: ``dag.test()`` sleeps a retry delay out (5 minutes in the example
    DAGs), so a failing task then fails the run in seconds instead of stalling the test.
    """
    dag = load_dag(dag_id)
    for task in dag.tasks:
        task.retry_delay = timedelta(0)
    return read_dag_run(dag.test(logical_date=logical_date, run_conf=run_conf))


class ClockAdvancer:
    """Move the simulator's clock past what a maintenance window waits for, as ``scripts/demo.py`` does.

    A background thread asks the simulator (``state.advance_past_pending``) to move its clock a
    minute past the last device turn of any running firmware campaign, and past Control Center's
    scheduled changes once at least ``expected`` of them are held, so that the sensors waiting on
    them see them done.
    """

    def __init__(self, simulator: Simulator, expected: int) -> None:
        self.simulator = simulator
        self.expected = expected
        #: (scheduled changes, campaigns at work, seconds moved), each time the clock moved.
        self.advanced: list[tuple[int, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="iotfleet-clock-advancer", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(ADVANCER_POLL_SECONDS):
            moved = self.simulator.state.advance_past_pending(min_scheduled=self.expected)
            if moved is not None:
                self.advanced.append(moved)

    def __enter__(self) -> ClockAdvancer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
