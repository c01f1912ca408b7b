"""Reads that take several calls (pages, one call per device), written once and run by either client.

A plan is a generator: it yields a list of :class:`~.request.Call` to send (at once, within the
client's concurrency), receives their replies in the same order, and finally returns its result.
:func:`run_plan` drives it with the sync client and :func:`arun_plan` with the async one, so a
hook's read method and its async twin share every line that decides what to read and what it means.

A plan that reads devices one by one, and must go on when the vendor does not know one of them,
yields :class:`Each` instead of a list: it then receives, for each call, the reply or the error that
settled it (a :class:`~airflow_provider_iotfleet.exceptions.IoTFleetNotFoundError`, say), and
decides per device what that means. Any other error still ends the plan, as for a list.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from airflow_provider_iotfleet.exceptions import (
    IoTFleetError,
    IoTFleetNotAttemptedError,
    IoTFleetNotFoundError,
)
from airflow_provider_iotfleet.http.aclient import AsyncVendorHttpClient
from airflow_provider_iotfleet.http.answers import Reply
from airflow_provider_iotfleet.http.client import VendorHttpClient
from airflow_provider_iotfleet.http.concurrency import RunStop, map_bounded
from airflow_provider_iotfleet.http.request import Call

ResultT = TypeVar("ResultT")
Plan = Generator[list[Call], list[Reply], ResultT]


@dataclass(frozen=True)
class Each:
    """Calls sent at once, like a list of calls, and answered one by one: the plan receives each
    call's :class:`Reply`, or the error it ended with when that error is one of ``settles`` (the
    vendor does not know this device). Any other error ends the plan as usual.

    :param calls: the calls, in the order their answers come back.
    :param settles: the error classes that answer one call rather than fail the plan.
    """

    calls: list[Call]
    settles: tuple[type[IoTFleetError], ...] = (IoTFleetNotFoundError,)


#: What a plan receives for one call of an :class:`Each`.
Answer = Reply | IoTFleetError
#: A plan that may yield :class:`Each`: it receives a list of :data:`Answer` for every step (only
#: replies for the steps that are plain lists of calls; see :func:`replies`).
SettlingPlan = Generator[list[Call] | Each, list[Answer], ResultT]


def replies(answers: Sequence[Answer]) -> list[Reply]:
    """The answers to a plain list of calls in a :data:`SettlingPlan`: replies only, by construction.

    :raises TypeError: if an error is among them (a runner bug, not a vendor answer).
    """
    found = [answer for answer in answers if isinstance(answer, Reply)]
    if len(found) != len(answers):
        raise TypeError("an error was passed to a plan for a call it did not send with Each")
    return found


def _answers(
    step: list[Call] | Each, results: Sequence[Reply | None], errors: Sequence[IoTFleetError | None]
) -> list[Answer]:
    """The answers a plan receives for ``step``, or the error that ends the plan.

    :raises IoTFleetError: the first error in call order that ``step`` does not settle (a call
        skipped because of another's error is not the cause: the other is).
    """
    settles = step.settles if isinstance(step, Each) else ()
    failed = _first_cause(error for error in errors if error is not None and not isinstance(error, settles))
    if failed is not None:
        raise failed
    answers: list[Answer] = []
    for result, error in zip(results, errors, strict=True):
        if error is not None:
            answers.append(error)
        elif result is not None:
            answers.append(result)
    return answers


def _calls(step: list[Call] | Each) -> list[Call]:
    return step.calls if isinstance(step, Each) else step


def run_plan(
    client: VendorHttpClient, plan: Plan[ResultT] | SettlingPlan[ResultT], max_concurrency: int = 1
) -> ResultT:
    """Run ``plan`` with the sync client; the first failed call's error is raised once all are done."""
    steps = cast(Generator[list[Call] | Each, list[Any], ResultT], plan)
    try:
        step = next(steps)
        while True:
            outcomes = map_bounded(client.send, _calls(step), max_concurrency)
            answers = _answers(step, [o.result for o in outcomes], [o.error for o in outcomes])
            step = steps.send(answers)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        steps.close()


async def arun_plan(
    client: AsyncVendorHttpClient, plan: Plan[ResultT] | SettlingPlan[ResultT], max_concurrency: int = 1
) -> ResultT:
    """Run ``plan`` with the async client, at most ``max_concurrency`` calls in flight."""
    steps = cast(Generator[list[Call] | Each, list[Any], ResultT], plan)
    slots = asyncio.Semaphore(max_concurrency)
    run = RunStop()  # as map_bounded does for the sync client: no call after refused credentials

    async def send(call: Call) -> Reply | IoTFleetError:
        async with slots:
            if (skipped := run.skipped()) is not None:
                return skipped
            try:
                return await client.send(call)
            except IoTFleetError as error:
                run.failed(error)
                return error

    try:
        step = next(steps)
        while True:
            outcomes = await asyncio.gather(*(send(call) for call in _calls(step)))
            answers = _answers(
                step,
                [o if isinstance(o, Reply) else None for o in outcomes],
                [o if isinstance(o, IoTFleetError) else None for o in outcomes],
            )
            step = steps.send(answers)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        steps.close()


def _first_cause(errors: Iterable[IoTFleetError | None]) -> IoTFleetError | None:
    """The first error in call order that is not merely a call skipped because of another."""
    return next(
        (error for error in errors if error is not None and not isinstance(error, IoTFleetNotAttemptedError)),
        None,
    )
