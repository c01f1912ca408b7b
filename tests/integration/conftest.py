"""Fixtures of the tests against a simulator over real sockets (their helpers: ``tests/simulator_harness.py``)."""

from __future__ import annotations

import pytest

from airflow_provider_iotfleet.simulator import Simulator
from tests.simulator_harness import SimulatorFactory


@pytest.fixture
def simulator(start_simulator: SimulatorFactory) -> Simulator:
    return start_simulator(devices=3000)
