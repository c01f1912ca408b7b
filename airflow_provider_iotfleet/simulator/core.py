"""The simulator's configuration, clock, counters and fault dice, shared by the vendor routers."""

from __future__ import annotations

import math
import random
import threading
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from airflow_provider_iotfleet.simulator.campaigns import CampaignBook
from airflow_provider_iotfleet.simulator.fleet import MAX_DEVICES, Fleet

VENDORS = ("paloalto", "cisco", "huawei", "verizon")
RETRY_AFTER_STYLES = ("seconds", "http-date")
#: What :meth:`SimulatorState.revoke` can revoke, per vendor (Cisco signs every call with HTTP Basic).
REVOCABLE = {"paloalto": ("token",), "huawei": ("token",), "verizon": ("token", "session")}


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
    """Probabilities (0..1) that an API request (not a login) meets each fault instead of an answer.

    :param server_error: a 500 with the vendor's error body; nothing applied.
    :param rate_limited: a 429 with the vendor's throttling body and ``Retry-After``; nothing applied.
    :param dropped_connection: the connection closes mid-answer *before* the request is applied.
    :param malformed_json: a 200 whose JSON is cut short; nothing applied.
    :param token_expiry: the token or session the request presents expires just before it is served.
    :param applied_then_dropped: the request *is* applied, then the connection closes mid-answer
        (the answer's ``Content-Length`` is promised, less is sent): a retry applies it twice.
    :param applied_then_delayed: the request is applied, then its answer is held
        ``slow_answer_seconds`` (longer than a client's usual timeout) before being sent.
    :param gzip_garbage: a 200 with ``Content-Encoding: gzip`` and over 10 KiB that is not gzip.
    :param html_error_page: a 502 with an HTML page, like a load balancer's; nothing applied.
    :param huge_body: a 200 of ``huge_body_bytes`` of valid JSON (a list), streamed in chunks.
    :param deeply_nested: a 200 whose JSON is nested 100,000 levels deep.

    The faults that answer in place of the vendor (all but ``token_expiry`` and the two
    ``applied_then_*``) leave the simulator's state unchanged.
    """

    server_error: float = 0.0
    rate_limited: float = 0.0
    dropped_connection: float = 0.0
    malformed_json: float = 0.0
    token_expiry: float = 0.0
    # New faults go last: the dice thresholds of the earlier ones, and so their runs per seed, stay.
    applied_then_dropped: float = 0.0
    applied_then_delayed: float = 0.0
    gzip_garbage: float = 0.0
    html_error_page: float = 0.0
    huge_body: float = 0.0
    deeply_nested: float = 0.0

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
    :param slow_answer_seconds: how long the ``applied_then_delayed`` fault holds an answer (real
        seconds; 40 by default, longer than the clients' usual 30 s timeout). A client that hangs up
        meanwhile ends the wait early.
    :param huge_body_bytes: the size of the ``huge_body`` fault's answer (20 MiB by default).
    :param retry_after_style: ``"seconds"`` (``Retry-After: 3``) or ``"http-date"``
        (``Retry-After: Wed, 21 Oct 2026 07:28:00 GMT``, real UTC time) in every 429.
    :param retry_after_seconds: the wait every 429 asks for; ``None`` asks 1 s for the
        ``rate_limited`` fault and the time until the rate limit's window frees up (at least 1 s).
    :param request_log_size: how many of the latest API requests :attr:`SimulatorState.requests` keeps.
    :param campaign_devices_per_hour: how many devices a ThingSpace firmware campaign upgrades per hour
        while it runs (inside its dates and time windows), one after the other in IMEI order; 60 by
        default, so a one-day campaign, or one with a five-hour window, gets through 300 devices.
    :param campaign_failure_share: the share (0..1) of a campaign's eligible devices whose upgrade
        fails (``UpgradeFailed``); which ones is decided per seed, campaign id and IMEI.
    :param campaign_page_size: devices per page of a campaign's device report, and campaigns per
        page of the campaign history (``maxPageSize``; 1000 like the vendor).
    """

    devices: int = 5000
    seed: int = 7
    latency: float = 0.0
    rate_limits: dict[str, float] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    credentials: Credentials = field(default_factory=Credentials)
    verizon_page_size: int = 1000
    session_idle_timeout: float = 20 * 60.0
    slow_answer_seconds: float = 40.0
    huge_body_bytes: int = 20 * 1024 * 1024
    retry_after_style: str = "seconds"
    retry_after_seconds: float | None = None
    request_log_size: int = 100_000
    campaign_devices_per_hour: float = 60.0
    campaign_failure_share: float = 0.0
    campaign_page_size: int = 1000

    def __post_init__(self) -> None:
        if not 1 <= self.devices <= MAX_DEVICES:
            raise ValueError(f"devices must be 1..{MAX_DEVICES}, got {self.devices}")
        if self.verizon_page_size < 1 or self.latency < 0 or self.session_idle_timeout <= 0:
            raise ValueError("verizon_page_size, latency and session_idle_timeout must be positive")
        if not 0 <= self.slow_answer_seconds <= 24 * 3600:
            raise ValueError(f"slow_answer_seconds must be within 0..86400, got {self.slow_answer_seconds}")
        if self.huge_body_bytes < 2:
            raise ValueError(f"huge_body_bytes must be at least 2, got {self.huge_body_bytes}")
        if self.retry_after_style not in RETRY_AFTER_STYLES:
            raise ValueError(
                f"retry_after_style must be one of {', '.join(RETRY_AFTER_STYLES)}, "
                f"got {self.retry_after_style!r}"
            )
        if self.retry_after_seconds is not None and not 0 <= self.retry_after_seconds <= 10**9:
            raise ValueError(f"retry_after_seconds must be within 0..1e9, got {self.retry_after_seconds}")
        if self.request_log_size < 0:
            raise ValueError(f"request_log_size must not be negative, got {self.request_log_size}")
        if not 0 < self.campaign_devices_per_hour <= 10**6:
            raise ValueError(
                f"campaign_devices_per_hour must be within 0..1e6 (above 0), got {self.campaign_devices_per_hour}"
            )
        if not 0.0 <= self.campaign_failure_share <= 1.0:
            raise ValueError(f"campaign_failure_share must be within 0..1, got {self.campaign_failure_share}")
        if self.campaign_page_size < 1:
            raise ValueError(f"campaign_page_size must be at least 1, got {self.campaign_page_size}")
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
        #: ThingSpace firmware campaigns; their progress is brought up to the clock on every read.
        self.campaigns = CampaignBook(config, self.fleet, self.now, self.lock)
        # token -> expiry (simulator time); session token -> last use
        self.tokens: dict[str, dict[str, datetime]] = defaultdict(dict)
        self.sessions: dict[str, datetime] = {}
        self.counters: Counter[str] = Counter()
        self.login_failures: Counter[str] = Counter()
        self.request_times: dict[str, deque[datetime]] = defaultdict(deque)
        # Set when the server stops, so that answers held by applied_then_delayed are let go.
        self.stopping = threading.Event()
        self._requests: deque[dict[str, Any]] = deque(maxlen=config.request_log_size)
        self.requests_seen = 0
        self._writes: dict[str, Counter[str]] = defaultdict(Counter)
        self._applied_writes: dict[str, Counter[str]] = defaultdict(Counter)
        # vendor -> (faults, writes only): what inject_faults set, in place of config.faults.
        self._injected: dict[str, tuple[Faults, bool]] = {}

    def now(self) -> datetime:
        """The simulator's clock: real UTC time plus however far tests have advanced it."""
        return datetime.now(UTC) + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the simulator clock forward (scheduled edits come due, campaigns progress, tokens age)."""
        with self.lock:
            self.clock_offset += timedelta(seconds=seconds)
            self.fleet.apply_due()
            self.campaigns.progress()

    def advance_past_pending(
        self, *, min_scheduled: int = 1, margin: float = 60.0, keep_clock: bool = False
    ) -> tuple[int, int, float] | None:
        """Move the clock ``margin`` seconds past what is pending: the last scheduled Control Center
        change, once at least ``min_scheduled`` are held, and the last device turn of every campaign
        still at work.

        What a demo or a test does instead of waiting hours for a maintenance window. Returns
        ``(scheduled changes, campaigns at work, seconds moved)``, or ``None`` when nothing was due.

        ``keep_clock``: apply what is pending, then put the clock back where it was, so that a later
        "in 90 minutes" is 90 minutes away again (``make airflow`` runs DAGs one after another on one
        simulator). What was applied stays applied: campaigns and scheduled changes are settled as the
        clock moves, not recomputed from it.
        """
        with self.lock:
            scheduled = self.fleet.pending
            if len(scheduled) < min_scheduled:
                scheduled = []
            moments = [datetime.fromisoformat(change["due"]) for change in scheduled]
            campaigns, done = self.campaigns.pending()
            if done is not None:
                moments.append(done)
            if not moments:
                return None
            seconds = max(0.0, (max(moments) - self.now()).total_seconds()) + margin
            self.advance(seconds)
            if keep_clock:
                self.clock_offset -= timedelta(seconds=seconds)
            return len(scheduled), campaigns, seconds

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

    def revoke(self, vendor: str, what: str = "token") -> int:
        """Invalidate at once every token (or ThingSpace M2M session) issued so far for ``vendor``.

        The next API call that presents one gets the vendor's own refusal: 401 for a Palo Alto SCM
        bearer token, a Huawei IAM token or a ThingSpace access token, 400 ``SessionToken.Expired``
        for a ThingSpace session. New logins work as before. Returns how many were revoked.

        :param vendor: ``"paloalto"``, ``"huawei"`` or ``"verizon"`` (Cisco has no tokens).
        :param what: ``"token"``, or ``"session"`` (ThingSpace only).
        """
        if what not in REVOCABLE.get(vendor, ()):
            choices = "; ".join(f"{name}: {', '.join(kinds)}" for name, kinds in REVOCABLE.items())
            raise ValueError(f"cannot revoke {what!r} of vendor {vendor!r} (revocable: {choices})")
        with self.lock:
            issued = self.sessions if what == "session" else self.tokens[vendor]
            revoked = len(issued)
            issued.clear()
            self.counters[f"{vendor}.revoked_{what}s"] += revoked
        return revoked

    def request_id(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128)))

    def retry_after(self, default_seconds: int) -> str:
        """The ``Retry-After`` value of a 429, in the configured style and length.

        An HTTP date is real UTC time (what a client compares it with, like the ``Date`` header),
        not the simulator's clock, rounded up to the whole second.
        """
        seconds = default_seconds
        if self.config.retry_after_seconds is not None:
            seconds = math.ceil(self.config.retry_after_seconds)
        if self.config.retry_after_style == "seconds":
            return str(seconds)
        due = math.ceil(datetime.now(UTC).timestamp() + seconds)
        return format_datetime(datetime.fromtimestamp(due, UTC), usegmt=True)

    # --- the request log --------------------------------------------------------------------------

    def log_request(
        self,
        vendor: str,
        method: str,
        path: str,
        query: str,
        client: str | None,
        devices: list[str],
        write: bool,
    ) -> dict[str, Any]:
        """Record an API request as it arrives; :meth:`log_answer` completes the record."""
        record: dict[str, Any] = {
            "time": self.now(),
            "vendor": vendor,
            "method": method,
            "path": path,
            "query": query,
            "client": client,
            "status": None,
            "fault": None,
            "applied": None,
            "devices": devices,
            "write": write,
        }
        with self.lock:
            self._requests.append(record)
            self.requests_seen += 1
            if write and devices:
                self._writes[vendor].update(set(devices))
        return record

    def log_answer(self, record: dict[str, Any], status: int, fault: str | None, served: bool) -> None:
        """Complete a request's record: its status, its fault, and whether the vendor router served it."""
        applied = served and status < 400
        with self.lock:
            record.update(status=status, fault=fault, applied=applied)
            if applied and record["write"] and record["devices"]:
                self._applied_writes[record["vendor"]].update(set(record["devices"]))

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The latest API requests (``request_log_size`` of them), oldest first; see :meth:`request_log`."""
        return self.request_log()

    def request_log(self, vendor: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The latest API requests (logins included, ``/_sim/*`` not), oldest first, as copies.

        Each is ``{time, vendor, method, path, query, client, status, fault, applied, devices,
        write}``: ``time`` on the simulator clock at arrival; ``client`` the caller's ``host:port``
        (one per connection); ``status`` the HTTP status answered (``None`` while in flight; for
        ``dropped_connection`` and ``applied_then_dropped``, the status line that was sent before the
        connection closed); ``fault`` the injected fault, ``"throttled"`` for a rate-limit 429, or
        ``None``; ``applied`` whether the vendor router served it with a status below 400 (a write
        took effect or was scheduled); ``devices`` the device ids the request named (Cisco ICCIDs,
        ROMA ids, ThingSpace IMEIs, Palo Alto IMEIs) as strings; ``write`` whether it asks for a
        change.

        :param vendor: only this vendor's requests.
        :param limit: only the latest ``limit`` of them.
        """
        selected: list[dict[str, Any]] = []
        with self.lock:
            for record in reversed(self._requests):
                if limit is not None and len(selected) >= limit:
                    break
                if vendor is None or record["vendor"] == vendor:
                    selected.append(dict(record))
        selected.reverse()
        return selected

    def per_device_writes(self, vendor: str | None = None, applied_only: bool = False) -> Counter[str]:
        """How many state-changing requests named each device id, since start-up (never trimmed).

        By default every write that reached the simulator counts, whatever answered it (a fault,
        a throttling 429, a refusal): how often a client *sent* a change for the device. With
        ``applied_only``, only those the vendor router applied (status below 400) count, including
        ``applied_then_dropped`` and ``applied_then_delayed`` ones. A request naming a device twice
        counts once.

        :param vendor: only this vendor's writes.
        """
        source = self._applied_writes if applied_only else self._writes
        total: Counter[str] = Counter()
        with self.lock:
            for name, counts in source.items():
                if vendor is None or name == vendor:
                    total.update(counts)
        return total

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

    def inject_faults(
        self, faults: Faults, vendors: Iterable[str] = VENDORS, *, writes_only: bool = False
    ) -> None:
        """From now on, ``vendors``' API requests meet ``faults`` instead of the configured ones, until
        :meth:`clear_faults`: an outage for one stretch of a test, on the vendors it concerns, while the
        others (and the same vendor's reads, with ``writes_only``) are served as configured.

        :param writes_only: only the requests that ask for a change (``write`` in the request log:
            a Control Center edit, a force-offline, a bulk update, a ThingSpace sync or campaign).
        :raises ValueError: for an unknown vendor.
        """
        chosen = _vendors(vendors)
        with self.lock:
            for vendor in chosen:
                self._injected[vendor] = (faults, writes_only)

    def clear_faults(self, vendors: Iterable[str] = VENDORS) -> None:
        """Undo :meth:`inject_faults` for ``vendors``: their requests meet the configured faults again.

        :raises ValueError: for an unknown vendor.
        """
        chosen = _vendors(vendors)
        with self.lock:
            for vendor in chosen:
                self._injected.pop(vendor, None)

    def roll_fault(self, vendor: str | None = None, write: bool = False) -> str | None:
        """Return the fault this request meets, if any (repeatable for a given seed and order).

        :param vendor: the vendor the request is for, and ``write`` whether it asks for a change:
            what decides whether faults set by :meth:`inject_faults` apply.
        """
        faults = self.config.faults
        with self.lock:
            injected = self._injected.get(vendor or "")
            if injected is not None and (write or not injected[1]):
                faults = injected[0]
            roll = self.dice.random()
        threshold = 0.0
        for name, probability in asdict(faults).items():
            threshold += probability
            if roll < threshold:
                return str(name)
        return None

    def snapshot(self) -> dict[str, Any]:
        """The read-only state tests assert on: changed devices, scheduled edits, campaigns, counters.

        ``campaigns`` maps each ThingSpace campaign id to the campaign as ``GET /campaigns`` shows
        it, plus ``devices``: ``{imei: {"status", "resultReason"}}`` as its device report shows them.
        """
        with self.lock:
            self.fleet.apply_due()
            self.campaigns.progress()
            return {
                "devices": self.config.devices,
                "seed": self.config.seed,
                "clock": self.now().isoformat(),
                "changed": {
                    str(index): device_json(self.fleet.device(index)) for index in sorted(self.fleet.changed)
                },
                "scheduled": self.fleet.pending,
                "campaigns": self.campaigns.summary(),
                "counters": dict(self.counters),
                "login_failures": dict(self.login_failures),
            }


def _vendors(vendors: Iterable[str]) -> list[str]:
    chosen = [vendors] if isinstance(vendors, str) else list(vendors)
    unknown = sorted(set(chosen) - set(VENDORS))
    if unknown:
        raise ValueError(f"unknown vendors {', '.join(unknown)} (vendors: {', '.join(VENDORS)})")
    return chosen


def device_json(device: dict[str, Any]) -> dict[str, Any]:
    """A device record with dates as ISO strings, for the state endpoints."""
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in device.items()}
