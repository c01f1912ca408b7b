"""Verizon ThingSpace FOTA v3: device firmware listing (paginated) and firmware sync.

Every call carries two credentials: an OAuth2 bearer token and an M2M session token from a login
with the ThingSpace (UWS) user. Five failed logins in a row lock that user, so a refused login is
never repeated within one hook.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetCampaignDevicesError,
    IoTFleetError,
    IoTFleetOutcomeUnknownError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.http import (
    SYSTEM_CLOCK,
    Auth,
    Call,
    Clock,
    ConnectionSettings,
    ErrorMapping,
    Reply,
    Request,
    VendorErrorBody,
    text_or_none,
)
from airflow_provider_iotfleet.http.auth import Build, Flow, Sent, Step, TokenSource, oauth_client_credentials
from airflow_provider_iotfleet.http.concurrency import map_batches
from airflow_provider_iotfleet.http.errors import malformed_response
from airflow_provider_iotfleet.http.plans import Plan, arun_plan, run_plan
from airflow_provider_iotfleet.http.retry import answer_lost
from airflow_provider_iotfleet.utils import chunks
from airflow_provider_iotfleet.validation import (
    check_batch_size,
    path_segment_problem,
    validate_campaign_id,
    validate_campaign_name,
    validate_campaign_schedule,
    validate_firmware_choice,
    validate_imeis,
)

VENDOR = "Verizon ThingSpace"
DEFAULT_HOST = "https://thingspace.verizon.com"
FOTA_PATH = "/api/fota/v3"
OAUTH_PATH = "/api/ts/v1/oauth2/token"
LOGIN_PATH = "/api/m2m/v1/session/login"
#: An expired M2M session answers 400 with an error code ending in this; we log in again once.
SESSION_EXPIRED_SUFFIX = "SessionToken.Expired"
SYNC_SUCCESS = "FirmwareVersionUpdateSuccess"
MAX_SYNC_IMEIS = 100
#: The reason given for a device a sync request named but ThingSpace's answer left out.
MISSING_FROM_ANSWER = "missing from ThingSpace's answer"
#: IMEIs per POST body of the subset listing: the vendor documents no cap, so one page's worth.
MAX_LIST_IMEIS = 1000
PROTOCOLS = ("LWM2M", "OMADM", "HTTP")
#: IMEIs per campaign request (the schedule, then each add or remove): ThingSpace documents no cap,
#: so one report page's worth.
MAX_CAMPAIGN_IMEIS = 1000
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


def _segment(value: str) -> str:
    """A path segment: account names and campaign ids are quoted whole."""
    return quote(value, safe="")


def _campaign_path(account: str, campaign_id: str, *, prefix: str = "campaigns", suffix: str = "") -> str:
    """``{prefix}/{account}/{campaign id}{suffix}``, the campaign id checked first."""
    return f"{prefix}/{_segment(account)}/{_segment(validate_campaign_id(campaign_id))}{suffix}"


def _campaign_report_path(account: str, campaign_id: str) -> str:
    """Where a campaign's per-device report pages: ``reports/{account}/campaigns/{id}/devices``."""
    return f"reports/{_segment(account)}/campaigns/{_segment(validate_campaign_id(campaign_id))}/devices"


def _protocol(protocol: Any) -> str:
    if not isinstance(protocol, str) or protocol.upper() not in PROTOCOLS:
        raise IoTFleetValidationError(
            "protocol is invalid", [f"{protocol!r} is not one of {', '.join(PROTOCOLS)}"]
        )
    return protocol.upper()


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


class M2MSession(TokenSource):
    """The ThingSpace M2M session token: a login with the UWS user, carrying a bearer token.

    The login is sent once, never repeated: five refusals in a row lock the user. A refusal of the
    credentials is remembered, so no later call of the same hook logs in again. A 401 is the gateway
    refusing the bearer token (the M2M service never saw the credentials; no lockout count); a 429 or
    5xx is not a refusal either. The session has no lifetime: it expires after 20 idle minutes and is
    renewed when a call is answered ``SessionToken.Expired``.
    """

    def __init__(self, login_url: str, username: str, password: str, clock: Clock) -> None:
        super().__init__(
            login=lambda bearer: Call(
                "POST",
                login_url,
                json={"username": username, "password": password},
                headers={"Authorization": f"Bearer {bearer}"},
                repeat="never",
                rate_limited=False,
                credentials=True,
            ),
            read=lambda reply: (reply.field("sessionToken", str), None),
            clock=clock,
            refresh_lead=0.0,
            credential_hint="the m2m_username and m2m_password extras",
        )
        self.refused_login: IoTFleetError | None = None

    def obtain(self, build: Build, *depends: str) -> Generator[Step, Sent, str]:
        if self.refused_login is not None:
            refusal = self.refused_login
            raise IoTFleetAuthError(
                f"{VENDOR}: not logging in again after the M2M login was refused earlier "
                f"(five refusals in a row lock the account): {refusal.message}",
                http_status=refusal.http_status,
                error_code=refusal.error_code,
                request_id=refusal.request_id,
                vendor=VENDOR,
            ).with_hint(self.credential_hint)
        return (yield from super().obtain(build, *depends))

    def refused(self, error: IoTFleetError) -> IoTFleetError:
        status = error.http_status
        if status is None or not 400 <= status < 500 or status == 429:
            return error
        refusal = IoTFleetAuthError(
            f"{VENDOR}: the M2M session login was refused: {error.message}",
            http_status=status,
            error_code=error.error_code,
            request_id=error.request_id,
            vendor=VENDOR,
        )
        if status == 401:
            return refusal  # the bearer token's fault: the flow drops it; its hint is the OAuth one
        # ThingSpace refuses bad M2M credentials with a 400 and a generic code
        # (REQUEST_FAILED.UnexpectedError): an auth failure all the same, and one towards the lockout.
        self.refused_login = error
        return refusal.with_hint(self.credential_hint)


