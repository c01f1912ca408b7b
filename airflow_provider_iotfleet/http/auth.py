"""Auth written once, as flows that both clients drive.

A flow is a generator, the way ``httpx.Auth.auth_flow`` is: given the request to send, it yields the
requests that must go out (a login first if no valid token is cached, then the request with its
credentials), receives each one's outcome (a :class:`~airflow_provider_iotfleet.http.answers.Reply`,
or the vendor's typed error), and may yield the request once more after renewing credentials the
vendor rejected. Besides requests it yields two instructions that only the driver knows how to carry
out in its world: :class:`Wait` (another caller is renewing this token: wait for it, in a thread or
in the event loop) and :class:`Mask` (a secret just obtained: register it with Airflow's masker).
The sync and async clients are short loops around these flows; neither knows any vendor's auth.
"""

from __future__ import annotations

import base64
import math
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_iotfleet.exceptions import IoTFleetAuthError, IoTFleetError, IoTFleetVendorResponseError
from airflow_provider_iotfleet.http.answers import Reply
from airflow_provider_iotfleet.http.clock import Clock
from airflow_provider_iotfleet.http.request import Call, Request

#: The shortest lifetime a token is given, whatever the vendor says: a token announced as living 0 s
#: (or -60, or "nan") would otherwise be fetched again for every request.
MIN_TOKEN_LIFETIME = 60.0


@dataclass(frozen=True)
class Wait:
    """Another caller is renewing ``cache``'s credential: wait until it is done, then look again."""

    cache: TokenCache


@dataclass(frozen=True)
class Mask:
    """A secret just obtained from the vendor: mask it before anything can log it."""

    secret: str = field(repr=False)


Step = Request | Wait | Mask
#: What the driver sends back into a flow: a request's outcome, or ``None`` after an instruction.
Sent = Reply | IoTFleetVendorResponseError | None
Flow = Generator[Step, Sent, Any]
Build = Callable[[Call], Request]


class Auth:
    """An auth strategy: puts credentials on requests, obtaining and renewing them when needed.

    Static strategies only implement :meth:`apply`. :attr:`credential_hint` names the connection
    fields to check when the vendor refuses the credentials; the client adds it to auth errors.
    """

    credential_hint: str = ""

    def apply(self, request: Request) -> Request:
        """Return ``request`` with static credentials on it."""
        return request

    def flow(self, request: Request, build: Build) -> Flow:
        """Yield what must be sent for ``request``; see the module docstring."""
        yield self.apply(request)

    def refresh(self, request: Request) -> Request:
        """Return ``request`` ready to be sent again after a retry's wait (signatures carry a time)."""
        return request

    def obtain(self, build: Build) -> Flow:
        """Yield what obtains the credentials fetched from the vendor, if any (``test_connection``)."""
        yield from ()


class NoAuth(Auth):
    """Nothing to add: for endpoints whose credentials travel in the request itself."""

    def __init__(self, credential_hint: str = "") -> None:
        self.credential_hint = credential_hint


class HeaderAuth(Auth):
    """Fixed credential headers on every request (Palo Alto's ``X-Key-Id`` / ``X-Access-Key``)."""

    def __init__(self, headers: dict[str, str], credential_hint: str = "") -> None:
        self._headers = dict(headers)
        self.credential_hint = credential_hint

    def apply(self, request: Request) -> Request:
        return request.with_headers(self._headers)


def basic_authorization(username: str, password: str) -> str:
    """Return the ``Authorization`` value for HTTP Basic (latin-1 like ``requests``, else UTF-8)."""
    pair = f"{username}:{password}"
    try:
        raw = pair.encode("latin1")
    except UnicodeEncodeError:
        raw = pair.encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class BasicAuth(HeaderAuth):
    """HTTP Basic ``user:password`` on every request."""

    def __init__(self, username: str, password: str, credential_hint: str = "") -> None:
        super().__init__({"Authorization": basic_authorization(username, password)}, credential_hint)


