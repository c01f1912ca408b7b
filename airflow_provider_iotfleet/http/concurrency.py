"""Run one call per device with a bounded number in flight, keeping every item's outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetConfigurationError,
    IoTFleetError,
    IoTFleetNotAttemptedError,
    IoTFleetRateLimitError,
    IoTFleetTransportError,
)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Outcome(Generic[ItemT, ResultT]):
    """What happened to one item: its ``result``, or the ``error`` the provider raised for it."""

    item: ItemT
    result: ResultT | None = None
    error: IoTFleetError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def affects_every_item(error: IoTFleetError) -> bool:
    """Return whether ``error`` would fail every later item too, as opposed to a problem with one
    device: refused credentials, a broken connection setting, a host that could not be connected to
    after every retry, or a vendor still throttling after every retry (or asking for a longer wait
    than is worth sleeping through). Bulk runs stop sending after one; Airflow's task retries can
    take over.
    """
    if isinstance(error, IoTFleetTransportError):
        return not error.may_have_reached_vendor  # refused, unresolvable, or an untrusted certificate
    return isinstance(error, IoTFleetAuthError | IoTFleetConfigurationError | IoTFleetRateLimitError)


class RunStop:
    """Stops a run of calls at the first error that would fail every later one too.

    Every runner of many calls (threads, batches in turn, coroutines) asks it before each call
    and tells it each error, so that they all stop the same way. Safe to share between threads.

    :param stops_run: which errors stop the run (default: :func:`affects_every_item`).
    """

    def __init__(self, stops_run: Callable[[IoTFleetError], bool] = affects_every_item) -> None:
        self._stops_run = stops_run
        self._cause: IoTFleetError | None = None
        self._lock = threading.Lock()

    def skipped(self) -> IoTFleetNotAttemptedError | None:
        """Return the error for a call not sent because the run has stopped, or ``None`` to send it.

        The error carries the cause's status, code and request id, so that failures group under it.
        """
        cause = self._cause
        return None if cause is None else IoTFleetNotAttemptedError.after(cause)

    def failed(self, error: IoTFleetError) -> None:
        """Note that a call failed with ``error``: the first one that stops the run is its cause."""
        if self._stops_run(error):
            with self._lock:
                if self._cause is None:
                    self._cause = error


def map_bounded(
    func: Callable[[ItemT], ResultT],
    items: Iterable[ItemT],
    max_concurrency: int,
    *,
    on_outcome: Callable[[Outcome[ItemT, ResultT]], None] | None = None,
    abort_on: Callable[[IoTFleetError], bool] = affects_every_item,
) -> list[Outcome[ItemT, ResultT]]:
    """Call ``func`` on every item, at most ``max_concurrency`` at a time, in input order.

    An :class:`IoTFleetError` for one item is kept in its outcome and the others still run, so a
    batch reports every failure at once. Any other exception is a bug and propagates.

    :param on_outcome: called with each outcome as soon as it is known (from the worker threads),
        for progress logs.
    :param abort_on: after an error for which this returns ``True`` (by default refused credentials
        or a bad connection), items not yet started are not sent: their outcome carries an
        :class:`IoTFleetNotAttemptedError` with the cause's status and code.
    :return: one :class:`Outcome` per item, in the order the items came.
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    run = RunStop(abort_on)

    def attempt(item: ItemT) -> Outcome[ItemT, ResultT]:
        outcome: Outcome[ItemT, ResultT]
        if (skipped := run.skipped()) is not None:
            outcome = Outcome(item=item, error=skipped)
        else:
            try:
                outcome = Outcome(item=item, result=func(item))
            except IoTFleetError as error:
                outcome = Outcome(item=item, error=error)
                run.failed(error)
        if on_outcome is not None:
            on_outcome(outcome)
        return outcome

    if max_concurrency == 1:
        return [attempt(item) for item in items]
    with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="iotfleet") as pool:
        return list(pool.map(attempt, items))


@dataclass(frozen=True)
class BatchOutcome(Generic[ItemT, ResultT]):
    """One batch's items and what came of them: the call's result, or the error of the whole call."""

    index: int
    items: list[ItemT]
    result: ResultT | None = None
    error: IoTFleetError | None = None


def map_batches(
    send: Callable[[list[ItemT]], ResultT],
    batches: Iterable[list[ItemT]],
    *,
    on_outcome: Callable[[BatchOutcome[ItemT, ResultT]], None] | None = None,
    abort_on: Callable[[IoTFleetError], bool] = affects_every_item,
    in_flight: int = 1,
) -> list[BatchOutcome[ItemT, ResultT]]:
    """Send each batch, keeping every batch's result or error: one failed call stops nothing, so
    earlier batches' results are never lost.

    :param on_outcome: called with each batch's outcome as soon as it is known, for progress logs
        (from worker threads when ``in_flight`` is above 1).
    :param abort_on: as for :func:`map_bounded`: after such an error the later batches are not sent
        and carry an :class:`IoTFleetNotAttemptedError` with the cause's status and code (with
        ``in_flight`` above 1, a batch already on its way when the error came is still answered).
    :param in_flight: how many requests may be on their way at once: 1 sends the batches one after
        the other; 2 sends the next while the answer to the previous one is read and recorded.
        Batches are taken in order either way; with more than one in flight their answers may land
        in another order.
    :return: one :class:`BatchOutcome` per batch, in input order.
    :raises ValueError: when ``in_flight`` is below 1.
    """
    if in_flight < 1:
        raise ValueError(f"in_flight must be at least 1, got {in_flight}")
    run = RunStop(abort_on)

    def attempt(index: int, batch: list[ItemT]) -> BatchOutcome[ItemT, ResultT]:
        outcome: BatchOutcome[ItemT, ResultT]
        if (skipped := run.skipped()) is not None:
            outcome = BatchOutcome(index=index, items=batch, error=skipped)
        else:
            try:
                outcome = BatchOutcome(index=index, items=batch, result=send(batch))
            except IoTFleetError as error:
                outcome = BatchOutcome(index=index, items=batch, error=error)
                run.failed(error)
        if on_outcome is not None:
            on_outcome(outcome)
        return outcome

    if in_flight == 1:
        return [attempt(index, batch) for index, batch in enumerate(batches)]
    listed = list(batches)
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="iotfleet-batch") as pool:
        return list(pool.map(attempt, range(len(listed)), listed))
