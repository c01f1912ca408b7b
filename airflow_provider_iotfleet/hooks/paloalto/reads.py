"""Reading IoT Security's device list back for a bulk update's plan: which listed entry is which
input device, and what would change on it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_iotfleet.hooks.paloalto.rules import PALOALTO_IDENTIFIERS

#: ``pagelength`` of ``GET .../device/list``: the most the API serves per page.
DEVICE_LIST_PAGE_LENGTH = 1000
#: Where a device list entry may show each field of a ``devicelist`` entry: under the same name, or
#: under the snake_case name the device inventory uses (``ip_address``).
LISTED_AS: dict[str, tuple[str, ...]] = {
    "ipAddress": ("ipAddress", "ip_address"),
    "ipv6Address": ("ipv6Address", "ipv6_address"),
    "SessionEvtType": ("SessionEvtType", "session_evt_type"),
}


def listed_value(listed: Mapping[str, Any], field: str) -> str | None:
    """The value ``listed`` (a device list entry) shows for ``field`` of a ``devicelist`` entry, as
    text; ``None`` when it shows none."""
    for name in LISTED_AS.get(field, (field,)):
        value = listed.get(name)
        if value is not None and value != "":
            return str(value)
    return None


class DeviceListMatcher:
    """Finds the input devices in the device list's entries, page by page, by their identifiers
    (ipAddress, ipv6Address, imei, iccid, imsi, msisdn): an entry is an input device's when it shows
    one of that device's identifiers with the same value. The first entry found for a device is kept.

    :param devices: the ``devicelist`` entries (validated), in input order.
    """

    def __init__(self, devices: Sequence[Mapping[str, str]]) -> None:
        self.found: list[dict[str, Any] | None] = [None] * len(devices)
        self._by_identifier: dict[tuple[str, str], list[int]] = {}
        for position, device in enumerate(devices):
            for key in PALOALTO_IDENTIFIERS:
                if key in device:
                    self._by_identifier.setdefault((key, device[key]), []).append(position)
        self.missing = len(devices)

    def add_page(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Match one page of device list entries."""
        for entry in entries:
            for key in PALOALTO_IDENTIFIERS:
                value = listed_value(entry, key)
                for position in self._by_identifier.get((key, value), ()) if value is not None else ():
                    if self.found[position] is None:
                        self.found[position] = dict(entry)
                        self.missing -= 1


def planned_changes(device: Mapping[str, str], listed: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """What a bulk update of ``device`` would change, ``{field: {"from": current, "to": sent}}``: for
    each field the device list shows otherwise (``from`` ``None`` where it shows none), or every
    field sent, from ``None``, when the device is not in the list (``listed`` is ``None``)."""
    changes: dict[str, dict[str, Any]] = {}
    for field, sent in device.items():
        current = listed_value(listed, field) if listed is not None else None
        if current != sent:
            changes[field] = {"from": current, "to": sent}
    return changes
