"""What ThingSpace takes in a FOTA request, checked before the first one is sent: request sizes,
protocols, and a firmware campaign's firmware, name, id, dates and time windows (together, a
:class:`CampaignRequest`).

Like :mod:`airflow_provider_iotfleet.validation`, each check names every problem at once in one
:class:`IoTFleetValidationError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.validation import Problems, control_character_problem, path_segment_problem

#: IMEIs per firmware sync request, the documented cap.
MAX_SYNC_IMEIS = 100
#: IMEIs per POST body of the subset listing: the vendor documents no cap, so one page's worth.
MAX_LIST_IMEIS = 1000
#: IMEIs per campaign request (the schedule, then each add or remove): ThingSpace documents no cap,
#: so one report page's worth.
MAX_CAMPAIGN_IMEIS = 1000
PROTOCOLS = ("LWM2M", "OMADM", "HTTP")


def validate_protocol(protocol: Any) -> str:
    """Return a FOTA protocol in upper case.

    :raises IoTFleetValidationError: when it is not one of :data:`PROTOCOLS` (in any case).
    """
    if not isinstance(protocol, str) or protocol.upper() not in PROTOCOLS:
        raise IoTFleetValidationError(
            "protocol is invalid", [f"{protocol!r} is not one of {', '.join(PROTOCOLS)}"]
        )
    return protocol.upper()


#: Campaign time windows are whole hours of the day, 0 to 24.
CAMPAIGN_HOURS = (0, 24)


def _campaign_date(value: Any, name: str, problems: Problems) -> date | None:
    """A campaign date from a ``date``, a ``datetime`` (its day) or a ``yyyy-mm-dd`` string."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            if len(value.strip()) == 10:
                return date.fromisoformat(value.strip())
        except ValueError:
            pass
    problems.add(f"{name} {value!r} is not a yyyy-mm-dd date")
    return None


def _time_window(value: Any, where: str, problems: Problems) -> dict[str, int] | None:
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"startTime", "endTime"})
        if unknown:
            problems.add(f"{where} has unknown keys {unknown}: give startTime and endTime")
            return None
        start, end = value.get("startTime"), value.get("endTime")
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes) and len(value) == 2:
        start, end = value
    else:
        problems.add(f"{where} {value!r} is not a (start hour, end hour) pair or a startTime/endTime mapping")
        return None
    low, high = CAMPAIGN_HOURS
    hours: list[int] = []
    for label, hour in (("start", start), ("end", end)):
        if isinstance(hour, bool) or not isinstance(hour, int) or not low <= hour <= high:
            problems.add(f"{where} {label} hour {hour!r} is not a whole hour in {low}..{high}")
        else:
            hours.append(hour)
    if len(hours) < 2:
        return None
    start, end = hours
    if start >= end:
        problems.add(f"{where} starts at {start} h and ends at {end} h: the start must come first")
        return None
    return {"startTime": start, "endTime": end}


def validate_campaign_schedule(
    start_date: Any, end_date: Any, time_windows: Any, today: date
) -> tuple[str, str, list[dict[str, int]]]:
    """Return a campaign's dates as ``yyyy-mm-dd`` and its time windows in ThingSpace's form.

    :param start_date: the first day devices may upgrade (a date, datetime or ``yyyy-mm-dd``).
    :param end_date: the last such day, not before ``start_date``.
    :param time_windows: ``None``, or hours of the day (UTC) within which devices upgrade:
        ``[(22, 24), (0, 4)]`` or ``[{"startTime": 22, "endTime": 24}]``, hours 0 to 24, start first.
    :param today: the current date (UTC): ThingSpace refuses a campaign that starts in the past.
    :raises IoTFleetValidationError: naming every problem.
    """
    problems = Problems()
    start = _campaign_date(start_date, "start_date", problems)
    end = _campaign_date(end_date, "end_date", problems)
    if start is not None and end is not None and end < start:
        problems.add(f"end_date {end} is before start_date {start}")
    if start is not None and start < today:
        problems.add(f"start_date {start} is in the past (today is {today}, UTC)")
    windows: list[dict[str, int]] = []
    if time_windows is not None:
        if (
            isinstance(time_windows, Mapping)
            or not isinstance(time_windows, Sequence)
            or isinstance(time_windows, str | bytes)
        ):
            problems.add(f"time_windows {time_windows!r} is not a list of windows")
        else:
            for index, window in enumerate(time_windows):
                checked = _time_window(window, f"time_windows[{index}]", problems)
                if checked is not None:
                    windows.append(checked)
    problems.raise_if_any("the campaign schedule is invalid")
    if start is None or end is None:  # a date that could not be read is a problem raised above
        raise IoTFleetValidationError(
            "the campaign schedule is invalid", ["start_date and end_date are required"]
        )
    return start.isoformat(), end.isoformat(), windows


