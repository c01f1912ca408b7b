"""ThingSpace firmware upgrade campaigns: the hook's calls to list firmware, schedule a campaign, find
it, add and remove its devices, move its dates, cancel it, and read its per-device report."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC
from typing import Any

from airflow_provider_iotfleet.exceptions import (
    IoTFleetCampaignDevicesError,
    IoTFleetError,
    IoTFleetOutcomeUnknownError,
    IoTFleetValidationError,
)
from airflow_provider_iotfleet.hooks.readback import (
    Applied,
    CannotTell,
    LostAnswerWording,
    NotApplied,
    Verdict,
    write_with_read_back,
)
from airflow_provider_iotfleet.hooks.verizon.answers import (
    CAMPAIGN_REUSABLE_STATUSES,
    CAMPAIGN_STATUSES,
    VENDOR,
    CampaignProgress,
    normalise_campaign,
    normalise_campaign_device,
    normalise_firmware,
    refused_devices,
)
from airflow_provider_iotfleet.hooks.verizon.base import ThingSpaceBaseHook, segment
from airflow_provider_iotfleet.hooks.verizon.paging import CursorPager
from airflow_provider_iotfleet.hooks.verizon.rules import (
    MAX_CAMPAIGN_IMEIS,
    validate_campaign_id,
    validate_campaign_name,
    validate_campaign_schedule,
    validate_firmware_choice,
    validate_protocol,
)
from airflow_provider_iotfleet.http import Call
from airflow_provider_iotfleet.http.errors import malformed_response
from airflow_provider_iotfleet.http.plans import Plan, arun_plan, run_plan
from airflow_provider_iotfleet.utils import chunks
from airflow_provider_iotfleet.validation import validate_imeis


def _campaign_path(account: str, campaign_id: str, *, prefix: str = "campaigns", suffix: str = "") -> str:
    """``{prefix}/{account}/{campaign id}{suffix}``, the campaign id checked first."""
    return f"{prefix}/{segment(account)}/{segment(validate_campaign_id(campaign_id))}{suffix}"


def _campaign_report(account: str, campaign_id: str) -> CursorPager:
    """A campaign's per-device report, ``reports/{account}/campaigns/{id}/devices``, the id checked first."""
    path = f"reports/{segment(account)}/campaigns/{segment(validate_campaign_id(campaign_id))}/devices"
    return CursorPager(lambda last_seen: Call("GET", path, params={"lastSeenDeviceId": last_seen}))


def _schedule_wording(label: str | None) -> LostAnswerWording[Call]:
    """How log lines and errors tell of a schedule of campaign ``label`` whose answer was lost."""
    return LostAnswerWording(
        vendor=VENDOR,
        write=lambda _: f"scheduling campaign {label!r}",
        bare_write="scheduling the campaign",
        read="the campaigns",
        risk="ThingSpace may still have scheduled it",
    )


def _devices_wording(campaign_id: str, change: str) -> LostAnswerWording[list[str]]:
    """How log lines and errors tell of an add (``change`` ``"append"``) or a remove of devices in
    ``campaign_id`` whose answer was lost."""
    return LostAnswerWording(
        vendor=VENDOR,
        write=lambda imeis: f"{change!r} of {len(imeis)} devices in campaign {campaign_id}",
        # What groups these devices in an outcome: no vendor, path or count.
        bare_write=repr(change),
        read="the campaign",
        risk="some may be changed",
        bare_read_failure_says_risk=True,
    )


def _cancel_wording(campaign_id: str) -> LostAnswerWording[str]:
    """How log lines and errors tell of a cancel of ``campaign_id`` whose answer was lost."""
    return LostAnswerWording(
        vendor=VENDOR,
        write=lambda _: f"cancelling campaign {campaign_id}",
        bare_write="cancelling the campaign",
        read="the campaign",
        risk="ThingSpace may not have cancelled it",
    )


