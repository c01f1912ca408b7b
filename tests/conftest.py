"""Shared fixtures: an isolated AIRFLOW_HOME, connections from env vars, a fake clock, simulators."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.dag_runs import TEMPORARY_AIRFLOW_HOME_PREFIX, create_metadata_db

# Airflow reads AIRFLOW_HOME at import time. Always a fresh one: tests create and write a metadata
# DB, which must never be a developer's exported AIRFLOW_HOME.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix=TEMPORARY_AIRFLOW_HOME_PREFIX)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# Debug level, so that tests which search logs for secrets see the debug lines too. Output is only
# shown for failing tests.
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "DEBUG")

from tests.fakes import FakeClock

if TYPE_CHECKING:
    from xdist.remote import Producer
    from xdist.scheduler import LoadFileScheduling

    from airflow_provider_iotfleet.simulator import Simulator
    from tests.simulator_harness import SimulatorFactory

#: The test files that read the session's one run of the example DAGs (the ``example_runs`` fixture).
EXAMPLE_RUN_READERS = ("tests/examples/test_example_dags.py", "tests/examples/test_secrets_scan.py")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def set_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Define an Airflow connection the way hooks see it outside a task: an AIRFLOW_CONN_* variable."""

    def define(conn_id: str, conn_type: str, **fields: Any) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": conn_type, **fields}))

    return define


@pytest.fixture
def start_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorFactory]:
    """Start a simulator with the given config and export its connections; stopped after the test."""
    # Imported when a test starts one: the simulator brings its whole web stack.
    from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig

    running: list[Simulator] = []

    def start(**config: Any) -> Simulator:
        simulator = Simulator(SimulatorConfig(**config)).start()
        running.append(simulator)
        for name, value in simulator.airflow_env().items():
            monkeypatch.setenv(name, value)
        return simulator

    yield start
    for simulator in running:
        simulator.stop()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The session's Airflow metadata DB, created once (see :func:`tests.dag_runs.create_metadata_db`)."""
    create_metadata_db()


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadFileScheduling | None:
    """Under ``--dist loadfile`` (``make test``), hand the :data:`EXAMPLE_RUN_READERS` to one worker
    as one unit: a session fixture is set up once per worker, and the example DAGs are to run once."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ExampleRunReadersTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return EXAMPLE_RUN_READERS[0] if path in EXAMPLE_RUN_READERS else path

    return ExampleRunReadersTogether(config, log)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Airflow disposes its ORM at exit and logs that at debug level to a stream pytest has closed.
    import logging

    logging.getLogger("airflow").setLevel(logging.WARNING)
