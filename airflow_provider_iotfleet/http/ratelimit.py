"""Client-side rate limiting, so that a fleet-sized job stays under each vendor's published limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """A thread-safe token bucket: ``acquire()`` blocks until the caller may send one request.

    :param rate: tokens added per second (requests per second on average).
    :param capacity: the most tokens the bucket holds, that is the largest burst allowed after a
        quiet spell. The default of one spaces requests evenly, which is what per-second vendor limits
        need: a burst at the end of one second and another at the start of the next would break them.
    :param clock: monotonic seconds; injectable for tests.
    :param sleep: how to wait; injectable for tests.
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
        self._tokens = capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def _wait_needed(self) -> float:
        """Take a token if one is there and return 0, else return how long until one is."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            # The epsilon absorbs float rounding: without it, a bucket at 0.9999999999 tokens asks for
            # a sleep too short to move a large monotonic clock, and spins.
            if self._tokens >= 1 - 1e-9:
                self._tokens = max(self._tokens - 1, 0.0)
                return 0.0
            return (1 - self._tokens) / self.rate

    def acquire(self) -> float:
        """Block until a request may be sent; return the seconds spent waiting."""
        waited = 0.0
        while (wait := self._wait_needed()) > 0:
            # Sleep outside the lock so that other threads can compute their own wait meanwhile.
            self._sleep(wait)
            waited += wait
        return waited
