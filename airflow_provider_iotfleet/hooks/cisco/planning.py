"""What a Cisco edit would change on a device, from one read of it (``GET /devices/{iccid}``).

The dry run (:meth:`CiscoControlCenterHook.plan_edits`) and the edit that reads first
(``skip_unchanged``) compare a device's details with the edit through :func:`edit_difference`, the
one comparison, so that a plan and the apply right after it agree on what changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_iotfleet.http import Outcome, map_bounded
from airflow_provider_iotfleet.outcome import FieldChange


@dataclass(frozen=True)
class CiscoEditPlan:
    """What an edit would do to one device, from a read of it.

    :ivar iccid: the device.
    :ivar changes: ``{field: {"from": current, "to": wanted}}`` for each field the edit would send
        (``from`` is ``None`` for a field a read does not show: ``apn``, ``pdpId``); empty when the
        device is already as asked.
    """

    iccid: str
    changes: dict[str, FieldChange] = field(default_factory=dict)

    @property
    def unchanged(self) -> bool:
        """Whether the device is already as asked (the edit would send nothing)."""
        return not self.changes


def edit_difference(
    changes: Mapping[str, str],
    current: Mapping[str, Any],
    read_back: Mapping[str, str],
    ip_fields: Sequence[str],
    ip_companions: Sequence[str],
) -> dict[str, FieldChange]:
    """Return ``{field: {"from": current, "to": wanted}}`` for the part of ``changes`` a device with
    details ``current`` does not already have.

    Fields a read cannot show (not in ``read_back``) are kept, with ``from`` ``None``, except the IP
    companions (``apn``, ``pdpId``), which go only with an IP change and so are dropped when no IP
    address is left to change.

    :param read_back: edit field -> the key of ``current`` that shows its value.
    """
    different = {
        key: {"from": current.get(read_back[key]) if key in read_back else None, "to": value}
        for key, value in changes.items()
        if key not in read_back or current.get(read_back[key]) != value
    }
    if not any(key in different for key in ip_fields) and any(key in changes for key in ip_fields):
        different = {key: value for key, value in different.items() if key not in ip_companions}
    return different


def plan_edits(
    read: Callable[[str], Mapping[str, Any]],
    pairs: Sequence[tuple[str, dict[str, str]]],
    difference: Callable[[Mapping[str, str], Mapping[str, Any]], dict[str, FieldChange]],
    max_concurrency: int,
    on_outcome: Callable[[Outcome[str, CiscoEditPlan]], None] | None = None,
) -> list[Outcome[str, CiscoEditPlan]]:
    """Read each device once (``read``, ``max_concurrency`` at a time) and compare it with its edit.

    :return: one outcome per ``(iccid, changes)`` pair, in input order; ``outcome.error`` is the
        :class:`~airflow_provider_iotfleet.exceptions.IoTFleetError` of a device that could not be
        read (e.g. one Control Center does not know).
    """

    def one(pair: tuple[str, dict[str, str]]) -> CiscoEditPlan:
        iccid, changes = pair
        return CiscoEditPlan(iccid, difference(changes, read(iccid)))

    def on_pair(outcome: Outcome[tuple[str, dict[str, str]], CiscoEditPlan]) -> None:
        if on_outcome is not None:
            on_outcome(Outcome(item=outcome.item[0], result=outcome.result, error=outcome.error))

    outcomes = map_bounded(one, pairs, max_concurrency, on_outcome=on_pair)
    return [Outcome(item=o.item[0], result=o.result, error=o.error) for o in outcomes]
