"""Checks every vendor shares, run before the first request is sent: device identifiers (IMEI,
ICCID, IP address, ROMA device id), path segments and control characters, the :class:`Problems`
collector, and the coercion of rendered operator inputs (lists, mappings, numbers, batch sizes).
A vendor's payload rules sit beside its hook (the Palo Alto ``devicelist`` in ``hooks/paloalto/rules.py``,
Control Center's edits in ``hooks/cisco/rules.py``, ThingSpace's campaign dates, firmware and
names in ``hooks/verizon/rules.py``).

Each ``validate_*`` function checks every item, then raises one :class:`IoTFleetValidationError`
whose message lists every bad item with its position, so a DAG author fixes a bad input list in one
go rather than one failed run per typo. On success they return the values normalised (identifiers as
digit strings, ROMA ids as ints).
"""

from __future__ import annotations

import ast
import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from itertools import chain
from typing import Any, TypeVar
from urllib.parse import unquote

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.utils import plural

IdentifierT = TypeVar("IdentifierT")

ROMA_DEVICE_ID_MAX = 99_999_999_999_999_999


class Problems:
    """Collects problems, then raises them all at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, problem: str) -> None:
        self.items.append(problem)

    def raise_if_any(self, summary: str) -> None:
        if self.items:
            raise IoTFleetValidationError(summary, self.items)

    def raise_for(self, items: int, noun: str) -> None:
        """Raise if any, summarised as ``"2 problems in 5 devices"``."""
        self.raise_if_any(f"{plural(len(self.items), 'problem')} in {plural(items, noun)}")


#: A control character (CR, LF, NUL, DEL...), which no field value may hold.
CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


def control_character_problem(text: str) -> str | None:
    """Return why ``text`` cannot be sent as a field value (a CR, LF or other control character)."""
    if CONTROL_CHARACTER.search(text) is None:  # the usual case, without a set of every character
        return None
    bad = sorted({repr(char) for char in text if ord(char) < 32 or ord(char) == 127})
    return f"contains control characters ({', '.join(bad)})" if bad else None


#: Characters no identifier placed in a request path holds: each would end the segment, start a
#: query or fragment, or start a percent escape (``%2e%2e`` is ``..`` to a server that decodes
#: before it normalises the path); some servers take a backslash for ``/``.
PATH_SEGMENT_RESERVED = frozenset("/\\?#%")
_DOT_SEGMENTS = (".", "..")


def dot_segment_problem(segment: str) -> str | None:
    """Return why a URL path segment, as sent, would address another path, or ``None``.

    Servers and the proxies before them normalise ``.`` and ``..`` away, some after decoding
    ``%2e`` (``%252e`` when they decode twice) or ``%2F`` (so ``a%2F..%2Fb`` is three segments),
    some after dropping a ``;parameter`` (``..;``). The segment is decoded until it no longer
    changes, then every piece between slashes or backslashes is checked.
    """
    decoded = segment
    while (once := unquote(decoded)) != decoded:  # each round shortens it: it ends
        decoded = once
    for piece in re.split(r"[/\\]", decoded):
        if piece.split(";", 1)[0] in _DOT_SEGMENTS:
            return f"is or holds a dot segment ({piece!r}), which would address another path"
    return None


def path_segment_problem(value: str) -> str | None:
    """Return why ``value`` cannot be sent as one segment of a request path (an account name, a
    campaign id, a project id), or ``None`` if it can.

    It must be non-empty, without control characters, without any of :data:`PATH_SEGMENT_RESERVED`,
    and not ``.`` or ``..`` (see :func:`dot_segment_problem`).
    """
    if not value:
        return "is empty"
    if problem := control_character_problem(value):
        return problem
    reserved = sorted(set(value) & PATH_SEGMENT_RESERVED)
    if reserved:
        return f"holds {', '.join(repr(char) for char in reserved)}, which a path segment cannot"
    return dot_segment_problem(value)


def luhn_check_digit(body: str) -> str:
    """Return the digit that makes ``body + digit`` pass the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:  # doubled: every second digit counting from the check digit's left
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str(-total % 10)


