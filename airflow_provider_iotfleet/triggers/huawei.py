"""Huawei ROMA Connect: wait for devices to be online or offline."""

from __future__ import annotations

from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.triggers.base import DeviceWatch, DeviceWatchTrigger


class RomaOnlineStatusWatch(DeviceWatch):
    """ROMA device ids waited on until each is ``online``/``offline``: each read one by one, or the
    instance's listing filtered on the target status, whichever takes fewer requests."""

    def poll(self, hook: HuaweiRomaConnectHook) -> None:
        self.absorb(hook.online_statuses(self.unmatched, self.target))  # type: ignore[arg-type]

    async def apoll(self, hook: HuaweiRomaConnectHook) -> None:
        self.absorb(await hook.aonline_statuses(self.unmatched, self.target))  # type: ignore[arg-type]


class HuaweiRomaDeviceStatusTrigger(DeviceWatchTrigger):
    """Fires when every device has the target online status (or on timeout, or a lasting error)."""

    watch_class = RomaOnlineStatusWatch
    hook_class = HuaweiRomaConnectHook