class ThingSpaceAuth(Auth):
    """Bearer token plus ``VZ-M2M-Token`` session token on every request.

    Each credential is renewed at most once per request: the bearer token after a 401, the session
    after ``SessionToken.Expired`` (both may expire together in a long listing).
    """

    def __init__(self, oauth: TokenSource, session: M2MSession) -> None:
        self.oauth = oauth
        self.session = session
        self.credential_hint = oauth.credential_hint

    def obtain(self, build: Build) -> Flow:
        bearer = yield from self.oauth.obtain(build)
        yield from self._session(build, bearer)

    def flow(self, request: Request, build: Build) -> Flow:
        renewed: set[str] = set()
        while True:
            bearer = yield from self.oauth.obtain(build)
            session = yield from self._session(build, bearer)
            outcome = yield request.with_headers(
                {"Authorization": f"Bearer {bearer}", "VZ-M2M-Token": session}
            )
            if not isinstance(outcome, IoTFleetVendorResponseError):
                return
            if outcome.http_status == 401 and "bearer" not in renewed:
                renewed.add("bearer")
                self.oauth.invalidate(bearer)
            elif (outcome.error_code or "").endswith(SESSION_EXPIRED_SUFFIX) and "session" not in renewed:
                renewed.add("session")
                self.session.invalidate(session)
            else:
                return

    def _session(self, build: Build, bearer: str) -> Generator[Step, Sent, str]:
        try:
            return (yield from self.session.obtain(build, bearer))
        except IoTFleetAuthError as error:
            if error.http_status == 401:
                # The gateway refused the bearer token at the login: drop it, the next call starts afresh.
                self.oauth.invalidate(bearer)
                raise error.with_hint(self.oauth.credential_hint) from None
            raise


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


def normalise_timestamp(value: Any) -> str | None:
    """Return a ThingSpace timestamp (``2020-11-10 15:35:00.122 +0000 UTC``) as ISO 8601 UTC.

    ``"N/A"``, empty and unreadable values become ``None``.
    """
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
    files = item.get("filesList", item.get("fileList")) or []
    if not isinstance(files, list):  # one file named on its own, not a list of its characters
        files = [files]
    software_list = item.get("softwareList") or []
    if not isinstance(software_list, list):  # one entry on its own; anything else is no entry
        software_list = [software_list]
    return {
        "device_id": item.get("deviceId"),
        "mdn": item.get("mdn"),
        "make": item.get("make"),
        "model": item.get("model"),
        "firmware": item.get("firmware"),
        "fota_eligible": item.get("fotaEligible"),
        "license_assigned": item.get("licenseAssigned"),
        "status": item.get("status"),
        "protocol": item.get("protocol"),
        "software": [
            {
                "name": software.get("name"),
                "version": software.get("version"),
                "upgrade_time": normalise_timestamp(software.get("upgradeTime")),
            }
            for software in software_list
            if isinstance(software, dict)
        ],
        "files": [entry.get("name") if isinstance(entry, dict) else entry for entry in files],
        "create_time": normalise_timestamp(item.get("createTime")),
        "upgrade_time": normalise_timestamp(item.get("upgradeTime")),
        "status_time": normalise_timestamp(item.get("statusTime")),
        "refresh_time": normalise_timestamp(item.get("refreshTime")),
        "last_connection_time": normalise_timestamp(item.get("lastConnectionTime")),
    }


def _refused_devices(reply: Reply) -> dict[str, str]:
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


def _is_device_id(value: Any) -> bool:
    """Whether a listed device's ``deviceId`` can be one: a non-blank string or a number (not a bool)."""
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, int) and not isinstance(value, bool)


def _next_page(reply: Reply, last_seen: str, seen: set[str], cursor: str = "lastSeenDeviceId") -> str | None:
    """The ``cursor`` field to ask for next, or ``None`` after the last page, in a listing whose order
    ThingSpace does not document (campaigns, by ``lastSeenCampaignId``); device listings, in IMEI
    order, are checked by :class:`_DevicePages`.

    :param seen: the cursors asked for so far in this listing (one per page); one coming back again
        (a cursor that does not move, or one that cycles) would page forever, so it is an error.
    """
    if not reply.field("hasMoreData", bool, required=False):
        return None
    next_seen = str(reply.field(cursor, (str, int)))
    seen.add(last_seen)
    if next_seen in seen:
        raise malformed_response(
            VENDOR,
            reply.action,
            f"hasMoreData and a {cursor} ({next_seen}) it had already sent: it would page forever",
            request_id=reply.request_id,
        )
    return next_seen


def _cursor_after(cursor: str, previous: str) -> bool:
    """Whether ``cursor`` comes after ``previous``: as numbers when both are digits (IMEIs, and the
    ``0`` of the first page), else as text."""
    if cursor.isascii() and cursor.isdigit() and previous.isascii() and previous.isdigit():
        return int(cursor) > int(previous)
    return cursor > previous


