"""Test doubles: a clock whose sleep advances time instead of waiting."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_iotfleet.http import Clock


class FakeClock(Clock):
    """Monotonic and wall time that move only when a test (or a sleep) moves them."""

    def __init__(self, start: datetime = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)) -> None:
        self._now = start
        self._monotonic = 1_000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._monotonic

    def now(self) -> datetime:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._now += timedelta(seconds=seconds)


def luhn_complete(body: str) -> str:
    """Append the Luhn check digit to ``body`` (independent of the code under test)."""
    digits = [int(c) for c in body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


# Published examples, Luhn-valid.
IMEI = "490154203237518"
IMEI_2 = "356938035643809"
ICCID = "89014103211118510720"
ICCID_19 = "8944500102198304826"


class FakeTaskInstance:
    """Just enough of a task instance for ``operator.execute(context)``: records XCom pushes."""

    def __init__(self, task_id: str = "task", map_index: int = -1) -> None:
        self.dag_id = "test_dag"
        self.task_id = task_id
        self.run_id = "manual__2026-11-21T12:00:00+00:00"
        self.map_index = map_index
        self.try_number = 1
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value


class FakeOutletEvents(dict):  # type: ignore[type-arg]
    """``context["outlet_events"]``: an accessor per asset whose ``extra`` the operator fills in."""

    def __missing__(self, asset: object) -> object:
        class Accessor:
            def __init__(self) -> None:
                self.extra: dict[str, object] = {}

        self[asset] = accessor = Accessor()
        return accessor


def operator_context(task_id: str = "task", map_index: int = -1) -> dict[str, object]:
    """A minimal execution context for calling ``operator.execute`` directly in unit tests."""
    return {"ti": FakeTaskInstance(task_id, map_index), "outlet_events": FakeOutletEvents()}


@dataclass(frozen=True)
class Wire:
    """One request as a fake vendor received it: method, full URL, body bytes and, where the test
    looks at them, our headers."""

    method: str
    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.url).query)

    def json(self) -> Any:
        return json.loads(self.body)
