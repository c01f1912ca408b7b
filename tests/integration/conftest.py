"""A simulator on a free port, over real sockets, with the four default connections pointing at it;
and helpers that run a trigger in an event loop while the simulated fleet changes under it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig
from airflow_provider_iotfleet.triggers.base import DeviceWatchTrigger

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


# --- Driving a trigger while the simulated world changes ------------------------------------------

Payload = dict[str, Any]


class PollCounter:
    """Counts the polls of every trigger's watch (sync and async), to wait for some to happen."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, watch_class: type) -> None:
        self.polls = 0
        original = watch_class.apoll

        async def apoll(watch: Any, hook: Any) -> None:
            await original(watch, hook)
            self.polls += 1

        monkeypatch.setattr(watch_class, "apoll", apoll)

    async def wait_for(self, polls: int) -> None:
        for _ in range(2000):
            if self.polls >= polls:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"only {self.polls} polls happened")


def rebuilt(trigger: DeviceWatchTrigger) -> DeviceWatchTrigger:
    """The trigger as the triggerer builds it: from its class path and JSON kwargs."""
    classpath, kwargs = trigger.serialize()
    assert classpath == f"{type(trigger).__module__}.{type(trigger).__name__}"
    return type(trigger)(**json.loads(json.dumps(kwargs)))


def run_while(
    trigger: DeviceWatchTrigger, counter: PollCounter, polls: int, change: Callable[[], Awaitable[None]]
) -> tuple[Payload, int]:
    """Run ``trigger``; after ``polls`` polls without an event, ``change`` the fleet; return the
    event and how many polls had happened at the change."""

    async def main() -> tuple[Payload, int]:
        running = asyncio.create_task(one_event(trigger))
        await counter.wait_for(polls)
        assert not running.done(), "the trigger fired before the fleet changed"
        at_change = counter.polls
        await change()
        return await running, at_change

    return asyncio.run(main())


async def one_event(trigger: DeviceWatchTrigger) -> Payload:
    payloads = [event.payload async for event in trigger.run()]
    assert len(payloads) == 1
    return payloads[0]
