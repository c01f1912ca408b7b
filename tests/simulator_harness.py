"""The harness of the tests that run against a simulator over real sockets: its connections, its
fault dice switched or aimed while it runs, operators run as task tries do with every device of
their outcome accounted for, and triggers run in an event loop while the simulated fleet changes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from airflow_provider_iotfleet.exceptions import OUTCOME_KEY, IoTFleetOperationFailedError
from airflow_provider_iotfleet.simulator import Faults, Simulator
from airflow_provider_iotfleet.triggers.base import DeviceWatchTrigger
from tests.connections import with_extra
from tests.fakes import OUTCOME_STATUSES, assert_outcome_shape, operator_context

#: The ``start_simulator`` fixture: starts a simulator of the given :class:`SimulatorConfig` fields.
SimulatorFactory = Callable[..., Simulator]


def connections_with(simulator: Simulator, **extra: Any) -> dict[str, dict[str, Any]]:
    """``simulator``'s four default connections (JSON form, by connection id), each with ``extra`` on
    top of its own extras: client-side limits and retries, usually."""
    return {conn_id: with_extra(conn, **extra) for conn_id, conn in simulator.connections().items()}


def connection_variables(simulator: Simulator, **extra: Any) -> dict[str, str]:
    """The ``AIRFLOW_CONN_*`` variables that define :func:`connections_with`'s connections."""
    return {
        f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
        for conn_id, conn in connections_with(simulator, **extra).items()
    }


# --- The simulator's fault dice ---------------------------------------------------------------------


def set_faults(simulator: Simulator, faults: Faults | None = None) -> None:
    """Switch the running simulator's fault dice to ``faults`` (none when not given), as between
    two tries of a task: the next request meets the new odds."""
    simulator.state.config = dataclasses.replace(simulator.state.config, faults=faults or Faults())


def fault_where(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch, fault: str, where: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Answer every API request whose request-log record matches ``where`` with ``fault`` (one of
    :class:`Faults`' names), and every other as the configured dice say; return the records of the
    requests so faulted, filled in as they are answered.

    The simulator logs a request and then rolls its fault with no other request in between (its
    event loop does not switch while latency is 0), so the record seen last is the one rolled for.
    """
    assert fault in Faults.__dataclass_fields__, fault
    state = simulator.state
    log_request, roll_fault = state.log_request, state.roll_fault
    faulted: list[dict[str, Any]] = []
    matched: list[dict[str, Any] | None] = [None]

    def logging(*args: Any, **kwargs: Any) -> dict[str, Any]:
        record = log_request(*args, **kwargs)
        matched[0] = record if where(record) else None
        return record

    def rolling(*args: Any, **kwargs: Any) -> str | None:
        rolled = roll_fault(*args, **kwargs)  # the dice roll on, so other requests meet what they would have
        if matched[0] is None:
            return rolled
        faulted.append(matched[0])
        return fault

    assert not simulator.config.latency, "a latency lets requests interleave between log and roll"
    monkeypatch.setattr(state, "log_request", logging)
    monkeypatch.setattr(state, "roll_fault", rolling)
    return faulted


# --- Running an operator as a task try, and accounting for its devices ----------------------------

Outcome = dict[str, Any]


def run_task(operator: Any, context: dict[str, Any] | None = None) -> tuple[Outcome, bool]:
    """Run ``operator`` as one task try does (``operator.execute(context)``); return its outcome and
    whether the try succeeded.

    Holds the one-copy rule a downstream task relies on: a try that succeeds returns the outcome
    and pushes nothing else; a try that ``fail_on_error`` fails pushes it once, under ``outcome``,
    before raising. Either way the outcome is JSON-safe, as XCom needs.
    """
    context = context if context is not None else operator_context(operator.task_id)
    pushed: dict[str, Any] = context["ti"].xcom
    failed: IoTFleetOperationFailedError | None = None
    try:
        outcome = operator.execute(context)
    except IoTFleetOperationFailedError as error:
        failed = error
    if failed is not None:
        outcome = failed.outcome
        assert pushed == {OUTCOME_KEY: outcome}, "a failed try pushes its outcome once, under 'outcome'"
    else:
        assert pushed == {}, "a try that succeeds returns its outcome and pushes no second copy"
    assert json.loads(json.dumps(outcome)) == outcome
    return outcome, failed is None


def accounted_once(outcome: Outcome, *, operation: str, requested: Sequence[Any]) -> dict[Any, str]:
    """Check ``outcome`` has the documented shape with every distinct device of ``requested`` in
    exactly one place (a done status, or one error group); return each device's status."""
    assert_outcome_shape(outcome, operation=operation, requested=list(dict.fromkeys(requested)))
    status = {device: name for name in OUTCOME_STATUSES[:4] for device in outcome["devices"][name]}
    status.update((device, error["status"]) for error in outcome["errors"] for device in error["devices"])
    return status


def error_of(outcome: Outcome) -> dict[Any, dict[str, Any]]:
    """The error group that lists each failed or unknown device."""
    return {device: error for error in outcome["errors"] for device in error["devices"]}


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
    """The one event ``trigger`` fires before it ends; fails the test if it fires none or more."""
    payloads = [event.payload async for event in trigger.run()]
    assert len(payloads) == 1
    return payloads[0]
