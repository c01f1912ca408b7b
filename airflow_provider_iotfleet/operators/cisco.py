"""Cisco IoT Control Center: edit device details (SIM status, plans, custom fields, IPs) per ICCID."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.operators.base import Failure, IoTFleetBaseOperator, OperationResult
from airflow_provider_iotfleet.validation import (
    Problems,
    as_item_list,
    as_mapping,
    cisco_change_problems,
    distinct,
    validate_cisco_edits,
    validate_iccids,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


class CiscoControlCenterEditDevicesOperator(IoTFleetBaseOperator[CiscoControlCenterHook]):
    """Edit Control Center devices, one ``PUT /devices/{iccid}`` each, with the connection's
    concurrency and rate limit.

    Give either ``iccids`` and ``changes`` (the same change for every device) or ``edits`` (each
    device its own change). Every edit is validated before the first request, and an ICCID given
    twice is sent once (twice with different changes is an error).

    XCom (``return_value``, and ``outcome`` also when the task fails)::

        {"requested": n, "updated": [iccid], "scheduled": [iccid], "unchanged": [iccid],
         "failed": [{"iccid", "http_status", "error_code", "message", "request_id"}]}

    ``scheduled`` are changes accepted for ``effective_date`` (HTTP 202). ``unchanged`` are devices
    already as asked: found so by ``skip_unchanged``, or an activation Control Center answered with
    "already activated" (10030000).

    :param iccids: ICCIDs to change (templated; a list, an upstream task's output, or a template
        rendering a list).
    :param changes: Control Center fields and values for every ICCID, e.g. ``{"status": "ACTIVATED"}``
        (templated).
    :param edits: ``[{"iccid": ..., <field>: <value>, ...}]`` instead of ``iccids`` + ``changes``
        (templated).
    :param effective_date: when the changes take effect: an aware datetime or ISO 8601 string with an
        offset, at most 180 days ahead (templated; e.g. ``"{{ data_interval_end.add(days=1) }}"``).
        Omitted means now.
    :param skip_unchanged: read each device first (one more call per device) and send only the
        fields that differ, so a re-run maintenance window changes nothing twice. Control Center does
        not show pending scheduled changes: with ``effective_date``, a re-run schedules again what a
        failed run already scheduled (give such tasks ``retries=0``).
    :param cisco_control_center_conn_id: the Airflow connection.
    :param fail_on_error: fail the task when any device failed (after trying all of them).
    """

    hook_class = CiscoControlCenterHook
    template_fields = ("iccids", "changes", "edits", "effective_date")
    template_fields_renderers = {"changes": "json", "edits": "json"}

    def __init__(
        self,
        *,
        iccids: Any = None,
        changes: Mapping[str, str] | None = None,
        edits: Any = None,
        effective_date: datetime | str | None = None,
        skip_unchanged: bool = False,
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

    def operate(self, context: Context) -> OperationResult:
        edits, given, duplicates, effective_date = self._validated()
        if not given:
            self.nothing_to_do("edits" if self.edits is not None else "iccids")
            return _result([], 0)
        detail = f"effective {effective_date}" if effective_date else "effective now"
        if self.skip_unchanged:
            detail += ", reading each device first to skip what is already as asked"
        progress = self.start("editing", len(edits), detail=detail, duplicates=duplicates)
        outcomes = self.hook.edit_devices(
            edits,
            effective_date,
            skip_unchanged=self.skip_unchanged,
            on_outcome=lambda outcome: progress.advance(1, failed=0 if outcome.ok else 1),
        )
        return _result(outcomes, len(edits))

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


def _result(outcomes: list[Any], requested: int) -> OperationResult:
    by_outcome: dict[str, list[str]] = {"updated": [], "scheduled": [], "unchanged": []}
    failed: list[dict[str, Any]] = []
    failures: list[Failure] = []
    for outcome in outcomes:
        if outcome.error is not None:
            failed.append({"iccid": outcome.item, **outcome.error.to_dict()})
            failures.append(Failure.from_error(outcome.item, outcome.error))
        else:
            by_outcome[outcome.result.outcome].append(outcome.item)
    return OperationResult(
        outcome={"requested": requested, **by_outcome, "failed": failed},
        counts={**{name: len(iccids) for name, iccids in by_outcome.items()}, "failed": len(failed)},
        failures=failures,
    )
