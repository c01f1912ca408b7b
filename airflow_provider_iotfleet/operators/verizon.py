"""Verizon ThingSpace FOTA: sync firmware versions and schedule firmware upgrade campaigns; the
device firmware inventory export (:class:`VerizonThingSpaceFotaDevicesOperator`, importable from
here) is in :mod:`.fota_export`."""

from __future__ import annotations

import hashlib
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_iotfleet.exceptions import (
    IoTFleetError,
    IoTFleetNotAttemptedError,
    IoTFleetValidationError,
)
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.hooks.verizon.answers import (
    MISSING_FROM_ANSWER,
    EnsuredCampaign,
    FirmwareSyncResult,
)
from airflow_provider_iotfleet.hooks.verizon.connection import DEFAULT_CONSOLE_URL
from airflow_provider_iotfleet.hooks.verizon.rules import MAX_SYNC_IMEIS, CampaignRequest
from airflow_provider_iotfleet.operators.base import (
    IoTFleetWriteOperator,
)

# The inventory export is the read operator of this vendor; it lives with its file output.
from airflow_provider_iotfleet.operators.fota_export import (
    DEFAULT_MAX_XCOM_DEVICES,
    VerizonThingSpaceFotaDevicesOperator,
)
from airflow_provider_iotfleet.operators.lineage import account_devices
from airflow_provider_iotfleet.operators.links import ThingSpaceCampaignLink
from airflow_provider_iotfleet.outcome import FleetOutcome
from airflow_provider_iotfleet.utils import chunks
from airflow_provider_iotfleet.validation import as_item_list, validate_batch_size, validate_imeis

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "DEFAULT_MAX_XCOM_DEVICES",
    "VerizonThingSpaceFirmwareUpgradeOperator",
    "VerizonThingSpaceFotaDevicesOperator",
    "VerizonThingSpaceSyncFirmwareOperator",
]


