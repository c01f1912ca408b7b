"""ThingSpace FOTA v3 firmware upgrade campaigns: the firmware on offer, the campaigns and their progress.

A campaign upgrades its devices one after the other, in IMEI order, at
``campaign_devices_per_hour``, and only while the simulator clock is inside its dates (``startDate``
00:00 UTC to ``endDate`` 24:00 UTC), inside one of its time windows (hours of the day, UTC) if it has
any, and after it was created. Progress is worked out lazily, up to the clock, whenever anything
reads the fleet through ThingSpace, the state or the clock (like the scheduled Control Center edits),
so moving the clock with :meth:`SimulatorState.advance` moves every campaign on.

When a device's turn comes it ends ``UpgradeFailed`` if it is not FOTA-eligible (the listing's
``fotaEligible`` false, HTTP devices: ThingSpace documents that only eligible devices "can be upgraded
over the air"), if its make and model are not the firmware's, or if its firmware is not the campaign's ``firmwareFrom`` at that moment; otherwise the seeded dice
(seed, campaign id, IMEI) fail ``campaign_failure_share`` of them, and the rest end ``Finished``
with their firmware (listed and reported by the firmware sync) now ``firmwareTo``.

Campaign status: the answer to the POST says ``CampaignRequestPending``; from then on the campaign
reads ``CampaignScheduled`` (the simulator's queue is instant) until its end date has passed
(``CampaignEnded``; it runs to its end date even when every device is done, as the vendor's does),
or until it is cancelled: ``CampaignCancelled`` before its start date, ``CampaignAborted`` after.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_iotfleet.simulator.fleet import BASE_DATE, FIRMWARE_VERSIONS, MODELS, Fleet, imei_of

if TYPE_CHECKING:
    from airflow_provider_iotfleet.simulator.core import SimulatorConfig

REQUEST_PENDING = "CampaignRequestPending"
REQUEST_QUEUED = "CampaignRequestQueued"
REQUEST_FAILED = "CampaignRequestFailed"
SCHEDULED = "CampaignScheduled"
CANCELLED = "CampaignCancelled"
ABORTED = "CampaignAborted"
FAILED = "CampaignFailed"
ENDED = "CampaignEnded"
#: Every campaign status the vendor lists (the simulator reaches Scheduled, Cancelled, Aborted, Ended).
CAMPAIGN_STATUSES = (
    REQUEST_PENDING,
    REQUEST_FAILED,
    REQUEST_QUEUED,
    CANCELLED,
    ABORTED,
    FAILED,
    SCHEDULED,
    ENDED,
)
FINAL_STATUSES = (CANCELLED, ABORTED, ENDED)

DEVICE_REQUEST_PENDING = "RequestPending"
DEVICE_QUEUED = "Queued"
DEVICE_IN_PROGRESS = "InProgress"
DEVICE_FINISHED = "Finished"
DEVICE_UPGRADE_FAILED = "UpgradeFailed"
DEVICE_REQUEST_FAILED = "RequestFailed"
#: Why a device that drew a failure failed: the vendor's client error names (campaign lifecycle docs).
FAILURE_REASONS = (
    "RovaClientDownloadFailed",
    "RovaClientDownloadedInstallFailed",
    "RovaClientDidNotReportStatus",
)
SUCCESS_REASON = "Download and install succeeded."
PROTOCOL = "LWM2M"
PROTOCOLS = ("LWM2M", "OMADM", "HTTP")
ADD, REMOVE = "append", "remove"

# Error codes: ThingSpace publishes the shape, not the list; these follow its FOTA.REQUEST_FAILED.X style.
INVALID_BODY = "FOTA.REQUEST_FAILED.InvalidBody"
INVALID_PARAMETER = "FOTA.REQUEST_FAILED.InvalidParameter"
FIRMWARE_NOT_FOUND = "FOTA.REQUEST_FAILED.FirmwareNotFound"
INVALID_FIRMWARE = "FOTA.REQUEST_FAILED.InvalidFirmware"
INVALID_DATE = "FOTA.REQUEST_FAILED.InvalidDate"
INVALID_TIME_WINDOW = "FOTA.REQUEST_FAILED.InvalidTimeWindow"
DEVICE_NOT_FOUND = "FOTA.REQUEST_FAILED.DeviceNotFound"
EMPTY_DEVICE_LIST = "FOTA.REQUEST_FAILED.EmptyDeviceList"
CAMPAIGN_NOT_FOUND = "FOTA.REQUEST_FAILED.CampaignNotFound"
CAMPAIGN_NOT_MODIFIABLE = "FOTA.REQUEST_FAILED.CampaignNotModifiable"

DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_time(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with milliseconds (``2025-01-06T08:00:00.000Z``), what the vendor's SDK parses."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class CampaignError(Exception):
    """A refusal, answered as ThingSpace's ``{"errorCode", "errorMessage"}`` with ``status``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Firmware:
    """One firmware package on offer: an upgrade from ``source`` to ``target`` for one make and model."""

    name: str
    source: str
    target: str
    make: str
    model: str
    protocol: str
    launch_date: datetime

    def json(self) -> dict[str, Any]:
        """The package as ``GET /firmware/{acc}`` lists it."""
        return {
            "firmwareName": self.name,
            "firmwareFrom": self.source,
            "firmwareTo": self.target,
            "launchDate": iso_time(self.launch_date),
            "releaseNote": f"{self.make} {self.model}: {self.source} to {self.target}",
            "make": self.make,
            "model": self.model,
            "protocol": self.protocol,
        }


