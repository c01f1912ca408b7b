"""Cisco IoT Control Center: wait for SIM statuses (after a scheduled edit comes due, for instance)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.reads import DeviceReads
from airflow_provider_iotfleet.triggers.base import DeviceWatch, DeviceWatchTrigger

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
