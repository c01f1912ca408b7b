"""The async driver, on ``httpx`` (shipped with Airflow), for triggers: the same calls, auth flows,
retry rules and error mapping as the sync client, awaited instead of blocking.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
from typing import Any

import httpx

from airflow_provider_iotfleet._compat import amask_secret
from airflow_provider_iotfleet.exceptions import (
    IoTFleetError,
    IoTFleetTransportError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.http.answers import Reply
from airflow_provider_iotfleet.http.auth import Flow, Mask, Sent, Wait
from airflow_provider_iotfleet.http.core import Attempts, ClientCore
from airflow_provider_iotfleet.http.request import Call, Headers, Request, Response

#: How often a coroutine looks whether another one has finished renewing a shared token.
_RENEWAL_POLL = 0.05
#: Failures that prove the request never left: nothing reached the vendor.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Response headers that can carry a credential (Huawei IAM hands its token out in X-Subject-Token).
_CREDENTIAL_HEADERS = ("x-subject-token", "x-auth-token", "authorization", "set-cookie")


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
        outcome: Sent = None
        previous: Request | None = None
        try:
            step = next(flow)
            while True:
                sent: Sent = None
                if isinstance(step, Request):
                    if self.renewing_again(step, previous, outcome):
                        self.log.info(
                            "%s: credentials renewed; resending %s", self.errors.vendor, step.action
                        )
                    outcome = sent = await self._exchange(step)
                    previous = step
                elif isinstance(step, Wait):
                    waited = 0.0
                    while step.cache.renewing and waited < self.pool_timeout:
                        await self.clock.asleep(_RENEWAL_POLL)
                        waited += _RENEWAL_POLL
                elif isinstance(step, Mask):
                    await amask_secret(step.secret)
                step = flow.send(sent)
        except StopIteration:
            pass
        except IoTFleetError as error:
            raise self.explained(error, self.auth) from error.__cause__
        finally:
            flow.close()
        if isinstance(outcome, IoTFleetError):
            raise self.explained(outcome, self.auth)
        return outcome

    async def _exchange(self, request: Request) -> Reply | IoTFleetVendorResponseError:
        attempts = Attempts(started=self.clock.monotonic())
        while True:
            if request.call.rate_limited and self.rate_limiter is not None:
                await self.rate_limiter.aacquire(self.clock.asleep)
            error: IoTFleetError
            try:
                outcome, retry_after = self.outcome(request, await self._transmit(request))
            except IoTFleetTransportError as transport_error:
                error, retry_after = transport_error, None
            else:
                if isinstance(outcome, Reply):
                    return outcome
                error = outcome
            delay = self.retry_delay(request, error, attempts, retry_after)
            if delay is None:
                if isinstance(error, IoTFleetVendorResponseError):
                    return error
                raise error
            await self.clock.asleep(delay)
            request = self.auth.refresh(request)

    async def _transmit(self, request: Request) -> Response:
        self.check_sendable(request)
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that arrives
            # as the semaphore is acquired, and a cancelled trigger would then go on polling.
            async with asyncio.timeout(self.pool_timeout):
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
                self.check_length(request, response.status_code, response.headers)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_answer_bytes:
                        raise self.too_large(request, response.status_code, response.headers)
                    chunks.append(chunk)
                body = b"".join(chunks)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise self.transport_error(request, exc, reached=not isinstance(exc, _NEVER_SENT)) from None
        return Response(
            status=response.status_code,
            headers=Headers(dict(response.headers)),
            body=body,
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
