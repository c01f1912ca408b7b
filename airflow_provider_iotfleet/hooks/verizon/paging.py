"""How ThingSpace listings page: by a cursor (``lastSeenDeviceId``, ``lastSeenCampaignId``) and
``hasMoreData``, each page checked to move the listing on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_iotfleet.hooks.verizon.answers import VENDOR
from airflow_provider_iotfleet.http import Reply
from airflow_provider_iotfleet.http.errors import malformed_response


def next_page(reply: Reply, last_seen: str, seen: set[str], cursor: str = "lastSeenDeviceId") -> str | None:
    """The ``cursor`` field to ask for next, or ``None`` after the last page, in a listing whose order
    ThingSpace does not document (campaigns, by ``lastSeenCampaignId``); device listings, in IMEI
    order, are checked by :class:`DevicePages`.

    :param seen: the cursors asked for so far in this listing (one per page); one coming back again
        (a cursor that does not move, or one that cycles) would page forever, so it is an error.
    """
    if not reply.field("hasMoreData", bool, required=False):
        return None
    next_seen = str(reply.field(cursor, (str, int)))
    seen.add(last_seen)
    if next_seen in seen:
        raise malformed_response(
            VENDOR,
            reply.action,
            f"hasMoreData and a {cursor} ({next_seen}) it had already sent: it would page forever",
            request_id=reply.request_id,
        )
    return next_seen


def _cursor_after(cursor: str, previous: str) -> bool:
    """Whether ``cursor`` comes after ``previous``: as numbers when both are digits (IMEIs, and the
    ``0`` of the first page), else as text."""
    if cursor.isascii() and cursor.isdigit() and previous.isascii() and previous.isdigit():
        return int(cursor) > int(previous)
    return cursor > previous


class DevicePages:
    """Where a device listing paged by ``lastSeenDeviceId`` stands, each page checked to move it on.

    ThingSpace lists devices in IMEI order, each page starting after the IMEI it was asked for. A
    cursor that does not move forward, or a page holding a device of the page before, means the
    listing would run for ever (one ran 3,000 pages of the same devices with a cursor moving back):
    both are errors. Only the previous page's ids are kept, so memory stays one page's worth
    whatever the account's size.
    """

    def __init__(self) -> None:
        #: what the next request asks for; ``None`` once the last page has been read.
        self.last_seen: str | None = "0"
        self._previous_ids: frozenset[str] = frozenset()

    def turn(self, reply: Reply, items: Sequence[dict[str, Any]]) -> None:
        """Check the page ``reply`` brought (its ``items``), then move :attr:`last_seen` on.

        :raises IoTFleetVendorResponseError: for a device of the previous page again, or
            ``hasMoreData`` with a cursor that does not come after the one asked for.
        """
        asked = self.last_seen or "0"
        ids = frozenset(str(item["deviceId"]) for item in items if item.get("deviceId") is not None)
        repeated = ids & self._previous_ids
        if repeated:
            raise malformed_response(
                VENDOR,
                reply.action,
                f"{len(repeated)} devices of the page before again (e.g. {min(repeated)}) after "
                f"lastSeenDeviceId {asked}: the listing does not move forward",
                request_id=reply.request_id,
            )
        self._previous_ids = ids
        if not reply.field("hasMoreData", bool, required=False):
            self.last_seen = None
            return
        cursor = str(reply.field("lastSeenDeviceId", (str, int)))
        if not _cursor_after(cursor, asked):
            raise malformed_response(
                VENDOR,
                reply.action,
                f"hasMoreData and a lastSeenDeviceId ({cursor}) not past the lastSeenDeviceId ({asked}) "
                "it had already sent: it would page forever",
                request_id=reply.request_id,
            )
        self.last_seen = cursor
