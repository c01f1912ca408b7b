"""Fixtures of the unit tests that drive a hook through requests-mock."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests_mock as rm

from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from tests.fakes import FakeClock

THINGSPACE_ROOT = "https://thingspace.verizon.com"


@pytest.fixture
def thingspace_hook(
    set_connection: Callable[..., None], clock: FakeClock, requests_mock: rm.Mocker
) -> VerizonThingSpaceHook:
    """A ThingSpace hook on ``verizon_thingspace_default`` (default account ``0000123456-00001``)
    whose OAuth token and M2M login are answered, a fresh token and session for each hook; the
    FOTA API itself is left for the test to answer."""
    set_connection(
        "verizon_thingspace_default",
        "verizon_thingspace",
        login="oauth-key-abc",
        password="oauth-secret-xyz-123",
        extra={
            "m2m_username": "uws-fleet",
            "m2m_password": "uws-password-987",
            "account_name": "0000123456-00001",
        },
    )
    requests_mock.post(
        f"{THINGSPACE_ROOT}/api/ts/v1/oauth2/token",
        [
            {"json": {"access_token": f"access-token-{n}", "token_type": "Bearer", "expires_in": 3600}}
            for n in range(1, 6)
        ],
    )
    requests_mock.post(
        f"{THINGSPACE_ROOT}/api/m2m/v1/session/login",
        [{"json": {"sessionToken": f"session-token-{n}"}} for n in range(1, 6)],
    )
    return VerizonThingSpaceHook(clock=clock)
