"""Client-side rate limiting, so that a fleet-sized job stays under each vendor's published limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """A thread-safe token bucket that hands out send times: each caller reserves the next free slot.

    :meth:`reserve` never waits; :meth:`acquire` sleeps in the calling thread and :meth:`aacquire`
    awaits in the event loop, so the sync and async clients share one limiter logic.

    :param rate: requests per second on average.
    :param capacity: the most requests let through at once after a quiet spell. The default of one
        spaces requests evenly, which is what per-second vendor limits need: a burst at the end of one
        second and another at the start of the next would break them.
    :param clock: monotonic seconds; injectable for tests.
    :param sleep: how to wait in :meth:`acquire`; injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        capacity: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._interval = 1.0 / rate
        # The generic cell rate algorithm: requests are theoretically due one interval apart from
        # ``_due``; one may go up to ``_tolerance`` early, which is what allows a burst of ``capacity``.
        self._tolerance = (capacity - 1) * self._interval
        self._due = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take the next free slot; return the seconds until it comes (0 when it is free now)."""
        with self._lock:
            now = self._clock()
            wait = max(self._due - self._tolerance - now, 0.0)
            self._due = max(self._due, now) + self._interval
            return wait

    def pause(self, seconds: float) -> None:
        """Let no request through for ``seconds`` (the vendor said ``Retry-After``), whoever asks."""
        with self._lock:
            self._due = max(self._due, self._clock() + seconds + self._tolerance)

    def acquire(self) -> float:
        """Block until a request may be sent; return the seconds spent waiting."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    async def aacquire(self, sleep: Callable[[float], object]) -> float:
        """Wait in the event loop (``sleep`` is an async sleep) until a request may be sent."""
        wait = self.reserve()
        if wait > 0:
            await sleep(wait)  # type: ignore[misc]
        return wait
