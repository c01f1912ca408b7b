"""What Control Center takes in an edit (``PUT /devices/{iccid}``), checked before any request is sent.

Each check names every problem at once, as the shared validators in
:mod:`airflow_provider_iotfleet.validation` do, so a DAG author fixes a list of edits in one go.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.utils import did_you_mean
from airflow_provider_iotfleet.validation import (
    Problems,
    as_nonempty_list,
    control_character_problem,
    iccid_problem,
    ip_problem,
)

CISCO_MAX_SCHEDULE_DAYS = 180
CISCO_CUSTOM_FIELD_MAX_LENGTH = 2000
#: SIM states Control Center accepts in an edit (its "Invalid status." 10000005 answers any other).
CISCO_KNOWN_STATUSES = frozenset(
    {"INVENTORY", "TEST_READY", "ACTIVATION_READY", "ACTIVATED", "DEACTIVATED", "RETIRED", "PURGED"}
)
CISCO_OVERAGE_VALUES = frozenset({"DEFAULT", "TEMPORARY_OVERRIDE", "PERMANENT_OVERRIDE"})
CISCO_CUSTOM_FIELDS = frozenset(
    [f"operatorCustom{n}" for n in range(1, 6)]
    + [f"accountCustom{n}" for n in range(1, 11)]
    + [f"customerCustom{n}" for n in range(1, 6)]
)
CISCO_EDITABLE_FIELDS = CISCO_CUSTOM_FIELDS | {
    "status",
    "ratePlan",
    "communicationPlan",
    "customer",
    "deviceID",
    "modemID",
    "overageLimitOverride",
    "ipv4Address",
    "ipv6Address",
    "apn",
    "pdpId",
}


def validate_effective_date(value: datetime | str, now: datetime) -> datetime:
    """Return a Cisco ``effectiveDate`` as an aware UTC datetime.

    Accepts a timezone-aware ``datetime`` (pendulum's included) or an ISO 8601 string with an offset.
    The date must not be in the past, nor more than 180 days after ``now``.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise IoTFleetValidationError(
                "effective_date is not a date", [f"{value!r} is not ISO 8601 (2026-12-01T00:00:00+00:00)"]
            ) from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise IoTFleetValidationError("effective_date is not a date", [f"got {type(value).__name__}"])
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise IoTFleetValidationError(
            "effective_date has no time zone", [f"{value!r}: give an offset, e.g. +00:00"]
        )
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # year 9999 with a negative offset, and the like
        raise IoTFleetValidationError(
            "effective_date is too far ahead", [f"{value!r} is not a date Control Center takes"]
        ) from None
    latest = now + timedelta(days=CISCO_MAX_SCHEDULE_DAYS)
    if parsed < now:
        raise IoTFleetValidationError(
            "effective_date is in the past", [f"{parsed.isoformat()} is before now ({now.isoformat()})"]
        )
    if parsed > latest:
        raise IoTFleetValidationError(
            "effective_date is too far ahead",
            [f"{parsed.isoformat()} is more than {CISCO_MAX_SCHEDULE_DAYS} days after now"],
        )
    return parsed


def cisco_change_problems(changes: Any, prefix: str = "changes") -> list[str]:
    """Return every problem with one Cisco ``Edit Device Details`` body (empty list when valid)."""
    if not isinstance(changes, Mapping):
        return [f"{prefix} must be a mapping of field to value, got {type(changes).__name__}"]
    if not changes:
        return [f"{prefix} is empty; give at least one field to change"]
    problems: list[str] = []
    for field, value in changes.items():
        where = f"{prefix}.{field}"
        if not isinstance(field, str):
            problems.append(f"{prefix}: field names are strings, got {field!r}")
            continue
        if field == "effectiveDate":
            problems.append(f"{where}: pass the date as effective_date, not inside the changes")
            continue
        if field not in CISCO_EDITABLE_FIELDS:
            problems.append(
                f"{where}: Control Center has no editable field {field!r}"
                + did_you_mean(field, CISCO_EDITABLE_FIELDS)
            )
            continue
        if not isinstance(value, str):
            problems.append(f"{where}: must be a string, got {type(value).__name__}")
            continue
        if len(value) > CISCO_CUSTOM_FIELD_MAX_LENGTH:
            problems.append(f"{where}: {len(value)} characters; at most {CISCO_CUSTOM_FIELD_MAX_LENGTH}")
        elif problem := control_character_problem(value):
            problems.append(f"{where}: {problem}")
        elif field == "status" and value not in CISCO_KNOWN_STATUSES:
            problems.append(
                f"{where}: {value!r} is not a SIM status; use one of {', '.join(sorted(CISCO_KNOWN_STATUSES))}"
            )
        elif field == "overageLimitOverride" and value not in CISCO_OVERAGE_VALUES:
            problems.append(f"{where}: {value!r} is not one of {', '.join(sorted(CISCO_OVERAGE_VALUES))}")
        elif field in ("ipv4Address", "ipv6Address") and (
            problem := ip_problem(value, 4 if field == "ipv4Address" else 6)
        ):
            problems.append(f"{where}: {value!r} {problem}")
    if ("ipv4Address" in changes or "ipv6Address" in changes) and not (
        "apn" in changes and "pdpId" in changes
    ):
        problems.append(f"{prefix}: an IP address change needs apn and pdpId as well")
    return problems


def validate_cisco_changes(changes: Any) -> dict[str, str]:
    """Return one Cisco edit body, or raise listing every problem with it."""
    problems = Problems()
    for problem in cisco_change_problems(changes):
        problems.add(problem)
    problems.raise_if_any("The device changes are invalid")
    return dict(changes)


def validate_cisco_edits(edits: Any, name: str = "edits") -> list[tuple[str, dict[str, str]]]:
    """Return ``(iccid, changes)`` pairs from ``[{"iccid": ..., <fields>}, ...]``, or raise listing every problem."""
    items = as_nonempty_list(edits, name)
    problems = Problems()
    pairs: list[tuple[str, dict[str, str]]] = []
    for index, edit in enumerate(items):
        where = f"{name}[{index}]"
        if not isinstance(edit, Mapping):
            problems.add(f"{where}: must be a mapping with 'iccid' and the fields to change")
            continue
        changes = {key: value for key, value in edit.items() if key != "iccid"}
        iccid = edit.get("iccid")
        wrong_iccid = iccid_problem(iccid)
        if wrong_iccid:
            problems.add(f"{where}.iccid {iccid!r} {wrong_iccid}")
        for problem in cisco_change_problems(changes, prefix=where):
            problems.add(problem)
        if not wrong_iccid:  # an ICCID passed as an int is sent as its digits
            pairs.append((str(iccid).strip(), changes))
    problems.raise_for(len(items), "edit")
    return pairs
