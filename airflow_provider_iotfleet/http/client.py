"""The synchronous transport every hook uses: one session, timeouts, retries, rate limit, error mapping."""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from airflow_provider_iotfleet import __version__
from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetTransportError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.http.clock import SYSTEM_CLOCK, Clock
from airflow_provider_iotfleet.http.errors import ErrorMapping, malformed_response
from airflow_provider_iotfleet.http.ratelimit import TokenBucket
from airflow_provider_iotfleet.http.retry import RETRYABLE_STATUSES, BackoffPolicy, parse_retry_after

USER_AGENT = f"airflow-provider-iotfleet/{__version__}"


class Logger(Protocol):
    """What the client logs through: a stdlib logger or the structlog logger of an Airflow hook."""

    def debug(self, msg: str, *args: Any) -> Any: ...
    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...


class Auth(AuthBase):
    """An auth strategy: adds credentials to each prepared request, and may renew them once.

    Subclasses implement ``__call__`` (requests' auth interface, called again for every attempt, so
    signatures and tokens are always fresh) and, when the vendor hands out expiring tokens,
    :meth:`renew_after`.

    :attr:`credential_hint` names the connection fields to check when the vendor refuses these
    credentials ("the login (user name) and password (API key)"); the client adds it to auth errors.
    """

    credential_hint: str = ""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        raise NotImplementedError

    def obtain(self) -> None:
        """Obtain any credentials fetched from the vendor (tokens, sessions) now, raising if refused.

        Static credentials have nothing to obtain; ``test_connection`` uses this to prove token
        credentials without touching data.
        """

    def renew_after(self, error: IoTFleetVendorResponseError) -> bool:
        """Decide whether ``error`` means "credentials expired": if so, drop them and return ``True``.

        The client then sends the request once more with fresh credentials; a second rejection is
        raised to the caller.
        """
        return False


class NoAuth(Auth):
    """For token and login endpoints, whose credentials travel in the request itself."""

    def __init__(self, credential_hint: str = "") -> None:
        self.credential_hint = credential_hint

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


