"""What a firmware sync or upgrade would do, found by reads only: the dry runs of the Verizon
operators. Each reads the devices once (the FOTA listing ``POST /devices/{acc}``, 1000 IMEIs per
body, paged and rate-limited like every call of the hook) and, for an upgrade, the firmware list and
the campaign ``ensure_campaign`` would reuse; nothing is scheduled, added, removed or cancelled."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.hooks.verizon.answers import EnsuredCampaign
from airflow_provider_iotfleet.hooks.verizon.rules import CampaignRequest, validate_campaign_schedule
from airflow_provider_iotfleet.hooks.verizon.upgrades import FirmwareUpgrades, check_same_firmware
from airflow_provider_iotfleet.outcome import OutcomeBuilder
from airflow_provider_iotfleet.validation import validate_imeis


@dataclass
class Refusals:
    """Devices that would fail, grouped by ``(error_code, message)`` in the order first met."""

    groups: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: the error codes of devices a real run would not send (``attempted=False`` in its outcome).
    not_sent: frozenset[str] = frozenset()

    def add(self, imei: str, code: str, message: str) -> None:
        self.groups.setdefault((code, message), []).append(imei)

    @property
    def devices(self) -> set[str]:
        return {imei for devices in self.groups.values() for imei in devices}

    def record(self, outcome: OutcomeBuilder) -> None:
        """Record each group in ``outcome`` as ``failed``, one error per group."""
        for (code, message), devices in self.groups.items():
            outcome.refuse(devices, code, message, attempted=code not in self.not_sent)


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

    def read_fota_devices(
        self, imeis: Sequence[str], *, account_name: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """Return ``{imei: normalised device}`` for the devices of ``imeis`` the account has (absent:
        the others), read with the FOTA listing (:meth:`iter_fota_device_pages`), at most one read
        per device.

        :raises IoTFleetValidationError: for a bad IMEI or a missing account, before any request.
        """
        pages = self.iter_fota_device_pages(imeis, account_name=account_name)
        return {str(device["device_id"]): device for page in pages for device in page}

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
                preview.refused.add(imei, "FirmwareVersionUpdateFailed", _not_in_account(account))
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
        would fail, grouped by why (``not_in_account``, ``not_fota_eligible``, ``wrong_make_model``,
        ``other_firmware``). A device the account does not have makes ThingSpace refuse the whole
        schedule (or an add, and the campaign is cancelled): then every device fails
        (``campaign_refused``). A license is not needed: campaigns are scheduled with
        ``autoAssignLicenseFlag``.

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
            firmware = {key: campaign[key] for key in ("firmware_name", "firmware_from", "firmware_to")}
            firmware.update(make=campaign["make"], model=campaign["model"])
            preview = UpgradePreview(
                firmware, campaign, campaign["start_date"], campaign["end_date"], campaign["time_windows"]
            )
            held = {
                entry["device_id"]
                for entry in self.iter_campaign_devices(campaign["campaign_id"], account_name=account)
            }
        else:
            if request.end_date < today.isoformat():
                raise IoTFleetValidationError(
                    "the campaign's window has already ended",
                    [
                        f"campaign_end_date {request.end_date} is before today ({today.isoformat()}): no "
                        "device would upgrade"
                    ],
                )
            self.check_campaign_size(len(devices), request.start_date)
            firmware = self._choose_firmware(request, protocol, account)
            start, end, windows = validate_campaign_schedule(
                request.start_date, request.end_date, request.time_windows or None, today
            )
            preview = UpgradePreview(
                firmware, None, start, end, [[w["startTime"], w["endTime"]] for w in windows]
            )
        found = self.read_fota_devices(devices, account_name=account) if devices else {}
        self._judge(preview, devices, found, held, account, today.isoformat())
        return preview

    def _judge(
        self,
        preview: UpgradePreview,
        devices: list[str],
        found: dict[str, dict[str, Any]],
        held: set[str],
        account: str,
        today: str,
    ) -> None:
        """Put each device where the upgrade would leave it, in ``preview``."""
        campaign = preview.campaign
        started = campaign is not None and (campaign["start_date"] or "") <= today
        missing = [imei for imei in devices if imei not in held]
        unknown = [imei for imei in missing if imei not in found]
        if started and campaign is not None:
            # ensure_campaign leaves the devices a started campaign lacks out of it, sending nothing.
            reason = EnsuredCampaign(campaign, reused=True, devices=devices).started_reason
            preview.refused.not_sent = frozenset({"campaign_started"})
            for imei in missing:
                preview.refused.add(imei, "campaign_started", reason)
            missing, unknown = [], []
        for imei in devices:
            if imei in preview.refused.devices:
                continue
            why = _ineligible(found.get(imei), preview.firmware, account)
            if imei in unknown:
                preview.refused.add(imei, "not_in_account", str(why and why[1]))
            elif unknown:
                preview.refused.add(
                    imei,
                    "campaign_refused",
                    f"ThingSpace would refuse the campaign's devices: account {account} lacks "
                    f"{len(unknown)} of them (leave those out)",
                )
            elif why is not None:
                preview.refused.add(imei, *why)
            elif imei in held:
                preview.already.append(imei)
            else:
                preview.scheduled[imei] = found[imei]["firmware"]


def _not_in_account(account: str) -> str:
    return f"ThingSpace has no device with this IMEI in account {account}"


def _ineligible(
    device: dict[str, Any] | None, firmware: dict[str, Any], account: str
) -> tuple[str, str] | None:
    """``(error_code, message)`` saying why ``device`` would not upgrade with ``firmware``, or ``None``."""
    if device is None:
        return "not_in_account", _not_in_account(account)
    if device["fota_eligible"] is False:
        return (
            "not_fota_eligible",
            "ThingSpace lists the device as not FOTA-eligible: it cannot upgrade over the air",
        )
    if (device["make"], device["model"]) != (firmware["make"], firmware["model"]):
        return (
            "wrong_make_model",
            f"a {device['make']} {device['model']}: {firmware['firmware_name']} is for "
            f"{firmware['make']} {firmware['model']}",
        )
    if device["firmware"] != firmware["firmware_from"]:
        return (
            "other_firmware",
            f"runs {device['firmware']}, not {firmware['firmware_from']}, which {firmware['firmware_name']} "
            "upgrades from",
        )
    return None
