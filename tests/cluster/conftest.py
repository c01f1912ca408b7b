"""Fixtures of the cluster tests: one cluster of ``scripts/cluster.py`` (PostgreSQL, Redis, the
CeleryExecutor with two workers) for the session, and its simulator (``tests/airflow_cluster.py``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig
from tests.airflow_cluster import AirflowCluster
from tests.airflow_standalone import (
    CISCO_CONNECTION_RATE,
    CISCO_MAX_CONCURRENCY,
    CISCO_VENDOR_LIMIT,
    FLEET_SIZE,
    LATENCY,
    ROOT,
)
from tests.simulator_harness import connection_variables

#: The DAG files the cluster runs.
DAG_FILES = (
    ROOT / "example_dags" / "iotfleet_fleet_scale_out.py",
    ROOT / "example_dags" / "iotfleet_maintenance_window.py",
    ROOT / "tests" / "cluster" / "dags" / "iotfleet_cluster_many.py",
)


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    """The vendor simulator in this process, shared by the cluster tests (each checks what changed
    since it started)."""
    sim = Simulator(
        SimulatorConfig(devices=FLEET_SIZE, latency=LATENCY, rate_limits={"cisco": CISCO_VENDOR_LIMIT})
    ).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def airflow_cluster(
    tmp_path_factory: pytest.TempPathFactory, simulator: Simulator
) -> Iterator[AirflowCluster]:
    """The cluster over a fresh home, its connections pointing at the simulator (Control Center's
    limited to the account's rate as in the standalone tests), the scale-out's pool created; stopped
    after the session, whatever happened."""
    from example_dags.iotfleet_fleet_scale_out import PARALLEL_TASKS, POOL

    home = tmp_path_factory.mktemp("cluster")
    dags = home / "dags"
    dags.mkdir()
    for dag_file in DAG_FILES:
        shutil.copy(dag_file, dags / dag_file.name)
    env = connection_variables(simulator)
    cisco = connection_variables(
        simulator, requests_per_second=CISCO_CONNECTION_RATE, max_concurrency=CISCO_MAX_CONCURRENCY
    )
    env["AIRFLOW_CONN_CISCO_CONTROL_CENTER_DEFAULT"] = cisco["AIRFLOW_CONN_CISCO_CONTROL_CENTER_DEFAULT"]
    cluster = AirflowCluster(home / "airflow-home", env, dags_folder=dags)
    try:
        cluster.start({POOL: PARALLEL_TASKS})
        yield cluster
    finally:
        cluster.stop()