class VerizonThingSpaceSyncFirmwareOperator(IoTFleetWriteOperator[VerizonThingSpaceHook]):
    """Ask ThingSpace to read each device's firmware version (``PUT /firmware/{acc}/devices``),
    ``batch_size`` IMEIs per request.

    Returns a :class:`~airflow_provider_iotfleet.outcome.FleetOutcome` (``operation``
    ``"sync_firmware"``, device ids are IMEIs) with ``account_name`` and ``firmware`` (``{imei:
    version}`` of the synced devices) added. A device ThingSpace could not sync is ``failed`` with
    its per-device status as ``error_code`` and its reason as ``message`` (``missing_from_answer``
    when the answer left it out). Nothing to roll back: a sync changes nothing on the device, it
    refreshes ThingSpace's record of its firmware.

    A dry run (``dry_run=True``) reads the devices (FOTA listing) and syncs none: a device it would
    sync is ``succeeded``, its firmware on record in ``firmware`` and ``plan`` (``{"firmware":
    {"from": <on record>, "to": None}}``: what the device reports is known only once asked); one
    ThingSpace lacks fails as the sync fails it, one never connected as ``never_connected`` (see
    ``VerizonThingSpaceHook.preview_sync``). An offline device cannot be told from a read.

    Safe under Airflow's retries: a sync is idempotent, so a request whose answer was lost (a 5xx,
    a dropped connection) is sent again like a read. On Airflow 3.3+ the devices synced are also
    recorded in the task's own state, and a retry syncs only the others.

    :param imeis: the devices (templated, or an upstream task's output); repeats are sent once.
    :param account_name: the billing account (templated); default: the connection's.
    :param batch_size: IMEIs per request, at most 100.
    :param verizon_thingspace_conn_id: the Airflow connection.
    :param fail_on_error: fail the task when any device was not synced (after trying all).
    :param dry_run: read only and return what a sync would do (templated; see above).
    """

    hook_class = VerizonThingSpaceHook
    operation = "sync_firmware"
    unit = "IMEI"
    template_fields = ("account_name", "imeis", "dry_run")

    def __init__(
        self,
        *,
        imeis: Any,
        account_name: str | None = None,
        batch_size: int = MAX_SYNC_IMEIS,
        verizon_thingspace_conn_id: str = VerizonThingSpaceHook.default_conn_name,
        fail_on_error: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=verizon_thingspace_conn_id, fail_on_error=fail_on_error, **kwargs)
        self.imeis = imeis
        self.account_name = account_name
        self.batch_size = validate_batch_size(batch_size, MAX_SYNC_IMEIS, self.hook_class.hook_name)

    def _validated(self) -> tuple[str, list[str], int]:
        """The account, the distinct IMEIs in input order, and how many repeats were dropped.

        :raises IoTFleetValidationError: for a missing account or a bad IMEI, before any request.
        """
        account = self.hook.resolve_account(self.account_name)
        raw = as_item_list(self.imeis, "imeis")
        imeis, duplicates = _distinct_imeis(validate_imeis(raw)) if raw else ([], 0)
        return account, imeis, duplicates

    def lineage_dataset(self, outcome: dict[str, Any]) -> tuple[str, str]:
        """``(account, "accounts/<account>/devices")``: the account the run resolved."""
        return outcome["account_name"], account_devices(outcome["account_name"])

    def plan(self, context: Context) -> FleetOutcome:
        """Read the devices and return what a sync would do (see the class docstring)."""
        account, imeis, duplicates = self._validated()
        outcome = self.new_outcome(len(imeis), order=imeis)
        if not imeis:
            self.nothing_to_do("imeis")
            return outcome.build(account_name=account, firmware={})
        self.start(
            "planning a firmware sync of", len(imeis), detail=f"account {account}", duplicates=duplicates
        )
        preview = self.hook.preview_sync(imeis, account_name=account)
        preview.record(outcome)
        return outcome.build(account_name=account, firmware=preview.firmware)

    def operate(self, context: Context) -> FleetOutcome:
        account, imeis, duplicates = self._validated()
        if not imeis:
            self.nothing_to_do("imeis")
            return self.new_outcome(0).build(account_name=account, firmware={})
        outcome = self.new_outcome(len(imeis), order=imeis)
        journal = self.journal(context, f"verizon.synced.{account}")
        wanted = set(imeis)
        firmware: dict[str, Any] = {
            imei: version for imei, version in journal.load().items() if imei in wanted
        }
        outcome.add_many("succeeded", firmware)
        to_sync = [imei for imei in imeis if imei not in firmware]
        batches = list(chunks(to_sync, self.batch_size))
        progress = self.start(
            "syncing the firmware of",
            len(imeis),
            detail=f"account {account}"
            + (f", {len(firmware)} synced by an earlier try, not sent again" if firmware else ""),
            duplicates=duplicates,
            batches=len(batches),
        )
        progress.advance(len(firmware))

        def sync(batch: list[str]) -> FirmwareSyncResult:
            result = self.hook.sync_firmware_batch(batch, account_name=account, validated=True)
            for entry in result.synced:
                journal.record(entry["device_id"], entry["firmware_version"])
            return result

        def record(_batch: list[str], result: FirmwareSyncResult) -> None:
            for entry in result.synced:
                firmware[entry["device_id"]] = entry["firmware_version"]
                outcome.add("succeeded", entry["device_id"])
            for entry in result.failed:
                code = entry["status"] or (
                    "missing_from_answer" if entry["reason"] == MISSING_FROM_ANSWER else None
                )
                outcome.refuse([entry["device_id"]], code, str(entry["reason"] or entry["status"]))

        try:
            self.send_in_batches(
                outcome, batches, sync, record, progress, failed_in=lambda result: len(result.failed)
            )
        finally:
            journal.flush()
        return outcome.build(
            account_name=account, firmware={imei: firmware[imei] for imei in imeis if imei in firmware}
        )


