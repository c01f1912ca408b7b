"""Cisco IoT Control Center: wait for SIM statuses (after a scheduled edit comes due, for instance)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.cisco.rules import CISCO_KNOWN_STATUSES
from airflow_provider_iotfleet.hooks.reads import DeviceReads
from airflow_provider_iotfleet.triggers.base import DeviceWatch, DeviceWatchTrigger
from airflow_provider_iotfleet.triggers.events import WatchEventTrigger, check_device_count
from airflow_provider_iotfleet.utils import distinct
from airflow_provider_iotfleet.validation import as_item_list, validate_iccids

#: Search Devices is asked from this long before the previous poll, so that a clock difference
#: between us and Control Center cannot hide a change (reading a device twice is harmless).
SEARCH_OVERLAP = timedelta(minutes=10)
#: This long after the last full read, the unmatched devices are read in full again, as a safety net
#: (an ICCID removed from the account meanwhile shows in no search). Time, not a poll count: a
#: sensor polling every 30 s would otherwise pay a full read every few minutes.
FULL_READ_AFTER = timedelta(hours=1)


class CiscoDeviceStatusWatch(DeviceWatch):
    """ICCIDs waited on until each reports a SIM status.

    The first poll reads each device (``GET /devices/{iccid}``); later polls ask Search Devices only
    for what changed since the previous one, so a poll costs what changed rather than the fleet.
    An ICCID Control Center does not know (404 when read in full: the first poll, and the first poll
    :data:`FULL_READ_AFTER` the last full read) is unreachable (``not_found``); the others go on.
    """

    unit = "device"

    def __init__(self, ids: Sequence[str], target: str) -> None:
        super().__init__(ids, target)
        self.since: datetime | None = None
        self.full_read_at: datetime | None = None

    def _since(self, now: datetime) -> datetime | None:
        """When to search changes from, or ``None`` for a full read (the first, then hourly)."""
        if self.since is None or self.full_read_at is None or now - self.full_read_at >= FULL_READ_AFTER:
            return None
        return self.since

    def _seen(self, reads: DeviceReads[str], started: datetime, since: datetime | None) -> None:
        self.absorb(reads.values, reads.missing)
        self.since = started - SEARCH_OVERLAP
        if since is None:
            self.full_read_at = started

    def poll(self, hook: CiscoControlCenterHook) -> None:
        started = hook.clock.now()
        since = self._since(started)
        self._seen(hook.read_device_statuses(self.unmatched, changed_since=since), started, since)  # type: ignore[arg-type]

    async def apoll(self, hook: CiscoControlCenterHook) -> None:
        started = hook.clock.now()
        since = self._since(started)
        self._seen(await hook.aread_device_statuses(self.unmatched, changed_since=since), started, since)  # type: ignore[arg-type]


class CiscoDeviceStatusTrigger(DeviceWatchTrigger):
    """Fires when every ICCID reports ``target`` (or on timeout, or a lasting vendor error)."""

    watch_class = CiscoDeviceStatusWatch
    hook_class = CiscoControlCenterHook


def new_status_watch(iccids: Any, target_status: str) -> CiscoDeviceStatusWatch:
    """The watch of ``iccids`` (a list, or a comma-separated string) until each reports ``target_status``,
    each ICCID once.

    :raises IoTFleetValidationError: when the status is not a SIM status, or an ICCID is malformed,
        naming each.
    """
    if target_status not in CISCO_KNOWN_STATUSES:
        raise IoTFleetValidationError(
            "target_status is not a SIM status",
            [f"{target_status!r}: use one of {', '.join(sorted(CISCO_KNOWN_STATUSES))}"],
        )
    given = as_item_list(iccids, "iccids")
    unique, _ = distinct(validate_iccids(given) if given else [], key=str)
    return CiscoDeviceStatusWatch(unique, target_status)


class CiscoDeviceStatusEventTrigger(WatchEventTrigger):
    """For an ``AssetWatcher``: fires each time every ICCID reports ``target_status`` (or is unknown to
    Control Center), once per occurrence; polls as :class:`CiscoDeviceStatusTrigger` does.

    The event's payload is ``{"status": "success", "matched": [iccid], "statuses": {iccid: status},
    "unreachable": {iccid: reason}, "description"}``.

    :param iccids: the SIMs, at most :data:`~airflow_provider_iotfleet.triggers.events.MAX_WATCHED_DEVICES`.
    :param target_status: the SIM status, as Control Center spells it (``ACTIVATED``).
    :param cisco_control_center_conn_id: the Airflow connection.
    :param poll_interval: seconds between polls.
    :param max_transient_errors: see :class:`~airflow_provider_iotfleet.triggers.events.WatchEventTrigger`.
    :raises IoTFleetValidationError: for a status or ICCID Control Center would refuse, naming each.
    :raises ValueError: for no ICCID or too many, or too short a poll interval.
    """

    hook_class = CiscoControlCenterHook

    def __init__(
        self,
        *,
        iccids: Any,
        target_status: str,
        cisco_control_center_conn_id: str = CiscoControlCenterHook.default_conn_name,
        poll_interval: float = 60.0,
        max_transient_errors: int = 5,
    ) -> None:
        super().__init__(
            conn_id=cisco_control_center_conn_id,
            poll_interval=poll_interval,
            max_transient_errors=max_transient_errors,
        )
        watch = new_status_watch(iccids, target_status)
        check_device_count(type(self).__name__, watch.ids, "iccids")
        self.iccids = [str(iccid) for iccid in watch.ids]
        self.target_status = target_status

    def new_watch(self) -> DeviceWatch:
        return CiscoDeviceStatusWatch(self.iccids, self.target_status)

    def arguments(self) -> dict[str, Any]:
        return {
            "iccids": self.iccids,
            "target_status": self.target_status,
            "cisco_control_center_conn_id": self.conn_id,
        }