@dataclass(frozen=True)
class Reply:
    """A successful vendor answer: its parsed JSON ``data``, with checked accessors.

    The accessors raise :class:`IoTFleetVendorResponseError` naming the vendor, the request and the
    missing or mistyped field, so a changed vendor API never surfaces as a bare ``KeyError``.
    """

    data: Any
    status: int
    headers: Mapping[str, str] = field(repr=False)
    vendor: str
    action: str

    def _malformed(self, what: str) -> IoTFleetVendorResponseError:
        return malformed_response(self.vendor, self.action, what)

    def object(self) -> dict[str, Any]:
        """Return the body as a JSON object."""
        if not isinstance(self.data, dict):
            raise self._malformed(f"a {type(self.data).__name__} where a JSON object was expected")
        return self.data

    def field(self, key: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
        """Return ``body[key]`` after checking its type; ``None`` if absent and not ``required``."""
        body = self.object()
        if key not in body or body[key] is None:
            if required:
                raise self._malformed(f"no {key!r} field")
            return None
        value = body[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise self._malformed(f"{key!r} of type {type(value).__name__}")
        return value

    def objects(self, key: str, *, required: bool = True) -> list[dict[str, Any]]:
        """Return ``body[key]`` as a list of JSON objects (an empty list if absent and not required)."""
        items = self.field(key, list, required=required) or []
        if not all(isinstance(item, dict) for item in items):
            raise self._malformed(f"{key!r} items that are not JSON objects")
        return items


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


class VendorHttpClient:
    """One vendor API over one reused ``requests.Session``.

    Every request goes through :meth:`send`, which applies, in order: the client-side rate limit, the
    auth strategy, a timeout, and on failure the retry policy (connection errors, 429, 5xx and
    vendor-named throttling codes, waiting as ``Retry-After`` says or with exponential backoff and
    jitter). Errors become typed exceptions through the vendor's :class:`ErrorMapping`.

    Redirects are not followed: requests would carry custom credential headers (``X-Access-Key``)
    to wherever a redirect points.

    :param base_url: prefix for relative paths given to :meth:`send`.
    :param errors: how this vendor reports errors.
    :param auth: builds the auth strategy from this client, so token strategies can fetch tokens
        through the same session and policies.
    :param max_connections: the most requests in flight at once; callers running more threads wait
        for a free slot, at most ``pool_timeout`` seconds, so a concurrent batch never opens more
        connections and a stuck call can never make the others wait forever.
    :param pool_timeout: the longest wait for a free slot (default: ``timeout``).
    :param conn_id: the Airflow connection the client was built from, named in errors whose fix is
        in the connection (refused credentials, an unreachable host).
    :param clock: time source for backoff sleeps and ``Retry-After`` dates; tests pass a fake.
    """

    def __init__(
        self,
        *,
        base_url: str,
        errors: ErrorMapping,
        auth: Callable[[VendorHttpClient], Auth] | None = None,
        timeout: float = 30.0,
        retry: BackoffPolicy | None = None,
        rate_limiter: TokenBucket | None = None,
        max_connections: int = 4,
        pool_timeout: float | None = None,
        conn_id: str | None = None,
        user_agent: str = USER_AGENT,
        logger: Logger | None = None,
        clock: Clock = SYSTEM_CLOCK,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.conn_id = conn_id
        self.errors = errors
        self.timeout = timeout
        self.retry = retry or BackoffPolicy()
        self.rate_limiter = rate_limiter
        self.log: Logger = logger or logging.getLogger(__name__)
        self.clock = clock
        self._uniform = uniform
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})
        # The pool never blocks: the slots below bound the requests in flight, with a timeout, which
        # urllib3's blocking pool cannot (requests gives it no pool timeout, so a leaked connection
        # would make the next caller wait forever).
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max_connections, pool_block=False)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._slots = threading.BoundedSemaphore(max_connections)
        self.pool_timeout = timeout if pool_timeout is None else pool_timeout
        # Proxies and CA bundle from the environment, resolved once per host (requests otherwise
        # looks them up on every request, and Session.send ignores REQUESTS_CA_BUNDLE).
        self._environment: dict[str, dict[str, Any]] = {}
        self.auth: Auth = auth(self) if auth else NoAuth()

    def url(self, path: str) -> str:
        """Return ``path`` joined to the base URL; absolute URLs (token endpoints) pass unchanged."""
        if path.startswith(("https://", "http://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        auth: Auth | None = None,
        retry: BackoffPolicy | None = None,
        rate_limited: bool = True,
    ) -> Reply:
        """Send one request, retrying as the policy allows, and return the vendor's JSON answer.

        :param auth: overrides the client's auth strategy (token endpoints pass :class:`NoAuth`).
        :param retry: overrides the client's retry policy (logins that must never repeat pass
            ``BackoffPolicy(max_retries=0)``).
        :param rate_limited: ``False`` for auth endpoints, which the vendor does not count.
        :return: the parsed answer, with its status and headers.
        :raises IoTFleetVendorResponseError: or a subclass, when the vendor answered with an error or
            with a body that is not JSON, after any retries.
        :raises IoTFleetTransportError: when the vendor could not be reached after every retry.
        """
        url = self.url(path)
        action = f"{method} {urlsplit(url).path}"
        policy = retry or self.retry
        strategy = auth or self.auth
        renewed = False
        retries_done = 0
        while True:
            if rate_limited and self.rate_limiter is not None:
                self.rate_limiter.acquire()
            outcome = self._attempt(method, url, action, params, json, data, strategy)
            if isinstance(outcome, Reply):
                return outcome
            error, retry_after = outcome
            if isinstance(error, IoTFleetVendorResponseError) and not renewed and strategy.renew_after(error):
                renewed = True
                self.log.info(
                    "%s: credentials expired; renewed them and resending %s", self.errors.vendor, action
                )
                continue
            if not self._is_retryable(error) or not policy.should_retry(retries_done, retry_after):
                raise self._explained(error, strategy)
            delay = policy.delay(retries_done, retry_after, self._uniform)
            retries_done += 1
            # The error's text already names the vendor and the request.
            self.log.warning("%s; retry %d of %d in %.1f s", error, retries_done, policy.max_retries, delay)
            self.clock.sleep(delay)

    def _attempt(
        self,
        method: str,
        url: str,
        action: str,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Mapping[str, str] | None,
        auth: Auth,
    ) -> Reply | tuple[IoTFleetVendorResponseError | IoTFleetTransportError, float | None]:
        """Send once; return the reply, or the error with the ``Retry-After`` seconds the vendor asked for."""
        request = requests.Request(method, url, params=params, json=json, data=data, auth=auth)
        started = self.clock.monotonic()
        try:
            # Prepared outside the slot: preparing applies the auth, which may fetch a token through
            # this same client and so needs a slot of its own.
            prepared = self.session.prepare_request(request)
            with self._slot():
                response = self.session.send(
                    prepared,
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,
                    **self._environment_for(url),
                )
                try:
                    response.content  # noqa: B018 - read (and decode) the whole body inside the try
                finally:
                    # Returns the connection to the pool, or closes it if the body was not read to
                    # the end: a half-read connection must never be reused nor leaked.
                    response.close()
        except requests.RequestException as exc:
            return self._transport_error(action, exc), None
        self.log.debug(
            "%s: %s answered %d in %.3f s",
            self.errors.vendor,
            action,
            response.status_code,
            self.clock.monotonic() - started,
        )
        if not 200 <= response.status_code < 300:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock.now())
            return self.errors.error_for(response, action, retry_after), retry_after
        try:
            payload = response.json() if response.content else None
        except ValueError:
            payload = _NOT_JSON
        if payload is None or payload is _NOT_JSON:
            what = "an empty body" if payload is None else "a body that is not JSON"
            return malformed_response(self.errors.vendor, action, what, response), None
        return Reply(
            data=payload,
            status=response.status_code,
            headers=response.headers,
            vendor=self.errors.vendor,
            action=action,
        )

    @contextmanager
    def _slot(self) -> Iterator[None]:
        """Hold one of the ``max_connections`` request slots, waiting at most ``pool_timeout``."""
        if not self._slots.acquire(timeout=self.pool_timeout):
            raise requests.ConnectionError(
                f"no free connection slot within {self.pool_timeout:g} s (every slot busy)"
            )
        try:
            yield
        finally:
            self._slots.release()

    def _environment_for(self, url: str) -> dict[str, Any]:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        settings = self._environment.get(origin)
        if settings is None:
            merged = self.session.merge_environment_settings(origin, {}, None, None, None)
            settings = {key: merged[key] for key in ("proxies", "verify", "cert")}
            self._environment[origin] = settings
        return settings

    def _transport_error(self, action: str, exc: requests.RequestException) -> IoTFleetTransportError:
        return IoTFleetTransportError(
            f"{self.errors.vendor}: {action} could not be completed: {_describe(exc)}",
            vendor=self.errors.vendor,
        )

    def _explained(
        self, error: IoTFleetVendorResponseError | IoTFleetTransportError, auth: Auth
    ) -> IoTFleetVendorResponseError | IoTFleetTransportError:
        """Add where to look to errors whose fix is in the connection rather than in the request."""
        connection = f"connection {self.conn_id!r}" if self.conn_id else "the connection"
        if isinstance(error, IoTFleetAuthError) and auth.credential_hint:
            return error.with_message(
                f"{error.message.rstrip('.')}. Check {auth.credential_hint} of {connection}"
            )
        if isinstance(error, IoTFleetTransportError) and self.conn_id:
            return error.with_message(f"{error.message} (host of {connection})")
        return error

    def _is_retryable(self, error: IoTFleetVendorResponseError | IoTFleetTransportError) -> bool:
        if isinstance(error, IoTFleetTransportError):
            return True
        if error.http_status is not None and error.http_status in RETRYABLE_STATUSES:
            return True
        if self.errors.is_retryable_code(error.error_code):
            return True
        # A 2xx answer that is not JSON is a truncated or garbled answer from a gateway: every call we
        # make is idempotent in effect, so asking again is safe.
        return error.http_status is not None and 200 <= error.http_status < 300

    def close(self) -> None:
        """Close the session and its pooled connections."""
        self.session.close()


_NOT_JSON = object()
_OBJECT_REPR = re.compile(r"<[^<>]+ object at 0x[0-9a-f]+>: ?")


def _describe(exc: requests.RequestException) -> str:
    """Return the root cause of a transport failure ("Connection refused", "Read timed out")."""
    inner = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", inner)
    return f"{type(exc).__name__}: {_OBJECT_REPR.sub('', str(reason))}"
