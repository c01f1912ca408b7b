"""What ThingSpace answers, read: its error bodies, its vocabulary of statuses, and the device,
firmware and campaign records it returns, normalised to the provider's snake_case contract; and the
result types the hook builds from them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from airflow_provider_iotfleet.exceptions import IoTFleetCampaignDevicesError, IoTFleetError
from airflow_provider_iotfleet.hooks.verizon.eligibility import Refusals
from airflow_provider_iotfleet.http import ErrorMapping, Reply, VendorErrorBody, text_or_none

VENDOR = "Verizon ThingSpace"
SYNC_SUCCESS = "FirmwareVersionUpdateSuccess"
#: The reason given for a device a sync request named but ThingSpace's answer left out.
MISSING_FROM_ANSWER = "missing from ThingSpace's answer"

#: Campaign statuses after which nothing changes any more.
CAMPAIGN_FINAL_STATUSES = frozenset(
    {"CampaignEnded", "CampaignCancelled", "CampaignAborted", "CampaignFailed", "CampaignRequestFailed"}
)
#: Every campaign status ThingSpace reports.
CAMPAIGN_STATUSES = (
    "CampaignRequestPending",
    "CampaignRequestQueued",
    "CampaignScheduled",
    "CampaignRequestFailed",
    "CampaignCancelled",
    "CampaignAborted",
    "CampaignFailed",
    "CampaignEnded",
)
#: Statuses of a campaign a retried task may find and reuse: scheduled or running, or already ended.
CAMPAIGN_REUSABLE_STATUSES = (
    "CampaignRequestPending",
    "CampaignRequestQueued",
    "CampaignScheduled",
    "CampaignEnded",
)
#: Per-device campaign statuses: done well, done badly; anything else is still pending.
DEVICE_FINISHED = "Finished"
DEVICE_FAILED_STATUSES = frozenset({"UpgradeFailed", "RequestFailed"})


def _parse_error(body: Any) -> VendorErrorBody:
    # API errors: {"errorCode": "FOTA.REQUEST_FAILED.X", "errorMessage": "..."};
    # gateway auth failures: {"fault": {"code": "900901", "message": "Invalid Credentials"}}.
    if not isinstance(body, dict):
        return VendorErrorBody()
    if isinstance(body.get("fault"), dict):
        fault = body["fault"]
        return VendorErrorBody(
            code=text_or_none(fault.get("code")), message=text_or_none(fault.get("message"))
        )
    return VendorErrorBody(
        code=text_or_none(body.get("errorCode")), message=text_or_none(body.get("errorMessage"))
    )


VERIZON_ERRORS = ErrorMapping(vendor=VENDOR, parse_body=_parse_error)


# --- Normalisation -----------------------------------------------------------------------------

_TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S.%f %z", "%Y-%m-%d %H:%M:%S %z")
# ThingSpace's usual shape, which fromisoformat (C, ~20x faster than strptime) reads once the space
# before the offset is gone. Anything else takes the strptime path, so results never differ.
_COMMON_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?(?= [+-]\d{4}$)")


def _parse_timestamp(text: str) -> datetime | None:
    if match := _COMMON_TIMESTAMP.match(text):
        try:
            return datetime.fromisoformat(match.group() + text[match.end() + 1 :])
        except ValueError:
            pass  # out-of-range fields: let the general path decide, as it always did
    for pattern in _TIMESTAMP_FORMATS:
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# ThingSpace's usual shape in full, already UTC with milliseconds, each time field in range: once its
# date is known to exist, the answer is the same characters rearranged (no datetime at all). Matched
# without groups: the date is the first 10 characters, the time the 12 after the space.
_usual_timestamp = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01]) (?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3} \+0000 UTC",
    re.ASCII,
).fullmatch
#: Dates of the usual shape already seen to exist (a fleet's timestamps share a few thousand dates).
_KNOWN_DATES: set[str] = set()
_MAX_KNOWN_DATES = 100_000


def _date_exists(text: str) -> bool:
    """Whether ``YYYY-MM-DD`` (fields already in range) names a real date: not year 0, not 30 February."""
    if text in _KNOWN_DATES:
        return True
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    if len(_KNOWN_DATES) >= _MAX_KNOWN_DATES:
        _KNOWN_DATES.clear()
    _KNOWN_DATES.add(text)
    return True


def normalise_timestamp(value: Any) -> str | None:
    """Return a ThingSpace timestamp (``2020-11-10 15:35:00.122 +0000 UTC``) as ISO 8601 UTC.

    ``"N/A"``, empty and unreadable values become ``None``.
    """
    if value.__class__ is str and _usual_timestamp(value) and _date_exists(day := value[:10]):
        return day + "T" + value[11:23] + "Z"
    return _normalise_timestamp(value)


def _normalise_timestamp(value: Any) -> str | None:
    """:func:`normalise_timestamp` for any value: the general path, which the usual shape's
    rearrangement agrees with."""
    if not isinstance(value, str):
        return None
    text = value.strip().removesuffix(" UTC")
    if not text or text.upper() == "N/A":
        return None
    parsed = _parse_timestamp(text)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalise_device(item: dict[str, Any]) -> dict[str, Any]:
    """Return a FOTA device item with the snake_case keys of the provider's XCom contract."""
    get = item.get
    files = get("filesList", get("fileList"))
    software = get("softwareList")
    create_time, upgrade_time, status_time, refresh_time, last_connection_time = _device_times(get)
    return {
        "device_id": get("deviceId"),
        "mdn": get("mdn"),
        "make": get("make"),
        "model": get("model"),
        "firmware": get("firmware"),
        "fota_eligible": get("fotaEligible"),
        "license_assigned": get("licenseAssigned"),
        "status": get("status"),
        "protocol": get("protocol"),
        "software": _normalise_software(software) if software else [],
        "files": _normalise_files(files) if files else [],
        "create_time": create_time,
        "upgrade_time": upgrade_time,
        "status_time": status_time,
        "refresh_time": refresh_time,
        "last_connection_time": last_connection_time,
    }


