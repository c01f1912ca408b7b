"""LookAhead: the one-page look-ahead a FOTA export reads its listing through.

The pages come from a generator that records, for each page it is asked for, how many pages the
caller had finished with by then: no timing, only the order things happen in.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from airflow_provider_iotfleet.hooks.verizon.paging import LookAhead

NAME = "test-look-ahead"


class Source:
    """``pages`` pages (lists of ints), recording when each is asked for; page ``fail_at`` raises."""

    def __init__(self, pages: int, *, fail_at: int | None = None) -> None:
        self.pages = pages
        self.fail_at = fail_at
        self.finished = 0  # pages the caller is done with (the caller counts them)
        self.asked: list[tuple[int, int]] = []  # (page, pages finished when it was asked for)
        self.closed = False
        self.failed = threading.Event()
        self._asking = threading.Condition()

    def wait_asked(self, count: int) -> bool:
        """Wait until ``count`` pages have been asked for; return whether they were (10 s at most)."""
        with self._asking:
            return self._asking.wait_for(lambda: len(self.asked) >= count, timeout=10)

    def __iter__(self) -> Iterator[list[int]]:
        try:
            for number in range(self.pages):
                with self._asking:
                    self.asked.append((number, self.finished))
                    self._asking.notify_all()
                if number == self.fail_at:
                    self.failed.set()
                    raise RuntimeError(f"page {number} failed")
                yield [number] * 3
        finally:
            self.closed = True


def threads_left() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(NAME)]


def test_pages_keep_their_order_and_none_is_asked_past_the_last() -> None:
    source = Source(5)
    pages = []
    for page in LookAhead(iter(source), name=NAME):
        pages.append(page)
        source.finished += 1
    assert pages == [[n] * 3 for n in range(5)]
    assert [number for number, _ in source.asked] == list(range(5))  # each once, none past the last
    assert source.closed
    assert threads_left() == []


def test_the_next_page_is_fetched_while_the_caller_holds_this_one_and_no_further() -> None:
    source = Source(6)
    for page in LookAhead(iter(source), name=NAME):
        if page[0] < 5:  # the caller holds page k: page k + 1 is asked for meanwhile
            assert source.wait_asked(page[0] + 2)
        source.finished += 1
    # page k + 1 was asked for while the caller held page k, and page k + 2 only once it was done
    # with page k: one page held, one in flight, never more
    assert source.asked == [(0, 0)] + [(number, number - 1) for number in range(1, 6)]


def test_nothing_is_fetched_before_the_first_page_is_asked_for() -> None:
    source = Source(3)
    pages = LookAhead(iter(source), name=NAME)
    assert source.asked == []
    assert threads_left() == []
    pages.close()
    assert threads_left() == []
    with pytest.raises(StopIteration):
        next(pages)
    assert source.asked == []


def test_an_error_comes_when_its_page_is_reached_after_the_pages_before() -> None:
    source = Source(5, fail_at=2)
    pages = LookAhead(iter(source), name=NAME)
    assert next(pages) == [0, 0, 0]
    source.finished += 1
    assert next(pages) == [1, 1, 1]  # page 2 is asked for now, in the look-ahead's thread
    assert source.failed.wait(10)
    # page 2 has already failed in the background: page 1 was delivered all the same
    with pytest.raises(RuntimeError, match="page 2 failed"):
        next(pages)
    assert [number for number, _ in source.asked] == [0, 1, 2]  # nothing after the error
    assert threads_left() == []
    with pytest.raises(StopIteration):
        next(pages)


def test_closing_early_drops_the_page_in_flight_and_ends_the_thread() -> None:
    source = Source(100)
    with LookAhead(iter(source), name=NAME) as pages:
        assert next(pages) == [0, 0, 0]
        assert threads_left() != []
    # stopped after page 0 (e.g. a limit reached): page 1 was in flight, no other page asked for
    assert [number for number, _ in source.asked] in ([0], [0, 1])
    assert source.closed
    assert threads_left() == []
    with pytest.raises(StopIteration):
        next(pages)
    pages.close()  # again: nothing to do


def test_a_caller_error_while_a_page_is_in_flight_leaves_no_thread() -> None:
    source = Source(100)
    pages = LookAhead(iter(source), name=NAME)

    def consume() -> None:
        try:
            for page in pages:
                if page[0] == 3:
                    raise ValueError("the caller's own error")
                source.finished += 1
        finally:
            pages.close()

    with pytest.raises(ValueError, match="the caller's own"):
        consume()
    assert max(number for number, _ in source.asked) <= 4
    assert source.closed
    assert threads_left() == []
