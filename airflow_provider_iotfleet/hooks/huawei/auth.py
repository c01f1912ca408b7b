"""How the hook gets into ROMA Connect: AK/SK request signing (``SDK-HMAC-SHA256``, Huawei's
recommended way, implemented here with hashlib/hmac because the official SDK pins heavy
dependencies) or an IAM user token."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from airflow_provider_iotfleet.exceptions import IoTFleetAuthError, IoTFleetVendorResponseError
from airflow_provider_iotfleet.hooks.huawei.answers import VENDOR
from airflow_provider_iotfleet.http import Auth, Call, Clock, Reply, Request
from airflow_provider_iotfleet.http.auth import Build, Flow, TokenSource

SIGNING_ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
IAM_TOKEN_LIFETIME = timedelta(hours=24)
#: The gateway refuses signatures dated more than 15 minutes off; beyond 5, we sign with its clock.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_request(
    method: str, url: str, headers: Mapping[str, str], body: bytes
) -> tuple[str, list[str]]:
    """Return Huawei's canonical request for a request, and the signed header names.

    Every header whose name has no ``_`` is signed (lower-cased, sorted); the canonical URI encodes
    each path segment and ends with ``/``; query pairs are encoded, then sorted by key and value.
    """
    parts = urlsplit(url)
    uri = "/".join(_encode(unquote(segment)) for segment in parts.path.split("/"))
    if not uri.endswith("/"):
        uri += "/"
    pairs = sorted(
        (_encode(key), _encode(value)) for key, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    query = "&".join(f"{key}={value}" for key, value in pairs)
    values = {name.lower(): value for name, value in headers.items() if "_" not in name}
    signed = sorted(values)
    canonical_headers = "".join(f"{name}:{values[name].strip()}\n" for name in signed)
    lines = [
        method.upper(),
        uri,
        query,
        canonical_headers,
        ";".join(signed),
        hashlib.sha256(body).hexdigest(),
    ]
    return "\n".join(lines), signed


def string_to_sign(canonical_request_hash: str, sdk_date: str) -> str:
    """Return the string to sign from the hex SHA-256 of the canonical request and ``X-Sdk-Date``."""
    return f"{SIGNING_ALGORITHM}\n{sdk_date}\n{canonical_request_hash}"


def sign(secret_key: str, text: str) -> str:
    """Return the hex HMAC-SHA256 of ``text`` keyed with the secret key."""
    return hmac.new(secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()


def request_signature(
    secret_key: str, method: str, url: str, headers: Mapping[str, str], body: bytes
) -> tuple[str, list[str]]:
    """Return ``(signature, signed header names)`` for a request whose headers include ``X-Sdk-Date``."""
    canonical, signed = canonical_request(method, url, headers, body)
    sdk_date = next(value for name, value in headers.items() if name.lower() == "x-sdk-date")
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return sign(secret_key, string_to_sign(digest, sdk_date)), signed


class HuaweiAkSkAuth(Auth):
    """Signs every request with ``SDK-HMAC-SHA256`` (re-signed on each retry, so dates stay fresh).

    :param security_token: for temporary AK/SK, sent as ``X-Security-Token``.
    :param log: where to say that the worker's clock is off, when the gateway's ``Date`` shows it.

    A signature refused because the worker's clock is more than 5 minutes off the gateway's (its
    ``Date`` header tells) is made again with the gateway's time, once, and signing continues so.
    """

    credential_hint = (
        "the login (AK), password (SK) and security_token extra, and the worker's clock (the gateway "
        "refuses signatures more than 15 minutes off)"
    )

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        project_id: str | None,
        security_token: str | None,
        clock: Clock,
        log: Any = None,
    ) -> None:
        self._log = log or logging.getLogger(__name__)
        self._access_key = access_key
        self._secret_key = secret_key
        self._project_id = project_id
        self._security_token = security_token
        self._clock = clock
        self._offset = timedelta()

    def refresh(self, request: Request) -> Request:
        return self.apply(request)  # a new date, a new signature

    def flow(self, request: Request, build: Build) -> Flow:
        outcome = yield self.apply(request)
        if isinstance(outcome, IoTFleetAuthError) and (offset := self._skew(outcome)) is not None:
            # The gateway refuses dates more than 15 minutes off: sign with its clock from now on
            # (its Date header said how far ours is), and say so, since NTP is the real fix.
            self._offset = offset
            self._log.warning(
                "%s: this worker's clock is %+.0f s off the gateway's; signing with the gateway's time. "
                "Keep the workers' clocks in sync (NTP).",
                VENDOR,
                offset.total_seconds(),
            )
            yield self.apply(request)

    def _skew(self, error: IoTFleetAuthError) -> timedelta | None:
        """How far the gateway's clock is from ours, when that is why it refused the signature."""
        if error.server_time is None:
            return None
        offset = error.server_time - self._clock.now()
        return (
            offset
            if abs(offset) > CLOCK_SKEW_TOLERANCE and abs(offset - self._offset) > CLOCK_SKEW_TOLERANCE
            else None
        )

    def apply(self, request: Request) -> Request:
        headers = {
            "X-Sdk-Date": (self._clock.now() + self._offset).strftime(SDK_DATE_FORMAT),
            "Host": urlsplit(request.url).netloc,
        }
        if self._project_id:
            headers["X-Project-Id"] = self._project_id
        if self._security_token:
            headers["X-Security-Token"] = self._security_token
        unsigned = {name: value for name, value in request.headers.items() if name.lower() != "authorization"}
        request = replace(request, headers=unsigned).with_headers(headers)
        signature, signed = request_signature(
            self._secret_key, request.method, request.url, request.headers, request.body
        )
        return request.with_headers(
            {
                "Authorization": f"{SIGNING_ALGORITHM} Access={self._access_key}, "
                f"SignedHeaders={';'.join(signed)}, Signature={signature}"
            }
        )


def iam_token(
    token_url: str, *, user_name: str, password: str, domain_name: str, project_id: str, clock: Clock
) -> TokenSource:
    """An IAM user password exchanged for a token (``X-Subject-Token``), valid 24 h, renewed an hour
    before it expires and once when the API answers 401."""
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user_name, "password": password, "domain": {"name": domain_name}}
                },
            },
            "scope": {"project": {"id": project_id}},
        }
    }

    def login() -> Call:
        return Call("POST", token_url, json=body, rate_limited=False, credentials=True)

    def read(reply: Reply) -> tuple[str, float]:
        token = reply.headers.get("X-Subject-Token")
        if not token:
            raise IoTFleetVendorResponseError(
                f"{VENDOR}: the IAM token answer has no X-Subject-Token header",
                http_status=reply.status,
                vendor=VENDOR,
            )
        return token, _lifetime(reply.object(), clock)

    return TokenSource(
        login=login,
        read=read,
        clock=clock,
        refresh_lead=3600.0,
        credential_hint="the login (IAM user name), password, domain_name and project_id extras",
    )


def _lifetime(body: dict[str, Any], clock: Clock) -> float:
    token_info = body.get("token")
    expires_at = token_info.get("expires_at") if isinstance(token_info, dict) else None
    default = IAM_TOKEN_LIFETIME.total_seconds()
    if not isinstance(expires_at, str):
        return default
    try:
        expiry = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return default
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    return (expiry - clock.now()).total_seconds()