class FirmwareCampaigns(ThingSpaceBaseHook):
    """The firmware campaign calls of :class:`~airflow_provider_iotfleet.hooks.verizon.VerizonThingSpaceHook`."""

    def list_firmware(
        self, *, account_name: str | None = None, protocol: str = "LWM2M"
    ) -> list[dict[str, Any]]:
        """Return the firmware upgrades available to the account (``GET /firmware/{acc}``).

        :return: ``{"firmware_name", "firmware_from", "firmware_to", "launch_date", "release_note",
            "make", "model", "protocol"}`` per upgrade.
        :raises IoTFleetValidationError: for a bad protocol or a missing account, before any request.
        """
        account = self.resolve_account(account_name)
        reply = self.client.send(
            Call("GET", f"firmware/{segment(account)}", params={"protocol": validate_protocol(protocol)})
        )
        if not isinstance(reply.data, list) or not all(isinstance(item, dict) for item in reply.data):
            raise malformed_response(
                VENDOR, reply.action, "something other than a list of firmware", request_id=reply.request_id
            )
        return [normalise_firmware(item) for item in reply.data]

    def schedule_campaign(
        self,
        imeis: Sequence[str],
        *,
        firmware_name: str,
        firmware_from: str,
        firmware_to: str,
        start_date: Any,
        end_date: Any,
        time_windows: Any = None,
        campaign_name: str | None = None,
        protocol: str = "LWM2M",
        account_name: str | None = None,
        auto_assign_license: bool = True,
        auto_add_devices: bool = False,
        on_scheduled: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Schedule a firmware upgrade campaign (``POST /campaigns/firmware/{acc}``).

        The first :data:`MAX_CAMPAIGN_IMEIS` devices go into the schedule request, the rest are
        added in batches of as many (:meth:`add_campaign_devices`); ThingSpace takes added devices
        only before the start date, so a campaign of more devices must start after today. When some
        cannot be added, the campaign is cancelled, so that it never runs with part of its devices,
        and :class:`IoTFleetCampaignDevicesError` names every device left out. Everything is
        checked first.

        The schedule is not sent twice: if its answer is lost, the campaign is looked up by
        ``campaign_name`` (so give one); without a name, or when none is found, the outcome is unknown.

        :param start_date: the first day devices may upgrade (``yyyy-mm-dd``, a date or datetime);
            not in the past.
        :param end_date: the last such day, not before ``start_date``.
        :param time_windows: hours of the day (UTC) within which devices upgrade, e.g.
            ``[(0, 4), (22, 24)]``; ``None`` for any time of day.
        :param on_scheduled: called with the campaign as soon as ThingSpace has it, before any device
            is added: where a caller keeps its id, to cancel it if the caller is killed (or times
            out) while the rest of the devices are added.
        :return: the campaign as :func:`normalise_campaign` returns it (its status is
            ``CampaignRequestPending`` at first).
        :raises IoTFleetValidationError: naming every bad IMEI, date, window or firmware field.
        :raises IoTFleetOutcomeUnknownError: when the schedule's answer was lost and the campaign
            cannot be found by name.
        :raises IoTFleetCampaignDevicesError: when devices beyond the first request could not be added
            (the campaign is then cancelled).
        """
        account = self.resolve_account(account_name)
        # A repeat in an add would be refused as already in the campaign, and cancel it.
        checked = list(dict.fromkeys(validate_imeis(imeis)))
        name, source, target = validate_firmware_choice(firmware_name, firmware_from, firmware_to)
        if name is None or source is None or target is None:
            raise IoTFleetValidationError(
                "the campaign's firmware is incomplete", ["give firmware_name, firmware_from and firmware_to"]
            )
        start, end, windows = validate_campaign_schedule(
            start_date, end_date, time_windows, self.clock.now().astimezone(UTC).date()
        )
        self.check_campaign_size(len(checked), start)
        # The one place a campaign's devices split: the schedule request carries the first, adds the rest.
        in_schedule, added_after = checked[:MAX_CAMPAIGN_IMEIS], checked[MAX_CAMPAIGN_IMEIS:]
        label = validate_campaign_name(campaign_name) if campaign_name is not None else None
        body: dict[str, Any] = {
            "firmwareName": name,
            "firmwareFrom": source,
            "firmwareTo": target,
            "protocol": validate_protocol(protocol),
            "startDate": start,
            "endDate": end,
            "deviceList": in_schedule,
            "autoAssignLicenseFlag": bool(auto_assign_license),
            "autoAddDevicesFlag": bool(auto_add_devices),
        }
        if label is not None:
            body["campaignName"] = label
        if windows:
            body["campaignTimeWindowList"] = windows
        call = Call("POST", f"campaigns/firmware/{segment(account)}", json=body, repeat="if-not-received")
        campaign = write_with_read_back(
            call,
            send=lambda schedule: normalise_campaign(self.client.send(schedule).object()),
            read_back=lambda _: self._schedule_read_back(label, account),
            wording=_schedule_wording(label),
            rounds=1,
            log=self.log,
            # A failed lookup says nothing of the schedule: raised as it is, not as an unknown outcome.
            conclusive=(IoTFleetError,),
        )
        if campaign["campaign_id"] is None:
            raise malformed_response(VENDOR, call.method + " " + call.path, "a campaign without an id")
        if on_scheduled is not None:
            on_scheduled(campaign)
        if added_after:
            self.add_campaign_devices(
                campaign["campaign_id"], added_after, account_name=account, cancel_on_failure=True
            )
        return campaign

    def _schedule_read_back(self, label: str | None, account: str) -> Verdict[Call, dict[str, Any]]:
        """Applied, as the campaign called ``label``, when one can be found; else it cannot tell."""
        found = self.find_campaign(label, account_name=account) if label is not None else None
        if found is None:
            return CannotTell("no campaign of that name can be found")
        self.log.warning(
            "%s: the schedule's answer was lost; found campaign %s by its name", VENDOR, found["campaign_id"]
        )
        return Applied(found)

    def check_campaign_size(self, devices: int, start_date: str) -> None:
        """Refuse a campaign of more than :data:`MAX_CAMPAIGN_IMEIS` devices that starts today or
        earlier: the devices past the first request go in as adds, which ThingSpace takes only before
        the start date, and half a campaign must never run.

        :param start_date: ``yyyy-mm-dd``.
        :raises IoTFleetValidationError: saying to start it tomorrow or later, or to split it.
        """
        today = self.clock.now().astimezone(UTC).date().isoformat()
        if devices > MAX_CAMPAIGN_IMEIS and start_date <= today:
            raise IoTFleetValidationError(
                f"a campaign of {devices} devices must start after today",
                [
                    f"campaign_start_date {start_date}: devices beyond the first {MAX_CAMPAIGN_IMEIS} are "
                    "added after scheduling, and a campaign takes added devices only before its start "
                    f"date; start it tomorrow or later, or split the devices into campaigns of at most "
                    f"{MAX_CAMPAIGN_IMEIS}"
                ],
            )

    def get_campaign(self, campaign_id: str, *, account_name: str | None = None) -> dict[str, Any]:
        """Return the campaign (``GET /campaigns/{acc}/{campaignId}``) as :func:`normalise_campaign` does.

        :raises IoTFleetNotFoundError: when ThingSpace does not know the campaign.
        """
        return run_plan(self.client, self._campaign_plan(campaign_id, account_name))

    def _campaign_plan(self, campaign_id: str, account_name: str | None) -> Plan[dict[str, Any]]:
        path = _campaign_path(self.resolve_account(account_name), campaign_id)
        (reply,) = yield [Call("GET", path)]
        return normalise_campaign(reply.object())

    def iter_campaigns(self, status: str, *, account_name: str | None = None) -> Iterator[dict[str, Any]]:
        """Return an iterator over the account's campaigns in ``status``
        (``GET /reports/{acc}/firmware/campaigns``),
        one page requested at a time.

        :raises IoTFleetValidationError: for an unknown status, before any request.
        """
        if status not in CAMPAIGN_STATUSES:
            raise IoTFleetValidationError(
                "status is invalid", [f"{status!r} is not one of {', '.join(CAMPAIGN_STATUSES)}"]
            )
        path = f"reports/{segment(self.resolve_account(account_name))}/firmware/campaigns"

        listing = CursorPager(
            lambda last_seen: Call(
                "GET", path, params={"campaignStatus": status, "lastSeenCampaignId": last_seen}
            ),
            items="campaignList",
            cursor="lastSeenCampaignId",
            in_id_order=False,
        )
        return (normalise_campaign(item) for page in listing.pages(self) for item in page)

    def find_campaign(
        self,
        campaign_name: str,
        *,
        account_name: str | None = None,
        statuses: Sequence[str] = CAMPAIGN_REUSABLE_STATUSES,
    ) -> dict[str, Any] | None:
        """Return the campaign called ``campaign_name`` in one of ``statuses``, or ``None``.

        A retried task uses it to find the campaign an earlier try scheduled, rather than scheduling
        a second one. Cancelled, aborted and failed campaigns are not looked at by default.
        """
        name = validate_campaign_name(campaign_name)
        for status in statuses:
            for campaign in self.iter_campaigns(status, account_name=account_name):
                if campaign["campaign_name"] == name:
                    return campaign
        return None

    def add_campaign_devices(
        self,
        campaign_id: str,
        imeis: Sequence[str],
        *,
        account_name: str | None = None,
        cancel_on_failure: bool = False,
    ) -> None:
        """Add devices to a campaign that has not started (``PUT /campaigns/firmware/{acc}/{id}`` with
        ``"Type": "append"``, as the vendor's SDK names it), :data:`MAX_CAMPAIGN_IMEIS` per request.

        Every request is sent even when ThingSpace refuses some devices of an earlier one. A request
        whose answer was lost is not sent again blindly: the campaign's report is read, and only the
        devices it does not hold yet are sent, once more.

        :param cancel_on_failure: when some devices cannot be added, cancel the campaign, so that it
            never starts with part of its devices (what :meth:`schedule_campaign` does).
        :raises IoTFleetValidationError: naming every bad IMEI, before any request.
        :raises IoTFleetCampaignDevicesError: naming every device not added, after cancelling the
            campaign when asked (its ``campaign_status`` then says how it ended).
        :raises IoTFleetOutcomeUnknownError: when that second answer is lost too (with
            ``cancel_on_failure``, the campaign is cancelled and the error is the one above).
        """
        account = self.resolve_account(account_name)
        try:
            self._change_campaign_devices(
                campaign_id, imeis, "append", account, unknown_is_left_out=cancel_on_failure
            )
        except IoTFleetCampaignDevicesError as error:
            if not cancel_on_failure:
                raise
            raise self._cancelled_incomplete(campaign_id, account, error) from error

    def remove_campaign_devices(
        self, campaign_id: str, imeis: Sequence[str], *, account_name: str | None = None
    ) -> None:
        """Remove devices from a campaign that has not started; see :meth:`add_campaign_devices`."""
        self._change_campaign_devices(campaign_id, imeis, "remove", self.resolve_account(account_name))

    def _change_campaign_devices(
        self,
        campaign_id: str,
        imeis: Sequence[str],
        change: str,
        account: str,
        *,
        unknown_is_left_out: bool = False,
    ) -> None:
        """Send every batch; raise :class:`IoTFleetCampaignDevicesError` naming the devices not changed.

        :param unknown_is_left_out: count the devices of a batch whose answers were lost twice as
            not changed (true once the campaign is cancelled for it); else that batch's
            :class:`IoTFleetOutcomeUnknownError` is raised as it is, since some may be changed.
        """
        checked = validate_imeis(imeis)
        path = _campaign_path(account, campaign_id, prefix="campaigns/firmware")
        done = "added to" if change == "append" else "removed from"
        batches = list(chunks(checked, MAX_CAMPAIGN_IMEIS))
        refused: dict[str, str] = {}
        for position, batch in enumerate(batches):
            try:
                refused.update(self._change_batch(path, campaign_id, batch, change, account))
            except IoTFleetCampaignDevicesError:
                raise
            except IoTFleetError as error:
                if isinstance(error, IoTFleetOutcomeUnknownError) and not unknown_is_left_out:
                    raise
                left_out = [*refused, *(imei for later in batches[position:] for imei in later)]
                raise IoTFleetCampaignDevicesError(
                    f"{VENDOR}: {len(left_out)} of {len(checked)} devices could not be {done} campaign "
                    f"{campaign_id}: {error.message}",
                    devices=left_out,
                    refused=refused,
                    not_sent=[imei for later in batches[position + 1 :] for imei in later],
                    vendor=VENDOR,
                    bare_message=error.bare_message,
                    **error.answer_details(),
                ) from error
        if refused:
            shown = ", ".join(f"{imei} ({reason})" for imei, reason in list(refused.items())[:5])
            more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
            raise IoTFleetCampaignDevicesError(
                f"{VENDOR}: {len(refused)} of {len(checked)} devices could not be {done} campaign "
                f"{campaign_id}: {shown}{more}",
                devices=list(refused),
                refused=refused,
                vendor=VENDOR,
                bare_message=f"refused by ThingSpace: {next(iter(refused.values()))}",
            )
        self.log.info("%s: %s %d devices in campaign %s", VENDOR, done.split()[0], len(checked), campaign_id)

    def _change_batch(
        self, path: str, campaign_id: str, batch: list[str], change: str, account: str
    ) -> dict[str, str]:
        """Send one add or remove; return the devices ThingSpace refused in its answer.

        Should its answer be lost, the campaign's devices are read back and only the devices not
        changed yet are sent, once more (see
        :func:`~airflow_provider_iotfleet.hooks.readback.write_with_read_back`).

        :raises IoTFleetOutcomeUnknownError: when the campaign cannot be read back, or the answer
            to that second request is lost too.
        """
        return write_with_read_back(
            batch,
            # Answered: devices it refused one by one are the caller's to report, not a lost answer.
            send=lambda imeis: refused_devices(
                self.client.send(
                    Call("PUT", path, json={"Type": change, "deviceList": imeis}, repeat="if-not-received")
                )
            ),
            read_back=lambda imeis: self._devices_read_back(campaign_id, imeis, change, account),
            wording=_devices_wording(campaign_id, change),
            rounds=1,
            log=self.log,
        )

    def _devices_read_back(
        self, campaign_id: str, imeis: list[str], change: str, account: str
    ) -> Verdict[list[str], dict[str, str]]:
        """Applied when the campaign holds every added device (or none of the removed ones); else
        the devices not changed yet surely were not."""
        progress = self.campaign_progress(campaign_id, account_name=account)
        held = {device["device_id"] for device in progress.devices}
        rest = [imei for imei in imeis if (imei in held) != (change == "append")]
        return NotApplied(rest) if rest else Applied({})

    def _cancelled_incomplete(
        self, campaign_id: str, account: str, error: IoTFleetCampaignDevicesError
    ) -> IoTFleetCampaignDevicesError:
        """Cancel a campaign some devices could not join, and say so in the error to raise."""
        bare: str | None = None  # cancelled: the devices left out failed for the add's error alone
        try:
            status = self.cancel_campaign(campaign_id, account_name=account)["status"]
            what = f"campaign {campaign_id} was cancelled ({status}) so that it never runs with part of its devices"
        except IoTFleetError as cancel_error:
            status = None
            what = (
                f"cancelling campaign {campaign_id} failed too ({cancel_error.message}): cancel it before it "
                "starts, or it upgrades only part of the devices"
            )
            # The warning goes into the bare message too: it is what an outcome's error group (and the
            # task's failure message) says, and the campaign stays scheduled with the other devices.
            bare = (
                f"{error.bare_message}; cancelling campaign {campaign_id} failed too "
                f"({cancel_error.bare_message}): cancel it before it starts, or it upgrades only part of "
                "the devices"
            )
        clone = error.with_message(f"{error.message}; {what}", bare_message=bare)
        clone.campaign_status = status
        return clone

    def change_campaign_dates(
        self,
        campaign_id: str,
        *,
        start_date: Any,
        end_date: Any,
        time_windows: Any = None,
        account_name: str | None = None,
    ) -> dict[str, Any]:
        """Move a campaign's dates and time windows (``PUT .../{campaignId}/dates``); checked as in
        :meth:`schedule_campaign`. Sending the same dates twice changes nothing, so it is retried.

        :return: the campaign as ThingSpace then reports it.
        """
        account = self.resolve_account(account_name)
        start, end, windows = validate_campaign_schedule(
            start_date, end_date, time_windows, self.clock.now().astimezone(UTC).date()
        )
        body: dict[str, Any] = {"startDate": start, "endDate": end}
        if windows:
            body["campaignTimeWindowList"] = windows
        path = _campaign_path(account, campaign_id, prefix="campaigns/firmware", suffix="/dates")
        self.client.send(Call("PUT", path, json=body))
        return self.get_campaign(campaign_id, account_name=account)

    def cancel_campaign(self, campaign_id: str, *, account_name: str | None = None) -> dict[str, Any]:
        """Cancel a campaign (``DELETE /campaigns/{acc}/{campaignId}``): ``CampaignCancelled`` before
        its start date, ``CampaignAborted`` after it.

        A lost answer is read back rather than sent again (see
        :func:`~airflow_provider_iotfleet.hooks.readback.write_with_read_back`).

        :return: the campaign as ThingSpace then reports it.
        :raises IoTFleetOutcomeUnknownError: when the answer was lost and the campaign is not cancelled.
        """
        account = self.resolve_account(account_name)
        # The campaign when the lost answer was read back; None when the cancel was answered.
        campaign = write_with_read_back(
            _campaign_path(account, campaign_id),
            send=self._send_cancel,
            read_back=lambda _: self._cancel_read_back(campaign_id, account),
            wording=_cancel_wording(campaign_id),
            rounds=1,
            log=self.log,
            # A failed read says nothing of the cancel: raised as it is, not as an unknown outcome.
            conclusive=(IoTFleetError,),
        )
        if campaign is None:
            campaign = self.get_campaign(campaign_id, account_name=account)
            self.log.info("%s: campaign %s is %s", VENDOR, campaign_id, campaign["status"])
        return campaign

    def _send_cancel(self, path: str) -> None:
        """Send a cancel; what it made of the campaign is read after, or by the read-back."""
        self.client.send(Call("DELETE", path, repeat="if-not-received"))

    def _cancel_read_back(self, campaign_id: str, account: str) -> Verdict[str, dict[str, Any] | None]:
        """Applied, as the campaign, when it is cancelled or aborted; else it cannot tell."""
        campaign = self.get_campaign(campaign_id, account_name=account)
        if campaign["status"] in ("CampaignCancelled", "CampaignAborted"):
            return Applied(campaign)
        return CannotTell(f"it is {campaign['status']}")

    def iter_campaign_devices(
        self, campaign_id: str, *, account_name: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Return an iterator over a campaign's per-device report
        (``GET /reports/{acc}/campaigns/{campaignId}/devices``), a page of up to 1000 at a time.

        :return: devices as :func:`normalise_campaign_device` returns them.
        """
        listing = _campaign_report(self.resolve_account(account_name), campaign_id)
        return (normalise_campaign_device(item) for page in listing.pages(self) for item in page)

    def campaign_progress(self, campaign_id: str, *, account_name: str | None = None) -> CampaignProgress:
        """Return the campaign and its whole device report (what the campaign sensor polls)."""
        return run_plan(self.client, self._progress_plan(campaign_id, account_name))

    async def acampaign_progress(
        self, campaign_id: str, *, account_name: str | None = None
    ) -> CampaignProgress:
        """:meth:`campaign_progress` for triggers."""
        client = await self.aclient()
        return await arun_plan(client, self._progress_plan(campaign_id, account_name))

    def _progress_plan(self, campaign_id: str, account_name: str | None) -> Plan[CampaignProgress]:
        account = self.resolve_account(account_name)
        campaign = yield from self._campaign_plan(campaign_id, account)
        devices = yield from _campaign_report(account, campaign_id).read_all()
        return CampaignProgress(campaign, [normalise_campaign_device(device) for device in devices])
