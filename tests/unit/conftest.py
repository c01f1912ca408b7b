"""Fixtures of the unit tests: each vendor's connection (``tests/connections.py``), ThingSpace's
logins answered through requests-mock, log capture, and the system clock made the fake one."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests_mock as rm
import structlog

from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.http import SYSTEM_CLOCK
from tests.connections import (
    CISCO,
    PALOALTO,
    ROMA,
    ROMA_IAM,
    THINGSPACE,
    THINGSPACE_LOGIN_URL,
    THINGSPACE_TOKEN_URL,
)
from tests.fakes import FakeClock
from tests.log_capture import Events, Logs

# --- Connections -----------------------------------------------------------------------------------


@pytest.fixture
def paloalto_connection(set_connection: Callable[..., None]) -> None:
    """``paloalto_iot_default``: an API key on a tenant (``tests.connections.PALOALTO``)."""
    set_connection("paloalto_iot_default", **PALOALTO)


@pytest.fixture
def cisco_connection(set_connection: Callable[..., None]) -> None:
    """``cisco_control_center_default``: a user and its API key (``tests.connections.CISCO``)."""
    set_connection("cisco_control_center_default", **CISCO)


@pytest.fixture
def roma_connection(set_connection: Callable[..., None]) -> None:
    """``huawei_roma_default``: an AK/SK on ROMA Connect's public host (``tests.connections.ROMA``)."""
    set_connection("huawei_roma_default", **ROMA)


@pytest.fixture
def roma_iam_connection(set_connection: Callable[..., None]) -> None:
    """``roma_iam``: an IAM user whose password buys a token (``tests.connections.ROMA_IAM``)."""
    set_connection("roma_iam", **ROMA_IAM)


@pytest.fixture
def thingspace_connection(set_connection: Callable[..., None]) -> None:
    """``verizon_thingspace_default``: ThingSpace's public host, account ``0000123456-00001``
    (``tests.connections.THINGSPACE``)."""
    set_connection("verizon_thingspace_default", **THINGSPACE)


@pytest.fixture
def thingspace_logins(requests_mock: rm.Mocker) -> tuple[Any, Any]:
    """ThingSpace's OAuth token and M2M login answered, a fresh token and session each time (five
    of each); returns the two requests-mock routes, to count the logins."""
    token = requests_mock.post(
        THINGSPACE_TOKEN_URL,
        [
            {"json": {"access_token": f"access-token-{n}", "token_type": "Bearer", "expires_in": 3600}}
            for n in range(1, 6)
        ],
    )
    login = requests_mock.post(
        THINGSPACE_LOGIN_URL, [{"json": {"sessionToken": f"session-token-{n}"}} for n in range(1, 6)]
    )
    return token, login


@pytest.fixture
def thingspace_hook(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], clock: FakeClock
) -> VerizonThingSpaceHook:
    """A ThingSpace hook on ``verizon_thingspace_default`` whose logins are answered; the FOTA API
    itself is left for the test to answer."""
    return VerizonThingSpaceHook(clock=clock)


# --- Logs and time ---------------------------------------------------------------------------------


@pytest.fixture
def events() -> Iterator[Events]:
    """Every structlog event of the test, as logged (operators, sensors, triggers and hooks log
    through structlog; these are the events before Airflow's processors, its masker among them)."""
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, events: Events) -> Logs:
    """Everything the test logs: the structlog events, and the stdlib records of every logger at
    DEBUG and above."""
    caplog.set_level(logging.DEBUG)
    return Logs(caplog, events)


@pytest.fixture
def system_clock(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Operators build their hooks with the system clock: make it the fake one, so backoff and rate
    limiting advance fake time (recorded in ``clock.sleeps``) instead of waiting."""
    for name in ("monotonic", "now", "sleep"):
        monkeypatch.setattr(SYSTEM_CLOCK, name, getattr(clock, name))
    return clock
