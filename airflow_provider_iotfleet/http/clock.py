"""Time as the transport sees it, in one object so that tests can replace it whole."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime


class Clock:
    """Wall time, monotonic time and sleeping (in a thread, or in an event loop without blocking it).

    Tests pass a fake whose sleeps advance the others.
    """

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        """Return the current time, timezone-aware in UTC."""
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = Clock()
