"""Rolling back a Cisco edit from its outcome's ``before`` values: the edits that restore them,
and which fields cannot be restored (:func:`rollback_edits` is the one-liner for a DAG:
``CiscoControlCenterEditDevicesOperator(edits=rollback_edits(pull_outcome(ti, "apply")))``).

Control Center documents a blank value for its custom fields ("either a blank value or one of the
pre-defined values"), so a custom field that was empty is restored as ``""``; it documents no way
to clear ``customer``, ``deviceID``, ``modemID``, a rate or communication plan, a status or a
fixed IP address through the edit, so such a field that was empty is left out and reported. An IP
address is sent only with the ``apn`` and ``pdpId`` that name its PDP context (the edit's ``before``
carries those it was sent with).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_iotfleet.hooks.cisco.rules import CISCO_CUSTOM_FIELDS
from airflow_provider_iotfleet.outcome import FleetOutcome

__all__ = ["Rollback", "rollback_edits", "rollback_plan"]

log = logging.getLogger(__name__)

#: Cisco edit fields that only go with an IP address change, naming its PDP context.
_IP_FIELDS, _IP_COMPANIONS = ("ipv4Address", "ipv6Address"), ("apn", "pdpId")


@dataclass(frozen=True)
class Rollback:
    """What :func:`rollback_plan` found a Cisco edit's rollback to be.

    :ivar edits: the edits that restore what can be restored (what :func:`rollback_edits` returns).
    :ivar not_restorable: ``{iccid: [field, ...]}``: fields a device had no value for before that
        this API cannot clear, or IP addresses whose ``apn``/``pdpId`` the outcome does not know.
    """

    edits: list[dict[str, Any]]
    not_restorable: dict[str, list[str]]


def rollback_plan(outcome: FleetOutcome | Mapping[str, Any]) -> Rollback:
    """The rollback of a Cisco edit, with the fields it cannot restore (see :func:`rollback_edits`).

    :return: the edits, and ``{iccid: [field, ...]}`` of the fields they cannot restore.
    :raises ValueError: as :func:`rollback_edits` does.
    """
    edit = outcome if isinstance(outcome, FleetOutcome) else FleetOutcome.from_xcom(outcome)
    if edit.operation != "edit_devices":
        raise ValueError(
            f"only a Cisco edit (operation 'edit_devices') can be rolled back with edits; this is "
            f"{edit.operation!r} (a campaign is rolled back by cancelling it; forced-offline devices "
            "reconnect by themselves; a firmware sync changes nothing)"
        )
    if edit.dry_run:
        raise ValueError(
            "this is the outcome of a dry run: it changed nothing, there is nothing to roll back"
        )
    before = edit.details.get("before")
    if not isinstance(before, Mapping):
        raise ValueError(
            "this edit recorded no previous values: it ran with skip_unchanged=False, writing without "
            "reading the devices first, so what it replaced is not known"
        )
    edits: list[dict[str, Any]] = []
    not_restorable: dict[str, list[str]] = {}
    for device in edit.ids("succeeded", "scheduled"):
        restore, lost = _restoring(before.get(str(device)) or {})
        if lost:
            not_restorable[str(device)] = lost
        if restore:
            edits.append({"iccid": str(device), **restore})
    return Rollback(edits, not_restorable)


def _restoring(previous: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The edit that restores ``previous`` values, and the fields it cannot restore."""
    restore: dict[str, Any] = {}
    lost: list[str] = []
    for name, value in previous.items():
        if value is not None:
            restore[name] = value
        elif name in CISCO_CUSTOM_FIELDS:
            restore[name] = ""  # "either a blank value or one of the pre-defined values"
        elif name not in _IP_COMPANIONS:
            lost.append(name)
    if not all(name in restore for name in _IP_COMPANIONS):  # an address goes only with its PDP context
        lost.extend(name for name in _IP_FIELDS if restore.pop(name, None) is not None)
    if not any(name in restore for name in _IP_FIELDS):
        for name in (*_IP_FIELDS, *_IP_COMPANIONS):
            restore.pop(name, None)
    return restore, lost


def rollback_edits(outcome: FleetOutcome | Mapping[str, Any]) -> list[dict[str, Any]]:
    """The edits that undo a Cisco edit: for each device it changed (``succeeded`` or
    ``scheduled``), ``{"iccid": ..., <field>: <previous value>, ...}`` for the fields it changed,
    ready for ``CiscoControlCenterEditDevicesOperator(edits=...)``. Devices that were ``unchanged``,
    failed or unknown are not in it: a rollback writes only what the edit wrote.

    A field that had no value before (``None``) is restored as Control Center clears it where it
    documents how: a custom field (``operatorCustom*``, ``accountCustom*``, ``customerCustom*``)
    takes a blank value, ``""``. The other fields (``customer``, ``deviceID``, ``modemID``, an IP
    address, ...) have no documented way to be cleared through this API: they are left out of the
    edits, and a warning names the devices and fields that cannot be restored (all of them:
    :func:`rollback_plan`). An IP address is restored with the ``apn`` and ``pdpId`` the edit sent
    with it (they name the address's PDP context and change nothing themselves).

    Only a Cisco edit can be rolled back this way: ROMA devices forced offline reconnect by
    themselves, a firmware sync changes nothing on the device, and a firmware campaign is rolled
    back by cancelling it (``VerizonThingSpaceHook.cancel_campaign``).

    :param outcome: the edit's outcome (as pushed to XCom, or a :class:`FleetOutcome`).
    :raises ValueError: for the outcome of another operation, of a dry run, or of an edit that did
        not read its devices first (``skip_unchanged=False``: it knows no previous values).
    """
    rollback = rollback_plan(outcome)
    if rollback.not_restorable:
        shown = "; ".join(
            f"{iccid}: {', '.join(fields)}" for iccid, fields in list(rollback.not_restorable.items())[:10]
        )
        more = len(rollback.not_restorable) - 10
        log.warning(
            "rollback_edits: %d devices had fields empty before that Control Center's edit cannot clear; "
            "those fields are left as the edit set them: %s%s",
            len(rollback.not_restorable),
            shown,
            f"; and {more} more" if more > 0 else "",
        )
    return rollback.edits
