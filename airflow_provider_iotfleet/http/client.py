"""The sync driver, on ``requests``, for hooks and operators: it sends what
:class:`~.core.ClientCore` decides and sleeps in the calling thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_iotfleet._compat import mask_secret
from airflow_provider_iotfleet.exceptions import IoTFleetError, IoTFleetTransportError
from airflow_provider_iotfleet.http.answers import Reply
from airflow_provider_iotfleet.http.auth import Flow, Mask, Wait
from airflow_provider_iotfleet.http.core import ClientCore, Instruction, Pace, Sleep
from airflow_provider_iotfleet.http.request import Call, Headers, Request, Response

if TYPE_CHECKING:
    import requests


class VendorHttpClient(ClientCore):
    """One vendor API over one reused ``requests.Session`` (hooks and operators).

    :meth:`send` drives the auth flow of a call: each request it yields goes out under the rate
    limit, with a timeout, retried as the call's repeat rule and the policy allow; the outcome goes
    back into the flow. Redirects are not followed: they would carry credential headers elsewhere.
    """

    def __init__(self, **options: Any) -> None:
        # requests is imported when a client is built, not when a DAG file imports an operator:
        # airflow.sdk does not load it, and it costs a hundred modules on every DAG parse.
        import requests
        from requests.adapters import HTTPAdapter

        super().__init__(**options)
        self.session = requests.Session()
        # The pool never blocks: the slots below bound the requests in flight, with a timeout, which
        # urllib3's blocking pool cannot (requests gives it no pool timeout, so a leaked connection
        # would make the next caller wait forever).
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.max_connections, pool_block=False)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._slots = threading.BoundedSemaphore(self.max_connections)
        # Proxies and CA bundle from the environment, resolved once per origin (requests otherwise
        # looks them up on every request, and Session.send ignores REQUESTS_CA_BUNDLE).
        self._environment: dict[str, dict[str, Any]] = {}

    def send(self, call: Call, *, on_send: Callable[[], None] | None = None) -> Reply:
        """Send ``call`` (with whatever logins its auth needs first) and return the vendor's answer.

        :param on_send: called in this thread just before each request of the call goes out (its
            bytes about to be written): a caller overlapping work with the answer's wait starts then.

        :raises IoTFleetVendorResponseError: or a subclass, when the vendor answered with an error or
            with a body that is not JSON, after any retries and credential renewal.
        :raises IoTFleetTransportError: when the vendor could not be reached after every retry.
        """
        reply = self._drive(self.auth.flow(self.build(call), self.build), on_send)
        assert reply is not None  # a data flow always ends with the data request's outcome
        return reply

    def obtain(self) -> None:
        """Obtain the credentials the auth fetches from the vendor, now (``test_connection``)."""
        self._drive(self.auth.obtain(self.build))

    def _drive(self, flow: Flow, on_send: Callable[[], None] | None = None) -> Reply | None:
        """Carry out, in this thread, what the conversation of ``flow`` asks for; return its reply."""
        with self.conversation(flow) as conversation:
            for instruction in conversation:
                try:
                    conversation.report(self._carry_out(instruction, on_send))
                except IoTFleetError as error:
                    conversation.report(error)
        return conversation.reply

    def _carry_out(
        self, instruction: Instruction, on_send: Callable[[], None] | None = None
    ) -> Response | None:
        if isinstance(instruction, Request):
            return self._transmit(instruction, on_send)
        if isinstance(instruction, Sleep):
            self.clock.sleep(instruction.seconds)
        elif isinstance(instruction, Pace):
            instruction.limiter.acquire()
        elif isinstance(instruction, Wait):
            instruction.cache.wait(self.pool_timeout)
        elif isinstance(instruction, Mask):
            mask_secret(instruction.secret)
        return None

    def _transmit(self, request: Request, on_send: Callable[[], None] | None = None) -> Response:
        import requests

        prepared = requests.PreparedRequest()
        try:
            prepared.prepare(
                method=request.method,
                url=request.url,
                headers=dict(request.headers),
                data=request.body or None,
            )
            with self._slot():
                if on_send is not None:
                    on_send()
                response = self.session.send(
                    prepared,
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,
                    **self._environment_for(request.url),
                )
                try:
                    body = self.answer_body(request, response.status_code, response.headers)
                    for chunk in response.iter_content(64 * 1024):
                        body.add(chunk)
                finally:
                    # Returns the connection to the pool, or closes it if the body was not read to
                    # the end: a half-read connection must never be reused nor leaked.
                    response.close()
        except requests.RequestException as exc:
            raise self.transport_error(request, exc, reached=not _never_sent(exc)) from None
        return Response(
            status=response.status_code,
            headers=Headers(response.headers),
            body=body.read(),
            reason=response.reason or "",
        )

    @contextmanager
    def _slot(self) -> Iterator[None]:
        """Hold one of the ``max_connections`` request slots, waiting at most ``pool_timeout``."""
        if not self._slots.acquire(timeout=self.pool_timeout):
            raise IoTFleetTransportError(
                f"{self.errors.vendor}: no free connection slot within {self.pool_timeout:g} s (every slot busy)",
                may_have_reached_vendor=False,
                vendor=self.errors.vendor,
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
            merged = self.session.merge_environment_settings(origin, {}, None, self.ca_bundle, None)
            settings = {key: merged[key] for key in ("proxies", "verify", "cert")}
            self._environment[origin] = settings
        return settings

    def close(self) -> None:
        """Close the session and its pooled connections."""
        self.session.close()


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the request surely did not reach the vendor (the connection was never opened)."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return True
    inner = exc.args[0] if exc.args else None
    return isinstance(inner, NewConnectionError) or isinstance(
        getattr(inner, "reason", None), NewConnectionError
    )