class _DevicePages:
    """Where a device listing paged by ``lastSeenDeviceId`` stands, each page checked to move it on.

    ThingSpace lists devices in IMEI order, each page starting after the IMEI it was asked for. A
    cursor that does not move forward, or a page holding a device of the page before, means the
    listing would run for ever (one ran 3,000 pages of the same devices with a cursor moving back):
    both are errors. Only the previous page's ids are kept, so memory stays one page's worth
    whatever the account's size.
    """

    def __init__(self) -> None:
        #: what the next request asks for; ``None`` once the last page has been read.
        self.last_seen: str | None = "0"
        self._previous_ids: frozenset[str] = frozenset()

    def turn(self, reply: Reply, items: Sequence[dict[str, Any]]) -> None:
        """Check the page ``reply`` brought (its ``items``), then move :attr:`last_seen` on.

        :raises IoTFleetVendorResponseError: for a device of the previous page again, or
            ``hasMoreData`` with a cursor that does not come after the one asked for.
        """
        asked = self.last_seen or "0"
        ids = frozenset(str(item["deviceId"]) for item in items if item.get("deviceId") is not None)
        repeated = ids & self._previous_ids
        if repeated:
            raise malformed_response(
                VENDOR,
                reply.action,
                f"{len(repeated)} devices of the page before again (e.g. {min(repeated)}) after "
                f"lastSeenDeviceId {asked}: the listing does not move forward",
                request_id=reply.request_id,
            )
        self._previous_ids = ids
        if not reply.field("hasMoreData", bool, required=False):
            self.last_seen = None
            return
        cursor = str(reply.field("lastSeenDeviceId", (str, int)))
        if not _cursor_after(cursor, asked):
            raise malformed_response(
                VENDOR,
                reply.action,
                f"hasMoreData and a lastSeenDeviceId ({cursor}) not past the lastSeenDeviceId ({asked}) "
                "it had already sent: it would page forever",
                request_id=reply.request_id,
            )
        self.last_seen = cursor


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


# --- Hook --------------------------------------------------------------------------------------


