"""The async driver, on ``httpx`` (shipped with Airflow), for triggers: the same calls, auth flows,
retry rules and error mapping as the sync client, awaited instead of blocking.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import os
import ssl
import sys
from typing import Any

import httpx

from airflow_provider_iotfleet._compat import amask_secret
from airflow_provider_iotfleet.deadlines import Bound
from airflow_provider_iotfleet.exceptions import IoTFleetError
from airflow_provider_iotfleet.http.answers import Reply
from airflow_provider_iotfleet.http.auth import Flow, Mask, TokenCache, Wait
from airflow_provider_iotfleet.http.core import ClientCore, Instruction, Pace, Sleep
from airflow_provider_iotfleet.http.request import Call, Headers, Request, Response

#: How often a coroutine looks whether another one has finished renewing a shared token.
_RENEWAL_POLL = 0.05
#: Failures that prove the request never left: nothing reached the vendor.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Response headers that can carry a credential (Huawei IAM hands its token out in X-Subject-Token).
_CREDENTIAL_HEADERS = ("x-subject-token", "x-auth-token", "authorization", "set-cookie")
#: What httpx imports on its first request in an event loop (anyio's asyncio backend, hundreds of
#: milliseconds on a busy machine): imported in a worker thread before the first request instead.
IMPORTED_ON_FIRST_REQUEST = ("anyio._backends._asyncio",)


async def aimport_request_modules() -> None:
    """Import, in a worker thread, the modules of :data:`IMPORTED_ON_FIRST_REQUEST` not imported yet:
    imported by httpx itself, they would block the event loop, and every trigger in it, meanwhile."""
    missing = [name for name in IMPORTED_ON_FIRST_REQUEST if name not in sys.modules]
    if missing:
        await asyncio.to_thread(lambda: [importlib.import_module(name) for name in missing])


class _CredentialHeaderFilter(logging.Filter):
    """httpcore logs each response's headers at DEBUG, before the auth flow can mask a token that came
    in one: such a line loses its headers (all of them: nothing is left to parse wrongly)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if (
            isinstance(message, str)
            and message.startswith("receive_response_headers")
            and any(name in message.lower() for name in _CREDENTIAL_HEADERS)
        ):
            record.msg = f"{message.split(' ', 1)[0]} (headers not logged: they carry a credential)"
            record.args = ()
        return True


_CREDENTIAL_HEADER_FILTER = _CredentialHeaderFilter()
for _name in ("httpcore.http11", "httpcore.http2"):
    logging.getLogger(_name).addFilter(_CREDENTIAL_HEADER_FILTER)


