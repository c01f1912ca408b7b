"""Cisco IoT Control Center: edit device details (SIM status, plans, custom fields, IPs) per ICCID."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_iotfleet.exceptions import IoTFleetError, IoTFleetValidationError
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook, CiscoEditPlan, CiscoEditResult
from airflow_provider_iotfleet.hooks.cisco.rules import cisco_change_problems, validate_cisco_edits
from airflow_provider_iotfleet.http import Outcome
from airflow_provider_iotfleet.operators.base import IoTFleetWriteOperator
from airflow_provider_iotfleet.operators.lineage import vendor_namespace
from airflow_provider_iotfleet.operators.links import ControlCenterDeviceLink
from airflow_provider_iotfleet.outcome import FleetOutcome, OutcomeBuilder, Status
from airflow_provider_iotfleet.utils import distinct
from airflow_provider_iotfleet.validation import Problems, as_item_list, as_mapping, validate_iccids

if TYPE_CHECKING:
    from airflow.sdk import Context


class CiscoControlCenterEditDevicesOperator(IoTFleetWriteOperator[CiscoControlCenterHook]):
    """Edit Control Center devices, one ``PUT /devices/{iccid}`` each, with the connection's
    concurrency and rate limit.

    Give either ``iccids`` and ``changes`` (the same change for every device) or ``edits`` (each
    device its own change). Every edit is validated before the first request, and an ICCID given
    twice is sent once (twice with different changes is an error).

    Returns a :class:`~airflow_provider_iotfleet.outcome.FleetOutcome` (``operation``
    ``"edit_devices"``, device ids are ICCIDs) with ``effective_date`` added: ``succeeded`` edits
    applied now (HTTP 200), ``scheduled`` ones accepted for ``effective_date`` (HTTP 202),
    ``unchanged`` devices already as asked (found so by a read, or an activation Control Center
    answered "already activated", 10030000), ``unknown`` edits whose answer was lost and that a read
    could not confirm.

    Safe under Airflow's retries: a try after the first reads each device before writing (as
    ``skip_unchanged`` does), so what an earlier try changed is ``unchanged`` and not sent again.
    Control Center shows no pending scheduled change, so scheduled edits are also recorded in the
    task's own state (Airflow 3.3+), each as soon as Control Center accepted it, and a retry does not
    schedule them twice, even after a killed try (all but the edits in flight when it was killed,
    whose answer nothing could record); on Airflow 3.2 a retry schedules again what an earlier try
    scheduled (give such tasks ``retries=0`` there).

    Reading first (``skip_unchanged=True``, the default) costs one ``GET`` per device and buys three
    things: a device already as asked is ``unchanged`` and not sent; the outcome carries ``before``,
    each changed (or scheduled) device's previous values of the fields it changed, which
    :func:`~airflow_provider_iotfleet.rollback.rollback_edits` turns into the ``edits`` of a later
    edit that restores them; and the edit does exactly what a dry run of it just said (the same read,
    compared the same way). ``skip_unchanged=False`` writes blind, one ``PUT`` per device and
    nothing else: no ``before`` (a rollback then refuses, saying so), and every device sent counts as
    changed. ``before`` has the fields a read shows, and with an IP address the ``apn`` and ``pdpId``
    the edit sent (a read does not show them; they name the address's PDP context, so the rollback
    sends them again); a field the device had no value for is ``None``, which the rollback restores
    as ``""`` for a custom field and cannot restore for the others (they are left out, with a warning).
    A retry's outcome has the ``before`` of what that try changed, and devices a killed try already
    scheduled (see below) have none.

    A dry run (``dry_run=True``) reads each device once, as ``skip_unchanged`` does, and changes
    nothing: devices that would change are ``succeeded`` (``scheduled`` with an ``effective_date``),
    with ``{field: {"from": current, "to": wanted}}`` in the outcome's ``plan`` for each field that
    would be sent (``from`` is ``None`` for ``apn`` and ``pdpId``, which no read shows); devices
    already as asked are ``unchanged``; a device Control Center does not know or will not show is
    ``failed`` with the error the edit would meet. Bad input fails it as it fails an edit.

    :param iccids: ICCIDs to change (templated; a list, an upstream task's output, or a template
        rendering a list).
    :param changes: Control Center fields and values for every ICCID, e.g. ``{"status": "ACTIVATED"}``
        (templated).
    :param edits: ``[{"iccid": ..., <field>: <value>, ...}]`` instead of ``iccids`` + ``changes``
        (templated).
    :param effective_date: when the changes take effect: an aware datetime or ISO 8601 string with an
        offset, at most 180 days ahead (templated; e.g. ``"{{ data_interval_end.add(days=1) }}"``).
        Omitted means now.
    :param skip_unchanged: read each device first (one more call per device), send only the fields
        that differ and record their previous values in ``before`` (default); ``False`` writes blind.
    :param dry_run: plan only, see above (templated: ``"{{ params.dry_run }}"``).
    :param cisco_control_center_conn_id: the Airflow connection.
    :param fail_on_error: fail the task when any device failed (after trying all of them).
    """

    hook_class = CiscoControlCenterHook
    operator_extra_links = (ControlCenterDeviceLink(),)
    operation = "edit_devices"
    template_fields = ("iccids", "changes", "edits", "effective_date", "dry_run")
    template_fields_renderers = {"changes": "json", "edits": "json"}

    def __init__(
        self,
        *,
        iccids: Any = None,
        changes: Mapping[str, str] | None = None,
        edits: Any = None,
        effective_date: datetime | str | None = None,
        skip_unchanged: bool = True,
        cisco_control_center_conn_id: str = CiscoControlCenterHook.default_conn_name,
        fail_on_error: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=cisco_control_center_conn_id, fail_on_error=fail_on_error, **kwargs)
        if (edits is None) == (iccids is None) or (iccids is None) != (changes is None):
            raise IoTFleetValidationError(
                f"{self.task_id}: give either iccids and changes, or edits",
                ["iccids + changes apply one change to every device; edits give each device its own"],
            )
        self.iccids = iccids
        self.changes = changes
        self.edits = edits
        self.effective_date = effective_date
        self.skip_unchanged = skip_unchanged

    def lineage_dataset(self, outcome: dict[str, Any]) -> tuple[str, str]:
        """``(host, "devices")``: a Control Center host serves one enterprise account."""
        return vendor_namespace(self.hook.client_options["base_url"]).split("://", 1)[1], "devices"

    def operate(self, context: Context) -> FleetOutcome:
        edits, given, duplicates, effective_date = self._validated()
        outcome = self.new_outcome(len(edits))
        if not given:
            self.nothing_to_do("edits" if self.edits is not None else "iccids")
            return outcome.build(effective_date=effective_date)
        retrying = self.retrying(context)
        # Control Center shows no pending change: what earlier tries scheduled is in the journal,
        # each edit written as soon as its 202 is in, so that a killed try leaves all but the edits
        # in flight (two small writes to the task state store per edit, at Control Center's pace).
        journal = self.journal(context, "cisco.scheduled", flush_every=0) if effective_date else None
        scheduled_before = journal.load() if journal is not None else {}
        # Fingerprints only where the journal has an entry, and for what is sent only when there is
        # a journal to record them in: without an effective date, 100,000 edits need none.
        status_of: dict[str, Status] = {
            edit["iccid"]: "scheduled"
            for edit in edits
            if edit["iccid"] in scheduled_before
            and scheduled_before[edit["iccid"]] == _fingerprint(edit, effective_date)
        }
        to_send = [edit for edit in edits if edit["iccid"] not in status_of]
        detail = f"effective {effective_date}" if effective_date else "effective now"
        if retrying:
            detail += f", try {context['ti'].try_number}: reading each device first to skip what is done"
            if status_of:
                detail += f" ({len(status_of)} scheduled by an earlier try, not sent again)"
        elif self.skip_unchanged:
            detail += ", reading each device first to skip what is already as asked"
        progress = self.start("editing", len(edits), detail=detail, duplicates=duplicates)
        if status_of:  # advancing by nothing would log a "0/n devices" line
            progress.advance(len(status_of))
        fingerprints = (
            {edit["iccid"]: _fingerprint(edit, effective_date) for edit in to_send}
            if journal is not None
            else {}
        )

        def on_outcome(result: Outcome[str, CiscoEditResult]) -> None:
            progress.advance(1, failed=0 if result.ok else 1)
            if journal is not None and result.result is not None and result.result.scheduled:
                journal.record(result.item, fingerprints[result.item])

        errors: dict[str, IoTFleetError] = {}
        try:
            results = self.hook.edit_devices(
                to_send,
                effective_date,
                skip_unchanged=self.skip_unchanged or retrying,
                on_outcome=on_outcome,
                validated=True,
            )
        finally:
            if journal is not None:
                journal.flush()
        for result in results:
            if result.error is not None:
                errors[result.item] = result.error
            elif result.result is not None:
                status_of[result.item] = _STATUS[result.result.outcome]
        if self.skip_unchanged or retrying:
            outcome.records_before()
        for edit in edits:
            iccid = edit["iccid"]
            if iccid in errors:
                outcome.fail([iccid], errors[iccid])
            else:
                outcome.add(status_of[iccid], iccid)
        _record_before(outcome, results, status_of)
        return outcome.build(effective_date=effective_date)

    def console_link_fields(self, outcome: FleetOutcome) -> dict[str, str] | None:
        """The first SIM the run changed or scheduled, for the 'Control Center' link."""
        changed = outcome.ids("succeeded", "scheduled")
        return {"iccid": str(changed[0])} if changed else None

    def plan(self, context: Context) -> FleetOutcome:
        """Validate as :meth:`operate` does, read each device once, and return what the edit would
        do (see the class docstring); sends no ``PUT``."""
        edits, given, duplicates, effective_date = self._validated()
        outcome = self.new_outcome(len(edits))
        if not given:
            self.nothing_to_do("edits" if self.edits is not None else "iccids")
            return outcome.build(effective_date=effective_date)
        detail = f"effective {effective_date}" if effective_date else "effective now"
        progress = self.start(
            "planning", len(edits), detail=f"{detail}, reading each device", duplicates=duplicates
        )
        results = self.hook.plan_edits(
            edits, on_outcome=lambda r: progress.advance(1, failed=0 if r.ok else 1), validated=True
        )
        for result in results:
            if result.error is not None:
                outcome.fail([result.item], result.error)
            elif isinstance(result.result, CiscoEditPlan) and not result.result.unchanged:
                outcome.add("scheduled" if effective_date else "succeeded", result.item)
                outcome.plan(result.item, result.result.changes)
            else:
                outcome.add("unchanged", result.item)
        return outcome.build(effective_date=effective_date)

    def _validated(self) -> tuple[list[dict[str, str]], int, int, str | None]:
        """Check every input before anything is sent; return the distinct edits, how many items
        were given, how many repeats were dropped, and the effective date as sent.

        :raises IoTFleetValidationError: naming every problem with the ICCIDs, fields and date.
        """
        problems = Problems()
        try:
            effective_date = self.hook.check_effective_date(self.effective_date)
        except IoTFleetValidationError as error:
            effective_date = None
            problems.items.extend(f"{error.summary}: {problem}" for problem in error.problems)
        if self.edits is not None:
            given = as_item_list(self.edits, "edits")
            try:
                pairs = validate_cisco_edits(given) if given else []
            except IoTFleetValidationError as error:
                pairs = []
                problems.items.extend(error.problems)
            edits, duplicates = _distinct_edits(pairs, problems)
            problems.raise_for(len(given), "edit")
            return edits, len(given), duplicates, effective_date
        changes = as_mapping(self.changes, "changes")
        if "iccid" in changes:
            problems.add("changes.iccid: list the devices in iccids, not inside the changes")
            changes.pop("iccid")
        problems.items.extend(cisco_change_problems(changes, "changes"))
        given = as_item_list(self.iccids, "iccids")
        try:
            checked = validate_iccids(given) if given else []
        except IoTFleetValidationError as error:
            checked = []
            problems.items.extend(error.problems)
        problems.raise_for(len(given), "ICCID")
        unique, duplicates = distinct(checked, key=str)
        return [{"iccid": iccid, **changes} for iccid in unique], len(given), duplicates, effective_date


def _record_before(
    outcome: OutcomeBuilder, results: list[Outcome[str, CiscoEditResult]], status_of: Mapping[str, Status]
) -> None:
    """Record the previous values of each device the edit changed or scheduled, where it read them."""
    for result in results:
        edit = result.result
        if edit is not None and edit.before is not None and status_of.get(result.item) != "unchanged":
            outcome.record_before(result.item, edit.before)


def _distinct_edits(
    pairs: list[tuple[str, dict[str, str]]], problems: Problems
) -> tuple[list[dict[str, str]], int]:
    """Keep one edit per ICCID; the same ICCID with other changes is a problem."""
    first: dict[str, int] = {}
    unique: list[dict[str, str]] = []
    for index, (iccid, changes) in enumerate(pairs):
        if iccid not in first:
            first[iccid] = index
            unique.append({"iccid": iccid, **changes})
        elif pairs[first[iccid]][1] != changes:
            problems.add(f"edits[{first[iccid]}] and edits[{index}] change {iccid} differently")
    return unique, len(pairs) - len(unique)


#: A Cisco edit's own outcome names, as the outcome contract's statuses.
_STATUS: dict[str, Status] = {"updated": "succeeded", "scheduled": "scheduled", "unchanged": "unchanged"}


def _fingerprint(edit: Mapping[str, str], effective_date: str | None) -> str:
    """What identifies one scheduled edit across tries: its fields, values and effective date."""
    text = json.dumps([sorted(edit.items()), effective_date], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