#: A digit, as the byte of its ASCII code, to the digit sum of its double (the Luhn step).
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")
_ASCII_ZERO = ord("0")


def luhn_valid(digits: str) -> bool:
    """Return whether a digit string passes the Luhn check (its last digit is the check digit).

    ASCII digit strings (every identifier a request carries) are summed as bytes: the digits that
    are doubled go through :data:`_LUHN_DOUBLED`, so no digit is converted one by one; any other
    digit string takes :func:`luhn_check_digit`.
    """
    if len(digits) <= 1:
        return False
    if not (digits.isascii() and digits.isdigit()):
        return luhn_check_digit(digits[:-1]) == digits[-1]
    raw = digits.encode()
    total = sum(raw[-1::-2]) + sum(raw[-2::-2].translate(_LUHN_DOUBLED)) - _ASCII_ZERO * len(raw)
    return total % 10 == 0


def _digit_string(value: Any) -> str | None:
    """Return ``value`` as a digit string (ints are accepted), or ``None`` if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        return value.strip()
    return None


def imei_problem(value: Any) -> str | None:
    """Return why ``value`` is not an IMEI (15 digits, Luhn check digit), or ``None`` if it is one."""
    digits = _digit_string(value)
    if digits is None:
        return "is not a string of digits"
    if len(digits) != 15:
        return f"has {len(digits)} digits; an IMEI has 15"
    if not luhn_valid(digits):
        return "fails the IMEI check digit (Luhn)"
    return None


def iccid_problem(value: Any) -> str | None:
    """Return why ``value`` is not an ICCID (19-20 digits, Luhn check digit), or ``None``."""
    digits = _digit_string(value)
    if digits is None:
        return "is not a string of digits"
    if not 19 <= len(digits) <= 20:
        return f"has {len(digits)} digits; an ICCID has 19 or 20"
    if not luhn_valid(digits):
        return "fails the ICCID check digit (Luhn)"
    return None


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: A plain dotted-quad IPv4 address, exactly as :mod:`ipaddress` accepts one (ASCII digits, no
#: leading zeros, each part 0-255): anything else is left to :mod:`ipaddress` to accept or refuse.
DOTTED_QUAD = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


def ip_problem(value: Any, version: int | None = None) -> str | None:
    """Return why ``value`` is not an IP address (of ``version`` 4 or 6 if given), or ``None``."""
    if not isinstance(value, str):
        return "is not a string"
    if version != 6 and DOTTED_QUAD.fullmatch(value.strip()):  # what ipaddress takes as IPv4, cheaper
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return f"is not an IP{'v' + str(version) if version else ''} address"
    if version is not None and address.version != version:
        return f"is an IPv{address.version} address; IPv{version} expected"
    return None


def roma_device_id_problem(value: Any) -> str | None:
    """Return why ``value`` is not a ROMA Connect device id (an integer 1..99999999999999999)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return "is not an integer"
    if isinstance(value, str):
        # int() would also take "1_000", "+7", " 7" and non-ASCII digits ("٣"): none is an id.
        if not (value.isascii() and value.isdigit()):
            return "is not an integer"
        number = int(value)
    else:
        number = value
    if not 1 <= number <= ROMA_DEVICE_ID_MAX:
        return f"is outside 1..{ROMA_DEVICE_ID_MAX}"
    return None


def check_batch_size(size: int, max_size: int, name: str) -> None:
    """Raise if a batch of ``size`` items exceeds what one vendor request may carry."""
    if size > max_size:
        raise IoTFleetValidationError(
            f"{name} has {size} items", [f"at most {max_size} fit in one request; split the list"]
        )