class AsyncVendorHttpClient(ClientCore):
    """One vendor API over one reused ``httpx.AsyncClient``; nothing in it blocks the event loop.

    Takes the options of :class:`~airflow_provider_iotfleet.http.core.ClientCore`, and
    ``transport`` (an ``httpx.MockTransport`` in tests).
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(self.timeout, pool=self.pool_timeout),
            limits=httpx.Limits(
                max_connections=self.max_connections, max_keepalive_connections=self.max_connections
            ),
            follow_redirects=False,
            verify=_verify(self.ca_bundle),
        )
        # Requests wait for a connection here, first come first served, rather than in httpx's pool:
        # its queue is scanned on every request and release, which with hundreds of triggers on one
        # client blocks the event loop for seconds and serves some triggers far later than others.
        self._connection_slots = asyncio.Semaphore(self.max_connections)
        self._turns = asyncio.Semaphore(self.max_connections)  # see take_turn
        self._imported = False  # whether aimport_request_modules() ran for this client

    async def take_turn(self) -> bool:
        """Wait, at most ``pool_timeout``, for one of ``max_connections`` turns to send requests, and
        take it; with none free by then, go on without one.

        A caller about to send a series of requests (a trigger's poll, among hundreds queued on one
        client) waits here, holding next to nothing, instead of waiting for a connection with its
        requests, auth flow and coroutines built: a wait of seconds is long enough for the garbage
        collector to move all of them into its oldest generation, whose growth starts full
        collections (each pausing the event loop). Its requests still each wait for a connection,
        within ``pool_timeout``, as any request does.

        :return: whether a turn was taken; if so, give it back with :meth:`end_turn`.
        """
        try:
            with Bound().within(self.pool_timeout):
                await self._turns.acquire()
        except TimeoutError:
            return False
        return True

    def end_turn(self) -> None:
        """Give back a turn taken with :meth:`take_turn`."""
        self._turns.release()

    async def send(self, call: Call) -> Reply:
        """Send ``call`` (after any logins its auth needs) and return the vendor's answer.

        :raises IoTFleetVendorResponseError: or a subclass, as the sync client does.
        :raises IoTFleetTransportError: when the vendor could not be reached after every retry.
        """
        reply = await self._drive(self.auth.flow(self.build(call), self.build))
        assert reply is not None  # a data flow always ends with the data request's outcome
        return reply

    async def obtain(self) -> None:
        """Obtain the credentials the auth fetches from the vendor, now."""
        await self._drive(self.auth.obtain(self.build))

    async def _drive(self, flow: Flow) -> Reply | None:
        """Carry out, in the event loop, what the conversation of ``flow`` asks for; return its reply."""
        with self.conversation(flow) as conversation:
            for instruction in conversation:
                try:
                    conversation.report(await self._carry_out(instruction))
                except IoTFleetError as error:
                    conversation.report(error)
        return conversation.reply

    async def _carry_out(self, instruction: Instruction) -> Response | None:
        if isinstance(instruction, Request):
            return await self._transmit(instruction)
        if isinstance(instruction, Sleep):
            await self.clock.asleep(instruction.seconds)
        elif isinstance(instruction, Pace):
            await instruction.limiter.aacquire(self.clock.asleep)
        elif isinstance(instruction, Wait):
            await self._wait_for_renewal(instruction.cache)
        elif isinstance(instruction, Mask):
            await amask_secret(instruction.secret)
        return None

    async def _wait_for_renewal(self, cache: TokenCache) -> None:
        """Wait until another coroutine has renewed ``cache``'s credential, at most ``pool_timeout``.

        Polled: the cache's condition is a threading one, and waiting on it would block the loop.
        """
        waited = 0.0
        while cache.renewing and waited < self.pool_timeout:
            await self.clock.asleep(_RENEWAL_POLL)
            waited += _RENEWAL_POLL

    async def _transmit(self, request: Request) -> Response:
        if not self._imported:
            await aimport_request_modules()
            self._imported = True
        try:
            # A bound, not wait_for: 3.11's wait_for can swallow a cancellation that arrives as the
            # semaphore is acquired, and a cancelled trigger would then go on polling. Nor
            # asyncio.timeout, whose cancelled timer would outlive each request (see deadlines.py).
            with Bound().within(self.pool_timeout):
                await self._connection_slots.acquire()
        except TimeoutError:
            waited = httpx.PoolTimeout(f"no free connection within {self.pool_timeout:g} s")
            raise self.transport_error(request, waited, reached=False) from None
        try:
            return await self._transmit_on_a_connection(request)
        finally:
            self._connection_slots.release()

    async def _transmit_on_a_connection(self, request: Request) -> Response:
        try:
            outgoing = self._client.build_request(
                request.method, request.url, headers=dict(request.headers), content=request.body or None
            )
            response = await self._client.send(outgoing, stream=True)
            try:
                body = self.answer_body(request, response.status_code, response.headers)
                async for chunk in response.aiter_bytes():
                    body.add(chunk)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise self.transport_error(request, exc, reached=not isinstance(exc, _NEVER_SENT)) from None
        return Response(
            status=response.status_code,
            headers=Headers(dict(response.headers)),
            body=body.read(),
            reason=response.reason_phrase,
        )

    async def aclose(self) -> None:
        """Close the client and its pooled connections."""
        await self._client.aclose()


def _verify(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """The connection's CA bundle, else the variables ``requests`` reads: both clients trust the same."""
    bundle = ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return _ssl_context(bundle) if bundle else True


@functools.lru_cache(maxsize=16)
def _ssl_context(bundle: str) -> ssl.SSLContext:
    # Loading a CA bundle reads and parses a file: done once per bundle, not once per trigger's
    # client, so that many triggers starting in one event loop do not stall it. Contexts are safe to
    # share between clients.
    return ssl.create_default_context(cafile=bundle)
