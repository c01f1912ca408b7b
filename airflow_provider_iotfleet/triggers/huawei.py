"""Huawei ROMA Connect: wait for devices to be online or offline."""

from __future__ import annotations

from collections.abc import Hashable

from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.huawei.answers import NEVER, OFFLINE
from airflow_provider_iotfleet.hooks.reads import DeviceReads
from airflow_provider_iotfleet.triggers.base import CONNECTED_BEFORE, DeviceWatch, DeviceWatchTrigger

#: Values of a device that has connected before, so cannot be never connected again. "not offline"
#: comes from the listings of a wait on ``offline``, which page the never-connected listing too
#: (or skip it only for devices already seen connected).
CONNECTED = frozenset({"online", f"not {OFFLINE}"})


class RomaOnlineStatusWatch(DeviceWatch):
    """ROMA device ids waited on until each is ``online``/``offline``/``never``: each read one by
    one, or the instance's listing filtered on the target status, whichever takes fewer requests.

    Waiting for ``offline``, a device that never connected counts as offline (it is not connected),
    its value recorded as ``never``; once every device left was seen connected, polls skip the
    never-connected listing, so a poll pages only the listing of the target status. Waiting for
    ``never``, a device that reports ``online`` or ``offline`` has connected before and can never
    match: unreachable (``connected_before``). An id
    ROMA does not know is unreachable (``not_found``) once it is read one by one (from the first
    poll for up to 10 devices; for more, once few enough are left).
    """

    def reaches(self, value: str | None) -> bool:
        return value == self.target or (self.target == OFFLINE and value == NEVER)

    def cannot_reach(self, value: str | None) -> str | None:
        return CONNECTED_BEFORE if self.target == NEVER and value in ("online", OFFLINE) else None

    def _seen(self, reads: DeviceReads[int]) -> None:
        self.absorb(reads.values, reads.missing)

    def _with_never(self, unmatched: list[Hashable]) -> bool:
        """Whether a poll of ``unmatched`` must page the never-connected listing too (waiting for
        ``offline``): not once every one of them was seen connected (``online``, or ``not offline``
        with that listing paged), since a device that has connected can never be ``never`` again.

        :return: ``False`` when each device's last value says it has connected; ``True`` otherwise
            (the first poll, a trigger restarted from its matched devices, an unknown status).
        """
        return not all(self.values.get(device_id) in CONNECTED for device_id in unmatched)

    def poll(self, hook: HuaweiRomaConnectHook) -> None:
        ids = self.unmatched
        self._seen(hook.read_online_statuses(ids, self.target, with_never=self._with_never(ids)))  # type: ignore[arg-type]

    async def apoll(self, hook: HuaweiRomaConnectHook) -> None:
        ids = self.unmatched
        reads = await hook.aread_online_statuses(ids, self.target, with_never=self._with_never(ids))  # type: ignore[arg-type]
        self._seen(reads)


class HuaweiRomaDeviceStatusTrigger(DeviceWatchTrigger):
    """Fires when every device has the target online status or cannot reach it (or on timeout, or a
    lasting error)."""

    watch_class = RomaOnlineStatusWatch
    hook_class = HuaweiRomaConnectHook
