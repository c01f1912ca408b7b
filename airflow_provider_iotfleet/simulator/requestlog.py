"""Which devices an API request names, and whether it asks for a change: for the request log.

Read from the request as sent (path and JSON body), whether or not the vendor then applies it, so
the log shows what a client sent even when a fault answered in the vendor's place.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

CISCO_DEVICE = re.compile(r"/cisco/rws/api/[^/]+/devices/([^/]+)")
HUAWEI_FORCE_OFFLINE = re.compile(r"/huawei/v2/[^/]+/link/instances/[^/]+/devices/force-offline")
HUAWEI_DEVICE = re.compile(r"/huawei/v2/[^/]+/link/instances/[^/]+/devices/([^/]+)")
VERIZON_SUBSET = re.compile(r"/verizon/api/fota/v3/devices/[^/]+")
VERIZON_SYNC = re.compile(r"/verizon/api/fota/v3/firmware/[^/]+/devices")
PALOALTO_BULK = re.compile(r"/paloalto/(?:pub/v4\.0|iot/pub/v1)/device/bulkUpdate")


def body_kind(method: str, path: str) -> str | None:
    """The kind of request whose device ids are in its JSON body, or ``None``."""
    if method == "POST" and HUAWEI_FORCE_OFFLINE.fullmatch(path):
        return "huawei.force_offline"
    if method == "PUT" and VERIZON_SYNC.fullmatch(path):
        return "verizon.sync"
    if method == "POST" and VERIZON_SUBSET.fullmatch(path):
        return "verizon.subset"
    if method == "PUT" and PALOALTO_BULK.fullmatch(path):
        return "paloalto.bulk_update"
    return None


def path_devices(method: str, path: str) -> tuple[list[str], bool]:
    """Device ids named in the path (Cisco ICCIDs, ROMA ids) and whether the request is a write."""
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
