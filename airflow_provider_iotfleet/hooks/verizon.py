"""Verizon ThingSpace FOTA v3: device firmware listing (paginated) and firmware sync.

Every call carries two credentials: an OAuth2 bearer token and an M2M session token from a login
with the ThingSpace (UWS) user. Five failed logins in a row lock that user, so a refused login is
never repeated within one hook.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.http import (
    SYSTEM_CLOCK,
    Auth,
    BackoffPolicy,
    Clock,
    ConnectionSettings,
    ErrorMapping,
    VendorErrorBody,
    VendorHttpClient,
    text_or_none,
)
from airflow_provider_iotfleet.http.auth import CachedToken, OAuthClientCredentials
from airflow_provider_iotfleet.http.concurrency import map_batches
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
#: IMEIs per POST body of the subset listing: the vendor documents no cap, so one page's worth.
MAX_LIST_IMEIS = 1000
PROTOCOLS = ("LWM2M", "OMADM", "HTTP")
_NO_RETRY = BackoffPolicy(max_retries=0)


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


class _BearerOnly(Auth):
    """The bearer token alone, never renewed: for the M2M login, which must not be sent twice."""

    def __init__(self, oauth: OAuthClientCredentials) -> None:
        self._oauth = oauth

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._oauth.token()}"
        return request


class ThingSpaceAuth(Auth):
    """Bearer token plus ``VZ-M2M-Token`` session token on every request.

    A 401 renews the bearer token once; a ``SessionToken.Expired`` error logs in again once. A login
    the vendor refuses is remembered: later calls of the same hook fail at once instead of logging in
    again and moving the account towards its lockout.
    """

    def __init__(
        self,
        client: VendorHttpClient,
        oauth: OAuthClientCredentials,
        login_url: str,
        username: str,
        password: str,
    ) -> None:
        self._client = client
        self._oauth = oauth
        self._login_url = login_url
        self._credentials = {"username": username, "password": password}
        self._session = CachedToken(client.clock, refresh_lead=0.0)
        self._refused_login: IoTFleetVendorResponseError | None = None
        self.credential_hint = f"{oauth.credential_hint}, and the m2m_username and m2m_password extras"
        connection = f"connection {client.conn_id!r}" if client.conn_id else "the connection"
        self._m2m_hint = f"Check the m2m_username and m2m_password extras of {connection}"
        self._oauth_hint = f"Check {oauth.credential_hint} of {connection}"

    def _login(self) -> tuple[str, None]:
        if self._refused_login is not None:
            raise IoTFleetAuthError(
                f"{VENDOR}: not logging in again after the M2M login was refused earlier "
                f"(five refusals in a row lock the account): {self._refused_login.message}. "
                f"{self._m2m_hint}",
                http_status=self._refused_login.http_status,
                error_code=self._refused_login.error_code,
                request_id=self._refused_login.request_id,
                vendor=VENDOR,
            )
        try:
            reply = self._client.send(
                "POST",
                self._login_url,
                json=self._credentials,
                auth=_BearerOnly(self._oauth),
                retry=_NO_RETRY,
                rate_limited=False,
            )
        except IoTFleetVendorResponseError as error:
            if error.http_status is None or not 400 <= error.http_status < 500:
                raise
            if error.http_status == 401:
                # The gateway refused the bearer token: the M2M service never saw the credentials,
                # so this counts for no lockout. Drop the token; the next call starts afresh.
                self._oauth.renew_after(error)
                message = f"{VENDOR}: the M2M session login was refused: {error.message}. {self._oauth_hint}"
            else:
                # ThingSpace refuses bad M2M credentials with a 400 and a generic code
                # (REQUEST_FAILED.UnexpectedError): an auth failure all the same.
                self._refused_login = error
                message = f"{VENDOR}: the M2M session login was refused: {error.message}. {self._m2m_hint}"
            raise IoTFleetAuthError(
                message,
                http_status=error.http_status,
                error_code=error.error_code,
                request_id=error.request_id,
                vendor=VENDOR,
            ) from error
        # The session token only expires after 20 idle minutes: no lifetime, renewed when refused.
        return reply.field("sessionToken", str), None

    def obtain(self) -> None:
        self._oauth.token()
        self._session.get(self._login)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._oauth.token()}"
        request.headers["VZ-M2M-Token"] = self._session.get(self._login)
        return request

    def renew_after(self, error: IoTFleetVendorResponseError) -> bool:
        if error.error_code and error.error_code.endswith(SESSION_EXPIRED_SUFFIX):
            self._session.invalidate()
            return True
        return self._oauth.renew_after(error)


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
    """

    conn_name_attr = "verizon_thingspace_conn_id"
    default_conn_name = "verizon_thingspace_default"
    conn_type = "verizon_thingspace"
    hook_name = "Verizon ThingSpace"
    secret_extras = ("m2m_password",)

    def __init__(
        self, verizon_thingspace_conn_id: str = default_conn_name, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__(verizon_thingspace_conn_id, clock=clock)

    def _build_client(self, settings: ConnectionSettings) -> VendorHttpClient:
        root = settings.base_url(default=DEFAULT_HOST)
        oauth_url = settings.get_str("oauth_url") or f"{root}{OAUTH_PATH}"
        login_url = settings.get_str("m2m_login_url") or f"{root}{LOGIN_PATH}"
        key = settings.require_login("OAuth key")
        secret = settings.require_password("OAuth secret")
        username = settings.require_str("m2m_username", "ThingSpace M2M (UWS) user name")
        password = settings.require_str("m2m_password", "ThingSpace M2M (UWS) password")

        def auth(client: VendorHttpClient) -> Auth:
            oauth = OAuthClientCredentials(
                client,
                oauth_url,
                key,
                secret,
                default_lifetime=3600.0,
                credential_hint="the login (OAuth key) and password (OAuth secret)",
            )
            return ThingSpaceAuth(client, oauth, login_url, username, password)

        return VendorHttpClient(
            base_url=f"{root}{FOTA_PATH}",
            errors=VERIZON_ERRORS,
            auth=auth,
            **self._transport_options(settings, settings.get_float("requests_per_second", 10.0)),
        )

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
        while True:
            params = {"lastSeenDeviceId": last_seen}
            if protocol:
                params["protocol"] = protocol.upper()
            reply = (
                self.client.send("POST", path, params=params, json=body)
                if body is not None
                else self.client.send("GET", path, params=params)
            )
            yield [normalise_device(item) for item in reply.objects("deviceList", required=False)]
            if not reply.field("hasMoreData", bool, required=False):
                return
            next_seen = str(reply.field("lastSeenDeviceId", (str, int)))
            if next_seen == last_seen:
                raise IoTFleetVendorResponseError(
                    f"{VENDOR} said hasMoreData but did not move lastSeenDeviceId past {last_seen}",
                    vendor=VENDOR,
                )
            last_seen = next_seen

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
        reply = self.client.send(
            "PUT", f"firmware/{quote(account, safe='')}/devices", json={"deviceList": batch}
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
                        "reason": "missing from ThingSpace's answer",
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
        self.client.auth.obtain()
        return (
            f"Obtained a ThingSpace access token and M2M session for {self.settings.get_str('m2m_username')}"
        )