def _validate_identifiers(
    values: Any,
    name: str,
    kind: str,
    problem_of: Callable[[Any], str | None],
    normalise: Callable[[Any], IdentifierT],
) -> list[IdentifierT]:
    """Return every identifier in ``values`` normalised, once ``problem_of`` accepts all of them.

    :param name: the argument, as the problems name it (``imeis[2] '123' has 3 digits; ...``).
    :param kind: the identifiers, plural, for the summary (``"2 of 5 IMEIs are invalid"``).
    :param problem_of: why one value is not such an identifier, or ``None`` when it is one.
    :param normalise: one accepted value in the form requests carry it.
    :raises IoTFleetValidationError: when ``values`` is not a non-empty list (see
        :func:`as_nonempty_list`), or listing every value ``problem_of`` refuses.
    """
    items = as_nonempty_list(values, name)
    problems = Problems()
    for index, value in enumerate(items):
        if problem := problem_of(value):
            problems.add(f"{name}[{index}] {value!r} {problem}")
    bad = len(problems.items)
    problems.raise_if_any(f"{bad} of {len(items)} {kind} {'is' if bad == 1 else 'are'} invalid")
    return [normalise(value) for value in items]


def _accepted_digits(value: int | str) -> str:
    """An IMEI or ICCID that passed its check, as the digit string requests carry."""
    return str(value).strip()


def validate_imeis(values: Any, name: str = "imeis") -> list[str]:
    """Return the IMEIs as digit strings, or raise listing every invalid one."""
    return _validate_identifiers(values, name, "IMEIs", imei_problem, _accepted_digits)


def validate_iccids(values: Any, name: str = "iccids") -> list[str]:
    """Return the ICCIDs as digit strings, or raise listing every invalid one."""
    return _validate_identifiers(values, name, "ICCIDs", iccid_problem, _accepted_digits)


def validate_roma_device_ids(values: Any, name: str = "device_ids") -> list[int]:
    """Return the ROMA Connect device ids as ints, or raise listing every invalid one."""
    return _validate_identifiers(values, name, "ROMA device ids", roma_device_id_problem, int)


# --- input coercion: rendered operator and sensor inputs, validator arguments ------------------


#: How deep a rendered input may nest: a list of devices, each a mapping of fields, is 2 levels;
#: anything much deeper is a mistake, and would exhaust the stack of whatever reads it.
MAX_INPUT_NESTING = 32


def _parse_literal(text: str, name: str) -> Any:
    """Return ``text`` parsed as JSON, else as a Python literal, else ``text`` itself.

    :raises IoTFleetValidationError: naming ``name`` when the literal nests too deeply to parse.
    """
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError):  # TypeError: "{[1]: 2}", an unhashable key
            continue
        except (RecursionError, MemoryError):  # "[[[[...]]]]" thousands deep: json recurses per level
            raise _too_deep(name) from None
    return text


def _too_deep(name: str) -> IoTFleetValidationError:
    return IoTFleetValidationError(
        f"{name} is nested too deeply",
        [f"it nests lists or mappings more than {MAX_INPUT_NESTING} levels deep; pass a flat list of items"],
    )


#: Leaves that hold nothing: their exact types (a subclass still goes through isinstance).
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def _flat_records(value: Any) -> bool:
    """Whether ``value`` is a list of plain dicts of plain leaves (a device list): 2 levels deep,
    told without a Python-level step per item or leaf."""
    return (
        type(value) is list
        and all(type(item) is dict for item in value)
        and _SCALAR_TYPES.issuperset(map(type, chain.from_iterable(map(dict.values, value))))
    )


def _check_nesting(value: Any, name: str) -> None:
    """Raise if ``value`` nests lists, tuples or mappings more than :data:`MAX_INPUT_NESTING` deep.

    Iterative, so that the check itself cannot exhaust the stack the way a later ``repr`` would.
    """
    if _flat_records(value):
        return
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        current, depth = pending.pop()
        children = current.values() if type(current) is dict or isinstance(current, Mapping) else current
        for child in children:
            if type(child) in _SCALAR_TYPES:  # the usual leaf, without an isinstance of an ABC
                continue
            if isinstance(child, list | tuple | Mapping):
                if depth >= MAX_INPUT_NESTING:
                    raise _too_deep(name)
                pending.append((child, depth + 1))


