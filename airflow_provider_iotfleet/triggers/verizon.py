"""Verizon ThingSpace: wait for devices to report a firmware version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from airflow_provider_iotfleet.exceptions import IoTFleetNotFoundError
from airflow_provider_iotfleet.hooks.verizon import VENDOR, VerizonThingSpaceHook
from airflow_provider_iotfleet.triggers.base import SAMPLE_SIZE, DeviceWatch, DeviceWatchTrigger


class FirmwareWatch(DeviceWatch):
    """IMEIs waited on until each reports a firmware version, read with the subset listing (POST,
    1000 IMEIs per body). An IMEI the account does not have can never match: the wait fails.

    :param account_name: the billing account; default: the connection's.
    """

    values_key = "firmware"
    value_name = "firmware"

    def __init__(self, ids: Sequence[str], target: str, account_name: str | None = None) -> None:
        super().__init__(ids, target)
        self.account_name = account_name

    def _seen(self, firmware: Mapping[str, str | None]) -> None:
        self.absorb(firmware)
        missing = [imei for imei in self.unmatched if imei not in firmware]
        if missing:
            raise IoTFleetNotFoundError(
                f"{VENDOR}: {len(missing)} IMEIs are not in the account, e.g. {', '.join(map(str, missing[:SAMPLE_SIZE]))}",
                vendor=VENDOR,
            )

    def poll(self, hook: VerizonThingSpaceHook) -> None:
        self._seen(hook.firmware_versions(self.unmatched, account_name=self.account_name))  # type: ignore[arg-type]

    async def apoll(self, hook: VerizonThingSpaceHook) -> None:
        self._seen(await hook.afirmware_versions(self.unmatched, account_name=self.account_name))  # type: ignore[arg-type]


class VerizonThingSpaceFirmwareTrigger(DeviceWatchTrigger):
    """Fires when every IMEI reports ``target`` firmware (or on timeout, or a lasting error)."""

    watch_class = FirmwareWatch
    hook_class = VerizonThingSpaceHook