class TokenCache:
    """One credential shared by every caller of a hook (threads, or coroutines of one event loop).

    Its state is only touched under a lock that is never held while a request is in flight, so it
    is safe from threads and from coroutines alike. One caller at a time renews the credential; the
    others wait (:class:`Wait`) and then use the renewed one.

    :param refresh_lead: seconds before expiry at which the token is renewed, so that it is never
        sent in its last moments and rejected in flight (at most half its lifetime).
    """

    def __init__(self, clock: Clock, refresh_lead: float) -> None:
        self._clock = clock
        self._refresh_lead = refresh_lead
        self._token: str | None = None
        self._renew_at: float | None = None
        self._renewing = False
        self._changed = threading.Condition()

    def begin(self) -> tuple[str | None, bool]:
        """Return ``(token, False)`` when one is fresh, ``(None, True)`` when the caller must renew it
        (and then call :meth:`finish`), or ``(None, False)`` when another caller is renewing it.
        """
        with self._changed:
            if self._token is not None and (
                self._renew_at is None or self._clock.monotonic() < self._renew_at
            ):
                return self._token, False
            if self._renewing:
                return None, False
            self._renewing = True
            return None, True

    def finish(self, token: str | None, lifetime: float | None) -> None:
        """End a renewal begun with :meth:`begin`: keep ``token`` (unless ``None``: it failed)."""
        with self._changed:
            if token is not None:
                self._token = token
                if lifetime is None:
                    self._renew_at = None
                else:
                    lifetime = (
                        max(lifetime, MIN_TOKEN_LIFETIME) if math.isfinite(lifetime) else MIN_TOKEN_LIFETIME
                    )
                    self._renew_at = (
                        self._clock.monotonic() + lifetime - min(self._refresh_lead, lifetime / 2)
                    )
            self._renewing = False
            self._changed.notify_all()

    def invalidate(self, token: str) -> bool:
        """Forget ``token`` if it is still the cached one; return whether it was.

        A rejected token is dropped once, by whoever saw the rejection first: callers that were
        rejected with the same, already replaced token then use the replacement instead of renewing
        again.
        """
        with self._changed:
            if self._token != token:
                return False
            self._token = None
            self._renew_at = None
            return True

    @property
    def renewing(self) -> bool:
        with self._changed:
            return self._renewing

    def wait(self, timeout: float) -> None:
        """Block the calling thread until no renewal is in progress, at most ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: not self._renewing, timeout)


class TokenSource:
    """A credential the vendor hands out (an OAuth token, a login session): how to ask for it, how to
    read the answer, and the cache it lives in.

    :param login: builds the login call, given the credentials it depends on (``login(*depends)``).
    :param read: returns ``(token, lifetime in seconds or None)`` from the login's reply.
    :param credential_hint: the connection fields behind this credential, for refusals.
    """

    def __init__(
        self,
        *,
        login: Callable[..., Call],
        read: Callable[[Reply], tuple[str, float | None]],
        clock: Clock,
        refresh_lead: float,
        credential_hint: str,
    ) -> None:
        self._login = login
        self._read = read
        self.cache = TokenCache(clock, refresh_lead)
        self.credential_hint = credential_hint

    def obtain(self, build: Build, *depends: str) -> Generator[Step, Sent, str]:
        """Yield what obtains a valid token (nothing when one is cached); return the token."""
        while True:
            token, renew = self.cache.begin()
            if token is not None:
                return token
            if not renew:
                yield Wait(self.cache)
                continue
            lifetime: float | None = None
            try:
                outcome = yield build(self._login(*depends))
                token, lifetime = self.accept(outcome)
                yield Mask(token)
            finally:
                self.cache.finish(token, lifetime)
            return token

    def accept(self, outcome: Sent) -> tuple[str, float | None]:
        """Return the token and lifetime from a login's outcome, or raise what the refusal means."""
        if isinstance(outcome, IoTFleetError):
            raise self.refused(outcome)
        if outcome is None:  # pragma: no cover - drivers always answer a request
            raise RuntimeError("a login request got no outcome")
        token, lifetime = self._read(outcome)
        if not token or any(char.isspace() or not char.isprintable() for char in token):
            # Never quoted: it is a credential, and one that would break the next request's header.
            raise IoTFleetVendorResponseError(
                f"{outcome.vendor} answered {outcome.action} with a token that is empty or holds "
                "whitespace or control characters",
                http_status=outcome.status,
                vendor=outcome.vendor,
            )
        return token, lifetime

    def refused(self, error: IoTFleetError) -> IoTFleetError:
        """Return the error to raise for a refused login, tagged with the fields behind it."""
        return error.with_hint(self.credential_hint) if isinstance(error, IoTFleetAuthError) else error

    def invalidate(self, token: str) -> bool:
        return self.cache.invalidate(token)


def lifetime_from(value: Any, default: float) -> float:
    """Return a token lifetime from a vendor's ``expires_in``-like value, ``default`` when unreadable."""
    try:
        lifetime = float(value)
    except (TypeError, ValueError):
        return default
    return lifetime if math.isfinite(lifetime) else default


class TokenAuth(Auth):
    """One token from a :class:`TokenSource` in one header, renewed ahead of expiry and once on a 401.

    :param header: where the token goes (``Authorization``, ``X-Auth-Token``).
    :param prefix: what precedes it (``"Bearer "``).
    """

    def __init__(self, source: TokenSource, header: str = "Authorization", prefix: str = "Bearer ") -> None:
        self.source = source
        self._header = header
        self._prefix = prefix
        self.credential_hint = source.credential_hint

    def obtain(self, build: Build) -> Flow:
        yield from self.source.obtain(build)

    def flow(self, request: Request, build: Build) -> Flow:
        token = yield from self.source.obtain(build)
        outcome = yield request.with_headers({self._header: f"{self._prefix}{token}"})
        if isinstance(outcome, IoTFleetVendorResponseError) and outcome.http_status == 401:
            self.source.invalidate(token)
            token = yield from self.source.obtain(build)
            yield request.with_headers({self._header: f"{self._prefix}{token}"})


def oauth_client_credentials(
    token_url: str,
    client_id: str,
    client_secret: str,
    *,
    clock: Clock,
    scope: str | None = None,
    default_lifetime: float = 3600.0,
    refresh_lead: float = 120.0,
    credential_hint: str = "the login (client id) and password (client secret)",
) -> TokenSource:
    """An OAuth2 client-credentials token (``grant_type=client_credentials``, HTTP Basic client auth)."""
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}

    def login() -> Call:
        return Call(
            "POST",
            token_url,
            form=form,
            headers={"Authorization": basic_authorization(client_id, client_secret)},
            rate_limited=False,
            credentials=True,
        )

    def read(reply: Reply) -> tuple[str, float | None]:
        token = reply.field("access_token", str)
        return token, lifetime_from(
            reply.field("expires_in", (int, float, str), required=False), default_lifetime
        )

    return TokenSource(
        login=login, read=read, clock=clock, refresh_lead=refresh_lead, credential_hint=credential_hint
    )
