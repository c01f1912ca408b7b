"""Verizon ThingSpace FOTA v3: device firmware listing (paginated) and firmware sync.

Every call carries two credentials: an OAuth2 bearer token and an M2M session token from a login
with the ThingSpace (UWS) user. Five failed logins in a row lock that user, so a refused login is
never repeated within one hook.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
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
from airflow_provider_iotfleet.validation import check_batch_size, validate_imeis

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
            for software in item.get("softwareList") or []
            if isinstance(software, dict)
        ],
        "files": [entry.get("name") if isinstance(entry, dict) else entry for entry in files],
        "create_time": normalise_timestamp(item.get("createTime")),
        "upgrade_time": normalise_timestamp(item.get("upgradeTime")),
        "status_time": normalise_timestamp(item.get("statusTime")),
        "refresh_time": normalise_timestamp(item.get("refreshTime")),
        "last_connection_time": normalise_timestamp(item.get("lastConnectionTime")),
    }


def _next_page(reply: Reply, last_seen: str, seen: set[str]) -> str | None:
    """The ``lastSeenDeviceId`` to ask for next, or ``None`` after the last page.

    :param seen: the cursors asked for so far in this listing; one coming back again (a cursor that
        does not move, or one that cycles) would page forever, so it is an error.
    """
    if not reply.field("hasMoreData", bool, required=False):
        return None
    next_seen = str(reply.field("lastSeenDeviceId", (str, int)))
    seen.add(last_seen)
    if next_seen in seen:
        raise malformed_response(
            VENDOR,
            reply.action,
            f"hasMoreData and a lastSeenDeviceId ({next_seen}) it had already sent: it would page forever",
        )
    return next_seen


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

        :raises IoTFleetValidationError: when neither is set, or the name is blank or not a string.
        """
        account = account_name if account_name is not None else self.settings.get_str("account_name")
        if not isinstance(account, str) or not account.strip():
            raise IoTFleetValidationError(
                "account_name is missing",
                [f"pass account_name or set the 'account_name' extra of {self.settings.label}"],
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
        if protocol is not None and (not isinstance(protocol, str) or protocol.upper() not in PROTOCOLS):
            raise IoTFleetValidationError(
                "protocol is invalid", [f"{protocol!r} is not one of {', '.join(PROTOCOLS)}"]
            )
        path = f"devices/{quote(account, safe='')}"
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
        last_seen: str = "0"
        cursors: set[str] = set()
        while True:
            params = {"lastSeenDeviceId": last_seen}
            if protocol:
                params["protocol"] = protocol.upper()
            reply = self.client.send(
                Call("POST", path, params=params, json=body)
                if body is not None
                else Call("GET", path, params=params)
            )
            # Required: an answer without the list is not an empty fleet.
            yield [normalise_device(item) for item in reply.objects("deviceList")]
            next_seen = _next_page(reply, last_seen, cursors)
            if next_seen is None:
                return
            last_seen = next_seen

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
        path = f"devices/{quote(account, safe='')}"
        firmware: dict[str, str | None] = {}
        for start in range(0, len(checked), MAX_LIST_IMEIS):
            body = {"deviceList": checked[start : start + MAX_LIST_IMEIS]}
            last_seen: str | None = "0"
            cursors: set[str] = set()
            while last_seen is not None:
                (reply,) = yield [Call("POST", path, params={"lastSeenDeviceId": last_seen}, json=body)]
                for item in reply.objects("deviceList"):
                    firmware[str(item.get("deviceId"))] = item.get("firmware")
                last_seen = _next_page(reply, last_seen, cursors)
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
        batches = [
            checked[start : start + MAX_SYNC_IMEIS] for start in range(0, len(checked), MAX_SYNC_IMEIS)
        ]
        synced: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for outcome in map_batches(
            lambda batch: self.sync_firmware_batch(batch, account_name=account), batches
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
        call = Call(
            "PUT",
            f"firmware/{quote(account, safe='')}/devices",
            json={"deviceList": batch},
            repeat="if-not-received",
        )
        try:
            reply = self.client.send(call)
        except IoTFleetError as error:
            if not answer_lost(error):
                raise
            # ThingSpace may have synced them; nothing read back can tell (the listing shows the same
            # firmware either way). Said as it is, and not sent again.
            unknown = IoTFleetOutcomeUnknownError(
                f"{VENDOR}: the answer to a firmware sync was lost ({error.message}); ThingSpace may have "
                "synced these devices: sync them again to know",
                http_status=error.http_status,
                vendor=VENDOR,
            )
            return FirmwareSyncResult(
                account_name=account, synced=[], failed=[sync_failure(imei, unknown) for imei in batch]
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

    def _check_connection(self) -> str:
        self.client.obtain()
        return (
            f"Obtained a ThingSpace access token and M2M session for {self.settings.get_str('m2m_username')}"
        )