class VerizonThingSpaceFirmwareUpgradeOperator(IoTFleetWriteOperator[VerizonThingSpaceHook]):
    """Schedule a firmware upgrade campaign for devices, or reuse the one an earlier try scheduled.

    The firmware is looked up in the account's available firmware (by ``firmware_name``, or by its
    ``firmware_from`` and ``firmware_to``) before anything is scheduled. The campaign is named after
    the DAG, task and run unless ``campaign_name`` is given: a retried task finds its own campaign by
    that name, adds any devices it lacks, and reuses it instead of scheduling a second one. Device
    lists of any size go in as a schedule of the first 1000 and adds of 1000 each, which ThingSpace
    takes only before the start date: a campaign of more than 1000 devices must start after today.
    A campaign is never left running with part of its devices: when some cannot be added, it is
    cancelled, and the outcome names the devices left out (``failed`` with the add's error, or with
    ThingSpace's reason for each device it refused) and the others (``failed`` as
    ``campaign_cancelled``; still ``scheduled`` if cancelling failed too, which the error then says).
    A retry that finds its campaign already started does not abort it for devices it lacks: those
    fail as ``campaign_started``.

    Returns a :class:`~airflow_provider_iotfleet.outcome.FleetOutcome` (``operation``
    ``"upgrade_firmware"``; the devices are ``scheduled``: in the campaign, to upgrade within its
    dates; those a retry finds already in its campaign ``unchanged``; those that cannot upgrade
    ``failed``, left out of it) with ``account_name``, ``campaign_id``, ``campaign_name``, ``campaign_status``,
    ``firmware_name``, ``firmware_from``, ``firmware_to``, ``start_date`` and ``end_date`` added.
    Rolling back is cancelling the campaign (``VerizonThingSpaceHook.cancel_campaign``) before its
    devices upgrade. Wait for the upgrades with
    :class:`~airflow_provider_iotfleet.sensors.verizon.VerizonThingSpaceCampaignSensor`. The campaign
    work is ``VerizonThingSpaceHook.ensure_campaign``, which a ``@task`` can call itself; this
    operator adds the task's own: its default dates and name, cancelling on kill, the outcome.

    A dry run (``dry_run=True``) reads the campaign of that name, else the firmware list, then the
    devices; it schedules, adds and cancels nothing. The outcome's campaign fields are those it
    would use (plus ``time_windows``, ``campaign_reused``); devices that would upgrade are
    ``scheduled`` with ``plan`` ``{"firmware": {"from": <current>, "to": <firmware_to>}}``, those
    already in a reused campaign ``unchanged``, the others ``failed`` grouped by why
    (``not_in_account``, ``not_fota_eligible``, ``wrong_make_model``, ``other_firmware``,
    ``campaign_started``; see ``VerizonThingSpaceHook.preview_upgrade``). A real run reads the
    devices the same way first and leaves those same devices out of the campaign, ``failed``
    (``attempted`` false) with the same error groups, so that it schedules exactly the devices its
    plan listed as ``scheduled``; devices already in a reused campaign are ``unchanged`` in both.

    :param imeis: the devices (templated, or an upstream task's output); repeats are sent once. An
        empty list schedules nothing (``campaign_id`` ``None``).
    :param firmware_name: the upgrade's name in the firmware list (templated).
    :param firmware_from: the firmware the devices run now (templated); with ``firmware_to``,
        instead of or as well as ``firmware_name``. A device on other firmware fails its upgrade.
    :param firmware_to: the firmware to upgrade to (templated).
    :param campaign_start_date: the first day devices may upgrade, ``yyyy-mm-dd`` or a date (templated);
        default: the logical date's day (UTC), or today if that day has passed (a late run, a
        backfill): a campaign cannot start in the past.
    :param campaign_end_date: the last such day (templated); default: the day after
        ``campaign_start_date``, so that a run late in the day still gets a whole day. A new campaign
        whose window has already ended is refused (a retry still reuses its own). (Not ``start_date``/``end_date``: those are every operator's
        own, the task's scheduling dates.)
    :param time_windows: hours of the day (UTC) within which devices upgrade (templated), e.g.
        ``[[0, 4], [22, 24]]``; default: any time of day.
    :param campaign_name: the campaign's name (templated); default: derived from the DAG, task, map
        index and run id. A campaign of that name is reused, ended or not: a name of your own must
        differ per run (template it with ``run_id``), or a later run finds an earlier run's campaign.
    :param protocol: ``LWM2M`` (default), ``OMADM`` or ``HTTP``.
    :param account_name: the billing account (templated); default: the connection's.
    :param cancel_on_failure: cancel the campaign this task scheduled if the task then fails for
        another reason. A killed task cancels it in any case.
    :param verizon_thingspace_conn_id: the Airflow connection.
    :param dry_run: read only and return what the upgrade would do (templated; see above).
    :raises IoTFleetValidationError: when the DAG is parsed, if neither ``firmware_name`` nor both of
        ``firmware_from`` and ``firmware_to`` are given.
    """

    hook_class = VerizonThingSpaceHook
    operation = "upgrade_firmware"
    unit = "IMEI"
    operator_extra_links = (ThingSpaceCampaignLink(),)
    console_url_default = DEFAULT_CONSOLE_URL
    template_fields = (
        "imeis",
        "firmware_name",
        "firmware_from",
        "firmware_to",
        "campaign_start_date",
        "campaign_end_date",
        "time_windows",
        "campaign_name",
        "account_name",
        "dry_run",
    )
    template_fields_renderers = {"time_windows": "json"}

    def __init__(
        self,
        *,
        imeis: Any,
        firmware_name: str | None = None,
        firmware_from: str | None = None,
        firmware_to: str | None = None,
        campaign_start_date: Any = None,
        campaign_end_date: Any = None,
        time_windows: Any = None,
        campaign_name: str | None = None,
        protocol: str = "LWM2M",
        account_name: str | None = None,
        cancel_on_failure: bool = False,
        verizon_thingspace_conn_id: str = VerizonThingSpaceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=verizon_thingspace_conn_id, **kwargs)
        # Checked when the DAG is parsed, not when the task runs: an argument left out cannot be
        # filled in by a template (a templated one is checked when rendered).
        if firmware_name is None and (firmware_from is None or firmware_to is None):
            raise IoTFleetValidationError(
                f"{self.task_id}: the upgrade names no firmware",
                ["give firmware_name, or firmware_from and firmware_to"],
            )
        self.imeis = imeis
        self.firmware_name = firmware_name
        self.firmware_from = firmware_from
        self.firmware_to = firmware_to
        self.campaign_start_date = campaign_start_date
        self.campaign_end_date = campaign_end_date
        self.time_windows = time_windows
        self.campaign_name = campaign_name
        self.protocol = protocol
        self.account_name = account_name
        self.cancel_on_failure = cancel_on_failure
        #: (account, campaign id) of a campaign this try scheduled, for on_kill and cancel_on_failure.
        self._scheduled: tuple[str, str] | None = None

    def _validated(self, context: Context) -> tuple[str, list[str], int, CampaignRequest]:
        """The account, the distinct IMEIs in input order, how many repeats were dropped, and the
        campaign asked for.

        :raises IoTFleetValidationError: for a missing account, a bad IMEI or campaign field,
            before any request.
        """
        account = self.hook.resolve_account(self.account_name)
        raw = as_item_list(self.imeis, "imeis")
        imeis, duplicates = _distinct_imeis(validate_imeis(raw)) if raw else ([], 0)
        return account, imeis, duplicates, self._campaign_request(context)

    def lineage_dataset(self, outcome: dict[str, Any]) -> tuple[str, str]:
        """``(account, "accounts/<account>/devices")``: the account the run resolved."""
        return outcome["account_name"], account_devices(outcome["account_name"])

    def plan(self, context: Context) -> FleetOutcome:
        """Read the campaign, firmware and devices, and return what the upgrade would do (see the
        class docstring)."""
        account, imeis, duplicates, request = self._validated(context)
        if not imeis:
            self.nothing_to_do("imeis")
            return self._outcome(account, request, [], None)
        self.start(
            "planning a firmware upgrade of",
            len(imeis),
            detail=f"campaign {request.name!r}",
            duplicates=duplicates,
        )
        preview = self.hook.preview_upgrade(
            imeis, request, protocol=self.protocol, account_name=account, validated=True
        )
        outcome = self.new_outcome(len(imeis), order=imeis)
        preview.record(outcome)
        return outcome.build(account_name=account, campaign_name=request.name, **preview.details())

    def operate(self, context: Context) -> FleetOutcome:
        account, imeis, duplicates, request = self._validated(context)
        if not imeis:
            self.nothing_to_do("imeis")
            return self._outcome(account, request, [], None)
        self.start(
            "scheduling a firmware upgrade of",
            len(imeis),
            detail=f"campaign {request.name!r}",
            duplicates=duplicates,
        )
        try:
            ensured = self.hook.ensure_campaign(
                imeis,
                request,
                protocol=self.protocol,
                account_name=account,
                # Known before the devices past the first 1000 are added, so that on_kill and
                # cancel_on_failure can cancel a campaign the task leaves half-filled.
                on_scheduled=lambda campaign: self._remember(account, campaign["campaign_id"]),
                validated=True,
            )
        except BaseException:
            if self.cancel_on_failure:
                self._cancel("the task failed after scheduling it")
            raise
        return self._outcome(account, request, imeis, ensured)

    def _campaign_request(self, context: Context) -> CampaignRequest:
        """The campaign the task asks for, its dates defaulting to the run's day and the day after.

        The dates are checked for their format and order only: whether they have passed matters
        only when scheduling (a retried task reusing its campaign may run after it started, or ended).
        """
        start = self.campaign_start_date
        if start is None:
            start = _run_day(context, self.hook.clock.now())
        end = self.campaign_end_date
        if end is None:
            end = _day_after(start)
        return CampaignRequest.checked(
            name=self.campaign_name or default_campaign_name(context),
            firmware_name=self.firmware_name,
            firmware_from=self.firmware_from,
            firmware_to=self.firmware_to,
            start_date=start,
            end_date=end,
            time_windows=self.time_windows,
        )

    def _outcome(
        self, account: str, request: CampaignRequest, imeis: list[str], ensured: EnsuredCampaign | None
    ) -> FleetOutcome:
        """The outcome of the devices ``ensured`` says where they stand, with the campaign's fields:
        the campaign's own once it is scheduled (or reused), else those the task asked for."""
        outcome = self.new_outcome(len(imeis))
        details: dict[str, Any] = {
            "account_name": account,
            "campaign_id": None,
            "campaign_name": request.name,
            "campaign_status": None,
            "firmware_name": request.firmware_name,
            "firmware_from": request.firmware_from,
            "firmware_to": request.firmware_to,
            "start_date": request.start_date,
            "end_date": request.end_date,
        }
        if ensured is None:
            return outcome.build(**details)
        error = ensured.not_added
        ensured.ineligible.record(outcome)  # left out of the campaign: their upgrade would fail
        if error is None:
            if ensured.too_late:
                outcome.refuse(ensured.too_late, "campaign_started", ensured.started_reason, attempted=False)
            campaign = ensured.campaign
            if campaign is not None:  # None: no device could upgrade, none was scheduled
                details.update(
                    campaign_id=campaign["campaign_id"],
                    campaign_name=campaign["campaign_name"] or request.name,
                    campaign_status=campaign["status"],
                    firmware_name=campaign["firmware_name"] or request.firmware_name,
                    firmware_from=campaign["firmware_from"] or request.firmware_from,
                    firmware_to=campaign["firmware_to"] or request.firmware_to,
                    start_date=campaign["start_date"] or request.start_date,
                    end_date=campaign["end_date"] or request.end_date,
                )
        else:
            # Devices left out fail with the add's error, or ThingSpace's own reason for each it
            # refused; the others fail too when the campaign was cancelled (it never runs with part
            # of its devices), or stay scheduled in it when cancelling failed.
            reasons = ensured.left_out
            not_added, not_sent = set(error.devices), set(error.not_sent)
            never_sent = IoTFleetNotAttemptedError.after(error)
            for imei in imeis:
                if imei in error.refused:
                    outcome.refuse([imei], None, reasons[imei])
                elif imei in not_added:
                    outcome.fail([imei], never_sent if imei in not_sent else error)
            if ensured.cancelled:
                rest = [imei for imei in imeis if imei not in not_added | ensured.ineligible.devices]
                outcome.refuse(rest, "campaign_cancelled", ensured.cancelled_reason)
            details.update(campaign_id=ensured.campaign_id, campaign_status=error.campaign_status)
        already = set(ensured.already)
        outcome.add_many("scheduled", [imei for imei in ensured.scheduled if imei not in already])
        outcome.add_many("unchanged", [imei for imei in ensured.scheduled if imei in already])
        return outcome.build(**details)

    def console_link_fields(self, outcome: FleetOutcome) -> dict[str, str] | None:
        """The campaign for the 'ThingSpace campaign' link, when one was scheduled or reused."""
        campaign_id = outcome.details.get("campaign_id")
        if not campaign_id:
            return None
        return {"campaign_id": str(campaign_id), "account_name": str(outcome.details["account_name"])}

    def _remember(self, account: str, campaign_id: str) -> None:
        self._scheduled = (account, campaign_id)

    def _cancel(self, why: str) -> None:
        if self._scheduled is None:
            return
        account, campaign_id = self._scheduled
        try:
            with self.hook_class(self.conn_id) as hook:
                campaign = hook.cancel_campaign(campaign_id, account_name=account)
            self.log.warning(
                "%s: %s; campaign %s is now %s", self.vendor, why, campaign_id, campaign["status"]
            )
        except IoTFleetError as error:
            self.log.error(
                "%s: %s, but cancelling campaign %s failed: %s", self.vendor, why, campaign_id, error
            )

    def on_kill(self) -> None:
        """Cancel the campaign this try scheduled: a killed task should not leave devices upgrading."""
        self._cancel("the task was killed")


