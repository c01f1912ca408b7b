"""Every transport decision, none of the I/O: what both clients share.

:class:`ClientCore` holds everything that decides: how a :class:`~.request.Call` becomes a
:class:`~.request.Request`, what an answer means (:func:`~.answers.interpret`), whether and when to
try again (:func:`~.retry.may_repeat`, :class:`~.retry.BackoffPolicy`), and how errors are worded.
It walks each call's auth flow and retries as a :class:`Conversation` of instructions (send this,
sleep that long, ...) that :class:`~.client.VendorHttpClient` (hooks and operators) and
:class:`~.aclient.AsyncVendorHttpClient` (triggers) carry out, each with its own I/O: they only move
bytes and wait.
"""

from __future__ import annotations

import logging
import random
import re
import ssl
import sys
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self

from airflow_provider_iotfleet import __version__
from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetCertificateError,
    IoTFleetConfigurationError,
    IoTFleetError,
    IoTFleetTransportError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.http.answers import Reply, interpret
from airflow_provider_iotfleet.http.auth import Auth, Flow, Mask, NoAuth, Sent, Wait
from airflow_provider_iotfleet.http.clock import SYSTEM_CLOCK, Clock
from airflow_provider_iotfleet.http.errors import ErrorMapping, request_id_in
from airflow_provider_iotfleet.http.ratelimit import TokenBucket
from airflow_provider_iotfleet.http.request import Call, Request, Response, build_request
from airflow_provider_iotfleet.http.retry import BackoffPolicy, may_repeat

USER_AGENT = f"airflow-provider-iotfleet/{__version__}"
#: Headers every request carries, set by us so that both clients send the same ones.
DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "gzip, deflate"}


