"""Fixtures of the standalone tests: the one ``airflow standalone`` of the session and its simulator
(the harness: ``tests/airflow_standalone.py``)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig
from tests.airflow_standalone import (
    CISCO_CONNECTION_RATE,
    CISCO_MAX_CONCURRENCY,
    CISCO_VENDOR_LIMIT,
    DAG_FILES,
    FLEET_SIZE,
    LATENCY,
    AirflowStandalone,
)
from tests.standalone.dags import iotfleet_standalone_retries as retries_dags


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    """The vendor simulator in this process, on a free loopback port, shared by the standalone tests
    (each checks what changed since it started, not what the simulator holds)."""
    sim = Simulator(
        SimulatorConfig(devices=FLEET_SIZE, latency=LATENCY, rate_limits={"cisco": CISCO_VENDOR_LIMIT})
    ).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def airflow_standalone(
    tmp_path_factory: pytest.TempPathFactory, simulator: Simulator
) -> Iterator[AirflowStandalone]:
    """``airflow standalone`` over a fresh home, running :data:`DAG_FILES`, its connections pointing at
    the simulator; stopped (the whole process group) after the session, whatever happened."""
    home = tmp_path_factory.mktemp("standalone")
    dags = home / "dags"
    dags.mkdir()
    for dag_file in DAG_FILES:
        shutil.copy(dag_file, dags / dag_file.name)
    connections = simulator.connections()
    connections["cisco_control_center_default"]["extra"] = {
        "requests_per_second": CISCO_CONNECTION_RATE,
        "max_concurrency": CISCO_MAX_CONCURRENCY,
    }
    # The retries DAGs' own connections: default ones with other extras (see that DAG file).
    for conn_id, (default_id, extra) in retries_dags.CONNECTIONS.items():
        default = connections[default_id]
        connections[conn_id] = {**default, "extra": {**default.get("extra", {}), **extra}}
    env = {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in connections.items()}
    airflow = AirflowStandalone(home / "airflow-home", env, dags_folder=dags)
    try:
        airflow.start()
        yield airflow
    finally:
        airflow.stop()
