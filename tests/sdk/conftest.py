"""The vendors' official SDKs against a simulator, at its root URL (the SDKs keep only scheme and host)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig

SimulatorFactory = Callable[..., Simulator]


@pytest.fixture
def start_simulator() -> Iterator[SimulatorFactory]:
    """Start a simulator with the given config; stopped after the test."""
    running: list[Simulator] = []

    def start(**config: object) -> Simulator:
        simulator = Simulator(SimulatorConfig(**config)).start()  # type: ignore[arg-type]
        running.append(simulator)
        return simulator

    yield start
    for simulator in running:
        simulator.stop()
