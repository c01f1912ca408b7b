"""Run one call per device with a bounded number in flight, keeping every item's outcome."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from airflow_provider_iotfleet.exceptions import IoTFleetError

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


def map_bounded(
    func: Callable[[ItemT], ResultT], items: Iterable[ItemT], max_concurrency: int
) -> list[Outcome[ItemT, ResultT]]:
    """Call ``func`` on every item, at most ``max_concurrency`` at a time, in input order.

    An :class:`IoTFleetError` for one item is kept in its outcome and the others still run, so a
    batch reports every failure at once. Any other exception is a bug and propagates.

    :return: one :class:`Outcome` per item, in the order the items came.
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")

    def attempt(item: ItemT) -> Outcome[ItemT, ResultT]:
        try:
            return Outcome(item=item, result=func(item))
        except IoTFleetError as error:
            return Outcome(item=item, error=error)

    if max_concurrency == 1:
        return [attempt(item) for item in items]
    with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="iotfleet") as pool:
        return list(pool.map(attempt, items))