def firmware_catalog() -> tuple[Firmware, ...]:
    """The firmware on offer: for each make and model, an upgrade from each version to the next one.

    Names are ``<model>-<from>-to-<to>``, e.g. ``GM01Q-SR1.2.0.0-10657-to-SR1.2.1.0-10702``; every
    package is for LWM2M (the fleet's usual protocol).
    """
    packages = []
    steps = list(itertools.pairwise(FIRMWARE_VERSIONS))
    for make, model in MODELS:
        for step, (source, target) in enumerate(steps):
            packages.append(
                Firmware(
                    name=f"{model}-{source}-to-{target}",
                    source=source,
                    target=target,
                    make=make,
                    model=model,
                    protocol=PROTOCOL,
                    launch_date=BASE_DATE - timedelta(days=60 * (len(steps) - step)),
                )
            )
    return tuple(packages)


FIRMWARE = {package.name: package for package in firmware_catalog()}


def upgrade_for(device: dict[str, Any]) -> Firmware | None:
    """The package that upgrades ``device`` (a :meth:`Fleet.device`) from its current firmware, or
    ``None`` when it runs the latest."""
    return next(
        (
            package
            for package in FIRMWARE.values()
            if (package.make, package.model, package.source)
            == (device["make"], device["model"], device["firmware"])
        ),
        None,
    )


@dataclass
class Outcome:
    """How a device's turn in a campaign ended."""

    status: str
    reason: str
    at: datetime
    started: datetime


