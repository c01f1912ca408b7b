"""Verizon ThingSpace: wait until devices report a firmware version, or a firmware campaign ends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_iotfleet.exceptions import (
    OUTCOME_KEY,
    IoTFleetOperationFailedError,
    IoTFleetValidationError,
)
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.hooks.verizon.answers import CAMPAIGN_FINAL_STATUSES
from airflow_provider_iotfleet.hooks.verizon.rules import validate_campaign_id
from airflow_provider_iotfleet.sensors.base import DeviceWatchSensor
from airflow_provider_iotfleet.triggers.base import SAMPLE_SIZE, DeviceWatch
from airflow_provider_iotfleet.triggers.verizon import (
    CampaignWatch,
    FirmwareWatch,
    VerizonThingSpaceCampaignTrigger,
    VerizonThingSpaceFirmwareTrigger,
)
from airflow_provider_iotfleet.utils import distinct, plural
from airflow_provider_iotfleet.validation import as_item_list, validate_imeis

if TYPE_CHECKING:
    from airflow.sdk import Context


class VerizonThingSpaceFirmwareSensor(DeviceWatchSensor):
    """Wait until every IMEI reports ``target_firmware`` (after a firmware sync or an upgrade).

    Only the devices not matched yet are read, with the subset listing (1000 IMEIs per request).
    An IMEI the account does not have (or no longer has) could never match: it is unreachable
    (``not_in_account``) at once, and the wait goes on for the others (see ``fail_on_unreachable``).

    XCom: ``{"matched": [imei], "firmware": {imei: last firmware}, "unreachable": {imei: reason}}``.

    :param imeis: the devices (templated, or an upstream task's output).
    :param target_firmware: the firmware version to wait for (templated).
    :param account_name: the billing account (templated); default: the connection's.
    :param verizon_thingspace_conn_id: the Airflow connection.
    """

    trigger_class = VerizonThingSpaceFirmwareTrigger
    target_field = "target_firmware"
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


class VerizonThingSpaceCampaignSensor(DeviceWatchSensor):
    """Wait until a firmware upgrade campaign is over: ended (or cancelled, aborted, failed), or every
    device in it Finished or UpgradeFailed. Each poll reads the campaign and its device report.

    XCom (``return_value``; under ``outcome`` instead when the task fails)::

        {"campaign_id", "status", "finished": [imei],
         "failed": [{"device_id", "status", "reason"}], "pending": [imei]}

    With ``fail_on_error`` (the default), the task then fails if any device failed, or the campaign
    ended with devices never upgraded, or was cancelled, aborted or failed; the value is pushed under
    ``outcome`` first, once, as the write operators do.

    :param campaign_id: the campaign (templated, e.g. from the upgrade operator's XCom:
        ``"{{ ti.xcom_pull('upgrade')['campaign_id'] }}"``).
    :param account_name: the billing account (templated); default: the connection's.
    :param fail_on_error: fail the task when the campaign did not upgrade every device.
    :param verizon_thingspace_conn_id: the Airflow connection.
    """

    trigger_class = VerizonThingSpaceCampaignTrigger
    template_fields = ("campaign_id", "account_name")

    def __init__(
        self,
        *,
        campaign_id: str,
        account_name: str | None = None,
        fail_on_error: bool = True,
        verizon_thingspace_conn_id: str = VerizonThingSpaceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=verizon_thingspace_conn_id, **kwargs)
        self.campaign_id = campaign_id
        self.account_name = account_name
        self.fail_on_error = fail_on_error

    def new_watch(self) -> DeviceWatch:
        account = self.hook.resolve_account(self.account_name)  # type: ignore[attr-defined]
        return CampaignWatch([validate_campaign_id(self.campaign_id)], account_name=account)

    def trigger_options(self) -> dict[str, Any]:
        return {"account_name": self.hook.resolve_account(self.account_name)}  # type: ignore[attr-defined]

    def finish(self, context: Context, xcom: Any) -> Any:
        problems = []
        if xcom["failed"]:
            sample = ", ".join(
                f"{d['device_id']} ({d['reason'] or d['status']})" for d in xcom["failed"][:SAMPLE_SIZE]
            )
            problems.append(f"{plural(len(xcom['failed']), 'device')} failed, e.g. {sample}")
        if xcom["pending"] and xcom["status"] in CAMPAIGN_FINAL_STATUSES:
            problems.append(f"{plural(len(xcom['pending']), 'device')} never upgraded")
        if xcom["status"] in CAMPAIGN_FINAL_STATUSES - {"CampaignEnded"}:
            problems.append(f"the campaign is {xcom['status']}")
        summary = f"campaign {xcom['campaign_id']}: {plural(len(xcom['finished']), 'device')} upgraded"
        if not problems:
            self.log.info("%s: %s", self.vendor, summary)
            return xcom
        message = f"{summary}; {'; '.join(problems)}"
        if not self.fail_on_error:
            self.log.warning("%s: %s (fail_on_error=False)", self.vendor, message)
            return xcom
        context["ti"].xcom_push(key=OUTCOME_KEY, value=xcom)  # pushed once: the task returns nothing
        raise IoTFleetOperationFailedError(
            f"{self.vendor}: {message}. The outcome is in XCom key {OUTCOME_KEY!r} (set fail_on_error=False "
            "to succeed with failures)",
            xcom,
        )
