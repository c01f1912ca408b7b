"""Getting devices into a firmware upgrade campaign, whatever an earlier try of the task did: the one
call an upgrade needs, for the operator and ``@task`` functions alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date
from typing import Any

from airflow_provider_iotfleet.exceptions import IoTFleetCampaignDevicesError, IoTFleetValidationError
from airflow_provider_iotfleet.hooks.verizon.answers import VENDOR, EnsuredCampaign
from airflow_provider_iotfleet.hooks.verizon.campaigns import FirmwareCampaigns
from airflow_provider_iotfleet.hooks.verizon.eligibility import Eligibility, judge_devices, to_read
from airflow_provider_iotfleet.hooks.verizon.rules import CampaignRequest, validate_campaign_schedule
from airflow_provider_iotfleet.validation import validate_imeis


class FirmwareUpgrades(FirmwareCampaigns):
    """The upgrade orchestration of :class:`~airflow_provider_iotfleet.hooks.verizon.VerizonThingSpaceHook`,
    built on its campaign calls."""

    def ensure_campaign(
        self,
        imeis: Sequence[str],
        request: CampaignRequest,
        *,
        protocol: str = "LWM2M",
        account_name: str | None = None,
        on_scheduled: Callable[[dict[str, Any]], None] | None = None,
        validated: bool = False,
    ) -> EnsuredCampaign:
        """Get ``imeis`` into the firmware upgrade campaign ``request`` names: the one of that name an
        earlier try scheduled, or a new one.

        A campaign of that name that is scheduled, running or ended is reused (cancelled, aborted
        and failed ones are not looked at), provided it upgrades the firmware asked for: the
        devices it lacks are added, unless it has started, since ThingSpace adds devices only
        before the start date (those are ``too_late``; the campaign is not aborted for them).
        Otherwise the campaign is scheduled: its dates must not have passed, a campaign of more
        than 1,000 devices must start after today, and the firmware must match exactly one entry
        of the account's firmware list; the schedule carries the first 1,000 devices, adds the
        rest (see :meth:`schedule_campaign`). A campaign some devices cannot join is cancelled, so
        that it never runs with part of its devices: ``not_added`` says which, and why.

        Before anything is sent the devices are read once (the FOTA listing, :meth:`read_fota_devices`)
        and only those that can upgrade go into the campaign: devices the account lacks, or that are
        not FOTA-eligible, of another make or model, or on other firmware than ``firmware_from`` are
        left out (``ineligible``, grouped by why, as the dry run :meth:`preview_upgrade` groups them:
        one check, :func:`~airflow_provider_iotfleet.hooks.verizon.eligibility.judge_devices`).
        When none can upgrade, no campaign is scheduled (``campaign`` ``None``).

        :param imeis: the devices, 15-digit IMEIs; repeats are sent once.
        :param request: the campaign, built by :meth:`CampaignRequest.checked`.
        :param protocol: ``LWM2M``, ``OMADM`` or ``HTTP``: which firmware list to choose from.
        :param account_name: the billing account; default: the connection's.
        :param on_scheduled: called with a campaign this call schedules as soon as ThingSpace has it,
            before any device is added: where a caller keeps its id, to cancel it if the caller is
            killed (or times out) while the rest of the devices are added.
        :param validated: ``imeis`` are what :func:`~airflow_provider_iotfleet.validation.validate_imeis`
            returned, not checked again (the operator validates its whole input once).
        :return: the campaign and where each device stands in it (``already``: in the reused
            campaign before this call).
        :raises IoTFleetValidationError: for a bad IMEI, before any request; for a campaign of that
            name with other firmware; for a new one, dates that have passed, too many devices to
            start today, or firmware that matches no entry of the account's list, or several.
        :raises IoTFleetOutcomeUnknownError: when the schedule's answer was lost and no campaign of
            that name can be found.
        """
        account = self.resolve_account(account_name)
        devices = list(dict.fromkeys(imeis if validated else validate_imeis(imeis)))
        today = self.clock.now().astimezone(UTC).date()
        campaign = self.find_campaign(request.name, account_name=account)
        if campaign is not None:
            return self._reuse(campaign, devices, request, account, today)
        return self._schedule(devices, request, protocol, account, today, on_scheduled)

    def _reuse(
        self,
        campaign: dict[str, Any],
        devices: list[str],
        request: CampaignRequest,
        account: str,
        today: date,
    ) -> EnsuredCampaign:
        """Add the devices a campaign found by name lacks, unless it has started."""
        check_same_firmware(campaign, request)
        campaign_id = campaign["campaign_id"]
        self.log.info(
            "%s: campaign %r exists already (%s, %s): reusing it, not scheduling another",
            VENDOR,
            request.name,
            campaign_id,
            campaign["status"],
        )
        held = {
            device["device_id"] for device in self.iter_campaign_devices(campaign_id, account_name=account)
        }
        judged = self.judge_upgrade(devices, campaign_firmware(campaign), account, campaign, held, today)
        too_late = judged.refused.of("campaign_started")

        def ensured(**outcome: Any) -> EnsuredCampaign:
            return EnsuredCampaign(
                campaign,
                reused=True,
                devices=devices,
                too_late=too_late,
                ineligible=judged.refused.without("campaign_started"),
                already=judged.already,
                **outcome,
            )

        if too_late:
            self.log.warning(
                "%s: campaign %s started on %s without %d of the devices; too late to add them",
                VENDOR,
                campaign_id,
                campaign["start_date"],
                len(too_late),
            )
        missing = list(judged.upgrade)
        if not missing:
            return ensured()
        self.log.info("%s: adding the %d devices campaign %s lacks", VENDOR, len(missing), campaign_id)
        try:
            self.add_campaign_devices(campaign_id, missing, account_name=account, cancel_on_failure=True)
        except IoTFleetCampaignDevicesError as error:
            return ensured(not_added=error)
        return ensured()

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

    def judge_upgrade(
        self,
        devices: list[str],
        firmware: dict[str, Any],
        account: str,
        campaign: dict[str, Any] | None,
        held: set[str],
        today: date,
    ) -> Eligibility:
        """Read the devices of ``devices`` not yet in the campaign once (the FOTA listing; none once it
        has started) and put each where an upgrade with ``firmware``
        leaves it (:func:`~airflow_provider_iotfleet.hooks.verizon.eligibility.judge_devices`): the
        one check of the real run and the dry run.

        :param campaign: the campaign found by name (``held``: its devices), or ``None`` for a new one.
        :return: the devices to put into the campaign, those already in it, and those left out.
        """
        started = None
        if campaign is not None and (campaign["start_date"] or "") <= today.isoformat():
            started = EnsuredCampaign(campaign, reused=True, devices=devices).started_reason
        unread = to_read(devices, held, started is not None)
        found = self.read_fota_devices(unread, account_name=account) if unread else {}
        return judge_devices(devices, found, firmware, account, held=held, started_reason=started)

    def _schedule(
        self,
        devices: list[str],
        request: CampaignRequest,
        protocol: str,
        account: str,
        today: date,
        on_scheduled: Callable[[dict[str, Any]], None] | None,
    ) -> EnsuredCampaign:
        """Schedule a new campaign, once its dates, size and firmware are known to be right."""
        # The dates are checked again when scheduling; checked here too, so that bad ones fail
        # before the devices are read, as in the dry run.
        firmware, *_ = self.checked_new_campaign(request, len(devices), protocol, account, today)
        judged = self.judge_upgrade(devices, firmware, account, None, set(), today)
        eligible = list(judged.upgrade)
        if not eligible:
            self.log.warning(
                "%s: none of the %d devices can upgrade with %s: no campaign scheduled",
                VENDOR,
                len(devices),
                firmware["firmware_name"],
            )
            return EnsuredCampaign(None, reused=False, devices=devices, ineligible=judged.refused)
        scheduled: list[dict[str, Any]] = []

        def keep(campaign: dict[str, Any]) -> None:
            scheduled.append(campaign)
            if on_scheduled is not None:
                on_scheduled(campaign)

        try:
            campaign = self.schedule_campaign(
                eligible,
                firmware_name=firmware["firmware_name"],
                firmware_from=firmware["firmware_from"],
                firmware_to=firmware["firmware_to"],
                start_date=request.start_date,
                end_date=request.end_date,
                time_windows=request.time_windows or None,
                campaign_name=request.name,
                protocol=protocol,
                account_name=account,
                on_scheduled=keep,
            )
        except IoTFleetCampaignDevicesError as error:
            # Raised only by the adds, which come after the campaign was scheduled (and kept).
            return EnsuredCampaign(
                scheduled[0], reused=False, devices=devices, not_added=error, ineligible=judged.refused
            )
        self.log.info(
            "%s: scheduled campaign %s (%s -> %s, %s to %s) for %d devices",
            VENDOR,
            campaign["campaign_id"],
            firmware["firmware_from"],
            firmware["firmware_to"],
            request.start_date,
            request.end_date,
            len(eligible),
        )
        return EnsuredCampaign(campaign, reused=False, devices=devices, ineligible=judged.refused)

    def checked_new_campaign(
        self, request: CampaignRequest, devices: int, protocol: str, account: str, today: date
    ) -> tuple[dict[str, Any], str, str, list[dict[str, int]]]:
        """Check what scheduling a new campaign of ``devices`` devices needs, as a real run and a dry
        run both do before reading the devices: its window not over, its size startable, one firmware
        entry matching, its dates and time windows valid.

        :return: the firmware entry, the start and end dates (``yyyy-mm-dd``) and the time windows in
            ThingSpace's form.
        :raises IoTFleetValidationError: for the first of those that does not hold.
        """
        if request.end_date < today.isoformat():
            raise IoTFleetValidationError(
                "the campaign's window has already ended",
                [
                    f"campaign_end_date {request.end_date} is before today ({today.isoformat()}): no device "
                    "would upgrade"
                ],
            )
        self.check_campaign_size(devices, request.start_date)
        firmware = self._choose_firmware(request, protocol, account)
        start, end, windows = validate_campaign_schedule(
            request.start_date, request.end_date, request.time_windows or None, today
        )
        return firmware, start, end, windows

    def _choose_firmware(self, request: CampaignRequest, protocol: str, account: str) -> dict[str, Any]:
        """The one entry of the account's firmware list that matches what ``request`` names.

        :raises IoTFleetValidationError: listing the entries when none matches, or several do.
        """
        name, source, target = request.firmware_name, request.firmware_from, request.firmware_to
        available = self.list_firmware(account_name=account, protocol=protocol)
        matches = [
            firmware
            for firmware in available
            if (name is None or firmware["firmware_name"] == name)
            and (source is None or firmware["firmware_from"] == source)
            and (target is None or firmware["firmware_to"] == target)
        ]
        if len(matches) == 1:
            return matches[0]
        asked = ", ".join(
            f"{label} {value!r}"
            for label, value in (("firmware_name", name), ("firmware_from", source), ("firmware_to", target))
            if value is not None
        )
        listed = [
            f"{firmware['firmware_name']} ({firmware['firmware_from']} -> {firmware['firmware_to']}, "
            f"{firmware['make']} {firmware['model']})"
            for firmware in (matches or available)
        ]
        shown = "; ".join(listed[:10]) + (f"; and {len(listed) - 10} more" if len(listed) > 10 else "")
        if matches:
            raise IoTFleetValidationError(
                f"{len(matches)} firmware upgrades match {asked}",
                [f"name one of them with firmware_name: {shown}"],
            )
        raise IoTFleetValidationError(
            f"no firmware upgrade available to account {account} ({protocol}) matches {asked}",
            [f"available: {shown}" if listed else "the account has no firmware upgrades available"],
        )


def campaign_firmware(campaign: dict[str, Any]) -> dict[str, Any]:
    """The firmware a campaign upgrades with, as the firmware list shows an entry: its name,
    ``firmware_from``, ``firmware_to``, make and model."""
    keys = ("firmware_name", "firmware_from", "firmware_to", "make", "model")
    return {key: campaign[key] for key in keys}


def check_same_firmware(campaign: dict[str, Any], request: CampaignRequest) -> None:
    """A campaign found by name is reused only if it upgrades to what is asked for now."""
    differences = [
        f"{label} {theirs!r}, not {ours!r}"
        for label, ours, theirs in (
            ("firmware_name", request.firmware_name, campaign["firmware_name"]),
            ("firmware_from", request.firmware_from, campaign["firmware_from"]),
            ("firmware_to", request.firmware_to, campaign["firmware_to"]),
        )
        if ours is not None and theirs != ours
    ]
    if differences:
        raise IoTFleetValidationError(
            f"campaign {campaign['campaign_name']!r} ({campaign['campaign_id']}, {campaign['status']}) exists "
            "with other firmware",
            [*differences, "cancel it, or give this task another campaign_name"],
        )