def _normalise_files(files: Any) -> list[Any]:
    """A device's ``filesList`` (or ``fileList``), not empty, as the list of file names."""
    if not isinstance(files, list):
        files = [files]  # one file named on its own, not a list of its characters
    return [entry.get("name") if isinstance(entry, dict) else entry for entry in files]


def _normalise_software(software: Any) -> list[dict[str, Any]]:
    """A device's ``softwareList``, not empty, normalised; an entry that is not an object is none."""
    if not isinstance(software, list):  # one entry on its own; anything else is no entry
        software = [software]
    return [
        {
            "name": entry.get("name"),
            "version": entry.get("version"),
            "upgrade_time": normalise_timestamp(entry.get("upgradeTime")),
        }
        for entry in software
        if isinstance(entry, dict)
    ]


def _device_times(get: Any) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    """A device's create, upgrade, status, refresh and last connection times, normalised, from the
    item's ``get``."""
    # A device's status and refresh times are often its upgrade time again: read each text once.
    upgrade_text = get("upgradeTime")
    status_text = get("statusTime")
    refresh_text = get("refreshTime")
    upgrade_time = normalise_timestamp(upgrade_text)
    status_time = upgrade_time if status_text == upgrade_text else normalise_timestamp(status_text)
    if refresh_text == upgrade_text:
        refresh_time = upgrade_time
    elif refresh_text == status_text:
        refresh_time = status_time
    else:
        refresh_time = normalise_timestamp(refresh_text)
    return (
        normalise_timestamp(get("createTime")),
        upgrade_time,
        status_time,
        refresh_time,
        normalise_timestamp(get("lastConnectionTime")),
    )


