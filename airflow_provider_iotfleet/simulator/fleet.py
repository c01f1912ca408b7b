"""The simulated fleet: identifiers derived from a device's index, state kept only for what changed.

Device ``i`` has the same IMEI, ICCID, IMSI, MSISDN, MDN, ROMA id and IP address on every vendor,
each computed from ``i`` (and parsed back to ``i``), so a fleet of a million devices costs nothing
at start-up: only devices that an API call changed are stored.

The simulator checks identifiers with its own rules, never the client package's: a wrong client
rule must fail against the simulator, not pass because both sides share it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_DEVICES = 1_000_000
IMEI_PREFIX = "35690800"  # 8-digit TAC
ICCID_PREFIX = "89012600000"  # industry 89, country 01, issuer 260, padding
IMSI_PREFIX = "310260"
MSISDN_PREFIX = "1555"
MDN_PREFIX = "555"
ROMA_ID_BASE = 700_000
BASE_DATE = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)

FIRMWARE_VERSIONS = ("SR1.2.0.0-10657", "SR1.2.1.0-10702", "SR1.3.0.0-11020")
MODELS = (("SEQUANS COMMUNICATIONS", "GM01Q"), ("NORDIC SEMICONDUCTOR ASA", "NRF9160"), ("QUECTEL", "BG96"))
PROTOCOLS = ("LWM2M", "LWM2M", "LWM2M", "OMADM", "HTTP")
RATE_PLANS = ("IOT-100MB", "IOT-1GB", "IOT-10GB")
COMMUNICATION_PLANS = ("CP-DATA", "CP-DATA-FIXED-IP")
SIM_STATUSES = (
    "INVENTORY",
    "TEST_READY",
    "ACTIVATION_READY",
    "ACTIVATED",
    "DEACTIVATED",
    "RETIRED",
    "PURGED",
)
ONLINE, OFFLINE, NEVER_CONNECTED = 1, 2, 0


def _mix(index: int, seed: int) -> int:
    """A cheap, well-spread hash of the index, so device attributes vary but repeat per seed."""
    value = (index * 0x9E3779B1 + seed * 0x85EBCA77) & 0xFFFFFFFF
    value ^= value >> 15
    value = (value * 0x2C1B3C6D) & 0xFFFFFFFF
    return value ^ (value >> 12)


def luhn_check_digit(body: str) -> str:
    """Return the Luhn check digit (ISO/IEC 7812-1 annex B) that completes the digit string ``body``.

    IMEIs (3GPP TS 23.003 annex B) and ICCIDs (ITU-T E.118) both end in it.
    """
    total = 0
    for position, char in enumerate(reversed(body), start=1):
        weighted = int(char) * (2 if position % 2 else 1)  # the digit next to the check digit is doubled
        total += weighted // 10 + weighted % 10
    return str((10 - total % 10) % 10)


def imei_of(index: int) -> str:
    body = f"{IMEI_PREFIX}{index:06d}"
    return body + luhn_check_digit(body)


def iccid_of(index: int) -> str:
    body = f"{ICCID_PREFIX}{index:08d}"
    return body + luhn_check_digit(body)


def ipv4_of(index: int) -> str:
    return f"10.{64 + index // 65536}.{index // 256 % 256}.{index % 256}"


@dataclass
class Fleet:
    """The simulated devices and everything that happened to them since start-up.

    :param size: number of devices (1..1,000,000).
    :param seed: varies the attributes (firmware, status, online state) devices start with.
    :param now: the simulator's clock.
    """

    size: int
    seed: int
    now: Any  # Callable[[], datetime], the simulator clock
    changed: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: how many changes were recorded: a search may reuse what it found while this stays the same.
    changes_recorded: int = 0
    _scheduled: list[tuple[datetime, int, int, dict[str, Any]]] = field(default_factory=list)
    _order: Iterator[int] = field(default_factory=itertools.count)
    lock: Any = field(default_factory=threading.RLock)
    _base_matches: dict[tuple[str, Any], list[int]] = field(default_factory=dict)
    #: The last answer of :meth:`indices_where` per ``(key, value)``, with the change count it saw.
    _matches: dict[tuple[str, Any], tuple[int, list[int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.size <= MAX_DEVICES:
            raise ValueError(f"fleet size must be 1..{MAX_DEVICES}, got {self.size}")

    # --- identifiers, both ways ---------------------------------------------------------------

    def _index_from(self, value: Any, prefix: str, digits: int, check_digit: bool) -> int | None:
        text = str(value) if value is not None else ""
        if (
            not text.isdigit()
            or not text.startswith(prefix)
            or len(text) != len(prefix) + digits + check_digit
        ):
            return None
        body = text[:-1] if check_digit else text
        if check_digit and luhn_check_digit(body) != text[-1]:
            return None
        index = int(body[len(prefix) :])
        return index if index < self.size else None

    def by_imei(self, imei: Any) -> int | None:
        return self._index_from(imei, IMEI_PREFIX, 6, True)

    def by_iccid(self, iccid: Any) -> int | None:
        return self._index_from(iccid, ICCID_PREFIX, 8, True)

    def by_imsi(self, imsi: Any) -> int | None:
        return self._index_from(imsi, IMSI_PREFIX, 9, False)

    def by_msisdn(self, msisdn: Any) -> int | None:
        return self._index_from(str(msisdn).lstrip("+"), MSISDN_PREFIX, 7, False)

    def by_roma_id(self, device_id: Any) -> int | None:
        try:
            index = int(device_id) - ROMA_ID_BASE
        except (TypeError, ValueError):
            return None
        return index if 0 <= index < self.size else None

    def by_ipv4(self, address: Any) -> int | None:
        parts = str(address).split(".")
        if len(parts) != 4 or parts[0] != "10" or not all(p.isdigit() for p in parts):
            return None
        index = (int(parts[1]) - 64) * 65536 + int(parts[2]) * 256 + int(parts[3])
        return index if 0 <= index < self.size and ipv4_of(index) == address else None

    # --- devices ------------------------------------------------------------------------------

    def base(self, index: int) -> dict[str, Any]:
        """The device as it was at start-up."""
        mix = _mix(index, self.seed)
        make, model = MODELS[mix % len(MODELS)]
        online = ONLINE if mix % 10 < 7 else OFFLINE if mix % 10 < 9 else NEVER_CONNECTED
        return {
            "index": index,
            "imei": imei_of(index),
            "iccid": iccid_of(index),
            "imsi": f"{IMSI_PREFIX}{index:09d}",
            "msisdn": f"{MSISDN_PREFIX}{index:07d}",
            "mdn": f"{MDN_PREFIX}{index:07d}",
            "roma_id": ROMA_ID_BASE + index,
            "ip_address": ipv4_of(index),
            "name": f"sim-device-{index:06d}",
            "make": make,
            "model": model,
            "protocol": PROTOCOLS[(mix >> 4) % len(PROTOCOLS)],
            "firmware": FIRMWARE_VERSIONS[(mix >> 8) % len(FIRMWARE_VERSIONS)],
            "reported_firmware": FIRMWARE_VERSIONS[(mix >> 8) % len(FIRMWARE_VERSIONS)],
            "status": "DEACTIVATED" if (mix >> 12) % 20 == 0 else "ACTIVATED",
            "rate_plan": RATE_PLANS[(mix >> 16) % len(RATE_PLANS)],
            "communication_plan": COMMUNICATION_PLANS[0],
            "online_status": online,
            "date_added": BASE_DATE - timedelta(days=400 + index % 300),
            "date_updated": BASE_DATE - timedelta(days=index % 300),
            "custom": {},
            "paloalto": {},
        }

    def device(self, index: int) -> dict[str, Any]:
        """The device as it is now, with changes and due scheduled edits applied."""
        with self.lock:
            self.apply_due()
            device = self.base(index)
            device.update(self.changed.get(index, {}))
            return device

    def update(self, index: int, changes: dict[str, Any], at: datetime | None = None) -> None:
        """Record changes to a device, stamping ``date_updated`` with ``at`` or the simulator clock."""
        with self.lock:
            current = self.changed.setdefault(index, {})
            for key, value in changes.items():
                if key in ("custom", "paloalto"):
                    merged = dict(current.get(key) or {})
                    merged.update(value)
                    current[key] = merged
                else:
                    current[key] = value
            current["date_updated"] = at or self.now()
            self.changes_recorded += 1

    def indices_where(self, key: str, value: Any) -> list[int]:
        """Return, in index order, the devices whose ``key`` is ``value`` now.

        Start-up values never change, so their matches are computed once per ``(key, value)``; a
        call then only revisits the changed devices, and only when something changed since the last
        call, which keeps filtered listings of a big fleet cheap.
        """
        with self.lock:
            self.apply_due()
            base = self._base_matches.get((key, value))
            if base is None:
                base = [i for i in range(self.size) if self.base(i)[key] == value]
                self._base_matches[(key, value)] = base
            if not self.changed:
                return list(base)
            # The pages of one listing ask the same question with nothing changed in between.
            seen, matches = self._matches.get((key, value), (-1, []))
            if seen != self.changes_recorded:
                unchanged = (i for i in base if i not in self.changed)
                changed = sorted(i for i in self.changed if self.device(i)[key] == value)
                matches = list(heapq.merge(unchanged, changed))
                self._matches[(key, value)] = (self.changes_recorded, matches)
            return list(matches)

    def schedule(self, due: datetime, index: int, changes: dict[str, Any]) -> None:
        """Apply ``changes`` to device ``index`` once the simulator clock reaches ``due``."""
        with self.lock:
            heapq.heappush(self._scheduled, (due, next(self._order), index, changes))

    def apply_due(self) -> None:
        with self.lock:
            now = self.now()
            while self._scheduled and self._scheduled[0][0] <= now:
                _, _, index, changes = heapq.heappop(self._scheduled)
                self.update(index, changes)

    @property
    def pending(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"due": due.isoformat(), "iccid": iccid_of(index), "changes": changes}
                for due, _, index, changes in sorted(self._scheduled)
            ]
