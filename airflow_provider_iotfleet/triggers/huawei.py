"""Huawei ROMA Connect: wait for devices to be online or offline."""

from __future__ import annotations

from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.huawei.answers import NEVER, OFFLINE
from airflow_provider_iotfleet.hooks.reads import DeviceReads
from airflow_provider_iotfleet.triggers.base import CONNECTED_BEFORE, DeviceWatch, DeviceWatchTrigger


class RomaOnlineStatusWatch(DeviceWatch):
    """ROMA device ids waited on until each is ``online``/``offline``/``never``: each read one by
    one, or the instance's listing filtered on the target status, whichever takes fewer requests.

    Waiting for ``offline``, a device that never connected counts as offline (it is not connected),
    its value recorded as ``never``. Waiting for ``never``, a device that reports ``online`` or
    ``offline`` has connected before and can never match: unreachable (``connected_before``). An id
    ROMA does not know is unreachable (``not_found``) once it is read one by one (from the first
    poll for up to 10 devices; for more, once few enough are left).
    """

    def reaches(self, value: str | None) -> bool:
        return value == self.target or (self.target == OFFLINE and value == NEVER)

    def cannot_reach(self, value: str | None) -> str | None:
        return CONNECTED_BEFORE if self.target == NEVER and value in ("online", OFFLINE) else None

    def _seen(self, reads: DeviceReads[int]) -> None:
        self.absorb(reads.values, reads.missing)

    def poll(self, hook: HuaweiRomaConnectHook) -> None:
        self._seen(hook.read_online_statuses(self.unmatched, self.target))  # type: ignore[arg-type]

    async def apoll(self, hook: HuaweiRomaConnectHook) -> None:
        self._seen(await hook.aread_online_statuses(self.unmatched, self.target))  # type: ignore[arg-type]


class HuaweiRomaDeviceStatusTrigger(DeviceWatchTrigger):
    """Fires when every device has the target online status or cannot reach it (or on timeout, or a
    lasting error)."""

    watch_class = RomaOnlineStatusWatch
    hook_class = HuaweiRomaConnectHook
