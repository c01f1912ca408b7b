"""What a Palo Alto IoT Security ``devicelist`` entry may hold, checked before any request."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_iotfleet.utils import did_you_mean
from airflow_provider_iotfleet.validation import (
    CONTROL_CHARACTER,
    DOTTED_QUAD,
    Problems,
    as_nonempty_list,
    control_character_problem,
    iccid_problem,
    imei_problem,
    ip_problem,
    luhn_valid,
)

#: The fields of a ``devicelist`` entry the bulk update documents.
PALOALTO_DEVICE_FIELDS = (
    "ipAddress",
    "ipv6Address",
    "imei",
    "iccid",
    "imsi",
    "apn",
    "msisdn",
    "SessionEvtType",
)
#: No field of a device record is anywhere near this long; longer is a mistake, not a device.
PALOALTO_FIELD_MAX_LENGTH = 255
#: The fields that identify a device, in the order an entry is reported under the first it has.
PALOALTO_IDENTIFIERS = ("ipAddress", "ipv6Address", "imei", "iccid", "imsi", "msisdn")
_IDENTIFIER_CHECKS: tuple[tuple[str, Callable[[Any], str | None]], ...] = (
    ("imei", imei_problem),
    ("iccid", iccid_problem),
    ("ipAddress", lambda value: ip_problem(value, 4)),
    ("ipv6Address", lambda value: ip_problem(value, 6)),
)
#: Shortest and longest, in digits (an MSISDN may also carry a leading ``+``).
_DIGIT_FIELD_LENGTHS = (("imsi", (6, 15)), ("msisdn", (5, 15)))


def validate_cellular_devices(devices: Any, name: str = "devices") -> list[dict[str, str]]:
    """Return Palo Alto ``devicelist`` entries with values as strings, empty values dropped.

    Each entry is a mapping of the documented fields (:data:`PALOALTO_DEVICE_FIELDS`) with at least
    one identifier (:data:`PALOALTO_IDENTIFIERS`).

    :param name: the argument, as the problems name it (``devices[2].imei ...``).
    :raises IoTFleetValidationError: when ``devices`` is not a non-empty list, or listing every
        problem of every entry: not a mapping, an unknown field, a value that is not a string or a
        number, too long or with control characters, no identifier, or an identifier that is not one.
    """
    items = as_nonempty_list(devices, name)
    problems = Problems()
    cleaned: list[dict[str, str]] = []
    for index, device in enumerate(items):
        if type(device) is dict and (accepted := _accepted_entry(device)) is not None:
            cleaned.append(accepted)
            continue
        where = f"{name}[{index}]"  # the full check, which names every problem of the entry
        if not isinstance(device, Mapping):
            problems.add(f"{where}: must be a mapping, got {type(device).__name__}")
            continue
        entry: dict[str, str] = {}
        for key, value in device.items():
            if value is None or value == "":
                continue
            if not isinstance(key, str) or key not in PALOALTO_DEVICE_FIELDS:
                problems.add(f"{where}: unknown field {key!r}" + did_you_mean(key, PALOALTO_DEVICE_FIELDS))
            elif isinstance(value, bool) or not isinstance(value, str | int):
                problems.add(f"{where}.{key}: must be a string, got {type(value).__name__}")
            elif problem := control_character_problem(str(value)):
                problems.add(f"{where}.{key}: {problem}")
            elif len(str(value)) > PALOALTO_FIELD_MAX_LENGTH:
                problems.add(
                    f"{where}.{key}: {len(str(value))} characters; at most {PALOALTO_FIELD_MAX_LENGTH}"
                )
            else:
                entry[key] = str(value).strip()
        if not any(key in entry for key in PALOALTO_IDENTIFIERS):
            problems.add(f"{where}: needs at least one of {', '.join(PALOALTO_IDENTIFIERS)}")
        for key, problem_of in _IDENTIFIER_CHECKS:
            if key in entry and (problem := problem_of(entry[key])):
                problems.add(f"{where}.{key} {entry[key]!r} {problem}")
        for key, (shortest, longest) in _DIGIT_FIELD_LENGTHS:
            if key in entry and not _digits_between(entry[key].lstrip("+"), shortest, longest):
                problems.add(f"{where}.{key} {entry[key]!r} is not {shortest}-{longest} digits")
        cleaned.append(entry)
    problems.raise_for(len(items), "device")
    return cleaned


_FIELDS = frozenset(PALOALTO_DEVICE_FIELDS)
_IMSI_DIGITS, _MSISDN_DIGITS = (dict(_DIGIT_FIELD_LENGTHS)[key] for key in ("imsi", "msisdn"))


def _accepted_entry(device: dict[Any, Any]) -> dict[str, str] | None:
    """Return the cleaned entry when ``device`` passes every check of
    :func:`validate_cellular_devices`, else ``None`` (the full check then names its problems).

    The usual entry (strings and ints, plain dotted-quad IPv4) takes a few microseconds here:
    one control-character search over all its values, the identifiers checked without building
    messages. It accepts only what the full check accepts, and cleans it the same way.
    """
    given: dict[str, str] = {}
    for key, value in device.items():
        kind = type(value)
        if kind is str:
            if not value:
                continue
        elif kind is int:
            value = str(value)
        elif value is None:
            continue
        else:
            return None
        if key not in _FIELDS or len(value) > PALOALTO_FIELD_MAX_LENGTH:
            return None
        given[key] = value
    if CONTROL_CHARACTER.search("".join(given.values())) is not None:
        return None
    entry = {key: value.strip() for key, value in given.items()}
    imei = entry.get("imei")
    if imei is not None and not (len(imei) == 15 and imei.isdigit() and imei.isascii() and luhn_valid(imei)):
        return None
    iccid = entry.get("iccid")
    if iccid is not None and not (
        19 <= len(iccid) <= 20 and iccid.isdigit() and iccid.isascii() and luhn_valid(iccid)
    ):
        return None
    ipv4 = entry.get("ipAddress")
    if ipv4 is not None and DOTTED_QUAD.fullmatch(ipv4) is None:
        return None
    if "ipv6Address" in entry and ip_problem(entry["ipv6Address"], 6) is not None:
        return None
    imsi = entry.get("imsi")
    if imsi is not None and not _digits_between(imsi.lstrip("+"), *_IMSI_DIGITS):
        return None
    msisdn = entry.get("msisdn")
    if msisdn is not None and not _digits_between(msisdn.lstrip("+"), *_MSISDN_DIGITS):
        return None
    if imei is None and iccid is None and ipv4 is None and not entry.keys() & _IDENTIFIERS:
        return None
    return entry


_IDENTIFIERS = frozenset(PALOALTO_IDENTIFIERS)


def _digits_between(text: str, shortest: int, longest: int) -> bool:
    return text.isdigit() and text.isascii() and shortest <= len(text) <= longest
