"""Verizon ThingSpace: wait for devices to report a firmware version, or for a firmware campaign to end."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.hooks.verizon.answers import CampaignProgress
from airflow_provider_iotfleet.hooks.verizon.rules import validate_campaign_id
from airflow_provider_iotfleet.triggers.base import NOT_IN_ACCOUNT, DeviceWatch, DeviceWatchTrigger
from airflow_provider_iotfleet.triggers.events import WatchEventTrigger
from airflow_provider_iotfleet.utils import plural


class FirmwareWatch(DeviceWatch):
    """IMEIs waited on until each reports a firmware version, read with the subset listing (POST,
    1000 IMEIs per body). An IMEI the account does not have (or no longer has) can never match: it
    is unreachable (``not_in_account``), keeping the last firmware it reported; the others go on.

    :param account_name: the billing account; default: the connection's.
    """

    values_key = "firmware"
    value_name = "firmware"

    def __init__(self, ids: Sequence[str], target: str, account_name: str | None = None) -> None:
        super().__init__(ids, target)
        self.account_name = account_name

    def _seen(self, polled: Sequence[Hashable], firmware: Mapping[str, str | None]) -> None:
        self.absorb(firmware, {imei: NOT_IN_ACCOUNT for imei in polled if imei not in firmware})

    def poll(self, hook: VerizonThingSpaceHook) -> None:
        polled = self.unmatched
        self._seen(polled, hook.firmware_versions(polled, account_name=self.account_name))  # type: ignore[arg-type]

    async def apoll(self, hook: VerizonThingSpaceHook) -> None:
        polled = self.unmatched
        self._seen(polled, await hook.afirmware_versions(polled, account_name=self.account_name))  # type: ignore[arg-type]


class VerizonThingSpaceFirmwareTrigger(DeviceWatchTrigger):
    """Fires when every IMEI reports ``target`` firmware or is not in the account (or on timeout, or a
    lasting error)."""

    watch_class = FirmwareWatch
    hook_class = VerizonThingSpaceHook


class CampaignWatch(DeviceWatch):
    """One firmware campaign, watched until it is over: ended (or cancelled, aborted, failed), or
    every device in it Finished or failed. Each poll reads the campaign and its whole device report.

    :param ids: ``[campaign_id]``.
    :param target: what is waited for; only ``"over"`` is meaningful.
    :param account_name: the billing account; default: the connection's.
    """

    unit = "campaign"

    def __init__(self, ids: Sequence[str], target: str = "over", account_name: str | None = None) -> None:
        super().__init__(ids, target)
        self.account_name = account_name
        self.progress: CampaignProgress | None = None

    @property
    def campaign_id(self) -> str:
        return str(self.ids[0])

    def _seen(self, progress: CampaignProgress) -> None:
        self.progress = progress
        self.absorb({self.campaign_id: self.target if progress.over else progress.status})

    def poll(self, hook: VerizonThingSpaceHook) -> None:
        self._seen(hook.campaign_progress(self.campaign_id, account_name=self.account_name))

    async def apoll(self, hook: VerizonThingSpaceHook) -> None:
        self._seen(await hook.acampaign_progress(self.campaign_id, account_name=self.account_name))

    def seen(self) -> list[list[Any]]:
        return []  # a trigger reads the campaign afresh: its report is what the event carries

    def waiting_for(self) -> str:
        return f"campaign {self.campaign_id} to end, or every device in it to be Finished or UpgradeFailed"

    def xcom(self) -> dict[str, Any]:
        """``{"campaign_id", "status", "finished": [imei], "failed": [{"device_id", "status",
        "reason"}], "pending": [imei]}``, as last read."""
        progress = self.progress
        return {
            "campaign_id": self.campaign_id,
            "status": progress.status if progress else None,
            "finished": progress.finished if progress else [],
            "failed": progress.failed if progress else [],
            "pending": progress.pending if progress else [],
        }

    def describe_unmatched(self) -> str:
        progress = self.progress
        if progress is None:
            return f"campaign {self.campaign_id} not read yet"
        counts = (
            f"{len(progress.finished)} finished, {len(progress.failed)} failed, {len(progress.pending)} pending "
            f"of {plural(len(progress.devices), 'device')}"
        )
        state = f"is over ({progress.status})" if progress.over else f"is {progress.status}"
        return f"campaign {self.campaign_id} {state}: {counts}"


class VerizonThingSpaceCampaignTrigger(DeviceWatchTrigger):
    """Fires when a firmware campaign is over (or on timeout, or a lasting error)."""

    watch_class = CampaignWatch
    hook_class = VerizonThingSpaceHook


class VerizonThingSpaceCampaignFinishedTrigger(WatchEventTrigger):
    """For an ``AssetWatcher``: fires once when a firmware campaign is over (ended, cancelled, aborted
    or failed, or every device in it Finished or failed), then polls no more. Each poll reads the
    campaign and its device report, as :class:`VerizonThingSpaceCampaignTrigger` does.

    The event's payload is small whatever the campaign's size (it becomes the asset event's extra):
    ``{"status": "success", "campaign_id", "account_name", "campaign_status", "finished": n,
    "failed": n, "pending": n, "description"}``; a DAG reads the per-device report itself
    (``VerizonThingSpaceHook.campaign_progress``).

    :param campaign_id: the campaign.
    :param account_name: the billing account; default: the connection's.
    :param verizon_thingspace_conn_id: the Airflow connection.
    :param poll_interval: seconds between polls.
    :param max_transient_errors: see :class:`~airflow_provider_iotfleet.triggers.events.WatchEventTrigger`.
    :raises IoTFleetValidationError: for a malformed campaign id.
    :raises ValueError: for too short a poll interval.
    """

    hook_class = VerizonThingSpaceHook
    recurs = False

    def __init__(
        self,
        *,
        campaign_id: str,
        account_name: str | None = None,
        verizon_thingspace_conn_id: str = VerizonThingSpaceHook.default_conn_name,
        poll_interval: float = 300.0,
        max_transient_errors: int = 5,
    ) -> None:
        super().__init__(
            conn_id=verizon_thingspace_conn_id,
            poll_interval=poll_interval,
            max_transient_errors=max_transient_errors,
        )
        self.campaign_id = validate_campaign_id(campaign_id)
        self.account_name = account_name

    def new_watch(self) -> DeviceWatch:
        return CampaignWatch([self.campaign_id], account_name=self.account_name)

    def arguments(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "account_name": self.account_name,
            "verizon_thingspace_conn_id": self.conn_id,
        }

    def payload(self, watch: DeviceWatch) -> dict[str, Any]:
        xcom = watch.xcom()
        return {
            "status": "success",
            "campaign_id": self.campaign_id,
            "account_name": self.account_name,
            "campaign_status": xcom["status"],
            "finished": len(xcom["finished"]),
            "failed": len(xcom["failed"]),
            "pending": len(xcom["pending"]),
            "description": watch.describe_unmatched(),
        }