#: ``json.dumps(value, separators=(",", ":"))`` without building an encoder per value: how each line
#: of a JSON Lines export is written.
encode_compact = json.JSONEncoder(separators=(",", ":")).encode
#: The same, but with a line break between the items of a list: in its output a line break is only
#: ever an item separator (ensure_ascii escapes any in a string), so one call encodes many values
#: that ``split("\n")`` takes apart again.
_encode_one_per_line = json.JSONEncoder(separators=("\n", ":")).encode
#: The keys of a normalised device, in order.
_DEVICE_KEYS = (
    "device_id",
    "mdn",
    "make",
    "model",
    "firmware",
    "fota_eligible",
    "license_assigned",
    "status",
    "protocol",
    "software",
    "files",
    "create_time",
    "upgrade_time",
    "status_time",
    "refresh_time",
    "last_connection_time",
)
_SOFTWARE_AT = _DEVICE_KEYS.index("software")
_FILES_AT = _DEVICE_KEYS.index("files")
#: One JSON line of a normalised device, each value's JSON text to fill in.
_DEVICE_LINE = "{" + ",".join(f'"{key}":%s' for key in _DEVICE_KEYS) + "}\n"


class DeviceLines(NamedTuple):
    """One page of the FOTA listing as JSON Lines (:func:`device_json_lines`)."""

    #: the page's devices, normalised (:func:`normalise_device`), one compact JSON object a line.
    text: str
    #: each device's ``deviceId`` (its ``device_id``), in the page's order.
    device_ids: list[Any]


def device_json_lines(items: list[dict[str, Any]]) -> str:
    """Return a page of FOTA device items as JSON Lines: each line ``encode_compact(normalise_device(
    item))``, byte for byte, without building the normalised dicts.

    Every value of the page is encoded in one call (:data:`_encode_one_per_line`) and the lines
    filled in with one ``%``: a device's ``software`` and ``files`` that are not empty are encoded
    on their own. Should a value be a list or object of more than one item (the split would not
    find one part per value), the page is encoded device by device instead.
    """
    if not items:
        return ""
    values: list[Any] = []
    nested: list[tuple[int, Any]] = []  # (position in values, its encoded text), where not empty
    for item in items:
        get = item.get
        files = get("filesList", get("fileList"))
        software = get("softwareList")
        if software:
            nested.append((len(values) + _SOFTWARE_AT, encode_compact(_normalise_software(software))))
        if files:
            nested.append((len(values) + _FILES_AT, encode_compact(_normalise_files(files))))
        values += (
            get("deviceId"),
            get("mdn"),
            get("make"),
            get("model"),
            get("firmware"),
            get("fotaEligible"),
            get("licenseAssigned"),
            get("status"),
            get("protocol"),
            (),  # software, "[]" unless filled in from nested
            (),  # files, likewise
            *_device_times(get),
        )
    texts = _encode_one_per_line(values)[1:-1].split("\n")
    if len(texts) != len(values):
        return "".join([encode_compact(normalise_device(item)) + "\n" for item in items])
    for position, text in nested:
        texts[position] = text
    return (_DEVICE_LINE * len(items)) % tuple(texts)


def refused_devices(reply: Reply) -> dict[str, str]:
    """The devices an add or remove answered 200 for but refused (``status: Failure`` in its
    per-device ``deviceList``), each with the vendor's reason."""
    body = reply.data if isinstance(reply.data, dict) else {}
    results = body.get("deviceList")
    if not isinstance(results, list):
        return {}  # an answer without per-device results: nothing refused
    return {
        str(entry.get("deviceId")): str(entry.get("Reason") or entry.get("reason") or "no reason given")
        for entry in results
        if isinstance(entry, dict) and str(entry.get("status", "")).lower() == "failure"
    }


def is_device_id(value: Any) -> bool:
    """Whether a listed device's ``deviceId`` can be one: a non-blank string or a number (not a bool)."""
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, int) and not isinstance(value, bool)


def sync_failure(imei: str, error: IoTFleetError) -> dict[str, Any]:
    """The ``failed`` entry of a device whose sync request failed as a whole."""
    return {"device_id": imei, "status": None, "reason": error.message, "error_code": error.error_code}


@dataclass(frozen=True)
class FirmwareSyncResult:
    """Per-device outcome of a firmware sync.

    :ivar synced: ``{"device_id", "firmware_version", "version_update_time", "status"}`` per success.
    :ivar failed: ``{"device_id", "status", "reason", "error_code"}`` per device ThingSpace did not
        sync: its per-device ``status`` and reason, or (``status`` ``None``) the error of the whole
        request, or a device missing from its answer.
    """

    account_name: str
    synced: list[dict[str, Any]]
    failed: list[dict[str, Any]]


