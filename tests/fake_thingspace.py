"""A fake ThingSpace for unit tests: it answers the OAuth and M2M logins, records every request as
a :class:`~tests.fakes.Wire`, and leaves every other answer to a subclass's :meth:`FakeThingSpace.read`.

The same fake answers through requests-mock (:meth:`FakeThingSpace.mount`: hooks, operators, sensors)
and through an ``httpx.MockTransport`` (:func:`serve`: triggers), so both worlds see one state.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from airflow_provider_iotfleet.http import AsyncVendorHttpClient
from tests.fakes import RecordingVendor, Wire

VZ_TOKEN_PATH = "/api/ts/v1/oauth2/token"
VZ_LOGIN_PATH = "/api/m2m/v1/session/login"


def thingspace_login(wire: Wire) -> tuple[int, Any]:
    """ThingSpace's answer to its OAuth token request or its M2M session login."""
    if wire.path == VZ_TOKEN_PATH:
        return 200, {"access_token": "access-token-1", "token_type": "Bearer", "expires_in": 3600}
    return 200, {"sessionToken": "session-token-1"}


class FakeThingSpace(RecordingVendor):
    """ThingSpace's logins, and every request recorded in :attr:`wires`.

    Answering is re-entrant: a subclass's :meth:`read` may trigger another request (an operator's
    ``on_kill`` arriving while a request is in flight, as Airflow calls it from a signal handler).
    """

    auth_paths = frozenset({VZ_TOKEN_PATH, VZ_LOGIN_PATH})

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()

    def respond(self, wire: Wire) -> tuple[int, Any]:
        with self._lock:
            self.wires.append(wire)
            if wire.path in self.auth_paths:
                return self.auth(wire)
            return self.read(wire)

    def auth(self, wire: Wire) -> tuple[int, Any]:
        return thingspace_login(wire)

    def read(self, wire: Wire) -> tuple[int, Any]:
        raise NotImplementedError

    def transport(self, turns: int = 1) -> httpx.MockTransport:
        """An async transport; each answer takes ``turns`` event-loop turns."""

        async def handler(request: httpx.Request) -> httpx.Response:
            wire = Wire(request.method, str(request.url), await request.aread())
            for _ in range(turns):
                await asyncio.sleep(0)
            status, answer = self.respond(wire)
            return httpx.Response(status, json=answer)

        return httpx.MockTransport(handler)


def serve(monkeypatch: pytest.MonkeyPatch, fake: FakeThingSpace, turns: int = 1) -> None:
    """Make every async client the hooks build (the triggers') talk to ``fake``."""
    # With a CA bundle named in the environment, each async client loads it into a new SSL context
    # (~0.1 s, even on a mock transport): unset, so that tests measure the triggers, not that.
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)

    def build(**options: Any) -> AsyncVendorHttpClient:
        return AsyncVendorHttpClient(**options, transport=fake.transport(turns))

    monkeypatch.setattr("airflow_provider_iotfleet.hooks.base.AsyncVendorHttpClient", build)
