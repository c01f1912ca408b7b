"""Bounded waits on the event loop's shared timer (``airflow_provider_iotfleet.deadlines``): a wait
that hangs is cut off at its bound, as with ``asyncio.timeout``, and many bounded waits leave no
timer each behind."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_iotfleet.deadlines import Bound

pytestmark = pytest.mark.timeout(30)


async def hang() -> None:
    await asyncio.Event().wait()


def test_a_wait_that_hangs_is_cut_off_at_its_bound() -> None:
    async def run() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        bound = Bound()
        started = loop.time()
        with pytest.raises(TimeoutError), bound.within(0.05):
            await hang()
        return bound.expired(), loop.time() - started

    expired, waited = asyncio.run(run())
    assert expired
    assert waited >= 0.05  # never before its bound


def test_a_wait_that_ends_first_is_not_cut_off_and_its_task_is_not_left_cancelled() -> None:
    async def run() -> tuple[bool, int, str]:
        bound = Bound()
        with bound.within(5):
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)  # a cancellation left pending would land here
        task = asyncio.current_task()
        assert task is not None
        return bound.expired(), task.cancelling(), "went on"

    assert asyncio.run(run()) == (False, 0, "went on")


def test_one_bound_serves_wait_after_wait_each_with_its_own_seconds() -> None:
    async def run() -> list[bool]:
        bound = Bound()
        outcomes = []
        for seconds, work in [(5, asyncio.sleep(0)), (0.02, hang()), (5, asyncio.sleep(0.01)), (0, hang())]:
            try:
                with bound.within(seconds):
                    await work
            except TimeoutError:
                pass
            outcomes.append(bound.expired())
        return outcomes

    assert asyncio.run(run()) == [False, True, False, True]


def test_the_nearer_of_two_nested_bounds_cuts_the_wait_off_and_only_it_expires() -> None:
    async def run(outer_seconds: float, inner_seconds: float) -> tuple[bool, bool, str]:
        outer, inner = Bound(), Bound()
        try:
            with outer.within(outer_seconds):
                try:
                    with inner.within(inner_seconds):
                        await hang()
                except TimeoutError:
                    return outer.expired(), inner.expired(), "inner raised"
        except TimeoutError:
            return outer.expired(), inner.expired(), "outer raised"
        raise AssertionError("not cut off")

    assert asyncio.run(run(5, 0.02)) == (False, True, "inner raised")
    assert asyncio.run(run(0.02, 5)) == (True, False, "outer raised")


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def run() -> bool:
        bound = Bound()

        async def bounded() -> None:
            with bound.within(5):
                await hang()

        task = asyncio.create_task(bounded())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return bound.expired()

    assert asyncio.run(run()) is False


def test_thousands_of_bounded_waits_that_end_first_leave_one_timer_in_the_loop() -> None:
    """What asyncio.timeout does not do: each of its waits leaves a cancelled timer in the loop
    until asyncio purges them, long enough for the garbage collector to keep it for good."""

    async def run() -> int:
        loop = asyncio.get_running_loop()
        sleepers = [asyncio.create_task(asyncio.sleep(60)) for _ in range(200)]  # triggers between polls
        await asyncio.sleep(0)
        bound = Bound()
        for _ in range(2000):
            with bound.within(3600):
                await asyncio.sleep(0)
        scheduled = len(loop._scheduled) - len(sleepers)  # type: ignore[attr-defined]
        for sleeper in sleepers:
            sleeper.cancel()
        await asyncio.gather(*sleepers, return_exceptions=True)
        return scheduled

    assert asyncio.run(run()) == 1


def test_a_bound_is_entered_inside_a_task_and_once_at_a_time() -> None:
    with pytest.raises(RuntimeError, match="inside a task"):
        Bound().within(1).__enter__()

    async def run() -> None:
        bound = Bound()
        with bound.within(5), pytest.raises(RuntimeError, match="already entered"), bound.within(5):
            pass

    asyncio.run(run())
