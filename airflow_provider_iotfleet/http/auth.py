"""Auth strategies more than one vendor uses: static headers, HTTP Basic, cached OAuth2 tokens."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import requests
from requests.auth import HTTPBasicAuth

from airflow_provider_iotfleet._compat import mask_secret
from airflow_provider_iotfleet.exceptions import IoTFleetVendorResponseError
from airflow_provider_iotfleet.http.client import Auth
from airflow_provider_iotfleet.http.clock import Clock

if TYPE_CHECKING:
    from airflow_provider_iotfleet.http.client import VendorHttpClient


class HeaderAuth(Auth):
    """Fixed credential headers on every request (Palo Alto's ``X-Key-Id`` / ``X-Access-Key``)."""

    def __init__(self, headers: Mapping[str, str], credential_hint: str = "") -> None:
        self._headers = dict(headers)
        self.credential_hint = credential_hint

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self._headers)
        return request


class BasicAuth(Auth):
    """HTTP Basic ``user:password`` on every request."""

    def __init__(self, username: str, password: str, credential_hint: str = "") -> None:
        self._basic = HTTPBasicAuth(username, password)
        self.credential_hint = credential_hint

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        prepared: requests.PreparedRequest = self._basic(request)
        return prepared


class CachedToken:
    """A token shared by the threads of one hook, fetched once and renewed ahead of its expiry.

    :param clock: monotonic time source.
    :param refresh_lead: seconds before expiry at which the token is renewed, so that a token is
        never sent in its last moments and rejected in flight.
    """

    def __init__(self, clock: Clock, refresh_lead: float) -> None:
        self._clock = clock
        self._refresh_lead = refresh_lead
        self._token: str | None = None
        self._expires_at: float | None = None
        self._lock = threading.Lock()

    def get(self, fetch: Callable[[], tuple[str, float | None]]) -> str:
        """Return the cached token, calling ``fetch`` for ``(token, lifetime seconds or None)`` when stale.

        Fetched tokens are registered with Airflow's secret masker before anyone can log them.
        """
        with self._lock:
            now = self._clock.monotonic()
            fresh = self._expires_at is None or now < self._expires_at - self._refresh_lead
            if self._token is None or not fresh:
                token, lifetime = fetch()
                mask_secret(token)
                self._token = token
                self._expires_at = None if lifetime is None else now + lifetime
            return self._token

    def invalidate(self) -> None:
        """Forget the token; the next :meth:`get` fetches a new one."""
        with self._lock:
            self._token = None
            self._expires_at = None


class TokenAuth(Auth):
    """A token obtained from the vendor, cached, renewed ahead of its expiry and once on a 401.

    Subclasses say how to fetch a token (:meth:`_fetch`) and where it goes on a request
    (:meth:`_apply`).
    """

    def __init__(self, clock: Clock, refresh_lead: float) -> None:
        self._cache = CachedToken(clock, refresh_lead)

    def _fetch(self) -> tuple[str, float | None]:
        """Return a new ``(token, lifetime in seconds or None)``."""
        raise NotImplementedError

    def _apply(self, request: requests.PreparedRequest, token: str) -> None:
        raise NotImplementedError

    def token(self) -> str:
        """Return a valid token, fetching one if needed."""
        return self._cache.get(self._fetch)

    def obtain(self) -> None:
        self.token()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        self._apply(request, self.token())
        return request

    def renew_after(self, error: IoTFleetVendorResponseError) -> bool:
        if error.http_status == 401:
            self._cache.invalidate()
            return True
        return False


class OAuthClientCredentials(TokenAuth):
    """OAuth2 client-credentials bearer tokens.

    :param client: the vendor client the token request goes through (same session and retries).
    :param token_url: the token endpoint.
    :param scope: the ``scope`` form value, if the vendor wants one.
    :param default_lifetime: seconds to keep a token whose answer has no ``expires_in``.
    :param credential_hint: the connection fields holding the client id and secret.
    """

    def __init__(
        self,
        client: VendorHttpClient,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        default_lifetime: float = 3600.0,
        refresh_lead: float = 120.0,
        credential_hint: str = "the login (client id) and password (client secret)",
    ) -> None:
        super().__init__(client.clock, refresh_lead)
        self._client = client
        self._token_url = token_url
        self.credential_hint = credential_hint
        self._credentials = BasicAuth(client_id, client_secret, credential_hint)
        self._scope = scope
        self._default_lifetime = default_lifetime

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        reply = self._client.send(
            "POST", self._token_url, data=form, auth=self._credentials, rate_limited=False
        )
        token = reply.field("access_token", str)
        expires_in = reply.field("expires_in", (int, float, str), required=False)
        try:
            lifetime = float(expires_in) if expires_in is not None else self._default_lifetime
        except ValueError:
            lifetime = self._default_lifetime
        return token, lifetime

    def _apply(self, request: requests.PreparedRequest, token: str) -> None:
        request.headers["Authorization"] = f"Bearer {token}"