def normalise_firmware(item: dict[str, Any]) -> dict[str, Any]:
    """Return an entry of the account's firmware list with snake_case keys."""
    return {
        "firmware_name": item.get("firmwareName"),
        "firmware_from": item.get("firmwareFrom"),
        "firmware_to": item.get("firmwareTo"),
        "launch_date": item.get("launchDate"),
        "release_note": item.get("releaseNote"),
        "make": item.get("make"),
        "model": item.get("model"),
        "protocol": item.get("protocol"),
    }


def normalise_campaign(item: dict[str, Any]) -> dict[str, Any]:
    """Return a ThingSpace campaign with snake_case keys; ``time_windows`` as ``[[start, end]]`` hours."""
    windows = item.get("campaignTimeWindowList") or []
    return {
        "campaign_id": None if item.get("id") is None else str(item["id"]),
        "account_name": item.get("accountName"),
        "campaign_name": item.get("campaignName"),
        "firmware_name": item.get("firmwareName"),
        "firmware_from": item.get("firmwareFrom"),
        "firmware_to": item.get("firmwareTo"),
        "protocol": item.get("protocol"),
        "make": item.get("make"),
        "model": item.get("model"),
        "start_date": item.get("startDate"),
        "end_date": item.get("endDate"),
        "time_windows": [
            [window.get("startTime"), window.get("endTime")] for window in windows if isinstance(window, dict)
        ],
        "status": item.get("status"),
    }


def normalise_campaign_device(item: dict[str, Any]) -> dict[str, Any]:
    """Return one device of a campaign's report with snake_case keys and ISO 8601 UTC times."""
    return {
        "device_id": None if item.get("deviceId") is None else str(item["deviceId"]),
        "status": item.get("status"),
        "reason": item.get("resultReason"),
        "updated_time": normalise_timestamp(item.get("updatedTime")),
        "recent_attempt_time": normalise_timestamp(item.get("recentAttemptTime")),
        "next_attempt_time": normalise_timestamp(item.get("nextAttemptTime")),
    }


@dataclass(frozen=True)
class CampaignProgress:
    """A campaign and where each of its devices stands.

    :ivar campaign: the campaign, as :func:`normalise_campaign` returns it.
    :ivar devices: its report, as :func:`normalise_campaign_device` returns each device, in IMEI order.
    """

    campaign: dict[str, Any]
    devices: list[dict[str, Any]]

    @property
    def status(self) -> str | None:
        return self.campaign.get("status")

    @property
    def finished(self) -> list[str]:
        """IMEIs upgraded."""
        return [device["device_id"] for device in self.devices if device["status"] == DEVICE_FINISHED]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """``{"device_id", "status", "reason"}`` of each device whose upgrade failed."""
        return [
            {"device_id": device["device_id"], "status": device["status"], "reason": device["reason"]}
            for device in self.devices
            if device["status"] in DEVICE_FAILED_STATUSES
        ]

    @property
    def pending(self) -> list[str]:
        """IMEIs neither upgraded nor failed yet."""
        return [
            device["device_id"]
            for device in self.devices
            if device["status"] != DEVICE_FINISHED and device["status"] not in DEVICE_FAILED_STATUSES
        ]

    @property
    def over(self) -> bool:
        """Whether nothing more will happen: the campaign is over, or every device is done."""
        return self.status in CAMPAIGN_FINAL_STATUSES or (bool(self.devices) and not self.pending)


