"""How ThingSpace listings page: each request names the last item seen (``lastSeenDeviceId``,
``lastSeenCampaignId``; ``0`` at first), each answer says ``hasMoreData`` and where to go on.
:class:`CursorPager` is every listing's loop: devices, campaigns and a campaign's device report;
:class:`LookAhead` fetches a listing's next page while the caller works on the current one."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import replace
from types import TracebackType
from typing import Any, Generic, TypeVar

from airflow_provider_iotfleet.exceptions import IoTFleetVendorResponseError
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.hooks.verizon.answers import VENDOR
from airflow_provider_iotfleet.http import Call, Reply
from airflow_provider_iotfleet.http.errors import malformed_response
from airflow_provider_iotfleet.http.plans import Plan

#: What a listing checks of a page's items before they go out (raising for one it cannot list).
ItemCheck = Callable[[Reply, list[dict[str, Any]]], None]

#: What :func:`scan_cursor` returns when the raw body does not say for sure where the listing goes on.
UNKNOWN: Any = object()
_HAS_MORE = re.compile(rb'"hasMoreData"\s*:\s*(true|false)\b')


def scan_cursor(body: bytes, cursor: str) -> str | Any | None:
    """Read where a listing goes on from a page's raw body, without decoding it: the ``cursor``
    field's value when ``hasMoreData`` is ``true``, ``None`` when it is ``false``, :data:`UNKNOWN`
    when the body does not say it plainly (either field missing, named more than once, a cursor
    with escapes or of another type). A guess to send the next request early: the decoded page
    decides (:meth:`CursorPager.turn`).
    """
    if body.count(b'"hasMoreData"') != 1:
        return UNKNOWN
    more = _HAS_MORE.search(body)
    if more is None:
        return UNKNOWN
    if more[1] == b"false":
        return None
    key = b'"' + cursor.encode() + b'"'
    if body.count(key) != 1:
        return UNKNOWN
    value = re.compile(re.escape(key) + rb'\s*:\s*(?:"([^"\\]*)"|(\d+)\s*[,}])').search(body)
    if value is None:
        return UNKNOWN
    found = value[1] if value[1] is not None else value[2]
    try:
        return found.decode()
    except UnicodeDecodeError:
        return UNKNOWN


def _cursor_after(cursor: str, previous: str) -> bool:
    """Whether ``cursor`` comes after ``previous``: as numbers when both are digits (IMEIs, and the
    ``0`` of the first page), else as text."""
    if cursor.isascii() and cursor.isdigit() and previous.isascii() and previous.isdigit():
        return int(cursor) > int(previous)
    return cursor > previous


class CursorPager:
    """One ThingSpace listing, page by page: the request for the next page, and each answer checked
    to move the listing on before its items go out.

    A listing that does not move on would run for ever (one ran 3,000 pages of the same devices
    with a cursor moving back), so each way it can fail to is an error. Device listings are in IMEI
    order, each page starting after the IMEI asked for: a cursor that does not come after the one
    asked for, or a page holding a device of the page before, is an error. Only the previous
    page's ids are kept, so memory stays one page's worth whatever the account's size. Listings
    whose order ThingSpace does not document (campaigns) only may not send a cursor again.

    A pager reads its listing once; :meth:`pages` (sync, lazy) and :meth:`read_all` (a plan, for
    either client) drive it.

    :param ask: the request for the page after a cursor.
    :param items: the answer's field that lists the page's items (required: an answer without
        it is not an empty listing).
    :param cursor: the answer's field that says where the next page starts.
    :param in_id_order: whether the listing is in device id order (see above).
    :param check: what else to check of each page's items, first.
    """

    def __init__(
        self,
        ask: Callable[[str], Call],
        *,
        items: str = "deviceList",
        cursor: str = "lastSeenDeviceId",
        in_id_order: bool = True,
        check: ItemCheck | None = None,
    ) -> None:
        self._ask = ask
        self._items = items
        self._cursor = cursor
        self._in_id_order = in_id_order
        self._check = check
        #: what the next request asks for; ``None`` once the last page has been read.
        self.last_seen: str | None = "0"
        #: in id order: the device ids of the page before.
        self._previous_ids: frozenset[str] = frozenset()
        #: in no documented order: every cursor asked for so far, one per page.
        self._asked: set[str] = set()

    def next_call(self) -> Call | None:
        """Return the request for the next page, or ``None`` once the last page has been read."""
        return None if self.last_seen is None else self._ask(self.last_seen)

    def turn(self, reply: Reply) -> list[dict[str, Any]]:
        """Return the items of the page ``reply`` brought, once checked, and move :attr:`last_seen` on.

        :raises IoTFleetVendorResponseError: for an answer without its list of items, one the
            ``check`` refuses, a device of the previous page again, or ``hasMoreData`` with a cursor
            that would not move the listing on.
        """
        items = reply.objects(self._items)
        if self._check is not None:
            self._check(reply, items)
        asked = self.last_seen or "0"
        if self._in_id_order:
            self._refuse_repeated_devices(reply, items, asked)
        if not reply.field("hasMoreData", bool, required=False):
            self.last_seen = None
            return items
        cursor = str(reply.field(self._cursor, (str, int)))
        if self._in_id_order:
            if not _cursor_after(cursor, asked):
                raise malformed_response(
                    VENDOR,
                    reply.action,
                    f"hasMoreData and a {self._cursor} ({cursor}) not past the {self._cursor} ({asked}) "
                    "it had already sent: it would page forever",
                    request_id=reply.request_id,
                )
        else:
            self._asked.add(asked)
            if cursor in self._asked:  # one that does not move, or that cycles
                raise malformed_response(
                    VENDOR,
                    reply.action,
                    f"hasMoreData and a {self._cursor} ({cursor}) it had already sent: it would page forever",
                    request_id=reply.request_id,
                )
        self.last_seen = cursor
        return items

    def _refuse_repeated_devices(self, reply: Reply, items: list[dict[str, Any]], asked: str) -> None:
        ids = frozenset(str(item["deviceId"]) for item in items if item.get("deviceId") is not None)
        repeated = ids & self._previous_ids
        if repeated:
            raise malformed_response(
                VENDOR,
                reply.action,
                f"{len(repeated)} devices of the page before again (e.g. {min(repeated)}) after "
                f"{self._cursor} {asked}: the listing does not move forward",
                request_id=reply.request_id,
            )
        self._previous_ids = ids

    def pages(self, hook: IoTFleetBaseHook) -> Iterator[list[dict[str, Any]]]:
        """Return an iterator over the listing's pages, sent with ``hook``'s client, each page
        requested only once the one before has been consumed."""
        while (call := self.next_call()) is not None:
            yield self.turn(hook.client.send(call))

    def pages_ahead(
        self, hook: IoTFleetBaseHook, *, name: str = "look-ahead"
    ) -> Generator[list[dict[str, Any]], None, None]:
        """Return the listing's pages as :meth:`pages` does, each next page asked for while the
        caller works on the current one, as soon as its cursor is read from the raw answer
        (:func:`scan_cursor`), before the answer is decoded: a :class:`LookAhead` one page ahead,
        in a thread of its own. The caller's thread decodes and checks each page (:meth:`turn`);
        where the decoded page says otherwise than the scan (or the scan could not tell), the
        request sent on the guess is dropped and the right one sent. An answer that is not JSON is
        asked for again as :meth:`pages` would (retried as the client retries one). Closing the
        generator ends the thread.

        :raises IoTFleetError: as :meth:`pages`, for the page where it happens.
        """
        while self.last_seen is not None:
            ahead = self._look_ahead(hook, self.last_seen, name)
            try:
                for raw, scanned in ahead:
                    guess = scanned
                    try:
                        reply = raw.decoded()
                    except IoTFleetVendorResponseError:
                        # A garbled answer is asked for again, retried as the client retries any.
                        ahead.close()
                        reply, guess = hook.client.send(self._ask(self.last_seen)), UNKNOWN
                    items = self.turn(reply)
                    if self.last_seen != guess:  # the next request (if any) asked for the wrong page
                        ahead.close()
                    yield items
            finally:
                ahead.close()

    def _look_ahead(self, hook: IoTFleetBaseHook, start: str, name: str) -> LookAhead[tuple[Reply, Any]]:
        """A look-ahead over the raw pages from ``start`` on, told as each request goes out."""

        def on_send() -> None:
            ahead.ready()

        ahead = LookAhead(self._raw_pages(hook, start, on_send), name=name, signals_ready=True)
        return ahead

    def _raw_pages(
        self, hook: IoTFleetBaseHook, start: str, on_send: Callable[[], None]
    ) -> Iterator[tuple[Reply, Any]]:
        """The raw pages from ``start`` on, each with the cursor its body was scanned for, following
        those cursors while they are plain; ``on_send`` as :meth:`.VendorHttpClient.send` says."""
        cursor: Any = start
        while isinstance(cursor, str):
            reply = hook.client.send(replace(self._ask(cursor), decode=False), on_send=on_send)
            body = reply.body
            cursor = UNKNOWN if body is None else scan_cursor(body, self._cursor)
            yield reply, cursor

    def read_all(self) -> Plan[list[dict[str, Any]]]:
        """A plan that reads every page and returns all their items."""
        items: list[dict[str, Any]] = []
        while (call := self.next_call()) is not None:
            (reply,) = yield [call]
            items.extend(self.turn(reply))
        return items


T = TypeVar("T")
#: What a caller leaves the look-ahead's thread, once its request is going out, to write it (0.2-0.4 ms
#: uncontended, measured against the fast peer of the benchmarks).
_SEND_GRACE_S = 0.0005
#: What the look-ahead's thread returns once the pages are exhausted.
_END: Any = object()


class LookAhead(Generic[T]):
    """An iterator over ``pages`` that fetches the next page in a thread of its own while the
    caller works on the current one: a bounded, one-page look-ahead.

    Pages keep their order. When the caller takes page ``k``, page ``k + 1`` is asked for at once,
    and page ``k + 2`` only once the caller comes back for page ``k + 1``: the caller holds one page
    and one more is in flight, never more, whatever the listing's size. Nothing is fetched before the
    first :func:`next`, and nothing past the last page (``pages`` ends on its own, as a
    :meth:`CursorPager.pages` does after a page without ``hasMoreData``). An error fetching a page is
    raised by the :func:`next` that would have returned that page, after every page before it.

    :meth:`close` (also on leaving a ``with`` block, and once the pages are exhausted or an error
    was raised) waits for a page in flight, drops it, closes ``pages`` and ends the thread: a
    caller that stops early (a limit reached, its own error) leaves no thread behind. Call it when
    stopping early; a look-ahead dropped without it leaves an idle thread until it is collected.

    :param pages: the pages, each fetched when asked for (e.g. a generator of pages).
    :param name: the thread's name prefix (shown in thread dumps and logs).
    :param signals_ready: ``pages`` calls :meth:`ready` once each page's request is going out.
    """

    def __init__(self, pages: Iterator[T], *, name: str = "look-ahead", signals_ready: bool = False) -> None:
        self._pages = pages
        self._name = name
        self._signals_ready = signals_ready
        self._going = threading.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._coming: Future[T] | None = None
        self._closed = False

    def __iter__(self) -> LookAhead[T]:
        return self

    def __next__(self) -> T:
        """Return the next page, waiting for it if it is still in flight, and start the one after.

        :raises StopIteration: after the last page, or once closed.
        :raises Exception: what fetching this page raised (the look-ahead is then closed).
        """
        if self._closed:
            raise StopIteration
        if self._coming is None:  # the first page: nothing was in flight
            self._coming = self._fetch_next()
        try:
            page = self._coming.result()
        except BaseException:
            self.close()
            raise
        if page is _END:
            self.close()
            raise StopIteration
        self._coming = self._fetch_next()
        return page

    def _fetch_next(self) -> Future[T]:
        """Start fetching the next page; return once its request is going out.

        Waiting lets the request go out at once: a caller going straight back to its own work
        (decoding, normalising) would keep the interpreter's lock for up to a switch interval (5 ms),
        or a whole C call (a page's JSON decode), a page before the request could even be sent. The
        wait ends when ``pages`` calls :meth:`ready` (with ``signals_ready``), else when the thread
        takes the page up, or when the fetch ends. After :meth:`ready`, the caller also leaves the
        thread :data:`_SEND_GRACE_S` to write the request: the HTTP library's last steps before it
        (a pooled connection's liveness check) let the interpreter's lock go, and the caller's next
        step, a page's JSON decode, keeps it for milliseconds.
        """
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        going = self._going = threading.Event()
        coming = self._executor.submit(self._advance, going)
        coming.add_done_callback(lambda _: going.set())
        going.wait()
        if self._signals_ready and not coming.done():
            time.sleep(_SEND_GRACE_S)
        return coming

    def ready(self) -> None:
        """Say, from the thread fetching a page (``pages``' code), that its request is going out: the
        caller waiting in :func:`next` goes back to its own work. Does nothing elsewhere."""
        self._going.set()

    def _advance(self, going: threading.Event) -> T:
        if not self._signals_ready:
            going.set()
        return next(self._pages, _END)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop: wait for a page in flight and drop it, close ``pages``, end the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        coming, self._coming = self._coming, None
        if coming is not None and not coming.cancel():
            wait_for([coming])  # a request in flight cannot be taken back: let it end, unread
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        close = getattr(self._pages, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> LookAhead[T]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
