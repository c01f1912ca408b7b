"""Reads that take several calls (pages, one call per device), written once and run by either client.

A plan is a generator: it yields a list of :class:`~.request.Call` to send (at once, within the
client's concurrency), receives their replies in the same order, and finally returns its result.
:func:`run_plan` drives it with the sync client and :func:`arun_plan` with the async one, so a
hook's read method and its async twin share every line that decides what to read and what it means.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterable
from typing import TypeVar

from airflow_provider_iotfleet.exceptions import IoTFleetError, IoTFleetNotAttemptedError
from airflow_provider_iotfleet.http.aclient import AsyncVendorHttpClient
from airflow_provider_iotfleet.http.answers import Reply
from airflow_provider_iotfleet.http.client import VendorHttpClient
from airflow_provider_iotfleet.http.concurrency import affects_every_item, map_bounded
from airflow_provider_iotfleet.http.request import Call

ResultT = TypeVar("ResultT")
Plan = Generator[list[Call], list[Reply], ResultT]


def run_plan(client: VendorHttpClient, plan: Plan[ResultT], max_concurrency: int = 1) -> ResultT:
    """Run ``plan`` with the sync client; the first failed call's error is raised once all are done."""
    try:
        calls = next(plan)
        while True:
            outcomes = map_bounded(client.send, calls, max_concurrency)
            failed = _first_cause(outcome.error for outcome in outcomes)
            if failed is not None:
                raise failed
            calls = plan.send([outcome.result for outcome in outcomes if outcome.result is not None])
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        plan.close()


async def arun_plan(client: AsyncVendorHttpClient, plan: Plan[ResultT], max_concurrency: int = 1) -> ResultT:
    """Run ``plan`` with the async client, at most ``max_concurrency`` calls in flight."""
    slots = asyncio.Semaphore(max_concurrency)
    abort: list[IoTFleetError] = []

    async def send(call: Call) -> Reply | IoTFleetError:
        async with slots:
            if abort:  # as map_bounded does for the sync client: no call after refused credentials
                return IoTFleetNotAttemptedError.after(abort[0])
            try:
                return await client.send(call)
            except IoTFleetError as error:
                if affects_every_item(error) and not abort:
                    abort.append(error)
                return error

    try:
        calls = next(plan)
        while True:
            outcomes = await asyncio.gather(*(send(call) for call in calls))
            failed = next(
                (
                    o
                    for o in outcomes
                    if isinstance(o, IoTFleetError) and not isinstance(o, IoTFleetNotAttemptedError)
                ),
                None,
            )
            if failed is not None:
                raise failed
            calls = plan.send([outcome for outcome in outcomes if isinstance(outcome, Reply)])
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        plan.close()


def _first_cause(errors: Iterable[IoTFleetError | None]) -> IoTFleetError | None:
    """The first error in call order that is not merely a call skipped because of another."""
    return next(
        (error for error in errors if error is not None and not isinstance(error, IoTFleetNotAttemptedError)),
        None,
    )
