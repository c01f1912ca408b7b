"""Test doubles: a clock whose sleep advances time instead of waiting."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_iotfleet.http import Clock
from airflow_provider_iotfleet.operators.links import CONSOLE_URL_KEY


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
    """Just enough of a task instance for ``operator.execute(context)``: records XCom pushes.

    The console URL a write operator pushes for its link (``operators/links.py``) is kept apart, in
    :attr:`console_urls`: :attr:`xcom` holds the data a task hands on (its outcome), which the
    tests compare whole.
    """

    def __init__(self, task_id: str = "task", map_index: int = -1) -> None:
        self.dag_id = "test_dag"
        self.task_id = task_id
        self.run_id = "manual__2026-11-21T12:00:00+00:00"
        self.map_index = map_index
        self.try_number = 1
        self.xcom: dict[str, object] = {}
        self.console_urls: list[object] = []

    def xcom_push(self, key: str, value: object) -> None:
        if key == CONSOLE_URL_KEY:
            self.console_urls.append(value)
            return
        self.xcom[key] = value


class FakeOutletEvents(dict):  # type: ignore[type-arg]
    """``context["outlet_events"]``: an accessor per asset whose ``extra`` the operator fills in."""

    def __missing__(self, asset: object) -> object:
        class Accessor:
            def __init__(self) -> None:
                self.extra: dict[str, object] = {}

        self[asset] = accessor = Accessor()
        return accessor


class FakeTaskStateStore:
    """``context["task_state_store"]`` (Airflow 3.3+): JSON values per key, kept across the tries
    that share it, every value round-tripped through JSON as Airflow stores it."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        self.values[key] = json.dumps(value)
        self.writes += 1

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def clear(self) -> None:
        self.values.clear()


def operator_context(
    task_id: str = "task",
    map_index: int = -1,
    *,
    try_number: int = 1,
    state_store: FakeTaskStateStore | None = None,
) -> dict[str, object]:
    """A minimal execution context for calling ``operator.execute`` directly in unit tests.

    :param try_number: the try this is (2 and up: a retry, as Airflow starts it).
    :param state_store: the task's own state, shared by the tries of one task instance; without
        it, the context has none (as on Airflow 3.2).
    """
    ti = FakeTaskInstance(task_id, map_index)
    ti.try_number = try_number
    context: dict[str, object] = {"ti": ti, "outlet_events": FakeOutletEvents()}
    if state_store is not None:
        context["task_state_store"] = state_store
    return context


#: Every write operator's XCom has these keys; anything else is operation-specific.
OUTCOME_KEYS = {"operation", "vendor", "requested", "dry_run", "counts", "devices", "errors"}
OUTCOME_STATUSES = ("succeeded", "unchanged", "scheduled", "accepted", "failed", "unknown")
ERROR_KEYS = {
    "status",
    "error_code",
    "http_status",
    "message",
    "request_id",
    "retryable",
    "attempted",
    "devices",
}


def assert_outcome_shape(outcome: Any, *, operation: str, requested: list[Any]) -> None:
    """``outcome`` is the documented outcome of ``operation`` (see airflow_provider_iotfleet/outcome.py)
    over the distinct devices ``requested``: every key there, every status counted, every device in
    exactly one place, the whole of it JSON-safe."""
    assert outcome.keys() >= OUTCOME_KEYS, f"missing {OUTCOME_KEYS - outcome.keys()}"
    assert outcome["operation"] == operation
    assert isinstance(outcome["vendor"], str) and outcome["vendor"]
    assert outcome["requested"] == len(requested)
    assert isinstance(outcome["dry_run"], bool)
    assert list(outcome["counts"]) == list(OUTCOME_STATUSES)
    assert list(outcome["devices"]) == list(OUTCOME_STATUSES[:4])
    listed = [device for status in OUTCOME_STATUSES[:4] for device in outcome["devices"][status]]
    for error in outcome["errors"]:
        assert set(error) == ERROR_KEYS, f"error keys {set(error)}"
        assert error["status"] in ("failed", "unknown")
        assert error["devices"], "an error group without devices"
        listed += error["devices"]
    assert sorted(map(str, listed)) == sorted(map(str, requested)), "not every device exactly once"
    for status in OUTCOME_STATUSES:
        expected = (
            len(outcome["devices"][status])
            if status in outcome["devices"]
            else sum(len(e["devices"]) for e in outcome["errors"] if e["status"] == status)
        )
        assert outcome["counts"][status] == expected, status
    assert json.loads(json.dumps(outcome)) == outcome  # JSON-safe, as XCom needs


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


def pausing_fota_operator(wait: Callable[[], None], after_pages: int = 1) -> type[Any]:
    """A ``VerizonThingSpaceFotaDevicesOperator`` whose listing calls ``wait()`` once the operator
    has taken ``after_pages`` pages (and written them), before it asks for the next one: how a test
    holds tries of one task instance side by side without sleeping. Not inside a request: the
    requests-mock transport lets one request through at a time."""
    from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
    from airflow_provider_iotfleet.operators.verizon import VerizonThingSpaceFotaDevicesOperator

    def paused(pages: Iterator[Any]) -> Iterator[Any]:
        for number, page in enumerate(pages, 1):
            yield page
            if number == after_pages:
                wait()

    class PausingHook(VerizonThingSpaceHook):
        def iter_fota_device_pages(self, *args: Any, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
            return paused(super().iter_fota_device_pages(*args, **kwargs))

        def iter_fota_device_json_lines(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
            return paused(super().iter_fota_device_json_lines(*args, **kwargs))

    class PausingFotaDevicesOperator(VerizonThingSpaceFotaDevicesOperator):
        hook_class = PausingHook

    return PausingFotaDevicesOperator


def load_script(name: str) -> Any:
    """``scripts/<name>.py`` as a module (scripts are not part of the package), loaded once."""
    import importlib.util
    import sys
    from pathlib import Path

    module_name = f"iotfleet_script_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(
        module_name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def load_demo_script() -> Any:
    """``scripts/demo.py`` as a module (it is a script, not part of the package)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "iotfleet_demo", Path(__file__).resolve().parents[1] / "scripts" / "demo.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordingVendor:
    """What every vendor fake answering through requests-mock shares: each request recorded as a
    :class:`Wire` in :attr:`wires`, the reads told apart from the logins (:attr:`auth_paths`), and
    :meth:`mount`. A subclass answers in :meth:`respond`."""

    auth_paths: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.wires: list[Wire] = []

    @property
    def reads(self) -> list[Wire]:
        """Every request but the logins."""
        return [wire for wire in self.wires if wire.path not in self.auth_paths]

    def count(self, path: str) -> int:
        return sum(1 for wire in self.wires if wire.path == path)

    def respond(self, wire: Wire) -> tuple[int, Any]:
        raise NotImplementedError

    def mount(self, requests_mock: Any) -> None:
        """Answer every request requests-mock sees."""
        import requests_mock as rm

        def callback(request: Any, context: Any) -> bytes:
            body = request.body or b""
            status, answer = self.respond(
                Wire(request.method, request.url, body.encode() if isinstance(body, str) else body)
            )
            context.status_code = status
            context.headers["Content-Type"] = "application/json"
            return json.dumps(answer).encode()

        requests_mock.register_uri(rm.ANY, rm.ANY, content=callback)