def _distinct_imeis(imeis: list[str]) -> tuple[list[str], int]:
    """The IMEIs (strings, as validation returns them) with repeats dropped, first kept, and how
    many went: :func:`~airflow_provider_iotfleet.utils.distinct` without a key call per IMEI."""
    unique = list(dict.fromkeys(imeis))
    return unique, len(imeis) - len(unique)


def _run_day(context: Context, now: datetime) -> date:
    """The logical date's day (UTC), or ``now``'s when that day has passed or the run has none (a
    manual run in Airflow 3)."""
    when = context.get("logical_date") or context.get("data_interval_start") or now
    return max(when.astimezone(UTC).date(), now.astimezone(UTC).date())


def _day_after(start: Any) -> Any:
    """The day after a campaign start given as a date, a datetime or ``yyyy-mm-dd`` (anything else
    is left for validation to name)."""
    if isinstance(start, datetime):
        return start.date() + timedelta(days=1)
    if isinstance(start, date):
        return start + timedelta(days=1)
    if isinstance(start, str):
        with suppress(ValueError):
            return date.fromisoformat(start.strip()[:10]) + timedelta(days=1)
    return start


#: ThingSpace documents no limit on campaign names; ours stay short enough to read in its portal.
MAX_DEFAULT_NAME = 100


def default_campaign_name(context: Context) -> str:
    """``airflow <dag>.<task>[<map index>] <run id>``: the same for every try of one task instance,
    different for every other; long names are cut and keep a hash of the whole."""
    ti = context["ti"]
    index = getattr(ti, "map_index", -1)
    name = f"airflow {ti.dag_id}.{ti.task_id}{f'[{index}]' if index is not None and index >= 0 else ''} {ti.run_id}"
    if len(name) <= MAX_DEFAULT_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[: MAX_DEFAULT_NAME - 13]}~{digest}"
