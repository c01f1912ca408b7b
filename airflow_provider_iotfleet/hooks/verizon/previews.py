"""What a firmware sync or upgrade would do, found by reads only: the dry runs of the Verizon
operators. Each reads the devices once (the FOTA listing ``POST /devices/{acc}``, 1000 IMEIs per
body, paged and rate-limited like every call of the hook) and, for an upgrade, the firmware list and
the campaign ``ensure_campaign`` would reuse; nothing is scheduled, added, removed or cancelled."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from airflow_provider_iotfleet.hooks.verizon.eligibility import Refusals, not_in_account
from airflow_provider_iotfleet.hooks.verizon.rules import CampaignRequest
from airflow_provider_iotfleet.hooks.verizon.upgrades import (
    FirmwareUpgrades,
    campaign_firmware,
    check_same_firmware,
)
from airflow_provider_iotfleet.outcome import OutcomeBuilder
from airflow_provider_iotfleet.validation import validate_imeis


@dataclass
class SyncPreview:
    """What a firmware sync of some devices would do.

    :ivar firmware: ``{imei: firmware}`` as ThingSpace has it on record, for each device it would sync.
    :ivar refused: the devices it would fail, and why.
    """

    firmware: dict[str, str | None]
    refused: Refusals

    def record(self, outcome: OutcomeBuilder) -> None:
        """Record each device in ``outcome``: ``succeeded`` with its plan ``{"firmware": {"from": <on
        record>, "to": None}}`` (what the device reports is known only once it is asked), or failed."""
        for imei, recorded in self.firmware.items():
            outcome.add("succeeded", imei)
            outcome.plan(imei, {"firmware": {"from": recorded, "to": None}})
        self.refused.record(outcome)


@dataclass
class UpgradePreview:
    """What ``ensure_campaign`` would do with some devices.

    :ivar firmware: the entry of the account's firmware list the campaign would upgrade with
        (for a reused campaign: its own firmware, make and model).
    :ivar campaign: the campaign of that name it would reuse, or ``None``: it would schedule one.
    :ivar start_date: the campaign's first day, ``yyyy-mm-dd``.
    :ivar end_date: its last day.
    :ivar time_windows: its hours of the day (UTC), ``[[start, end]]``; empty for any time.
    :ivar scheduled: ``{imei: current firmware}`` of the devices that would be scheduled and upgrade.
    :ivar already: devices already in the reused campaign: nothing would be sent for them.
    :ivar refused: the devices that would not upgrade, and why.
    """

    firmware: dict[str, Any]
    campaign: dict[str, Any] | None
    start_date: str
    end_date: str
    time_windows: list[list[int]]
    scheduled: dict[str, str | None] = field(default_factory=dict)
    already: list[str] = field(default_factory=list)
    refused: Refusals = field(default_factory=Refusals)

    def record(self, outcome: OutcomeBuilder) -> None:
        """Record each device in ``outcome``: ``scheduled`` with its plan ``{"firmware": {"from":
        <current>, "to": <firmware_to>}}``, ``unchanged`` (already in the campaign), or failed."""
        for imei, current in self.scheduled.items():
            outcome.add("scheduled", imei)
            outcome.plan(imei, {"firmware": {"from": current, "to": self.firmware["firmware_to"]}})
        outcome.add_many("unchanged", self.already)
        self.refused.record(outcome)

    def details(self) -> dict[str, Any]:
        """The campaign fields of the upgrade's outcome, as the campaign would be (``campaign_name``
        excepted: the operator's), plus ``time_windows`` and ``campaign_reused``."""
        campaign = self.campaign or {}
        return {
            "campaign_id": campaign.get("campaign_id"),
            "campaign_status": campaign.get("status"),
            "campaign_reused": self.campaign is not None,
            **{key: self.firmware[key] for key in ("firmware_name", "firmware_from", "firmware_to")},
            "start_date": self.start_date,
            "end_date": self.end_date,
            "time_windows": self.time_windows,
        }