class VerizonThingSpaceHook(IoTFleetBaseHook):
    """List FOTA devices and sync their firmware on Verizon ThingSpace.

    Connection: ``host`` is the ThingSpace root (default ``https://thingspace.verizon.com``; the FOTA,
    OAuth and M2M paths are appended), ``login`` / ``password`` the OAuth key and secret. Extras:
    ``m2m_username`` and ``m2m_password`` (required), ``account_name`` (default account),
    ``oauth_url`` and ``m2m_login_url`` (override the derived endpoints), ``requests_per_second``
    (10; ThingSpace publishes no limit), ``timeout``, ``max_retries``.

    :param verizon_thingspace_conn_id: the Airflow connection id.
    :param rate_limit_share: this hook's share of the connection's rate limit (see
        :class:`~airflow_provider_iotfleet.hooks.base.IoTFleetBaseHook`).
    """

    conn_name_attr = "verizon_thingspace_conn_id"
    default_conn_name = "verizon_thingspace_default"
    conn_type = "verizon_thingspace"
    hook_name = "Verizon ThingSpace"
    secret_extras = ("m2m_password",)

    def __init__(
        self,
        verizon_thingspace_conn_id: str = default_conn_name,
        *,
        clock: Clock = SYSTEM_CLOCK,
        rate_limit_share: float = 1.0,
    ) -> None:
        super().__init__(verizon_thingspace_conn_id, clock=clock, rate_limit_share=rate_limit_share)

    def _client_options(self, settings: ConnectionSettings) -> dict[str, Any]:
        root = settings.base_url(default=DEFAULT_HOST)
        oauth = oauth_client_credentials(
            settings.url("oauth_url", f"{root}{OAUTH_PATH}"),
            settings.require_login("OAuth key"),
            settings.require_password("OAuth secret"),
            clock=self.clock,
            default_lifetime=3600.0,
            credential_hint="the login (OAuth key) and password (OAuth secret)",
        )
        session = M2MSession(
            settings.url("m2m_login_url", f"{root}{LOGIN_PATH}"),
            settings.require_str("m2m_username", "ThingSpace M2M (UWS) user name"),
            settings.require_str("m2m_password", "ThingSpace M2M (UWS) password"),
            self.clock,
        )
        return {
            "base_url": f"{root}{FOTA_PATH}",
            "errors": VERIZON_ERRORS,
            "auth": ThingSpaceAuth(oauth, session),
            **self._transport_options(settings, settings.get_float("requests_per_second", 10.0)),
        }

    def resolve_account(self, account_name: str | None = None) -> str:
        """Return ``account_name``, or the connection's ``account_name`` extra when it is not given.

        :raises IoTFleetValidationError: when neither is set, or the name is blank, not a string, or
            not one plain path segment (``.``, ``..``, a ``/`` or ``%`` would send the request, with
            its credentials, to another path).
        """
        account = account_name if account_name is not None else self.settings.get_str("account_name")
        if not isinstance(account, str) or not account.strip():
            raise IoTFleetValidationError(
                "account_name is missing",
                [f"pass account_name or set the 'account_name' extra of {self.settings.label}"],
            )
        if problem := path_segment_problem(account.strip()):
            source = (
                "" if account_name is not None else f" (the 'account_name' extra of {self.settings.label})"
            )
            raise IoTFleetValidationError(
                "account_name is invalid",
                [f"{account!r}{source} is not a ThingSpace account name: it {problem}"],
            )
        return account.strip()

    def iter_fota_device_pages(
        self,
        imeis: Sequence[str] | None = None,
        *,
        account_name: str | None = None,
        protocol: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Return an iterator over the account's FOTA devices, one normalised page (up to 1000) at a time.

        Each page is requested only when the previous one has been consumed, so the whole account is
        never held in memory. Arguments are checked at once, before any request.

        :param imeis: only these devices (``POST``, :data:`MAX_LIST_IMEIS` per request body);
            ``None`` lists the whole account (``GET``). IMEIs the account does not have are absent.
        :param account_name: the billing account (leading zeros included); default: the connection's.
        :param protocol: ``LWM2M``, ``OMADM`` or ``HTTP`` to filter on.
        :raises IoTFleetValidationError: for a bad IMEI or protocol, before any request.
        """
        account = self.resolve_account(account_name)
        checked = validate_imeis(imeis) if imeis is not None else None
        if protocol is not None:
            protocol = _protocol(protocol)
        path = f"devices/{_segment(account)}"
        if checked is None:
            return self._device_pages(path, None, protocol)
        return (
            page
            for start in range(0, len(checked), MAX_LIST_IMEIS)
            for page in self._device_pages(
                path, {"deviceList": checked[start : start + MAX_LIST_IMEIS]}, protocol
            )
        )

    def _device_pages(
        self, path: str, body: dict[str, Any] | None, protocol: str | None
    ) -> Iterator[list[dict[str, Any]]]:
        pages = _DevicePages()
        while pages.last_seen is not None:
            params = {"lastSeenDeviceId": pages.last_seen}
            if protocol:
                params["protocol"] = protocol.upper()
            reply = self.client.send(
                Call("POST", path, params=params, json=body)
                if body is not None
                else Call("GET", path, params=params)
            )
            # Required: an answer without the list is not an empty fleet.
            items = reply.objects("deviceList")
            if not all(_is_device_id(item.get("deviceId")) for item in items):
                # A device without its IMEI would go to XCom as a listed device that is none.
                raise malformed_response(
                    VENDOR, reply.action, "a device without a deviceId", request_id=reply.request_id
                )
            pages.turn(reply, items)  # before the page goes out: a repeated page never reaches the caller
            yield [normalise_device(item) for item in items]

    def firmware_versions(
        self, imeis: Sequence[str], *, account_name: str | None = None
    ) -> dict[str, str | None]:
        """Return the firmware each device in ``imeis`` reports (POST listing, 1000 IMEIs per body).

        :return: ``{imei: firmware}`` for the devices the account has; IMEIs it does not have are absent.
        :raises IoTFleetValidationError: for a bad IMEI or a missing account, before any request.
        """
        return run_plan(self.client, self._firmware_plan(imeis, account_name))

    async def afirmware_versions(
        self, imeis: Sequence[str], *, account_name: str | None = None
    ) -> dict[str, str | None]:
        """:meth:`firmware_versions` for triggers."""
        client = await self.aclient()
        return await arun_plan(client, self._firmware_plan(imeis, account_name))

    def _firmware_plan(self, imeis: Sequence[str], account_name: str | None) -> Plan[dict[str, str | None]]:
        account = self.resolve_account(account_name)
        checked = validate_imeis(imeis)
        path = f"devices/{_segment(account)}"
        firmware: dict[str, str | None] = {}
        for start in range(0, len(checked), MAX_LIST_IMEIS):
            body = {"deviceList": checked[start : start + MAX_LIST_IMEIS]}
            pages = _DevicePages()
            while pages.last_seen is not None:
                (reply,) = yield [Call("POST", path, params={"lastSeenDeviceId": pages.last_seen}, json=body)]
                items = reply.objects("deviceList")
                pages.turn(reply, items)
                for item in items:
                    firmware[str(item.get("deviceId"))] = item.get("firmware")
        return firmware

    def iter_fota_devices(
        self,
        imeis: Sequence[str] | None = None,
        *,
        account_name: str | None = None,
        protocol: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Return an iterator over the account's FOTA devices one by one; see :meth:`iter_fota_device_pages`."""
        pages = self.iter_fota_device_pages(imeis, account_name=account_name, protocol=protocol)
        return (device for page in pages for device in page)

    def sync_firmware(self, imeis: Sequence[str], *, account_name: str | None = None) -> FirmwareSyncResult:
        """Ask ThingSpace to read the firmware reported by each device (``PUT /firmware/{acc}/devices``).

        IMEIs are sent 100 per request, the documented cap. A request that fails puts its IMEIs in
        ``failed`` with the error's code and message; it never loses what earlier requests synced.
        Refused credentials stop the run: later IMEIs fail as not attempted.

        :param imeis: the devices, 15-digit IMEIs.
        :param account_name: the billing account; default: the connection's.
        :return: every IMEI once, in ``synced`` or ``failed``.
        :raises IoTFleetValidationError: listing every bad IMEI, before any request.
        """
        account = self.resolve_account(account_name)
        checked = validate_imeis(imeis)
        synced: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for outcome in map_batches(
            lambda batch: self.sync_firmware_batch(batch, account_name=account),
            chunks(checked, MAX_SYNC_IMEIS),
        ):
            if outcome.result is not None:
                synced.extend(outcome.result.synced)
                failed.extend(outcome.result.failed)
            elif outcome.error is not None:
                failed.extend(sync_failure(imei, outcome.error) for imei in outcome.items)
        self.log.info("%s: firmware synced for %d of %d devices", VENDOR, len(synced), len(checked))
        return FirmwareSyncResult(account_name=account, synced=synced, failed=failed)

    def sync_firmware_batch(
        self, imeis: Sequence[str], *, account_name: str | None = None
    ) -> FirmwareSyncResult:
        """Sync the firmware of at most 100 devices in one request; see :meth:`sync_firmware`.

        :return: every IMEI once: ``synced``, or ``failed`` with ThingSpace's per-device status and
            reason (or as missing from its answer). Answers for devices not sent are ignored.
        :raises IoTFleetValidationError: for a bad IMEI or more than 100 of them, before any request.
        :raises IoTFleetVendorResponseError: when ThingSpace refused the request as a whole.
        """
        account = self.resolve_account(account_name)
        batch = validate_imeis(imeis)
        check_batch_size(len(batch), MAX_SYNC_IMEIS, "imeis")
        # Idempotent (ThingSpace reads the devices' firmware again): retried like a read, on 5xx too.
        reply = self.client.send(
            Call("PUT", f"firmware/{_segment(account)}/devices", json={"deviceList": batch}, repeat="always")
        )
        key = "deviceFirmwarVersionList"  # sic: the vendor's spelling
        if key not in reply.object() and "deviceFirmwareVersionList" in reply.object():
            key = "deviceFirmwareVersionList"
        requested = set(batch)
        answers: dict[str, dict[str, Any]] = {}
        for item in reply.objects(key):
            device_id = item.get("deviceId")
            if isinstance(device_id, str | int) and str(device_id) in requested:
                answers.setdefault(str(device_id), item)
            else:
                self.log.warning("%s: ignoring an answer for unrequested device %r", VENDOR, device_id)
        synced: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for imei in batch:
            answer = answers.get(imei)
            if answer is None:
                failed.append(
                    {
                        "device_id": imei,
                        "status": None,
                        "reason": MISSING_FROM_ANSWER,
                        "error_code": None,
                    }
                )
            elif answer.get("status") == SYNC_SUCCESS:
                synced.append(
                    {
                        "device_id": imei,
                        "firmware_version": answer.get("firmwareVersion"),
                        "version_update_time": normalise_timestamp(
                            answer.get("VersionUpdateTime", answer.get("firmwareVersionUpdateTime"))
                        ),
                        "status": SYNC_SUCCESS,
                    }
                )
            else:
                failed.append(
                    {
                        "device_id": imei,
                        "status": answer.get("status"),
                        "reason": answer.get("reason", answer.get("Reason")),
                        "error_code": None,
                    }
                )
        return FirmwareSyncResult(account_name=account, synced=synced, failed=failed)

    # --- firmware upgrade campaigns -----------------------------------------------------------

    def list_firmware(
        self, *, account_name: str | None = None, protocol: str = "LWM2M"
    ) -> list[dict[str, Any]]:
        """Return the firmware upgrades available to the account (``GET /firmware/{acc}``).

        :return: ``{"firmware_name", "firmware_from", "firmware_to", "launch_date", "release_note",
            "make", "model", "protocol"}`` per upgrade.
        :raises IoTFleetValidationError: for a bad protocol or a missing account, before any request.
        """
        account = self.resolve_account(account_name)
        reply = self.client.send(
            Call("GET", f"firmware/{_segment(account)}", params={"protocol": _protocol(protocol)})
        )
        if not isinstance(reply.data, list) or not all(isinstance(item, dict) for item in reply.data):
            raise malformed_response(
                VENDOR, reply.action, "something other than a list of firmware", request_id=reply.request_id
            )
        return [normalise_firmware(item) for item in reply.data]

    def schedule_campaign(
        self,
        imeis: Sequence[str],
        *,
        firmware_name: str,
        firmware_from: str,
        firmware_to: str,
        start_date: Any,
        end_date: Any,
        time_windows: Any = None,
        campaign_name: str | None = None,
        protocol: str = "LWM2M",
        account_name: str | None = None,
        auto_assign_license: bool = True,
        auto_add_devices: bool = False,
        on_scheduled: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Schedule a firmware upgrade campaign (``POST /campaigns/firmware/{acc}``).

        The first :data:`MAX_CAMPAIGN_IMEIS` devices go into the schedule request, the rest are
        added in batches of as many (:meth:`add_campaign_devices`); ThingSpace takes added devices
        only before the start date, so a campaign of more devices must start after today. When some
        cannot be added, the campaign is cancelled, so that it never runs with part of its devices,
        and :class:`IoTFleetCampaignDevicesError` names every device left out. Everything is
        checked first.

        The schedule is not sent twice: if its answer is lost, the campaign is looked up by
        ``campaign_name`` (so give one); without a name, or when none is found, the outcome is unknown.

        :param start_date: the first day devices may upgrade (``yyyy-mm-dd``, a date or datetime);
            not in the past.
        :param end_date: the last such day, not before ``start_date``.
        :param time_windows: hours of the day (UTC) within which devices upgrade, e.g.
            ``[(0, 4), (22, 24)]``; ``None`` for any time of day.
        :param on_scheduled: called with the campaign as soon as ThingSpace has it, before any device
            is added: where a caller keeps its id, to cancel it if the caller is killed (or times
            out) while the rest of the devices are added.
        :return: the campaign as :func:`normalise_campaign` returns it (its status is
            ``CampaignRequestPending`` at first).
        :raises IoTFleetValidationError: naming every bad IMEI, date, window or firmware field.
        :raises IoTFleetOutcomeUnknownError: when the schedule's answer was lost and the campaign
            cannot be found by name.
        :raises IoTFleetCampaignDevicesError: when devices beyond the first request could not be added
            (the campaign is then cancelled).
        """
        account = self.resolve_account(account_name)
        # A repeat in an add would be refused as already in the campaign, and cancel it.
        checked = list(dict.fromkeys(validate_imeis(imeis)))
        name, source, target = validate_firmware_choice(firmware_name, firmware_from, firmware_to)
        if name is None or source is None or target is None:
            raise IoTFleetValidationError(
                "the campaign's firmware is incomplete", ["give firmware_name, firmware_from and firmware_to"]
            )
        start, end, windows = validate_campaign_schedule(
            start_date, end_date, time_windows, self.clock.now().astimezone(UTC).date()
        )
        self.check_campaign_size(len(checked), start)
        label = validate_campaign_name(campaign_name) if campaign_name is not None else None
        body: dict[str, Any] = {
            "firmwareName": name,
            "firmwareFrom": source,
            "firmwareTo": target,
            "protocol": _protocol(protocol),
            "startDate": start,
            "endDate": end,
            "deviceList": checked[:MAX_CAMPAIGN_IMEIS],
            "autoAssignLicenseFlag": bool(auto_assign_license),
            "autoAddDevicesFlag": bool(auto_add_devices),
        }
        if label is not None:
            body["campaignName"] = label
        if windows:
            body["campaignTimeWindowList"] = windows
        call = Call("POST", f"campaigns/firmware/{_segment(account)}", json=body, repeat="if-not-received")
        try:
            campaign = normalise_campaign(self.client.send(call).object())
        except IoTFleetError as error:
            if not answer_lost(error):
                raise
            found = self.find_campaign(label, account_name=account) if label is not None else None
            if found is None:
                raise IoTFleetOutcomeUnknownError(
                    f"{VENDOR}: the answer to scheduling campaign {label!r} was lost ({error.message}) and "
                    "no campaign of that name can be found: ThingSpace may still have scheduled it",
                    http_status=error.http_status,
                    vendor=VENDOR,
                ) from error
            self.log.warning(
                "%s: the schedule's answer was lost; found campaign %s by its name",
                VENDOR,
                found["campaign_id"],
            )
            campaign = found
        if campaign["campaign_id"] is None:
            raise malformed_response(VENDOR, call.method + " " + call.path, "a campaign without an id")
        if on_scheduled is not None:
            on_scheduled(campaign)
        if len(checked) > MAX_CAMPAIGN_IMEIS:
            self.add_campaign_devices(
                campaign["campaign_id"],
                checked[MAX_CAMPAIGN_IMEIS:],
                account_name=account,
                cancel_on_failure=True,
            )
        return campaign

    def check_campaign_size(self, devices: int, start_date: str) -> None:
        """Refuse a campaign of more than :data:`MAX_CAMPAIGN_IMEIS` devices that starts today or
        earlier: the devices past the first request go in as adds, which ThingSpace takes only before
        the start date, and half a campaign must never run.

        :param start_date: ``yyyy-mm-dd``.
        :raises IoTFleetValidationError: saying to start it tomorrow or later, or to split it.
        """
        today = self.clock.now().astimezone(UTC).date().isoformat()
        if devices > MAX_CAMPAIGN_IMEIS and start_date <= today:
            raise IoTFleetValidationError(
                f"a campaign of {devices} devices must start after today",
                [
                    f"campaign_start_date {start_date}: devices beyond the first {MAX_CAMPAIGN_IMEIS} are "
                    "added after scheduling, and a campaign takes added devices only before its start "
                    f"date; start it tomorrow or later, or split the devices into campaigns of at most "
                    f"{MAX_CAMPAIGN_IMEIS}"
                ],
            )

    def get_campaign(self, campaign_id: str, *, account_name: str | None = None) -> dict[str, Any]:
        """Return the campaign (``GET /campaigns/{acc}/{campaignId}``) as :func:`normalise_campaign` does.

        :raises IoTFleetNotFoundError: when ThingSpace does not know the campaign.
        """
        return run_plan(self.client, self._campaign_plan(campaign_id, account_name))

    def _campaign_plan(self, campaign_id: str, account_name: str | None) -> Plan[dict[str, Any]]:
        path = _campaign_path(self.resolve_account(account_name), campaign_id)
        (reply,) = yield [Call("GET", path)]
        return normalise_campaign(reply.object())

    def iter_campaigns(self, status: str, *, account_name: str | None = None) -> Iterator[dict[str, Any]]:
        """Return an iterator over the account's campaigns in ``status``
        (``GET /reports/{acc}/firmware/campaigns``),
        one page requested at a time.

        :raises IoTFleetValidationError: for an unknown status, before any request.
        """
        if status not in CAMPAIGN_STATUSES:
            raise IoTFleetValidationError(
                "status is invalid", [f"{status!r} is not one of {', '.join(CAMPAIGN_STATUSES)}"]
            )
        path = f"reports/{_segment(self.resolve_account(account_name))}/firmware/campaigns"

        def pages() -> Iterator[dict[str, Any]]:
            last_seen: str | None = "0"
            cursors: set[str] = set()
            while last_seen is not None:
                params = {"campaignStatus": status, "lastSeenCampaignId": last_seen}
                reply = self.client.send(Call("GET", path, params=params))
                yield from (normalise_campaign(item) for item in reply.objects("campaignList"))
                last_seen = _next_page(reply, last_seen, cursors, cursor="lastSeenCampaignId")

        return pages()

    def find_campaign(
        self,
        campaign_name: str,
        *,
        account_name: str | None = None,
        statuses: Sequence[str] = CAMPAIGN_REUSABLE_STATUSES,
    ) -> dict[str, Any] | None:
        """Return the campaign called ``campaign_name`` in one of ``statuses``, or ``None``.

        A retried task uses it to find the campaign an earlier try scheduled, rather than scheduling
        a second one. Cancelled, aborted and failed campaigns are not looked at by default.
        """
        name = validate_campaign_name(campaign_name)
        for status in statuses:
            for campaign in self.iter_campaigns(status, account_name=account_name):
                if campaign["campaign_name"] == name:
                    return campaign
        return None

    def add_campaign_devices(
        self,
        campaign_id: str,
        imeis: Sequence[str],
        *,
        account_name: str | None = None,
        cancel_on_failure: bool = False,
    ) -> None:
        """Add devices to a campaign that has not started (``PUT /campaigns/firmware/{acc}/{id}`` with
        ``"Type": "append"``, as the vendor's SDK names it), :data:`MAX_CAMPAIGN_IMEIS` per request.

        Every request is sent even when ThingSpace refuses some devices of an earlier one. A request
        whose answer was lost is not sent again blindly: the campaign's report is read, and only the
        devices it does not hold yet are sent, once more.

        :param cancel_on_failure: when some devices cannot be added, cancel the campaign, so that it
            never starts with part of its devices (what :meth:`schedule_campaign` does).
        :raises IoTFleetValidationError: naming every bad IMEI, before any request.
        :raises IoTFleetCampaignDevicesError: naming every device not added, after cancelling the
            campaign when asked (its ``campaign_status`` then says how it ended).
        :raises IoTFleetOutcomeUnknownError: when that second answer is lost too (with
            ``cancel_on_failure``, the campaign is cancelled and the error is the one above).
        """
        account = self.resolve_account(account_name)
        try:
            self._change_campaign_devices(
                campaign_id, imeis, "append", account, unknown_is_left_out=cancel_on_failure
            )
        except IoTFleetCampaignDevicesError as error:
            if not cancel_on_failure:
                raise
            raise self._cancelled_incomplete(campaign_id, account, error) from error

    def remove_campaign_devices(
        self, campaign_id: str, imeis: Sequence[str], *, account_name: str | None = None
    ) -> None:
        """Remove devices from a campaign that has not started; see :meth:`add_campaign_devices`."""
        self._change_campaign_devices(campaign_id, imeis, "remove", self.resolve_account(account_name))

    def _change_campaign_devices(
        self,
        campaign_id: str,
        imeis: Sequence[str],
        change: str,
        account: str,
        *,
        unknown_is_left_out: bool = False,
    ) -> None:
        """Send every batch; raise :class:`IoTFleetCampaignDevicesError` naming the devices not changed.

        :param unknown_is_left_out: count the devices of a batch whose answers were lost twice as
            not changed (true once the campaign is cancelled for it); else that batch's
            :class:`IoTFleetOutcomeUnknownError` is raised as it is, since some may be changed.
        """
        checked = validate_imeis(imeis)
        path = _campaign_path(account, campaign_id, prefix="campaigns/firmware")
        done = "added to" if change == "append" else "removed from"
        batches = list(chunks(checked, MAX_CAMPAIGN_IMEIS))
        refused: dict[str, str] = {}
        for position, batch in enumerate(batches):
            try:
                refused.update(self._change_batch(path, campaign_id, batch, change, account))
            except IoTFleetCampaignDevicesError:
                raise
            except IoTFleetError as error:
                if isinstance(error, IoTFleetOutcomeUnknownError) and not unknown_is_left_out:
                    raise
                left_out = [*refused, *(imei for later in batches[position:] for imei in later)]
                raise IoTFleetCampaignDevicesError(
                    f"{VENDOR}: {len(left_out)} of {len(checked)} devices could not be {done} campaign "
                    f"{campaign_id}: {error.message}",
                    devices=left_out,
                    refused=refused,
                    http_status=error.http_status,
                    error_code=error.error_code,
                    request_id=error.request_id,
                    vendor=VENDOR,
                    bare_message=error.bare_message,
                ) from error
        if refused:
            shown = ", ".join(f"{imei} ({reason})" for imei, reason in list(refused.items())[:5])
            more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
            raise IoTFleetCampaignDevicesError(
                f"{VENDOR}: {len(refused)} of {len(checked)} devices could not be {done} campaign "
                f"{campaign_id}: {shown}{more}",
                devices=list(refused),
                refused=refused,
                vendor=VENDOR,
                bare_message=f"refused by ThingSpace: {next(iter(refused.values()))}",
            )
        self.log.info("%s: %s %d devices in campaign %s", VENDOR, done.split()[0], len(checked), campaign_id)

    def _change_batch(
        self, path: str, campaign_id: str, batch: list[str], change: str, account: str
    ) -> dict[str, str]:
        """Send one add or remove; return the devices ThingSpace refused in its answer."""
        for attempt in range(2):
            call = Call("PUT", path, json={"Type": change, "deviceList": batch}, repeat="if-not-received")
            try:
                reply = self.client.send(call)
            except IoTFleetError as error:
                if not answer_lost(error):
                    raise
                if attempt:
                    raise IoTFleetOutcomeUnknownError(
                        f"{VENDOR}: the answers to {change!r} of {len(batch)} devices in campaign "
                        f"{campaign_id} were lost twice ({error.message}); some may be changed",
                        http_status=error.http_status,
                        error_code=error.error_code,
                        request_id=error.request_id,
                        vendor=VENDOR,
                        # What groups these devices in an outcome: no vendor, path or count.
                        bare_message=f"the answers to {change!r} were lost twice ({error.bare_message}); "
                        "some may be changed",
                    ) from error
                try:
                    progress = self.campaign_progress(campaign_id, account_name=account)
                except IoTFleetError as unreadable:
                    raise IoTFleetOutcomeUnknownError(
                        f"{VENDOR}: the answer to {change!r} of {len(batch)} devices in campaign "
                        f"{campaign_id} was lost ({error.message}) and reading the campaign back failed "
                        f"too ({unreadable.message}); some may be changed",
                        http_status=error.http_status,
                        error_code=error.error_code,
                        request_id=error.request_id,
                        vendor=VENDOR,
                        bare_message=f"the answer to {change!r} was lost ({error.bare_message}) and reading "
                        f"the campaign back failed too ({unreadable.bare_message}); some may be changed",
                    ) from unreadable
                held = {device["device_id"] for device in progress.devices}
                batch = [imei for imei in batch if (imei in held) != (change == "append")]
                if not batch:
                    return {}
            else:
                # Answered: devices it refused one by one are the caller's to report, not a lost answer.
                return _refused_devices(reply)
        return {}  # not reached: the second lost answer raised

    def _cancelled_incomplete(
        self, campaign_id: str, account: str, error: IoTFleetCampaignDevicesError
    ) -> IoTFleetCampaignDevicesError:
        """Cancel a campaign some devices could not join, and say so in the error to raise."""
        bare: str | None = None  # cancelled: the devices left out failed for the add's error alone
        try:
            status = self.cancel_campaign(campaign_id, account_name=account)["status"]
            what = f"campaign {campaign_id} was cancelled ({status}) so that it never runs with part of its devices"
        except IoTFleetError as cancel_error:
            status = None
            what = (
                f"cancelling campaign {campaign_id} failed too ({cancel_error.message}): cancel it before it "
                "starts, or it upgrades only part of the devices"
            )
            # The warning goes into the bare message too: it is what an outcome's error group (and the
            # task's failure message) says, and the campaign stays scheduled with the other devices.
            bare = (
                f"{error.bare_message}; cancelling campaign {campaign_id} failed too "
                f"({cancel_error.bare_message}): cancel it before it starts, or it upgrades only part of "
                "the devices"
            )
        clone = error.with_message(f"{error.message}; {what}", bare_message=bare)
        clone.campaign_status = status
        return clone

    def change_campaign_dates(
        self,
        campaign_id: str,
        *,
        start_date: Any,
        end_date: Any,
        time_windows: Any = None,
        account_name: str | None = None,
    ) -> dict[str, Any]:
        """Move a campaign's dates and time windows (``PUT .../{campaignId}/dates``); checked as in
        :meth:`schedule_campaign`. Sending the same dates twice changes nothing, so it is retried.

        :return: the campaign as ThingSpace then reports it.
        """
        account = self.resolve_account(account_name)
        start, end, windows = validate_campaign_schedule(
            start_date, end_date, time_windows, self.clock.now().astimezone(UTC).date()
        )
        body: dict[str, Any] = {"startDate": start, "endDate": end}
        if windows:
            body["campaignTimeWindowList"] = windows
        path = _campaign_path(account, campaign_id, prefix="campaigns/firmware", suffix="/dates")
        self.client.send(Call("PUT", path, json=body))
        return self.get_campaign(campaign_id, account_name=account)

    def cancel_campaign(self, campaign_id: str, *, account_name: str | None = None) -> dict[str, Any]:
        """Cancel a campaign (``DELETE /campaigns/{acc}/{campaignId}``): ``CampaignCancelled`` before
        its start date, ``CampaignAborted`` after it.

        A lost answer is read back rather than sent again.

        :return: the campaign as ThingSpace then reports it.
        :raises IoTFleetOutcomeUnknownError: when the answer was lost and the campaign is not cancelled.
        """
        account = self.resolve_account(account_name)
        path = _campaign_path(account, campaign_id)
        try:
            self.client.send(Call("DELETE", path, repeat="if-not-received"))
        except IoTFleetError as error:
            if not answer_lost(error):
                raise
            campaign = self.get_campaign(campaign_id, account_name=account)
            if campaign["status"] not in ("CampaignCancelled", "CampaignAborted"):
                raise IoTFleetOutcomeUnknownError(
                    f"{VENDOR}: the answer to cancelling campaign {campaign_id} was lost ({error.message}) "
                    f"and it is {campaign['status']}",
                    http_status=error.http_status,
                    vendor=VENDOR,
                ) from error
            return campaign
        campaign = self.get_campaign(campaign_id, account_name=account)
        self.log.info("%s: campaign %s is %s", VENDOR, campaign_id, campaign["status"])
        return campaign

    def iter_campaign_devices(
        self, campaign_id: str, *, account_name: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Return an iterator over a campaign's per-device report
        (``GET /reports/{acc}/campaigns/{campaignId}/devices``), a page of up to 1000 at a time.

        :return: devices as :func:`normalise_campaign_device` returns them.
        """
        path = _campaign_report_path(self.resolve_account(account_name), campaign_id)

        def pages() -> Iterator[dict[str, Any]]:
            paging = _DevicePages()
            while paging.last_seen is not None:
                reply = self.client.send(Call("GET", path, params={"lastSeenDeviceId": paging.last_seen}))
                items = reply.objects("deviceList")
                paging.turn(reply, items)
                yield from (normalise_campaign_device(item) for item in items)

        return pages()

    def campaign_progress(self, campaign_id: str, *, account_name: str | None = None) -> CampaignProgress:
        """Return the campaign and its whole device report (what the campaign sensor polls)."""
        return run_plan(self.client, self._progress_plan(campaign_id, account_name))

    async def acampaign_progress(
        self, campaign_id: str, *, account_name: str | None = None
    ) -> CampaignProgress:
        """:meth:`campaign_progress` for triggers."""
        client = await self.aclient()
        return await arun_plan(client, self._progress_plan(campaign_id, account_name))

    def _progress_plan(self, campaign_id: str, account_name: str | None) -> Plan[CampaignProgress]:
        account = self.resolve_account(account_name)
        campaign = yield from self._campaign_plan(campaign_id, account)
        path = _campaign_report_path(account, campaign_id)
        devices: list[dict[str, Any]] = []
        pages = _DevicePages()
        while pages.last_seen is not None:
            (reply,) = yield [Call("GET", path, params={"lastSeenDeviceId": pages.last_seen})]
            items = reply.objects("deviceList")
            pages.turn(reply, items)
            devices.extend(normalise_campaign_device(item) for item in items)
        return CampaignProgress(campaign, devices)

    def _check_connection(self) -> str:
        self.client.obtain()
        return (
            f"Obtained a ThingSpace access token and M2M session for {self.settings.get_str('m2m_username')}"
        )