@dataclass(frozen=True)
class EnsuredCampaign:
    """Where :meth:`~airflow_provider_iotfleet.hooks.verizon.VerizonThingSpaceHook.ensure_campaign`
    left a firmware upgrade campaign and each device asked for.

    :ivar campaign: the campaign found by its name or scheduled, as :func:`normalise_campaign`
        returns it (as first read: :attr:`status` says whether it was cancelled since).
    :ivar reused: whether it was found by its name (an earlier try's) rather than scheduled now.
    :ivar devices: the IMEIs asked for, each once, in order.
    :ivar too_late: IMEIs the reused campaign lacks and can no longer take: it has started, and
        ThingSpace adds devices only before the start date. It is left running for the others.
    :ivar not_added: why IMEIs could not join the campaign: the error names them (``devices``), with
        ThingSpace's reason for each it refused one by one (``refused``). The campaign was then
        cancelled, so that it never runs with part of its devices (``campaign_status``); ``None``
        there means cancelling failed too, and the campaign still runs with the others.
    :ivar ineligible: IMEIs left out of the campaign because their upgrade would fail (not in the
        account, not FOTA-eligible, another make or model, other firmware), grouped by why, as the
        dry run groups them (:func:`~airflow_provider_iotfleet.hooks.verizon.eligibility.judge_devices`).
    :ivar already: IMEIs the reused campaign had before this call: nothing was sent for them.
    """

    #: ``None`` when no device could upgrade, so that no campaign was scheduled.
    campaign: dict[str, Any] | None
    reused: bool
    devices: list[str]
    too_late: list[str] = field(default_factory=list)
    not_added: IoTFleetCampaignDevicesError | None = None
    ineligible: Refusals = field(default_factory=Refusals)
    already: list[str] = field(default_factory=list)

    @property
    def campaign_id(self) -> str | None:
        """The campaign's id; ``None`` when none was scheduled."""
        return None if self.campaign is None else str(self.campaign["campaign_id"])

    @property
    def cancelled(self) -> bool:
        """Whether the campaign was cancelled because devices could not join it."""
        return self.not_added is not None and self.not_added.campaign_status is not None

    @property
    def status(self) -> str | None:
        """The campaign's status: how it ended when it was cancelled, else as found or scheduled."""
        if self.not_added is not None and self.not_added.campaign_status is not None:
            return self.not_added.campaign_status
        status: str | None = None if self.campaign is None else self.campaign["status"]
        return status

    @property
    def scheduled(self) -> list[str]:
        """IMEIs in the campaign, to upgrade within its dates (none once it is cancelled)."""
        if self.cancelled:
            return []
        left_out = set(self.too_late) | set(self.not_added.devices if self.not_added is not None else ())
        left_out |= self.ineligible.devices
        return [imei for imei in self.devices if imei not in left_out]

    @property
    def left_out(self) -> dict[str, str]:
        """Each IMEI asked for that is not :attr:`scheduled`, with why: ThingSpace's reason for one it
        refused, the error of the request that failed for the others not added, that the campaign
        had started (:attr:`started_reason`) or that it was cancelled (:attr:`cancelled_reason`)."""
        reasons = dict.fromkeys(self.too_late, self.started_reason) if self.too_late else {}
        reasons.update(
            (imei, message) for (_, message), devices in self.ineligible.groups.items() for imei in devices
        )
        error = self.not_added
        if error is not None:
            for imei in error.devices:
                refused = error.refused.get(imei)
                reasons[imei] = error.bare_message if refused is None else f"refused by ThingSpace: {refused}"
            if self.cancelled:
                for imei in self.devices:
                    reasons.setdefault(imei, self.cancelled_reason)
        return {imei: reasons[imei] for imei in self.devices if imei in reasons}

    @property
    def started_reason(self) -> str:
        """Why the devices in :attr:`too_late` are not in the campaign."""
        assert self.campaign is not None, "only a campaign found by its name has started"
        return (
            f"campaign {self.campaign_id} started ({self.campaign['start_date']}) before these devices could "
            "be added, and ThingSpace adds devices only before the start date; upgrade them in another "
            "campaign"
        )

    @property
    def cancelled_reason(self) -> str:
        """Why the devices that were in the campaign will not upgrade, once it is cancelled."""
        not_added = len(self.not_added.devices) if self.not_added is not None else 0
        return (
            f"campaign {self.campaign_id} was cancelled ({self.status}) because {not_added} of its devices "
            "could not be added: it never runs with part of its devices"
        )