def as_item_list(value: Any, name: str) -> list[Any]:
    """Return a rendered operator input as a list, possibly empty.

    Accepts what a DAG author passes: a list or tuple, an upstream task's output (Airflow resolves
    the XComArg to a list, or a lazy sequence for mapped upstreams), or a string that renders to a
    list literal (JSON or Python, as Jinja renders a list without ``render_template_as_native_obj``).
    An empty list comes back empty: an upstream task that found nothing is not an error, and the
    operator decides what nothing to do means. Validators take their argument with
    :func:`as_nonempty_list` instead.

    :raises IoTFleetValidationError: naming ``name`` for a plain string, a mapping, anything that is
        not a list, or a list nested more than :data:`MAX_INPUT_NESTING` levels deep.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = _parse_literal(text, name)
        if isinstance(value, str):
            raise IoTFleetValidationError(
                f"{name} must be a list",
                [
                    f"got the string {text[:60]!r}; pass a list, an upstream task's output, or a template "
                    "that renders a list literal (or set render_template_as_native_obj=True on the DAG)"
                ],
            )
    if isinstance(value, bytes | Mapping) or not isinstance(value, Iterable):
        raise IoTFleetValidationError(f"{name} must be a list", [f"got {type(value).__name__}"])
    items = list(value)
    _check_nesting(items, name)
    return items


def as_nonempty_list(values: Any, name: str) -> list[Any]:
    """Return a validator's argument as a list of at least one item.

    Unlike :func:`as_item_list`, which coerces a rendered operator input, this takes the value as
    given: a string is refused, not parsed as a list literal, and so is an empty list, since a
    validator checks what is about to be sent and a request for nothing is a mistake.

    :raises IoTFleetValidationError: naming ``name`` for a string, bytes, a mapping, anything not
        iterable, or an empty list.
    """
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise IoTFleetValidationError(f"{name} must be a list", [f"got {type(values).__name__}"])
    items = list(values)
    if not items:
        raise IoTFleetValidationError(f"{name} is empty", ["give at least one item"])
    return items


def as_mapping(value: Any, name: str) -> dict[str, Any]:
    """Return a rendered operator input as a dict: a mapping, or a string that renders to a dict
    literal (JSON or Python, as Jinja renders one without ``render_template_as_native_obj``).

    :raises IoTFleetValidationError: naming ``name`` for anything else, or a mapping nested more
        than :data:`MAX_INPUT_NESTING` levels deep.
    """
    if isinstance(value, str) and value.strip().startswith("{"):
        value = _parse_literal(value.strip(), name)
    if not isinstance(value, Mapping):
        raise IoTFleetValidationError(
            f"{name} must be a mapping",
            [
                f"got {type(value).__name__}; pass a dict, or a template that renders a dict literal "
                "(or set render_template_as_native_obj=True on the DAG)"
            ],
        )
    result = dict(value)
    _check_nesting(result, name)
    return result


def validate_whole_number(value: Any, name: str, lowest: int, highest: int) -> int:
    """Return ``value`` if it is an int (not a bool) in ``lowest..highest``, else raise naming the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise IoTFleetValidationError(
            f"{name} is invalid", [f"{value!r} is not a whole number in {lowest}..{highest}"]
        )
    return value


def validate_share(value: Any, name: str) -> float:
    """Return ``value`` as a float if it is a number with ``0 < value <= 1``, else raise naming the range."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= 1
    ):
        raise IoTFleetValidationError(
            f"{name} is invalid",
            [f"{value!r} is not a share above 0 and at most 1 (e.g. 0.25 for a quarter)"],
        )
    return float(value)


_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})


def as_flag(value: Any, name: str) -> bool:
    """Return ``value`` as a bool: a bool as is, or the text a template renders one to (``"True"``,
    ``"false"``, ``"1"``, ``"no"``, ...; Jinja renders ``{{ params.dry_run }}`` as ``"True"``).

    :raises IoTFleetValidationError: for anything else (``"maybe"``, ``2``), naming what is accepted.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise IoTFleetValidationError(
        f"{name} is invalid", [f"{value!r} is not a flag: give True or False (or a template rendering one)"]
    )


def validate_batch_size(batch_size: Any, maximum: int, vendor: str) -> int:
    """Return ``batch_size`` if it is a whole number in ``1..maximum``, else raise naming the limit."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= maximum:
        raise IoTFleetValidationError(
            "batch_size is invalid", [f"{batch_size!r}: {vendor} takes 1 to {maximum} per request"]
        )
    return batch_size