def _name_problem(value: Any, name: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"{name} {value!r} is not a non-empty string"
    if problem := control_character_problem(value):
        return f"{name} {problem}"
    return None


def validate_firmware_choice(
    firmware_name: Any, firmware_from: Any, firmware_to: Any
) -> tuple[str | None, str | None, str | None]:
    """Return the firmware a campaign names: its ``firmware_name``, or a ``firmware_from`` and
    ``firmware_to`` pair (or all three), stripped.

    :raises IoTFleetValidationError: when neither is given, only half of the pair, or from equals to.
    """
    problems = Problems()
    if firmware_name is None and (firmware_from is None or firmware_to is None):
        problems.add("give firmware_name, or firmware_from and firmware_to")
    for value, label in (
        (firmware_name, "firmware_name"),
        (firmware_from, "firmware_from"),
        (firmware_to, "firmware_to"),
    ):
        if value is not None and (problem := _name_problem(value, label)):
            problems.add(problem)
    if (
        isinstance(firmware_from, str)
        and isinstance(firmware_to, str)
        and firmware_from.strip()
        and firmware_from.strip() == firmware_to.strip()
    ):
        problems.add(f"firmware_from and firmware_to are both {firmware_from.strip()!r}: nothing to upgrade")
    problems.raise_if_any("the campaign's firmware is invalid")

    def stripped(value: Any) -> str | None:
        return value.strip() if isinstance(value, str) else None

    return stripped(firmware_name), stripped(firmware_from), stripped(firmware_to)


def validate_campaign_name(value: Any) -> str:
    """Return a campaign name, stripped, or raise if it is empty or holds control characters."""
    if problem := _name_problem(value, "campaign_name"):
        raise IoTFleetValidationError("campaign_name is invalid", [problem])
    return str(value).strip()


def validate_campaign_id(value: Any) -> str:
    """Return a campaign id (ThingSpace's ``id``), stripped.

    :raises IoTFleetValidationError: naming ``campaign_id`` when it is empty, not a string or
        number, or not one plain path segment (see :func:`path_segment_problem`).
    """
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if problem := path_segment_problem(text):
        raise IoTFleetValidationError(
            "campaign_id is invalid", [f"{value!r} is not a ThingSpace campaign id: it {problem}"]
        )
    return text


@dataclass(frozen=True)
class CampaignRequest:
    """A firmware upgrade campaign as asked for, every field checked: what
    :meth:`~airflow_provider_iotfleet.hooks.verizon.VerizonThingSpaceHook.ensure_campaign` takes.
    Build it with :meth:`checked`.

    :ivar name: the campaign's name, by which a retried task finds the campaign it scheduled.
    :ivar firmware_name: the upgrade's name in the account's firmware list, or ``None``.
    :ivar firmware_from: the firmware the devices run now, or ``None``.
    :ivar firmware_to: the firmware to upgrade to, or ``None`` (the name, or from and to, is given).
    :ivar start_date: the first day devices may upgrade, ``yyyy-mm-dd``.
    :ivar end_date: the last such day, ``yyyy-mm-dd``.
    :ivar time_windows: hours of the day (UTC) in ThingSpace's form,
        ``[{"startTime": 0, "endTime": 4}]``; empty for any time of day.
    """

    name: str
    firmware_name: str | None
    firmware_from: str | None
    firmware_to: str | None
    start_date: str
    end_date: str
    time_windows: list[dict[str, int]]

    @classmethod
    def checked(
        cls,
        *,
        name: Any,
        firmware_name: Any = None,
        firmware_from: Any = None,
        firmware_to: Any = None,
        start_date: Any,
        end_date: Any,
        time_windows: Any = None,
    ) -> CampaignRequest:
        """Return the request with every field checked and normalised, as
        :func:`validate_firmware_choice`, :func:`validate_campaign_schedule` and
        :func:`validate_campaign_name` do.

        Whether the dates have passed is left to the hook: a retried task may find its campaign
        started, or ended, and reuse it all the same.

        :raises IoTFleetValidationError: naming the firmware's problems, else the schedule's, else
            the name's.
        """
        firmware = validate_firmware_choice(firmware_name, firmware_from, firmware_to)
        start, end, windows = validate_campaign_schedule(start_date, end_date, time_windows, date.min)
        return cls(validate_campaign_name(name), *firmware, start, end, windows)
