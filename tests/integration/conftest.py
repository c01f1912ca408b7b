"""A simulator on a free port, over real sockets, with the four default connections pointing at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig

SimulatorFactory = Callable[..., Simulator]


@pytest.fixture
def start_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorFactory]:
    """Start a simulator with the given config and export its connections; stopped after the test."""
    running: list[Simulator] = []

    def start(**config: object) -> Simulator:
        simulator = Simulator(SimulatorConfig(**config)).start()  # type: ignore[arg-type]
        running.append(simulator)
        for name, value in simulator.airflow_env().items():
            monkeypatch.setenv(name, value)
        return simulator

    yield start
    for simulator in running:
        simulator.stop()


@pytest.fixture
def simulator(start_simulator: SimulatorFactory) -> Simulator:
    return start_simulator(devices=3000)
