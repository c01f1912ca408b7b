"""Fixtures that run the test DAGs in ``dags/`` end to end with ``dag.test()``, against a simulator
over sockets (the harness: ``tests/dag_runs.py``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_iotfleet.simulator import Simulator
from tests.dag_runs import (
    DAGS_FOLDER,
    FLEET_SIZE,
    VERIZON_PAGE_SIZE,
    DagRunResult,
    RunDag,
    bundle_environment,
    read_dag_run,
)
from tests.simulator_harness import SimulatorFactory


@pytest.fixture
def dags_bundle(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``dags/`` the ``dags-folder`` bundle (and the dags folder) for this test."""
    bundle_environment(monkeypatch, DAGS_FOLDER)
    return DAGS_FOLDER


@pytest.fixture
def simulator(start_simulator: SimulatorFactory) -> Simulator:
    """A simulator of ``FLEET_SIZE`` devices, its four default connections in the environment, where
    the tasks' hooks find them."""
    return start_simulator(devices=FLEET_SIZE, verizon_page_size=VERIZON_PAGE_SIZE)


@pytest.fixture
def run_dag(airflow_db: None, dags_bundle: Path) -> RunDag:
    """Run a DAG of ``dags/`` once with ``dag.test()`` (loaded with a ``DagBag`` of ``dags/``, its
    tasks in this process) and return what it left in the DB."""

    def run(dag_id: str, *, logical_date: datetime, run_conf: dict[str, Any] | None = None) -> DagRunResult:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(dags_bundle))
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag(dag_id)
        assert dag is not None, f"{dag_id} is not in {dags_bundle}; found {sorted(bag.dag_ids)}"
        return read_dag_run(dag.test(logical_date=logical_date, run_conf=run_conf))

    return run