class Logger(Protocol):
    """What the client logs through: a stdlib logger or the structlog logger of an Airflow hook."""

    def debug(self, msg: str, *args: Any) -> Any: ...
    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` before the next attempt (a backoff, or the vendor's ``Retry-After``)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Pace:
    """Wait for the next free slot of the client's rate ``limiter``."""

    limiter: TokenBucket


#: What a driver is asked to do: send a request, sleep, wait for the rate limit, wait for another
#: caller's credential renewal, or mask a secret just obtained.
Instruction = Request | Sleep | Pace | Wait | Mask
#: What a driver reports back after an instruction: the response to a request, or the error sending
#: it raised; ``None`` after the other instructions.
Report = Response | IoTFleetError | None


class Conversation:
    """One call's way through its auth flow, retries and waits, as instructions for a driver.

    The core decides and the driver acts (the sans-I/O pattern): the driver iterates over the
    instructions, carries each out with its own I/O, and hands what came of it to :meth:`report`
    before asking for the next. Used as a context manager, it closes the auth flow however the driver
    stops (a cancelled trigger included), so that a login in progress is given up.

    Iterating raises what the call ended with: an
    :class:`~airflow_provider_iotfleet.exceptions.IoTFleetVendorResponseError` (or a subclass) when
    the vendor answered with an error, an
    :class:`~airflow_provider_iotfleet.exceptions.IoTFleetTransportError` when it could not be
    reached, after every retry and credential renewal, and an
    :class:`~airflow_provider_iotfleet.exceptions.IoTFleetConfigurationError` for a request whose
    headers cannot be sent.

    :ivar reply: once the instructions are exhausted, the reply to the flow's last request
        (``None`` for a flow that sent nothing).
    """

    __slots__ = ("_instructions", "_report", "reply")

    def __init__(self, instructions: Generator[Instruction, Response | None, Reply | None]) -> None:
        self._instructions = instructions
        self._report: Report = None
        self.reply: Reply | None = None

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Instruction:
        report, self._report = self._report, None
        try:
            if isinstance(report, IoTFleetError):
                return self._instructions.throw(report)
            return self._instructions.send(report)
        except StopIteration as finished:
            self.reply = finished.value
            raise

    def report(self, result: Report) -> None:
        """Hand over what came of the instruction just carried out, for the next one to follow from."""
        self._report = result

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._instructions.close()


@dataclass
class Attempts:
    """Retry bookkeeping of one request: when it was first sent, retries, ``Retry-After`` slept."""

    started: float
    retries: int = 0
    waited_for_vendor: float = 0.0


class ClientCore:
    """What both clients share: configuration and every decision, none of the I/O.

    :param base_url: prefix for relative call paths.
    :param errors: how this vendor reports errors.
    :param auth: the auth strategy (its flows obtain tokens through the client that drives them).
    :param timeout: seconds per network operation.
    :param retry: how often and how patiently to retry.
    :param rate_limiter: client-side limit shared by every request of this client.
    :param max_connections: the most requests in flight at once.
    :param pool_timeout: the longest wait for a free connection (default: ``timeout``).
    :param conn_id: the Airflow connection the client was built from, named in errors whose fix is
        in the connection (refused credentials, an unreachable host).
    :param ca_bundle: a PEM file of certificate authorities to trust instead of the system's (and
        of ``REQUESTS_CA_BUNDLE``); verification itself is never turned off.
    :param max_answer_bytes: the largest answer body read (decoded); a longer one, like a runaway
        error page, is an error at once, not a download repeated on every retry.
    :param clock: time source for sleeps and ``Retry-After`` dates; tests pass a fake.
    """

    def __init__(
        self,
        *,
        base_url: str,
        errors: ErrorMapping,
        auth: Auth | None = None,
        timeout: float = 30.0,
        retry: BackoffPolicy | None = None,
        rate_limiter: TokenBucket | None = None,
        max_connections: int = 4,
        pool_timeout: float | None = None,
        conn_id: str | None = None,
        max_answer_bytes: int = 16 * 1024 * 1024,
        ca_bundle: str | None = None,
        user_agent: str = USER_AGENT,
        logger: Logger | None = None,
        clock: Clock = SYSTEM_CLOCK,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.errors = errors
        self.auth: Auth = auth or NoAuth()
        self.timeout = timeout
        self.retry = retry or BackoffPolicy()
        self.rate_limiter = rate_limiter
        self.max_connections = max_connections
        self.pool_timeout = timeout if pool_timeout is None else pool_timeout
        self.conn_id = conn_id
        self.max_answer_bytes = max_answer_bytes
        self.ca_bundle = ca_bundle
        self.default_headers = {**DEFAULT_HEADERS, "User-Agent": user_agent}
        self.log: Logger = logger or logging.getLogger(__name__)
        self.clock = clock
        self._uniform = uniform

    def build(self, call: Call) -> Request:
        """Return the wire form of ``call`` for this vendor."""
        return build_request(call, self.base_url, self.default_headers)

    def url(self, path: str) -> str:
        """Return ``path`` joined to the base URL; absolute URLs pass unchanged."""
        return self.build(Call("GET", path)).url

    def conversation(self, flow: Flow) -> Conversation:
        """Return ``flow`` carried through to its end, as instructions for a driver to carry out."""
        return Conversation(self._instructions(flow))

    def _instructions(self, flow: Flow) -> Generator[Instruction, Response | None, Reply | None]:
        """Yield what the driver must do for ``flow``; return the reply to its last request.

        Everything is decided here: retries and their waits, what each answer means, what goes back
        into the flow, how errors are worded. Raises as :class:`Conversation` says.
        """
        outcome: Sent = None
        previous: Request | None = None
        try:
            step = next(flow)
            while True:
                sent: Sent = None
                if isinstance(step, Request):
                    # The flow sends the same call again: the vendor refused its credentials.
                    if (
                        previous is not None
                        and step.call is previous.call
                        and isinstance(outcome, IoTFleetError)
                    ):
                        self.log.info(
                            "%s: credentials renewed; resending %s", self.errors.vendor, step.action
                        )
                    outcome = sent = yield from self._exchange(step)
                    previous = step
                else:
                    yield step
                step = flow.send(sent)
        except StopIteration:
            pass
        except IoTFleetError as error:
            raise self._explained(error) from error.__cause__
        finally:
            flow.close()
        if isinstance(outcome, IoTFleetError):
            raise self._explained(outcome)
        return outcome

    def _exchange(self, request: Request) -> Generator[Instruction, Response | None, Sent]:
        """Send ``request`` until it succeeds or must not be sent again; return what it came to.

        A vendor's error goes back to the flow, which may renew credentials; a transport error that
        may not be retried any more is raised.
        """
        attempts = Attempts(started=self.clock.monotonic())
        while True:
            if request.call.rate_limited and self.rate_limiter is not None:
                yield Pace(self.rate_limiter)
            self._check_sendable(request)
            error: IoTFleetError
            try:
                response = yield request
            except IoTFleetTransportError as transport_error:
                error, retry_after = transport_error, None
            else:
                assert response is not None  # a driver answers every request with its response
                outcome, retry_after = self._interpret(request, response)
                if isinstance(outcome, Reply):
                    return outcome
                error = outcome
            delay = self._retry_delay(request, error, attempts, retry_after)
            if delay is None:
                if isinstance(error, IoTFleetVendorResponseError):
                    return error
                raise error
            yield Sleep(delay)
            request = self.auth.refresh(request)

    def _interpret(
        self, request: Request, response: Response
    ) -> tuple[Reply | IoTFleetVendorResponseError, float | None]:
        """What the vendor's ``response`` means, logged at debug level (never with headers or body)."""
        self.log.debug("%s: %s answered %d", self.errors.vendor, request.action, response.status)
        return interpret(request, response, self.errors, self.clock.now())

    def _retry_delay(
        self, request: Request, error: IoTFleetError, attempts: Attempts, retry_after: float | None
    ) -> float | None:
        """Return the seconds to wait before sending ``request`` again after ``error``, or ``None``.

        A 429 to a rate-limited call also pauses the shared rate limiter for its ``Retry-After``, so
        that the other threads or coroutines of this client wait too instead of being throttled in
        turn (logins and token calls have limits of their own).
        """
        if (
            error.http_status == 429
            and retry_after
            and request.call.rate_limited
            and self.rate_limiter is not None
        ):
            self.rate_limiter.pause(retry_after)
        if not may_repeat(request.call, error, self.errors.is_retryable_code(error.error_code)):
            return None
        delay = self.retry.next_delay(
            attempts.retries,
            retry_after,
            waited_for_vendor=attempts.waited_for_vendor,
            elapsed=self.clock.monotonic() - attempts.started,
            uniform=self._uniform,
        )
        if delay is None:
            return None
        attempts.retries += 1
        attempts.waited_for_vendor += retry_after or 0.0
        # The error's text already names the vendor and the request.
        self.log.warning(
            "%s; retry %d of %d in %.1f s", error, attempts.retries, self.retry.max_retries, delay
        )
        return delay

    def _explained(self, error: IoTFleetError) -> IoTFleetError:
        """Add where to look to errors whose fix is in the connection rather than in the request."""
        connection = f"connection {self.conn_id!r}" if self.conn_id else "the connection"
        hint = error.credential_hint or self.auth.credential_hint
        # The advice goes into the bare message too: it names no device, and the outcome's error
        # groups and failure lines show only the bare message.
        if isinstance(error, IoTFleetAuthError) and hint and "Check " not in error.message:
            advice = f"Check {hint} of {connection}"
            return error.with_message(
                f"{error.message.rstrip('.')}. {advice}",
                bare_message=f"{error.bare_message.rstrip('.')}. {advice}",
            )
        if isinstance(error, IoTFleetTransportError) and self.conn_id and connection not in error.message:
            return error.with_message(
                f"{error.message} (host of {connection})",
                bare_message=f"{error.bare_message} (host of {connection})",
            )
        return error

    def _check_sendable(self, request: Request) -> None:
        """Refuse a request whose headers ``http.client`` would refuse with the value in the message."""
        if bad := request.unsendable_headers():
            raise IoTFleetConfigurationError(
                f"{self.errors.vendor}: the {', '.join(bad)} header of {request.action} would hold a line "
                "break or another control character; check the credentials of the connection",
                vendor=self.errors.vendor,
            )

    def answer_body(self, request: Request, status: int, headers: Mapping[str, str]) -> AnswerBody:
        """Return the collector for the body of an answer to ``request`` about to be read.

        :raises IoTFleetVendorResponseError: at once when the announced length is over the limit.
        """
        return AnswerBody(request, status, headers, limit=self.max_answer_bytes, vendor=self.errors.vendor)

    def transport_error(
        self, request: Request, cause: BaseException, *, reached: bool
    ) -> IoTFleetTransportError:
        """Return the error for ``request`` failing in the HTTP library with ``cause``.

        :param reached: whether the request may have reached the vendor (``False`` only when the
            connection surely never opened), which decides whether even a write may be resent.
        """
        if _certificate_failure(cause):
            return IoTFleetCertificateError(
                f"{self.errors.vendor}: {request.action}: the vendor's TLS certificate could not be verified "
                f"({describe(cause)}); if a proxy re-signs traffic, set the connection's ca_bundle extra "
                "(or REQUESTS_CA_BUNDLE) to its CA",
                vendor=self.errors.vendor,
            )
        return IoTFleetTransportError(
            f"{self.errors.vendor}: {request.action} could not be completed: {describe(cause)}",
            may_have_reached_vendor=reached,
            vendor=self.errors.vendor,
            bare_message=f"could not be completed: {describe(cause)}",
        )


class AnswerBody:
    """The body of one answer as its chunks arrive, refused once it grows past ``limit`` bytes
    (decoded): a runaway error page is an error at once, not a download repeated on every retry.

    :raises IoTFleetVendorResponseError: at once when the announced length is over ``limit``.
    """

    __slots__ = ("_chunks", "_headers", "_limit", "_request", "_size", "_status", "_vendor")

    def __init__(
        self, request: Request, status: int, headers: Mapping[str, str], *, limit: int, vendor: str
    ) -> None:
        self._request = request
        self._status = status
        self._headers = headers
        self._limit = limit
        self._vendor = vendor
        self._chunks: list[bytes] = []
        self._size = 0
        length = headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            raise self._too_large()

    def add(self, chunk: bytes) -> None:
        """Keep ``chunk``.

        :raises IoTFleetVendorResponseError: when the body is now over the limit.
        """
        self._size += len(chunk)
        if self._size > self._limit:
            raise self._too_large()
        self._chunks.append(chunk)

    def read(self) -> bytes:
        """Return the whole body."""
        return b"".join(self._chunks)

    def _too_large(self) -> IoTFleetVendorResponseError:
        limit = f"more than {self._limit / 2**20:g} MiB; the answer was not read further"
        return IoTFleetVendorResponseError(
            f"{self._vendor} answered {self._request.action} with {limit}",
            http_status=self._status,
            request_id=request_id_in(self._headers),
            vendor=self._vendor,
            # Without the path, which names the device (Cisco): the same error on many devices is
            # one error group in an outcome, as malformed_response's bare message makes it.
            bare_message=f"an answer with {limit}",
        )


def _certificate_failure(cause: BaseException) -> bool:
    """Whether a transport failure is a certificate that failed verification (requests or httpx)."""
    loaded_requests = sys.modules.get("requests")  # only what is loaded can have been raised
    certificate_errors: tuple[type[BaseException], ...] = (ssl.SSLCertVerificationError,)
    if loaded_requests is not None:
        certificate_errors += (loaded_requests.exceptions.SSLError,)
    seen: set[int] = set()
    pending: list[BaseException | None] = [cause]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, certificate_errors):
            return True
        pending += [current.__cause__, current.__context__]
        pending += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
        pending.append(getattr(current, "reason", None))
    return False


_OBJECT_REPR = re.compile(r"<[^<>]+ object at 0x[0-9a-f]+>: ?")


def describe(exc: BaseException) -> str:
    """Return the root cause of a transport failure ("Connection refused", "Read timed out")."""
    inner = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", inner)
    return f"{type(exc).__name__}: {_OBJECT_REPR.sub('', str(reason))}"
