"""Which devices an API request names, and whether it asks for a change: for the request log.

Read from the request as sent (path and JSON body), whether or not the vendor then applies it, so
the log shows what a client sent even when a fault answered in the vendor's place. Paths are the
vendor's own (``/rws/api/v1/devices/...``), without the simulator's ``/cisco``-style prefix:
:func:`vendor_of` tells the vendor of a path either way.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from airflow_provider_iotfleet.simulator.core import VENDORS

CISCO_DEVICE = re.compile(r"/rws/api/[^/]+/devices/([^/]+)")
HUAWEI_FORCE_OFFLINE = re.compile(r"/v2/[^/]+/link/instances/[^/]+/devices/force-offline")
HUAWEI_DEVICE = re.compile(r"/v2/[^/]+/link/instances/[^/]+/devices/([^/]+)")
VERIZON_SUBSET = re.compile(r"/api/fota/v3/devices/[^/]+")
VERIZON_SYNC = re.compile(r"/api/fota/v3/firmware/[^/]+/devices")
VERIZON_CAMPAIGN = re.compile(r"/api/fota/v3/campaigns/firmware/[^/]+(?:/[^/]+)?")
PALOALTO_BULK = re.compile(r"/(?:pub/v4\.0|iot/pub/v1)/device/bulkUpdate")

#: The first segment of each vendor's real paths, served at the simulator's root.
ROOT_SEGMENTS = {
    "pub": "paloalto",
    "iot": "paloalto",
    "oauth2": "paloalto",
    "rws": "cisco",
    "v2": "huawei",
    "v3": "huawei",
    "api": "verizon",
}
#: Login and token endpoints, per vendor (vendor paths).
AUTH_PATHS = {
    "paloalto": ("/oauth2/",),
    "huawei": ("/v3/auth/",),
    "verizon": ("/api/ts/", "/api/m2m/"),
}


def vendor_of(path: str) -> tuple[str | None, str]:
    """The vendor a request path is for and the path as the vendor has it (``(None, path)``: no vendor).

    ``/cisco/rws/api/v1/devices/1`` and ``/rws/api/v1/devices/1`` are both ``("cisco",
    "/rws/api/v1/devices/1")``.
    """
    first, _, rest = path.lstrip("/").partition("/")
    if first in VENDORS:
        return first, "/" + rest
    return ROOT_SEGMENTS.get(first), path


def is_auth(vendor: str, vendor_path: str) -> bool:
    """Whether the request is a login or token request (never faulted nor throttled)."""
    return vendor_path.startswith(AUTH_PATHS.get(vendor, ()))


def body_kind(method: str, path: str) -> str | None:
    """The kind of request whose device ids are in its JSON body, or ``None`` (``path``: the vendor's)."""
    if method == "POST" and HUAWEI_FORCE_OFFLINE.fullmatch(path):
        return "huawei.force_offline"
    if method == "PUT" and VERIZON_SYNC.fullmatch(path):
        return "verizon.sync"
    if method == "POST" and VERIZON_SUBSET.fullmatch(path):
        return "verizon.subset"
    if method == "PUT" and PALOALTO_BULK.fullmatch(path):
        return "paloalto.bulk_update"
    # Scheduling a firmware campaign, and adding or removing its devices, name devices to change.
    if method in ("POST", "PUT") and VERIZON_CAMPAIGN.fullmatch(path):
        return "verizon.campaign"
    return None


def path_devices(method: str, path: str) -> tuple[list[str], bool]:
    """Device ids named in the (vendor) path (Cisco ICCIDs, ROMA ids) and whether it is a write."""
    if match := CISCO_DEVICE.fullmatch(path):
        return [match.group(1)], method == "PUT"
    if method == "GET" and (match := HUAWEI_DEVICE.fullmatch(path)):
        return [match.group(1)], False
    return [], False


def body_devices(kind: str, body: bytes) -> tuple[list[str], bool]:
    """Device ids named in the JSON body of a request of ``kind``, and whether it is a write."""
    write = kind != "verizon.subset"
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return [], write
    if not isinstance(parsed, dict):
        return [], write
    if kind == "huawei.force_offline":
        return _ids(parsed.get("device_ids")), write
    if kind == "paloalto.bulk_update":
        entries = parsed.get("devicelist")
        if not isinstance(entries, list):
            return [], write
        return _ids(
            [entry["imei"] for entry in entries if isinstance(entry, dict) and "imei" in entry]
        ), write
    return _ids(parsed.get("deviceList")), write


def _ids(values: Any) -> list[str]:
    return [_id(value) for value in values] if isinstance(values, list) else []


def _id(value: Any) -> str:
    # ROMA ids are numbers (the vendor rounds them down): 700001 and 700001.0 are the same device.
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value))
    return str(value)
