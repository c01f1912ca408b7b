"""Rolling back a Cisco edit from its outcome's ``before`` values: the edits that restore them,
and which fields cannot be restored (:func:`~airflow_provider_iotfleet.outcome.rollback_edits`
is the one-liner for a DAG).

Control Center documents a blank value for its custom fields ("either a blank value or one of the
pre-defined values"), so a custom field that was empty is restored as ``""``; it documents no way
to clear ``customer``, ``deviceID``, ``modemID``, a rate or communication plan, a status or a
fixed IP address through the edit, so such a field that was empty is left out and reported. An IP
address is sent only with the ``apn`` and ``pdpId`` that name its PDP context (the edit's ``before``
carries those it was sent with).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_iotfleet.hooks.cisco.rules import CISCO_CUSTOM_FIELDS
from airflow_provider_iotfleet.outcome import FleetOutcome

#: Cisco edit fields that only go with an IP address change, naming its PDP context.
_IP_FIELDS, _IP_COMPANIONS = ("ipv4Address", "ipv6Address"), ("apn", "pdpId")


@dataclass(frozen=True)
class Rollback:
    """What :func:`rollback_plan` found a Cisco edit's rollback to be.

    :ivar edits: the edits that restore what can be restored (what :func:`~airflow_provider_iotfleet.outcome.rollback_edits` returns).
    :ivar not_restorable: ``{iccid: [field, ...]}``: fields a device had no value for before that
        this API cannot clear, or IP addresses whose ``apn``/``pdpId`` the outcome does not know.
    """

    edits: list[dict[str, Any]]
    not_restorable: dict[str, list[str]]


def rollback_plan(outcome: FleetOutcome | Mapping[str, Any]) -> Rollback:
    """The rollback of a Cisco edit, with the fields it cannot restore (see :func:`~airflow_provider_iotfleet.outcome.rollback_edits`).

    :return: the edits, and ``{iccid: [field, ...]}`` of the fields they cannot restore.
    :raises ValueError: as :func:`~airflow_provider_iotfleet.outcome.rollback_edits` does.
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
