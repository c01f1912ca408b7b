"""Bounded waits that share one timer per event loop, instead of one ``asyncio.timeout`` each.

``asyncio.timeout`` schedules a timer per use. When the wait ends first, the timer is cancelled
but stays in the loop's heap until asyncio purges cancelled timers (once they are half of it):
with thousands of triggers sleeping between polls, that is thousands of polls later. Each such
timer (with its copy of the context and the bound callback) lives long enough for the garbage
collector to promote it into its oldest generation, and that generation's growth is what starts
full collections: over 100 ms each in a triggerer, with every trigger's loop stopped meanwhile.

A :class:`Bound` instead registers its deadline with the loop's one :class:`_LoopDeadlines`, which
keeps a single timer for the earliest deadline, and leaving the bound only forgets it. A
:class:`Bound` is reusable: a trigger keeps one for all its polls.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from types import TracebackType

#: How early a timer may fire (the loop runs timers due within its clock's resolution): a deadline
#: this close to now counts as passed.
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


class _LoopDeadlines:
    """The bounds entered in one event loop, and one timer for the earliest of their deadlines."""

    __slots__ = ("__weakref__", "_bounds", "_timer", "_timer_when")

    def __init__(self) -> None:
        self._bounds: set[Bound] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = math.inf

    def add(self, bound: Bound, loop: asyncio.AbstractEventLoop) -> None:
        """Watch ``bound``; the timer moves only when its deadline is the earliest."""
        self._bounds.add(bound)
        if bound.when < self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(bound.when, self._expire_due, loop)
            self._timer_when = bound.when

    def discard(self, bound: Bound) -> None:
        """Stop watching ``bound``. The timer stays: when it fires it finds the next deadline."""
        self._bounds.discard(bound)

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_when = None, math.inf
        now = loop.time() + _CLOCK_RESOLUTION
        earliest = math.inf
        for bound in list(self._bounds):
            if bound.when <= now:
                self._bounds.discard(bound)
                bound.expire()
            elif bound.when < earliest:
                earliest = bound.when
        if earliest < math.inf:
            self._timer = loop.call_at(earliest, self._expire_due, loop)
            self._timer_when = earliest


_DEADLINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopDeadlines] = weakref.WeakKeyDictionary()


class Bound:
    """Cuts the current task's wait off after a number of seconds, as ``asyncio.timeout`` does.

    Used as ``with bound.within(seconds):`` inside a task (a plain ``with``: entering and leaving
    never wait). When the seconds pass first, the task is cancelled and the block raises
    :class:`TimeoutError`, and :meth:`expired` is then true; a cancellation from elsewhere
    propagates as a :class:`asyncio.CancelledError`, as with ``asyncio.timeout``. The same bound
    may be entered again once left, not while entered.
    """

    __slots__ = ("_cancelling", "_deadlines", "_expired", "_seconds", "_task", "when")

    def __init__(self) -> None:
        self._seconds = math.inf
        self._task: asyncio.Task[object] | None = None
        self._deadlines: _LoopDeadlines | None = None
        self._cancelling = 0
        self._expired = False
        #: the loop time at which the entered bound cuts the wait off.
        self.when = math.inf

    def within(self, seconds: float) -> Bound:
        """This bound, to be entered, cutting the wait off ``seconds`` after it is entered (at
        the loop's next turn when ``seconds`` is not positive).

        :return: ``self``, for ``with bound.within(seconds):``.
        """
        self._seconds = seconds
        return self

    def expired(self) -> bool:
        """Whether the last time it was entered, the bound cut the wait off."""
        return self._expired

    def expire(self) -> None:
        """Cut the wait off now: cancel the task, whose block then raises :class:`TimeoutError`."""
        if self._task is not None and not self._expired:
            self._expired = True
            self._task.cancel()

    def __enter__(self) -> Bound:
        if self._task is not None:
            raise RuntimeError("this Bound is already entered")
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no event loop runs in this thread
            task = None
        if task is None:
            raise RuntimeError("a Bound is entered only inside a task, and none runs here")
        loop = task.get_loop()
        deadlines = _DEADLINES.get(loop)
        if deadlines is None:
            deadlines = _DEADLINES[loop] = _LoopDeadlines()
        self._task, self._deadlines = task, deadlines
        self._cancelling = task.cancelling()
        self._expired = False
        self.when = loop.time() + self._seconds
        deadlines.add(self, loop)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        task, deadlines = self._task, self._deadlines
        self._task = self._deadlines = None
        if deadlines is not None:
            deadlines.discard(self)
        if (
            self._expired
            and task is not None
            and exc_type is not None
            and issubclass(exc_type, asyncio.CancelledError)
            and task.uncancel() <= self._cancelling
        ):
            # Only our own cancellation becomes a timeout: one from elsewhere (the triggerer
            # cancelling the trigger) is still pending and propagates.
            raise TimeoutError from exc
