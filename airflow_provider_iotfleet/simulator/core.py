"""The simulator's configuration, clock, counters and fault dice, shared by the vendor routers."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_provider_iotfleet.simulator.fleet import MAX_DEVICES, Fleet

VENDORS = ("paloalto", "cisco", "huawei", "verizon")


@dataclass(frozen=True)
class Credentials:
    """The credentials the simulator accepts; printed by the CLI as connection settings."""

    paloalto_key_id: str = "sim-paloalto-key-id"
    paloalto_access_key: str = "sim-paloalto-access-key-0001"
    paloalto_customer_id: str = "demo"
    paloalto_client_id: str = "sim-scm-client@1234567890.iam.panserviceaccount.com"
    paloalto_client_secret: str = "sim-scm-client-secret-0001"
    paloalto_tsg_id: str = "1234567890"
    cisco_username: str = "sim-cisco-user"
    cisco_api_key: str = "sim-cisco-api-key-0001"
    huawei_access_key: str = "SIMAK00000000000000001"
    huawei_secret_key: str = "sim-huawei-secret-key-0001"
    huawei_project_id: str = "0f51a9e00c80f40f2f3cc00be3572e74"
    huawei_instance_id: str = "b5a5e1f0-5c8a-4d0e-9f4b-5e4d3c2b1a00"
    huawei_iam_user: str = "sim-iam-user"
    huawei_iam_password: str = "sim-iam-password-0001"
    huawei_domain: str = "sim-domain"
    verizon_key: str = "sim-verizon-oauth-key"
    verizon_secret: str = "sim-verizon-oauth-secret-0001"
    verizon_m2m_username: str = "sim-uws-user"
    verizon_m2m_password: str = "sim-uws-password-0001"
    verizon_account: str = "0000123456-00001"


@dataclass(frozen=True)
class Faults:
    """Probabilities (0..1) that an API request (not a login) meets each fault instead of an answer."""

    server_error: float = 0.0
    rate_limited: float = 0.0
    dropped_connection: float = 0.0
    malformed_json: float = 0.0
    token_expiry: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault probability {name} must be within 0..1, got {value}")
        if sum(asdict(self).values()) > 1.0:
            raise ValueError("fault probabilities add up to more than 1")


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that shapes a simulator run.

    :param devices: fleet size (up to 1,000,000; nothing is materialised up front).
    :param seed: makes device attributes and fault dice repeat from run to run.
    :param latency: seconds added to every API answer.
    :param rate_limits: requests per second per vendor (``{"cisco": 5}``); beyond it, 429 with
        ``Retry-After`` and the vendor's body.
    :param faults: fault injection probabilities.
    :param verizon_page_size: devices per ThingSpace page (1000 like the vendor).
    :param session_idle_timeout: seconds of idleness after which a ThingSpace session token expires.
    """

    devices: int = 5000
    seed: int = 7
    latency: float = 0.0
    rate_limits: dict[str, float] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    credentials: Credentials = field(default_factory=Credentials)
    verizon_page_size: int = 1000
    session_idle_timeout: float = 20 * 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.devices <= MAX_DEVICES:
            raise ValueError(f"devices must be 1..{MAX_DEVICES}, got {self.devices}")
        if self.verizon_page_size < 1 or self.latency < 0 or self.session_idle_timeout <= 0:
            raise ValueError("verizon_page_size, latency and session_idle_timeout must be positive")
        unknown = set(self.rate_limits) - set(VENDORS)
        if unknown:
            raise ValueError(f"rate_limits names unknown vendors: {', '.join(sorted(unknown))}")


class SimulatorState:
    """Mutable simulator state: the fleet, the clock, issued tokens, counters and the fault dice.

    Every vendor router and the test-facing Python API read and write it under one lock, since tests
    look at it from another thread than the server's.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.clock_offset = timedelta()
        # Separate generators, so that the fault dice repeat whatever ids and tokens were drawn.
        self.random = random.Random(config.seed)
        self.dice = random.Random(config.seed)
        self.fleet = Fleet(size=config.devices, seed=config.seed, now=self.now, lock=self.lock)
        # token -> expiry (simulator time); session token -> last use
        self.tokens: dict[str, dict[str, datetime]] = defaultdict(dict)
        self.sessions: dict[str, datetime] = {}
        self.counters: Counter[str] = Counter()
        self.login_failures: Counter[str] = Counter()
        self.request_times: dict[str, deque[datetime]] = defaultdict(deque)

    def now(self) -> datetime:
        """The simulator's clock: real UTC time plus however far tests have advanced it."""
        return datetime.now(UTC) + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the simulator clock forward (scheduled edits come due, tokens and sessions age)."""
        with self.lock:
            self.clock_offset += timedelta(seconds=seconds)
            self.fleet.apply_due()

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] += 1

    def _new_token(self, kind: str) -> str:
        return f"{kind}-{uuid.UUID(int=self.random.getrandbits(128)).hex}"

    def issue_token(self, kind: str, lifetime: float) -> str:
        token = self._new_token(kind)
        with self.lock:
            self.tokens[kind][token] = self.now() + timedelta(seconds=lifetime)
        return token

    def open_session(self) -> str:
        """Start a ThingSpace M2M session; it lives until idle for ``session_idle_timeout``."""
        session = self._new_token("verizon-session")
        with self.lock:
            self.sessions[session] = self.now()
        return session

    def token_valid(self, kind: str, token: str | None) -> bool:
        with self.lock:
            expiry = self.tokens[kind].get(token or "")
            return expiry is not None and self.now() < expiry

    def expire_token(self, kind: str, token: str | None) -> None:
        with self.lock:
            self.tokens[kind].pop(token or "", None)

    def expire_session(self, session: str | None) -> None:
        with self.lock:
            self.sessions.pop(session or "", None)

    def request_id(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128)))

    def over_rate_limit(self, vendor: str) -> float | None:
        """Record one request; return the seconds to wait if it exceeds the vendor's limit."""
        limit = self.config.rate_limits.get(vendor)
        if not limit:
            return None
        with self.lock:
            now = self.now()
            window = self.request_times[vendor]
            while window and (now - window[0]).total_seconds() >= 1.0:
                window.popleft()
            if len(window) >= limit:
                return max(1.0 - (now - window[0]).total_seconds(), 0.0)
            window.append(now)
            return None

    def roll_fault(self) -> str | None:
        """Return the fault this request meets, if any (repeatable for a given seed and order)."""
        with self.lock:
            roll = self.dice.random()
        threshold = 0.0
        for name, probability in asdict(self.config.faults).items():
            threshold += probability
            if roll < threshold:
                return str(name)
        return None

    def snapshot(self) -> dict[str, Any]:
        """The read-only state tests assert on: changed devices, scheduled edits, counters."""
        with self.lock:
            self.fleet.apply_due()
            return {
                "devices": self.config.devices,
                "seed": self.config.seed,
                "clock": self.now().isoformat(),
                "changed": {
                    str(index): device_json(self.fleet.device(index)) for index in sorted(self.fleet.changed)
                },
                "scheduled": self.fleet.pending,
                "counters": dict(self.counters),
                "login_failures": dict(self.login_failures),
            }


def device_json(device: dict[str, Any]) -> dict[str, Any]:
    """A device record with dates as ISO strings, for the state endpoints."""
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in device.items()}