class FirmwarePreviews(FirmwareUpgrades):
    """The read-only previews of :class:`~airflow_provider_iotfleet.hooks.verizon.VerizonThingSpaceHook`."""

    def preview_sync(self, imeis: Sequence[str], *, account_name: str | None = None) -> SyncPreview:
        """What :meth:`sync_firmware` would do, by reading the devices only.

        A device ThingSpace does not have fails as the sync fails it (``FirmwareVersionUpdateFailed``);
        one that has never connected (``lastConnectionTime`` N/A) cannot answer the sync and fails
        too (``never_connected``). Whether a device that connected before answers now is known only
        once the sync asks it.

        :return: the recorded firmware of each device it would sync, and those it would fail.
        :raises IoTFleetValidationError: for a bad IMEI or a missing account, before any request.
        """
        account = self.resolve_account(account_name)
        devices = self.read_fota_devices(imeis, account_name=account)
        preview = SyncPreview(firmware={}, refused=Refusals())
        for imei in imeis:
            device = devices.get(imei)
            if device is None:
                preview.refused.add(imei, "FirmwareVersionUpdateFailed", not_in_account(account))
            elif device["last_connection_time"] is None:
                preview.refused.add(
                    imei,
                    "never_connected",
                    "ThingSpace has never seen the device connect (lastConnectionTime N/A): it cannot "
                    "answer the sync",
                )
            else:
                preview.firmware[imei] = device["firmware"]
        return preview

    def preview_upgrade(
        self,
        imeis: Sequence[str],
        request: CampaignRequest,
        *,
        protocol: str = "LWM2M",
        account_name: str | None = None,
        validated: bool = False,
    ) -> UpgradePreview:
        """What :meth:`ensure_campaign` would do, by reads only: find the campaign of that name, else
        check what a new one needs (as ``ensure_campaign`` and ``schedule_campaign`` do, raising the
        same errors) and choose its firmware from the account's list; then read the devices once.

        A device upgrades when ThingSpace has it, lists it as FOTA-eligible, and its make, model
        and current firmware are the firmware's make, model and ``firmware_from``; the others
        would be left out of the campaign and fail, grouped by why (``not_in_account``,
        ``not_fota_eligible``, ``wrong_make_model``, ``other_firmware``), as
        :meth:`ensure_campaign` leaves them out (the same check, :meth:`judge_upgrade`). A license is
        not needed: campaigns are scheduled with ``autoAssignLicenseFlag``.

        :return: the campaign it would use (its dates and windows) and where each device would stand.
        :raises IoTFleetValidationError: as :meth:`ensure_campaign` does: a bad IMEI (before any
            request), a campaign of that name with other firmware, or for a new one dates that have
            passed, too many devices to start today, or firmware that matches no entry, or several.
        """
        account = self.resolve_account(account_name)
        devices = list(dict.fromkeys(imeis if validated else validate_imeis(imeis)))
        today = self.clock.now().astimezone(UTC).date()
        campaign = self.find_campaign(request.name, account_name=account)
        held: set[str] = set()
        if campaign is not None:
            check_same_firmware(campaign, request)
            firmware = campaign_firmware(campaign)
            preview = UpgradePreview(
                firmware, campaign, campaign["start_date"], campaign["end_date"], campaign["time_windows"]
            )
            held = {
                entry["device_id"]
                for entry in self.iter_campaign_devices(campaign["campaign_id"], account_name=account)
            }
        else:
            firmware, start, end, windows = self.checked_new_campaign(
                request, len(devices), protocol, account, today
            )
            preview = UpgradePreview(
                firmware, None, start, end, [[w["startTime"], w["endTime"]] for w in windows]
            )
        judged = self.judge_upgrade(devices, firmware, account, campaign, held, today)
        preview.scheduled, preview.already, preview.refused = judged.upgrade, judged.already, judged.refused
        return preview