@dataclass
class Campaign:
    """A firmware campaign and how far it got (``turns`` devices settled, ``credit`` seconds worked)."""

    id: str
    account: str
    name: str | None
    firmware: Firmware
    start: date
    end: date
    windows: list[tuple[int, int]]
    devices: list[int]  # fleet indices, in IMEI order
    auto_assign_license: bool
    auto_add_devices: bool
    created: datetime
    status: str = SCHEDULED
    stopped: datetime | None = None
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    turns: int = 0
    credit: float = 0.0
    processed_until: datetime | None = None
    turn_started: datetime | None = None

    @property
    def start_bound(self) -> datetime:
        return datetime.combine(self.start, time(), UTC)

    @property
    def end_bound(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time(), UTC)

    def json(self, status: str | None = None) -> dict[str, Any]:
        """The campaign as the vendor answers it (``status`` overrides the stored one)."""
        return {
            "id": self.id,
            "accountName": self.account,
            "campaignName": self.name,
            "firmwareName": self.firmware.name,
            "firmwareFrom": self.firmware.source,
            "firmwareTo": self.firmware.target,
            "protocol": self.firmware.protocol,
            "make": self.firmware.make,
            "model": self.firmware.model,
            "startDate": self.start.isoformat(),
            "endDate": self.end.isoformat(),
            "campaignTimeWindowList": [{"startTime": s, "endTime": e} for s, e in self.windows],
            "status": status or self.status,
            "autoAssignLicenseFlag": self.auto_assign_license,
            "autoAddDevicesFlag": self.auto_add_devices,
        }

    def active_spans(self, since: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The stretches of ``[since, until)`` in which the campaign works, in order."""
        low, high = max(since, self.start_bound), min(until, self.end_bound)
        windows = _merged(self.windows) or [(0, 24)]
        day = low.date()
        while low < high and day <= high.date():
            midnight = datetime.combine(day, time(), UTC)
            for first, last in windows:
                begin = max(low, midnight + timedelta(hours=first))
                finish = min(high, midnight + timedelta(hours=last))
                if begin < finish:
                    yield begin, finish
            day += timedelta(days=1)

    def next_attempt(self, after: datetime) -> datetime | None:
        """When the campaign next works, from ``after`` on (``None``: never again)."""
        return next((begin for begin, _ in self.active_spans(after, self.end_bound)), None)


def _merged(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(windows):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _date(value: Any, name: str) -> date:
    if not isinstance(value, str) or not DATE_PATTERN.fullmatch(value):
        raise CampaignError(INVALID_DATE, f"{name} must be a date as yyyy-mm-dd, got {value!r}.")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CampaignError(INVALID_DATE, f"{name} is not a valid date: {value!r}.") from None


def _windows(value: Any) -> list[tuple[int, int]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CampaignError(INVALID_TIME_WINDOW, "campaignTimeWindowList must be a list of time windows.")
    windows = []
    for window in value:
        first = window.get("startTime") if isinstance(window, dict) else None
        last = window.get("endTime") if isinstance(window, dict) else None
        if (
            not isinstance(first, int)
            or not isinstance(last, int)
            or isinstance(first, bool)
            or isinstance(last, bool)
            or not 0 <= first < last <= 24
        ):
            raise CampaignError(
                INVALID_TIME_WINDOW,
                f"Invalid time window {window!r}: startTime and endTime are hours with "
                "0 <= startTime < endTime <= 24.",
            )
        windows.append((first, last))
    return windows


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise CampaignError(INVALID_BODY, f"{name} must be true or false.")
    return value


class CampaignBook:
    """Every campaign of the simulator, kept under the state's lock.

    :param config: the rate, failure share and page size of campaigns, and the seed.
    :param fleet: the devices campaigns upgrade.
    :param now: the simulator clock.
    :param lock: the state's lock.
    """

    def __init__(
        self, config: SimulatorConfig, fleet: Fleet, now: Callable[[], datetime], lock: threading.RLock
    ) -> None:
        self.config = config
        self.fleet = fleet
        self.now = now
        self.lock = lock
        # Their own generator: campaign ids depend only on the seed and how many campaigns came before.
        self._ids = random.Random(f"iotfleet-campaigns-{config.seed}")
        self._campaigns: dict[str, Campaign] = {}

    # --- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self.lock:
            return len(self._campaigns)

    def campaign(self, campaign_id: str, account: str | None = None) -> Campaign:
        """The campaign, brought up to the clock; :class:`CampaignError` (404) if there is none."""
        with self.lock:
            found = self._campaigns.get(campaign_id)
            if found is None or (account is not None and found.account != account):
                raise CampaignError(CAMPAIGN_NOT_FOUND, f"Campaign {campaign_id} was not found.", 404)
            self._progress(found, self.now())
            return found

    def summary(self) -> dict[str, dict[str, Any]]:
        """Every campaign as the API shows it, plus ``devices``: ``{imei: {"status", "resultReason"}}``."""
        with self.lock:
            now = self.now()
            result = {}
            for campaign in self._campaigns.values():
                self._progress(campaign, now)
                devices = {}
                for position, index in enumerate(campaign.devices):
                    entry = self._device_entry(campaign, position, index, now)
                    devices[entry["deviceId"]] = {
                        "status": entry["status"],
                        "resultReason": entry["resultReason"],
                    }
                result[campaign.id] = {**campaign.json(), "devices": devices}
            return result

    def report(self, account: str, campaign_id: str, last_seen: str | None) -> dict[str, Any]:
        """One page of the campaign's device report: devices with IMEIs above ``last_seen``."""
        try:
            after = int(last_seen or "0")
        except ValueError:
            raise CampaignError(INVALID_PARAMETER, "lastSeenDeviceId must be a number.") from None
        page_size = self.config.campaign_page_size
        with self.lock:
            campaign = self.campaign(campaign_id, account)
            now = self.now()
            start = bisect.bisect_right(campaign.devices, after, key=lambda i: int(imei_of(i)))
            positions = range(start, min(start + page_size, len(campaign.devices)))
            page = [self._device_entry(campaign, p, campaign.devices[p], now) for p in positions]
            return {
                "hasMoreData": start + page_size < len(campaign.devices),
                "lastSeenDeviceId": page[-1]["deviceId"] if page else str(after),
                "maxPageSize": page_size,
                "totalDevice": len(campaign.devices),
                "deviceList": page,
            }

    def history(self, account: str, status: str | None, last_seen: str | None) -> dict[str, Any]:
        """One page of the account's campaigns in ``status``, ids above ``last_seen``, in id order."""
        if status not in CAMPAIGN_STATUSES:
            raise CampaignError(
                INVALID_PARAMETER, f"campaignStatus must be one of {', '.join(CAMPAIGN_STATUSES)}."
            )
        after = last_seen or "0"
        page_size = self.config.campaign_page_size
        with self.lock:
            now = self.now()
            for campaign in self._campaigns.values():
                self._progress(campaign, now)
            matching = sorted(
                (c for c in self._campaigns.values() if c.account == account and c.status == status),
                key=lambda c: c.id,
            )
            later = [c for c in matching if c.id > after]
            page = later[:page_size]
            return {
                "hasMoreData": len(later) > page_size,
                "lastSeenCampaignId": page[-1].id if page else after,
                "campaignList": [c.json() for c in page],
            }

    # --- writing ------------------------------------------------------------------------------

    def schedule(self, account: str, body: Any) -> Campaign:
        """Validate a ``POST /campaigns/firmware/{acc}`` body and create its campaign."""
        if not isinstance(body, dict):
            raise CampaignError(INVALID_BODY, "The request body must be a JSON object.")
        name = body.get("firmwareName")
        firmware = FIRMWARE.get(name) if isinstance(name, str) else None
        if firmware is None:
            raise CampaignError(FIRMWARE_NOT_FOUND, f"Firmware {name!r} is not available to the account.")
        if body.get("firmwareFrom") != firmware.source or body.get("firmwareTo") != firmware.target:
            raise CampaignError(
                INVALID_FIRMWARE,
                f"Firmware {firmware.name} upgrades {firmware.source} to {firmware.target}, not "
                f"{body.get('firmwareFrom')!r} to {body.get('firmwareTo')!r}.",
            )
        protocol = body.get("protocol", PROTOCOL)
        if protocol != firmware.protocol:
            raise CampaignError(
                INVALID_FIRMWARE, f"Firmware {firmware.name} is for {firmware.protocol}, not {protocol!r}."
            )
        campaign_name = body.get("campaignName")
        if campaign_name is not None and not isinstance(campaign_name, str):
            raise CampaignError(INVALID_BODY, "campaignName must be a string.")
        flags = _flag(body, "autoAssignLicenseFlag"), _flag(body, "autoAddDevicesFlag")
        with self.lock:
            now = self.now()
            start, end, windows = self._dates(body, now.date())
            devices = self._devices(body.get("deviceList"))
            campaign = Campaign(
                id=str(uuid.UUID(int=self._ids.getrandbits(128), version=4)),
                account=account,
                name=campaign_name,
                firmware=firmware,
                start=start,
                end=end,
                windows=windows,
                devices=devices,
                auto_assign_license=flags[0],
                auto_add_devices=flags[1],
                created=now,
                processed_until=now,
            )
            self._campaigns[campaign.id] = campaign
            return campaign

    def cancel(self, account: str, campaign_id: str) -> Campaign:
        """Cancel a campaign before its start date, abort it after; refused once ended or cancelled."""
        with self.lock:
            campaign = self.campaign(campaign_id, account)
            now = self.now()
            if campaign.status in FINAL_STATUSES:
                raise CampaignError(
                    CAMPAIGN_NOT_MODIFIABLE,
                    f"Campaign {campaign.id} is {campaign.status} and can no longer be cancelled.",
                )
            campaign.status = CANCELLED if now < campaign.start_bound else ABORTED
            campaign.stopped = now
            return campaign

    def change_devices(self, account: str, campaign_id: str, body: Any) -> dict[str, Any]:
        """Add (``"Type": "append"``) or remove devices before the campaign starts; per-device results."""
        kind = body.get("Type", body.get("type")) if isinstance(body, dict) else None
        imeis = body.get("deviceList") if isinstance(body, dict) else None
        if kind not in (ADD, REMOVE):
            raise CampaignError(INVALID_PARAMETER, f"Type must be {ADD!r} or {REMOVE!r}, got {kind!r}.")
        if not isinstance(imeis, list) or not imeis:
            raise CampaignError(EMPTY_DEVICE_LIST, "The request body must carry a non-empty deviceList.")
        with self.lock:
            campaign = self._modifiable(campaign_id, account, "Devices can only be added or removed")
            members = set(campaign.devices)
            results = []
            for imei in imeis:
                index = self.fleet.by_imei(imei)
                reason = ""
                if index is None:
                    reason = "Device not found in account."
                elif kind == ADD and index in members:
                    reason = "Device is already in the campaign."
                elif kind == REMOVE and index not in members:
                    reason = "Device is not in the campaign."
                elif kind == ADD:
                    members.add(index)
                else:
                    members.discard(index)
                results.append(
                    {"deviceId": str(imei), "status": "Failure" if reason else "Success", "Reason": reason}
                )
            campaign.devices = sorted(members)
            return {"accountName": account, "campaignId": campaign.id, "deviceList": results}

    def change_dates(self, account: str, campaign_id: str, body: Any) -> Campaign:
        """Move a campaign's dates and windows (windows left out means none).

        Before the start date, the same rules as when scheduling; once started, the start date
        stays and the end date can move to today or later.
        """
        if not isinstance(body, dict):
            raise CampaignError(INVALID_BODY, "The request body must be a JSON object.")
        with self.lock:
            campaign = self.campaign(campaign_id, account)
            now = self.now()
            if campaign.status in FINAL_STATUSES:
                raise CampaignError(
                    CAMPAIGN_NOT_MODIFIABLE,
                    f"Campaign {campaign.id} is {campaign.status}: its dates are final.",
                )
            if now < campaign.start_bound:
                start, end, windows = self._dates(body, now.date())
            else:
                start, end, windows = self._dates(body, campaign.start)
                if start != campaign.start:
                    raise CampaignError(
                        INVALID_DATE,
                        f"Campaign {campaign.id} has started: its startDate stays {campaign.start}.",
                    )
                if end < now.date():
                    raise CampaignError(INVALID_DATE, f"endDate {end} is before today ({now.date()}).")
            campaign.start, campaign.end, campaign.windows = start, end, windows
            return campaign

    def progress(self) -> None:
        """Bring every campaign up to the simulator clock."""
        with self.lock:
            now = self.now()
            for campaign in self._campaigns.values():
                self._progress(campaign, now)

    def done_by(self) -> datetime | None:
        """When the last device of the campaigns still at work will have had its turn; see
        :meth:`pending`."""
        return self.pending()[1]

    def pending(self) -> tuple[int, datetime | None]:
        """How many campaigns have devices still to upgrade, and when the last of those devices will
        have had its turn, on the simulator clock (the end of a campaign's dates if they run out
        first; ``None`` when no campaign has devices left). What the demo and the example tests
        move the clock to.
        """
        with self.lock:
            now = self.now()
            working, latest = 0, None
            seconds_per_device = 3600.0 / self.config.campaign_devices_per_hour
            for campaign in self._campaigns.values():
                self._progress(campaign, now)
                if campaign.status in FINAL_STATUSES or campaign.turns >= len(campaign.devices):
                    continue
                working += 1
                needed = len(campaign.devices) * seconds_per_device - campaign.credit
                done = campaign.end_bound
                for begin, finish in campaign.active_spans(now, campaign.end_bound):
                    available = (finish - begin).total_seconds()
                    if available >= needed:
                        done = begin + timedelta(seconds=needed)
                        break
                    needed -= available
                latest = done if latest is None else max(latest, done)
            return working, latest

    # --- internals ----------------------------------------------------------------------------

    def _dates(self, body: dict[str, Any], earliest: date) -> tuple[date, date, list[tuple[int, int]]]:
        start = _date(body.get("startDate"), "startDate")
        end = _date(body.get("endDate"), "endDate")
        if start < earliest:
            raise CampaignError(INVALID_DATE, f"startDate {start} is before today ({earliest}).")
        if end < start:
            raise CampaignError(INVALID_DATE, f"endDate {end} is before startDate {start}.")
        return start, end, _windows(body.get("campaignTimeWindowList"))

    def _devices(self, imeis: Any) -> list[int]:
        if not isinstance(imeis, list) or not imeis:
            raise CampaignError(EMPTY_DEVICE_LIST, "The request body must carry a non-empty deviceList.")
        indices = {imei: self.fleet.by_imei(imei) for imei in imeis}
        unknown = [str(imei) for imei, index in indices.items() if index is None]
        if unknown:
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise CampaignError(DEVICE_NOT_FOUND, f"Devices not found in account: {shown}.")
        return sorted({index for index in indices.values() if index is not None})

    def _modifiable(self, campaign_id: str, account: str, what: str) -> Campaign:
        campaign = self.campaign(campaign_id, account)
        if campaign.status in FINAL_STATUSES or self.now() >= campaign.start_bound:
            raise CampaignError(
                CAMPAIGN_NOT_MODIFIABLE,
                f"{what} before the campaign starts; campaign {campaign.id} is {campaign.status}, "
                f"start date {campaign.start}.",
            )
        return campaign

    def _progress(self, campaign: Campaign, now: datetime) -> None:
        """Upgrade the devices whose turn came between the last look and ``now``."""
        if campaign.status in FINAL_STATUSES or campaign.processed_until is None:
            return
        if now > campaign.processed_until:
            seconds_per_device = 3600.0 / self.config.campaign_devices_per_hour
            for begin, finish in campaign.active_spans(campaign.processed_until, now):
                while campaign.turns < len(campaign.devices) and begin < finish:
                    if campaign.turn_started is None:
                        campaign.turn_started = begin
                    threshold = (campaign.turns + 1) * seconds_per_device
                    needed = max(threshold - campaign.credit, 0.0)
                    available = (finish - begin).total_seconds()
                    if available >= needed:
                        done = begin + timedelta(seconds=needed)
                        self._settle(campaign, campaign.devices[campaign.turns], done, campaign.turn_started)
                        campaign.credit = threshold
                        campaign.turns += 1
                        campaign.turn_started = None
                        begin = done
                    else:
                        campaign.credit += available
                        begin = finish
                if campaign.turns >= len(campaign.devices):
                    break
            campaign.processed_until = now
        if now >= campaign.end_bound:
            campaign.status = ENDED

    def _settle(self, campaign: Campaign, index: int, at: datetime, started: datetime) -> None:
        device = self.fleet.device(index)
        firmware = campaign.firmware
        digest = hashlib.sha256(f"{self.config.seed}:{campaign.id}:{device['imei']}".encode()).digest()
        roll = int.from_bytes(digest[:8], "big") / 2**64
        if device["protocol"] == "HTTP":  # listed fotaEligible false: it cannot upgrade over the air
            outcome = Outcome(
                DEVICE_UPGRADE_FAILED,
                "Device is not FOTA eligible: its software cannot be upgraded over the air.",
                at,
                started,
            )
        elif (device["make"], device["model"]) != (firmware.make, firmware.model):
            outcome = Outcome(
                DEVICE_UPGRADE_FAILED,
                f"Device make/model {device['make']} {device['model']} does not meet the firmware's "
                f"prerequisites ({firmware.make} {firmware.model}).",
                at,
                started,
            )
        elif device["firmware"] != firmware.source:
            outcome = Outcome(
                DEVICE_UPGRADE_FAILED,
                f"Current device firmware {device['firmware']} is not the campaign's firmwareFrom "
                f"{firmware.source}.",
                at,
                started,
            )
        elif roll < self.config.campaign_failure_share:
            outcome = Outcome(
                DEVICE_UPGRADE_FAILED, FAILURE_REASONS[digest[8] % len(FAILURE_REASONS)], at, started
            )
        else:
            outcome = Outcome(DEVICE_FINISHED, SUCCESS_REASON, at, started)
            self.fleet.update(
                index, {"firmware": firmware.target, "reported_firmware": firmware.target}, at=at
            )
        campaign.outcomes[index] = outcome

    def _device_entry(self, campaign: Campaign, position: int, index: int, now: datetime) -> dict[str, Any]:
        """One device of the campaign's report, as of ``now`` (progress already applied)."""
        entry: dict[str, Any] = {
            "deviceId": imei_of(index),
            "status": DEVICE_REQUEST_PENDING,
            "resultReason": "",
            "updatedTime": iso_time(campaign.created),
            "recentAttemptTime": None,
            "nextAttemptTime": None,
        }
        outcome = campaign.outcomes.get(index)
        if outcome is not None:
            entry.update(
                status=outcome.status,
                resultReason=outcome.reason,
                updatedTime=iso_time(outcome.at),
                recentAttemptTime=iso_time(outcome.started),
            )
        elif campaign.status in FINAL_STATUSES:
            reasons = {
                CANCELLED: "Campaign cancelled by user.",
                ABORTED: "Campaign aborted by user.",
                ENDED: "Campaign ended before the device was upgraded.",
            }
            entry.update(
                status=DEVICE_REQUEST_FAILED,
                resultReason=reasons[campaign.status],
                updatedTime=iso_time(campaign.stopped or campaign.end_bound),
            )
        elif position == campaign.turns and campaign.turn_started is not None:
            entry.update(
                status=DEVICE_IN_PROGRESS,
                updatedTime=iso_time(campaign.turn_started),
                recentAttemptTime=iso_time(campaign.turn_started),
            )
        else:
            entry.update(
                status=DEVICE_QUEUED if now >= campaign.start_bound else DEVICE_REQUEST_PENDING,
                nextAttemptTime=iso_time(campaign.next_attempt(max(now, campaign.created))),
            )
        return entry
