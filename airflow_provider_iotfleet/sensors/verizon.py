"""Verizon ThingSpace: wait until devices report a firmware version."""

from __future__ import annotations

from typing import Any

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.sensors.base import DeviceWatchSensor
from airflow_provider_iotfleet.triggers.base import DeviceWatch
from airflow_provider_iotfleet.triggers.verizon import FirmwareWatch, VerizonThingSpaceFirmwareTrigger
from airflow_provider_iotfleet.validation import as_item_list, distinct, validate_imeis


class VerizonThingSpaceFirmwareSensor(DeviceWatchSensor):
    """Wait until every IMEI reports ``target_firmware`` (after a firmware sync or an upgrade).

    Only the devices not matched yet are read, with the subset listing (1000 IMEIs per request).
    An IMEI the account does not have fails the wait at once: it could never match.

    XCom: ``{"matched": [imei], "firmware": {imei: last firmware}}``.

    :param imeis: the devices (templated, or an upstream task's output).
    :param target_firmware: the firmware version to wait for (templated).
    :param account_name: the billing account (templated); default: the connection's.
    :param verizon_thingspace_conn_id: the Airflow connection.
    """

    trigger_class = VerizonThingSpaceFirmwareTrigger
    template_fields = ("imeis", "target_firmware", "account_name")

    def __init__(
        self,
        *,
        imeis: Any,
        target_firmware: str,
        account_name: str | None = None,
        verizon_thingspace_conn_id: str = VerizonThingSpaceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=verizon_thingspace_conn_id, **kwargs)
        self.imeis = imeis
        self.target_firmware = target_firmware
        self.account_name = account_name

    def new_watch(self) -> DeviceWatch:
        if not isinstance(self.target_firmware, str) or not self.target_firmware.strip():
            raise IoTFleetValidationError(
                "target_firmware is missing", ["give the firmware version to wait for"]
            )
        given = as_item_list(self.imeis, "imeis")
        imeis, _ = distinct(validate_imeis(given) if given else [], key=str)
        account = self.hook.resolve_account(self.account_name)  # type: ignore[attr-defined]
        return FirmwareWatch(imeis, self.target_firmware.strip(), account_name=account)

    def trigger_options(self) -> dict[str, Any]:
        return {"account_name": self.hook.resolve_account(self.account_name)}  # type: ignore[attr-defined]
