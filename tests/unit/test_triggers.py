"""The deferrable triggers, driven with ``asyncio.run`` against the vendor fakes of ``watch_fakes``
served through an ``httpx.MockTransport``: their events, their serialisation, their error handling,
that they never block the event loop, and that triggers on one connection share one hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import json
import random
import threading
import time
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import requests_mock as rm
import structlog
from airflow import __version__ as airflow_version
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.hooks.reads import DeviceReads
from airflow_provider_iotfleet.http import AsyncVendorHttpClient
from airflow_provider_iotfleet.sensors.base import IoTFleetSensorError, IoTFleetUnreachableDevicesError
from airflow_provider_iotfleet.triggers import base as triggers_base
from airflow_provider_iotfleet.triggers import handover
from airflow_provider_iotfleet.triggers.base import DeviceWatchTrigger, shared_hook
from airflow_provider_iotfleet.triggers.handover import WATCH_XCOM_KEY
from airflow_provider_iotfleet.triggers.huawei import RomaOnlineStatusWatch
from tests.fakes import FakeClock, luhn_complete, operator_context
from tests.watch_fakes import (
    ACCOUNT,
    CASES,
    CISCO,
    ROMA,
    SETTLED,
    VERIZON,
    VZ_LOGIN_PATH,
    VZ_TOKEN_PATH,
    Case,
    FakeCisco,
    FakeRoma,
    FakeVendor,
    FakeVerizon,
    FakeXComs,
    Settled,
    define_connection,
)

Payload = dict[str, Any]
AIRFLOW_VERSION = tuple(int(part) for part in airflow_version.split(".")[:2])

# A trigger that never ends must fail its test, not stall the run.
pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Case:
    chosen: Case = request.param
    define_connection(monkeypatch, chosen)
    return chosen


@pytest.fixture(autouse=True)
def connection_reads_await(monkeypatch: pytest.MonkeyPatch) -> None:
    """In the triggerer a connection is fetched over the supervisor's channel, so reading it always
    hands the loop to other triggers; from an environment variable it may not. Make it so here."""
    original = IoTFleetBaseHook.aget_connection.__func__  # type: ignore[attr-defined]

    async def aget_connection(cls: type[IoTFleetBaseHook], conn_id: str) -> Any:
        await asyncio.sleep(0)
        return await original(cls, conn_id)

    monkeypatch.setattr(IoTFleetBaseHook, "aget_connection", classmethod(aget_connection))


@pytest.fixture
def no_start_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Triggers poll the moment they start, for tests of triggers that start together or must poll
    before a long interval has passed."""
    monkeypatch.setattr(triggers_base, "START_SPREAD", 0.0)


@pytest.fixture(autouse=True)
def nothing_left_shared() -> Iterator[None]:
    yield
    assert triggers_base._SHARED == {}, "a trigger left its hook registered"


class Clients:
    """Every async client the hooks build, each on the fake's transport; and which were closed."""

    def __init__(self) -> None:
        self.built: list[AsyncVendorHttpClient] = []
        self.closed: list[AsyncVendorHttpClient] = []


def serve(monkeypatch: pytest.MonkeyPatch, fake: FakeVendor, turns: int = 1) -> Clients:
    """Make every async client the hooks build talk to ``fake``."""
    # With a CA bundle named in the environment, each async client loads it into a new SSL context
    # (~0.1 s, even on a mock transport): unset, so that tests measure the triggers, not that.
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    clients = Clients()

    class Client(AsyncVendorHttpClient):
        async def aclose(self) -> None:
            clients.closed.append(self)
            await super().aclose()

    def build(**options: Any) -> AsyncVendorHttpClient:
        client = Client(**options, transport=fake.transport(turns))
        clients.built.append(client)
        return client

    monkeypatch.setattr("airflow_provider_iotfleet.hooks.base.AsyncVendorHttpClient", build)
    return clients


def make_trigger(
    case: Case,
    ids: Sequence[Any] | None = None,
    *,
    poll_interval: float = 0.01,
    deadline_in: float = 5.0,
    conn_id: str | None = None,
    **kwargs: Any,
) -> DeviceWatchTrigger:
    return case.trigger_class(
        conn_id=conn_id or case.conn_id,
        ids=list(case.ids[:3] if ids is None else ids),
        target=case.target,
        poll_interval=poll_interval,
        deadline=time.time() + deadline_in,
        options={"account_name": ACCOUNT} if case is VERIZON else {},
        **kwargs,
    )


async def drain(trigger: DeviceWatchTrigger) -> list[Payload]:
    return [event.payload async for event in trigger.run()]


def run(trigger: DeviceWatchTrigger) -> Payload:
    """Run one trigger to its end; it must fire exactly one event."""
    (payload,) = asyncio.run(drain(trigger))
    json.dumps(payload)  # events are JSON-safe
    return payload


# --- serialisation ------------------------------------------------------------------------------


def test_serialize_round_trips_through_json_to_a_trigger_that_behaves_the_same(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = case.ids[:3]
    trigger = make_trigger(case, seen=[[a, case.target]], max_transient_errors=4, poll_interval=0.02)

    classpath, kwargs = trigger.serialize()
    module_name, _, class_name = classpath.rpartition(".")
    assert getattr(importlib.import_module(module_name), class_name) is case.trigger_class
    wire = json.loads(json.dumps(kwargs))
    assert wire == kwargs  # JSON primitives only: nothing turns into something else on the way
    assert wire["seen"] == [[a, case.target]]
    assert wire["max_transient_errors"] == 4
    rebuilt = case.trigger_class(**wire)
    assert rebuilt.serialize() == (classpath, kwargs)

    payloads = []
    for one in (trigger, rebuilt):
        fake = case.fake({b: case.other, c: case.target})  # a is not even known: never read again
        fake.after_reads(2, {b: case.target})
        serve(monkeypatch, fake)
        payloads.append(run(one))
    assert payloads[0] == payloads[1]
    assert payloads[0]["status"] == "success"


# --- many devices: handed over by XCom reference ---------------------------------------------------

#: More devices than travel inline in the trigger's kwargs.
HANDED_OVER = 150


def handed_over_ids(case: Case) -> list[Any]:
    if case is CISCO:
        return [luhn_complete(f"890141032111187{n:04d}") for n in range(HANDED_OVER)]
    if case is ROMA:
        return [90_001 + n for n in range(HANDED_OVER)]
    return [luhn_complete(f"35693803566{n:03d}") for n in range(HANDED_OVER)]


def test_many_devices_travel_by_xcom_reference_and_a_rebuilt_trigger_waits_on_exactly_them(
    case: Case, monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    ids = handed_over_ids(case)
    at_target = ids[::3]
    waiting = [i for i in ids if i not in set(at_target)]
    fake = case.fake(dict.fromkeys(ids, case.other) | dict.fromkeys(at_target, case.target))
    fake.mount(requests_mock)
    xcoms = FakeXComs().install(monkeypatch)
    sensor = case.sensor(FakeClock(), ids=ids, deferrable=True, poke_interval=0.01)
    context = operator_context(task_id=sensor.task_id)
    with pytest.raises(TaskDeferred) as caught:
        sensor.execute(context)  # the first check: a third of the devices at the target
    xcoms.take(context["ti"])  # type: ignore[arg-type]
    _, kwargs = caught.value.trigger.serialize()
    assert (kwargs["ids"], kwargs["seen"], kwargs["devices_ref"]["key"]) == (None, [], WATCH_XCOM_KEY)
    assert len(json.dumps(kwargs)) < 1024

    # The triggerer restarts: it builds the trigger again from its class path and JSON kwargs alone.
    # Meanwhile the devices the first check matched went back (a trigger reading them again would
    # wait for them), and the others reach the target after the trigger's first poll.
    rebuilt = case.trigger_class(**json.loads(json.dumps(kwargs)))
    fake.set(dict.fromkeys(at_target, case.other))
    fake.after_reads(len(fake.reads) + 1, dict.fromkeys(waiting, case.target))
    first_trigger_read = len(fake.reads)
    serve(monkeypatch, fake)

    payload = run(rebuilt)

    assert payload["status"] == "success", payload["message"]
    assert payload["xcom"] == case.xcom(dict.fromkeys(ids, case.target), ids=ids)
    assert xcoms.reads == 1
    trigger_reads = fake.reads[first_trigger_read:]
    assert not any(
        str(i) in wire.url or str(i).encode() in wire.body for wire in trigger_reads for i in at_target
    )


def test_a_trigger_whose_devices_are_gone_from_xcom_fires_an_error_naming_the_xcom(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeXComs().install(monkeypatch)  # nothing pushed: the task instance was cleared, say
    fake = case.fake({})
    serve(monkeypatch, fake)
    ref = {"dag_id": "fleet", "run_id": "manual_1", "task_id": "wait", "map_index": 3, "key": WATCH_XCOM_KEY}
    trigger = case.trigger_class(
        conn_id=case.conn_id,
        target=case.target,
        poll_interval=0.01,
        deadline=time.time() + 5,
        options={"account_name": ACCOUNT} if case is VERIZON else {},
        devices_ref=ref,
    )

    payload = run(trigger)

    assert payload["status"] == "error"
    assert "XCom 'iotfleet_watch' of task wait[3] (DAG fleet, run manual_1)" in payload["message"]
    assert fake.reads == []
    with pytest.raises(IoTFleetSensorError, match=r"XCom 'iotfleet_watch' of task wait\[3\]"):
        case.sensor(FakeClock(), deferrable=True).execute_complete(operator_context(), payload)


def test_the_task_sdk_names_the_xcom_read_relies_on_are_where_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The handover reads XComs through public Task SDK names, and tells whether it may await the
    supervisor channel through one private name: if Airflow moves any of them, this fails."""
    from airflow.jobs.triggerer_job_runner import TriggerCommsDecoder
    from airflow.sdk import BaseXCom
    from airflow.sdk.execution_time import task_runner  # the private module handover looks into

    assert callable(BaseXCom.get_one)
    assert callable(getattr(TriggerCommsDecoder, "asend", None))  # the triggerer's channel is async
    if AIRFLOW_VERSION >= (3, 3):
        assert callable(getattr(BaseXCom, "aget_one", None))
    assert handover.xcom_backend() is BaseXCom  # as configured in these tests

    class Channel:
        async def asend(self, message: Any) -> None: ...

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", Channel(), raising=False)
    assert handover.supervisor_channel_is_async() is True
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", object())  # dag.test()'s in-process channel
    assert handover.supervisor_channel_is_async() is False


# --- events -------------------------------------------------------------------------------------


def test_success_event_carries_the_poke_mode_xcom_including_devices_already_seen(
    case: Case, monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    a, b, c = case.ids[:3]
    fake = case.fake({b: case.other, c: case.other})  # a was matched by the sensor's first check
    fake.after_reads(3, {b: case.target})
    fake.after_reads(5, {c: case.target})
    serve(monkeypatch, fake)

    payload = run(make_trigger(case, seen=[[a, case.target]]))

    # the same value poke mode returns for the same fleet
    poke_fake = case.fake({a: case.target, b: case.target, c: case.target})
    poke_fake.mount(requests_mock)
    poke_xcom = case.sensor(FakeClock()).execute(operator_context())
    assert payload == {
        "status": "success",
        "message": "",
        "xcom": poke_xcom,
        "unmatched": {},
        "unreachable": {},
        "description": f"every device reports {case.value_name} {case.target}",
    }
    assert poke_xcom == {
        "matched": [a, b, c],
        case.values_key: dict.fromkeys(map(str, (a, b, c)), case.target),
        "unreachable": {},
    }
    assert not any(str(a) in wire.url or str(a).encode() in wire.body for wire in fake.reads)
    assert len(fake.reads) >= 5


def test_timeout_event_names_the_unmatched_devices_and_what_they_last_reported(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = case.ids[:2]
    fake = case.fake({a: case.target, b: case.other})
    serve(monkeypatch, fake)

    # Room for sixty polls: three must happen however busy the machine is.
    payload = run(make_trigger(case, ids=[a, b], poll_interval=0.01, deadline_in=0.6))

    assert payload["status"] == "timeout"
    assert payload["xcom"] == {
        "matched": [a],
        case.values_key: {str(a): case.target, str(b): case.other},
        "unreachable": {},
    }
    assert payload["unmatched"] == {str(b): case.other}
    assert payload["description"] == (
        f"1 of 2 devices not yet at {case.value_name} {case.target}: {b} ({case.other})"
    )
    assert len(fake.reads) >= 3  # it kept polling until the deadline

    # and the sensor turns it into a timeout naming the devices
    sensor = case.sensor(FakeClock(), deferrable=True, timeout=900)
    with pytest.raises(AirflowSensorTimeout, match=rf"{b} \({case.other}\)"):
        sensor.execute_complete(operator_context(), payload)


def test_a_poll_that_outlasts_the_deadline_ends_the_wait_at_the_deadline(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = case.ids[:2]
    fake = case.fake({a: case.target, b: case.other})
    fake.answer_only = 1 if case is VERIZON else 2  # the first poll is answered, the second never
    serve(monkeypatch, fake)

    payload = run(make_trigger(case, ids=[a, b], poll_interval=0.01, deadline_in=0.3))

    assert payload["status"] == "timeout"
    assert fake.stalled >= 1  # it ended during the unanswered poll, not between polls
    assert payload["xcom"]["matched"] == [a]
    assert payload["description"] == (
        f"1 of 2 devices not yet at {case.value_name} {case.target}: {b} ({case.other})"
    )


def test_a_trigger_started_after_its_deadline_looks_once_within_a_bound(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = case.ids[0]
    fake = case.fake({a: case.target})
    fake.answer_only = 0  # the vendor answers nothing
    serve(monkeypatch, fake)
    monkeypatch.setattr(triggers_base, "LATE_START_LOOK", 0.05)

    payload = run(make_trigger(case, ids=[a], deadline_in=-1))

    assert payload["status"] == "timeout"
    assert fake.stalled == 1


def test_a_deadline_already_passed_still_reads_once(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    a = case.ids[0]
    fake = case.fake({a: case.target})
    serve(monkeypatch, fake)

    payload = run(make_trigger(case, ids=[a], deadline_in=-1))

    assert payload["status"] == "success"
    assert len(fake.reads) == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried_until_the_limit_then_an_error_event(
    case: Case, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    a = case.ids[0]
    fake = case.fake({a: case.other})
    fake.faults = [status] * 10
    serve(monkeypatch, fake)

    payload = run(make_trigger(case, ids=[a], max_transient_errors=2))

    assert payload["status"] == "error"
    assert len(fake.reads) == 3  # two tolerated, the third in a row ends the wait
    assert f"HTTP {status}" in payload["message"]
    assert payload["unmatched"] == {str(a): None}
    assert (
        payload["description"]
        == f"1 of 1 device not yet at {case.value_name} {case.target}: {a} (not read yet)"
    )

    sensor = case.sensor(FakeClock(), deferrable=True)
    with pytest.raises(IoTFleetSensorError, match=f"HTTP {status}"):
        sensor.execute_complete(operator_context(), payload)


def test_the_transient_error_count_restarts_after_a_good_poll(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = case.ids[0]
    fake = case.fake({a: case.other})
    fake.faults = [503, 503, None, 503, 503]
    fake.after_reads(5, {a: case.target})
    serve(monkeypatch, fake)

    payload = run(make_trigger(case, ids=[a], max_transient_errors=2))

    assert payload["status"] == "success"
    assert len(fake.reads) == 6


def test_the_trigger_logs_what_it_waits_for_and_each_tolerated_failure(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = case.ids[:8]
    fake = case.fake(dict.fromkeys(ids, case.other))
    fake.faults = [503] * (1 if case is VERIZON else 8)  # the whole first poll fails
    fake.after_reads(len(fake.faults) + (1 if case is VERIZON else 8), dict.fromkeys(ids, case.target))
    serve(monkeypatch, fake)

    with structlog.testing.capture_logs() as events:
        payload = run(make_trigger(case, ids=ids, max_transient_errors=2))

    assert payload["status"] == "success"
    warnings = [str(e["event"]) for e in events if e["log_level"] == "warning"]
    assert len(warnings) == 1 and warnings[0].endswith("(poll 1 failed; 2 more tries)"), warnings
    assert "HTTP 503" in warnings[0]
    (waiting,) = [
        str(e["event"]) for e in events if e["log_level"] == "info" and "not yet at" in str(e["event"])
    ]
    assert waiting.startswith(
        f"8 of 8 devices not yet at {case.value_name} {case.target}: {ids[0]} ({case.other})"
    )
    assert waiting.endswith("and 3 more") and str(ids[5]) not in waiting


def test_a_long_wait_logs_when_what_it_waits_for_changed_else_every_few_polls(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = case.ids[:2]
    fake = case.fake({a: case.other, b: case.other})
    fake.after_reads(3, {a: case.target})
    fake.after_reads(3 * triggers_base.QUIET_POLLS, {b: case.target})
    serve(monkeypatch, fake)

    with structlog.testing.capture_logs() as events:
        payload = run(make_trigger(case, ids=[a, b], poll_interval=0.001))

    assert payload["status"] == "success"
    lines = [str(e["event"]) for e in events if e["log_level"] == "info" and "not yet at" in str(e["event"])]
    both, one = (f"{n} of 2 devices not yet at {case.value_name} {case.target}" for n in (2, 1))
    # The first line at once, a new one as soon as a device matched, and the same line again only
    # every QUIET_POLLS polls: not one per poll.
    assert lines[0].startswith(both) and any(line.startswith(one) for line in lines)
    first_one = next(n for n, line in enumerate(lines) if line.startswith(one))
    assert all(line.startswith(both) for line in lines[:first_one])
    assert all(line.startswith(one) for line in lines[first_one:])
    polls_waiting_for_one = len(fake.reads) - len(lines[:first_one])  # at least
    assert 2 <= len(lines) - first_one <= polls_waiting_for_one // triggers_base.QUIET_POLLS + 1
    assert len(lines) < len(fake.reads) / 3


def test_a_permanent_error_ends_the_wait_at_once(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = case.ids[:2]
    fake = case.fake({a: case.other, b: case.other})
    fake.faults = [400]  # the vendor refuses the first read for good
    serve(monkeypatch, fake)

    payload = run(make_trigger(case, ids=[a, b], max_transient_errors=5))

    assert payload["status"] == "error"
    assert "HTTP 400" in payload["message"]
    assert f"{b} (" in payload["description"]
    assert len(fake.reads) == {"cisco": 2, "huawei": 2, "verizon": 1}[case.name]  # one poll, not retried


def test_a_refused_read_mid_wait_names_each_device_with_its_last_value(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = case.ids[:3]
    fake = case.fake({a: case.target, b: case.other, c: case.other})
    fake.faults = [None] * (1 if case is VERIZON else 3) + [400]  # the second poll is refused
    serve(monkeypatch, fake)

    payload = run(make_trigger(case))

    assert payload["status"] == "error"
    assert "HTTP 400" in payload["message"]
    assert payload["description"] == (
        f"2 of 3 devices not yet at {case.value_name} {case.target}: {b} ({case.other}), {c} ({case.other})"
    )
    assert payload["xcom"]["matched"] == [a]


@pytest.mark.parametrize("row", SETTLED, ids=[row.name for row in SETTLED])
def test_devices_that_can_never_reach_the_target_settle_at_once_and_the_rest_wait_on(
    row: Settled, monkeypatch: pytest.MonkeyPatch
) -> None:
    define_connection(monkeypatch, row.case)
    fake = row.fake()
    serve(monkeypatch, fake)
    polls: list[list[Any]] = []  # the reads of each poll
    original = row.case.trigger_class.watch_class.apoll

    async def apoll(watch: Any, hook: Any) -> None:
        before = len(fake.reads)
        await original(watch, hook)
        polls.append(fake.reads[before:])
        if len(polls) == 1:
            row.change(fake)

    monkeypatch.setattr(row.case.trigger_class.watch_class, "apoll", apoll)
    trigger = row.case.trigger_class(
        conn_id=row.case.conn_id,
        ids=row.ids(),
        target=row.target,
        poll_interval=0.01,
        deadline=time.time() + 5,
        options={"account_name": ACCOUNT} if row.case is VERIZON else {},
    )

    payload = run(trigger)

    expected = row.xcom()
    assert payload["status"] == "success"
    assert payload["xcom"] == expected
    assert payload["unreachable"] == expected["unreachable"]
    assert payload["unmatched"] == {}
    for position, device_id in zip(row.unreachable, row.ids(list(row.unreachable)), strict=True):
        reading = [
            n
            for n, wires in enumerate(polls)
            if any(str(device_id) in w.url or str(device_id).encode() in w.body for w in wires)
        ]
        assert len(reading) <= (2 if position in row.leaves else 1), (device_id, reading)

    sensor = row.case.sensor(FakeClock(), ids=row.ids(), deferrable=True, fail_on_unreachable=False)
    assert sensor.execute_complete(operator_context(), payload) == expected
    if row.unreachable:
        context = operator_context()
        with pytest.raises(IoTFleetUnreachableDevicesError):
            row.case.sensor(FakeClock(), ids=row.ids(), deferrable=True).execute_complete(context, payload)
        assert context["ti"].xcom == {"outcome": expected}  # type: ignore[attr-defined]


def test_cisco_trigger_reads_in_full_then_searches(monkeypatch: pytest.MonkeyPatch) -> None:
    define_connection(monkeypatch, CISCO)
    a, b = CISCO.ids[:2]
    fake = FakeCisco({a: "DEACTIVATED", b: "ACTIVATED"})
    fake.after_reads(4, {a: "ACTIVATED"})
    serve(monkeypatch, fake)

    payload = run(make_trigger(CISCO, ids=[a, b]))

    assert payload["status"] == "success"
    assert fake.full_reads()[:2] == [a, b]
    assert len(fake.searches()) == len(fake.reads) - 2 >= 3
    assert all("modifiedSince" in wire.query for wire in fake.searches())


def test_roma_trigger_uses_the_listing_for_many_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    define_connection(monkeypatch, ROMA)
    ids = ROMA.ids[:12]
    fake = FakeRoma(dict.fromkeys(ids, "online"))
    fake.after_reads(3, dict.fromkeys(ids, "offline"))  # seen by the third poll
    serve(monkeypatch, fake)

    payload = run(make_trigger(ROMA, ids=ids))

    assert payload["status"] == "success"
    assert payload["xcom"] == {
        "matched": list(ids),
        "statuses": {str(i): "offline" for i in ids},
        "unreachable": {},
    }
    assert fake.device_reads() == []
    # the first poll: the offline devices, and the never-connected ones (not connected either);
    # then only the offline ones: a device seen connected can never be never-connected again
    assert [wire.query["online_status"] for wire in fake.listings()] == [["2"], ["0"], ["2"], ["2"]]


class RecordingRomaHook:
    """Answers a ROMA watch's reads with the given values per poll and records ``with_never``."""

    def __init__(self, polls: list[dict[int, str]]) -> None:
        self.polls = polls
        self.with_never: list[bool] = []

    def read_online_statuses(self, ids: list[int], target: str, *, with_never: bool) -> DeviceReads[int]:
        self.with_never.append(with_never)
        values = self.polls[len(self.with_never) - 1]
        return DeviceReads({device_id: values.get(device_id, "not offline") for device_id in ids})


def test_a_roma_offline_wait_skips_the_never_listing_once_every_device_left_was_seen_connected() -> None:
    hook = RecordingRomaHook([{1: "unknown", 2: "never"}, {1: "online"}, {3: "offline"}, {}])
    watch = RomaOnlineStatusWatch([1, 2, 3], "offline")
    for _ in range(4):
        watch.poll(hook)
    # poll 2: device 1 reported an unknown status; from poll 3 on, 1 and 3 were both seen connected
    assert hook.with_never == [True, True, False, False]
    assert watch.matched == {2, 3}

    restarted = RomaOnlineStatusWatch([1, 2, 3], "offline")
    restarted.restore([[2, "never"], [3, "offline"]])
    again = RecordingRomaHook([{}])
    restarted.poll(again)  # a trigger started again has no value for device 1 yet
    assert again.with_never == [True]


# --- the event loop -----------------------------------------------------------------------------

#: More devices than the sensor tests use: one per trigger.
MANY = 50


def many_ids(case: Case) -> list[Any]:
    if case is CISCO:
        return [luhn_complete(f"890141032111186{n:04d}") for n in range(MANY)]
    if case is ROMA:
        return [80_001 + n for n in range(MANY)]
    return [luhn_complete(f"35693803565{n:03d}") for n in range(MANY)]


def test_fifty_triggers_share_the_loop_without_blocking_it(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = many_ids(case)
    fake = case.fake(dict.fromkeys(ids, case.other))
    fake.after_reads(2 * MANY, dict.fromkeys(ids, case.target))  # every device needs a few polls
    serve(monkeypatch, fake, turns=3)
    loop_thread = threading.get_ident()
    blocking: list[str] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if threading.get_ident() == loop_thread:
            blocking.append(f"a blocking sleep of {seconds} s")
        real_sleep(seconds)

    def no_sync_http(*args: Any, **kwargs: Any) -> Any:
        blocking.append("requests")
        raise AssertionError("a trigger sent a blocking request")

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(requests.Session, "send", no_sync_http)

    async def main() -> tuple[list[list[Payload]], list[int]]:
        done = asyncio.Event()
        samples: list[int] = []  # requests answered so far, at each turn of the ticker

        async def ticker() -> None:
            while not done.is_set():
                samples.append(len(fake.wires))
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        try:
            results = await asyncio.gather(*(drain(make_trigger(case, ids=[i])) for i in ids))
        finally:
            done.set()
            await ticking
        return results, samples

    results, samples = asyncio.run(main())

    assert [payloads[0]["status"] for payloads in results] == ["success"] * MANY
    assert [payloads[0]["xcom"]["matched"] for payloads in results] == [[i] for i in ids]
    assert blocking == []
    reads = len(fake.reads)
    assert reads >= 3 * MANY
    # The ticker kept its turn all along, from before the first request to after the last, and
    # between two of its turns at most one request per trigger was answered: no trigger ever ran
    # several requests (or polls) without handing the loop back.
    assert samples[0] == 0 and samples[-1] == len(fake.wires)
    gaps = [later - earlier for earlier, later in itertools.pairwise(samples)]
    assert len(samples) >= len(fake.wires) / MANY
    assert max(gaps) <= MANY, max(gaps)


# --- start-up spread ----------------------------------------------------------------------------


def test_the_start_delay_is_a_share_of_the_poll_interval_never_past_the_deadline(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays = [make_trigger(case, poll_interval=30, deadline_in=3600).start_delay() for _ in range(200)]
    assert all(0.0 <= delay <= 30.0 for delay in delays)
    assert len(set(delays)) > 1  # random: triggers starting together do not start together
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the longest it may be
    assert make_trigger(case, poll_interval=30, deadline_in=3600).start_delay() == 30.0
    assert make_trigger(case, poll_interval=30, deadline_in=2).start_delay() <= 2.0
    assert make_trigger(case, poll_interval=30, deadline_in=-1).start_delay() == 0.0  # late: look at once


def test_a_trigger_does_nothing_before_its_start_delay(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = case.fake(dict.fromkeys(case.ids[:5], case.target))
    clients = serve(monkeypatch, fake)
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    read: list[str] = []
    original = IoTFleetBaseHook.aget_connection.__func__  # type: ignore[attr-defined]

    async def aget_connection(cls: type[IoTFleetBaseHook], conn_id: str) -> Any:
        read.append(conn_id)
        return await original(cls, conn_id)

    monkeypatch.setattr(IoTFleetBaseHook, "aget_connection", classmethod(aget_connection))

    async def main() -> None:
        tasks = [
            asyncio.create_task(drain(make_trigger(case, ids=[i], poll_interval=30, deadline_in=60)))
            for i in case.ids[:5]
        ]
        for _ in range(50):
            await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())

    # Started together, none read its connection or its devices: all still wait for their turn.
    assert (read, fake.wires, clients.built) == ([], [], [])


# --- one hook per connection --------------------------------------------------------------------


class HookSpy:
    """Which hook objects triggers used, and when each was closed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, log: list[str] | None = None) -> None:
        self.used: set[int] = set()
        self.closed: list[int] = []
        self.log = log if log is not None else []
        original_aclient, original_aclose = IoTFleetBaseHook.aclient, IoTFleetBaseHook.aclose

        async def aclient(hook: IoTFleetBaseHook) -> AsyncVendorHttpClient:
            self.used.add(id(hook))
            return await original_aclient(hook)

        async def aclose(hook: IoTFleetBaseHook) -> None:
            self.closed.append(id(hook))
            self.log.append(f"closed {hook.conn_id}")
            await original_aclose(hook)

        monkeypatch.setattr(IoTFleetBaseHook, "aclient", aclient)
        monkeypatch.setattr(IoTFleetBaseHook, "aclose", aclose)


@pytest.mark.usefixtures("no_start_spread")
def test_verizon_triggers_on_one_connection_share_one_hook_and_one_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    define_connection(monkeypatch, VERIZON)
    other_conn = {**VERIZON.connection}
    monkeypatch.setenv("AIRFLOW_CONN_VERIZON_SENSOR_TEST_2", json.dumps(other_conn))
    ids = VERIZON.ids[:6]
    fake = FakeVerizon(dict.fromkeys(ids, VERIZON.other))
    fake.after_reads(10, dict.fromkeys(ids, VERIZON.target))
    serve(monkeypatch, fake)
    spy = HookSpy(monkeypatch)

    async def main() -> list[list[Payload]]:
        first = [drain(make_trigger(VERIZON, ids=[i])) for i in ids[:4]]
        second = [drain(make_trigger(VERIZON, ids=[i], conn_id="verizon_sensor_test_2")) for i in ids[4:]]
        return await asyncio.gather(*first, *second)

    results = asyncio.run(main())

    assert [payloads[0]["status"] for payloads in results] == ["success"] * 6
    assert len(spy.used) == 2  # one hook per connection
    assert sorted(spy.closed) == sorted(spy.used)  # each closed once
    assert (fake.count(VZ_TOKEN_PATH), fake.count(VZ_LOGIN_PATH)) == (2, 2)  # one login per connection


@pytest.mark.usefixtures("no_start_spread")
def test_the_shared_hook_is_closed_when_the_last_trigger_ends(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = case.ids[:2]
    fake = case.fake({a: case.target, b: case.other})
    fake.after_reads(6, {b: case.target})
    serve(monkeypatch, fake)
    log: list[str] = []
    spy = HookSpy(monkeypatch, log)

    async def watch(trigger: DeviceWatchTrigger, name: str) -> None:
        async for event in trigger.run():
            log.append(f"{name} {event.payload['status']}")
        log.append(f"{name} ended")

    async def main() -> None:
        await asyncio.gather(
            watch(make_trigger(case, ids=[a]), "quick"), watch(make_trigger(case, ids=[b]), "slow")
        )

    asyncio.run(main())

    assert log == ["quick success", "quick ended", "slow success", f"closed {case.conn_id}", "slow ended"]
    assert len(spy.used) == 1 and len(spy.closed) == 1


@pytest.mark.usefixtures("no_start_spread")
def test_cancelled_triggers_release_and_close_the_shared_hook(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The triggerer cancels a trigger whose task was cleared or marked: the hook must not leak.
    ids = case.ids[:2]
    fake = case.fake(dict.fromkeys(ids, case.other))
    clients = serve(monkeypatch, fake)
    spy = HookSpy(monkeypatch)

    async def main() -> None:
        tasks = [asyncio.create_task(drain(make_trigger(case, ids=[i]))) for i in ids]
        while len(fake.reads) < 6:
            await asyncio.sleep(0.005)
        assert len(triggers_base._SHARED) == 1
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)

    asyncio.run(main())

    assert len(spy.closed) == 1
    assert clients.built[-1] in clients.closed


def test_shared_hook_counts_its_users() -> None:
    class Hook:
        hook_name = "Test vendor"

        def __init__(self, conn_id: str) -> None:
            self.conn_id = conn_id

        @classmethod
        async def aget_connection(cls, conn_id: str) -> Any:
            return SimpleNamespace(conn_id=conn_id, conn_type="test", host=f"https://{conn_id}.example")

        async def aclose(self) -> None:
            closed.append(self)

    closed: list[Hook] = []

    async def fail_inside(used: list[Hook]) -> None:
        async with shared_hook(Hook, "one") as hook:  # type: ignore[arg-type]
            used.append(hook)
            raise RuntimeError("a trigger failed")

    async def main() -> list[Hook]:
        async with shared_hook(Hook, "one") as first:  # type: ignore[arg-type]
            async with shared_hook(Hook, "one") as again:  # type: ignore[arg-type]
                assert again is first
                async with shared_hook(Hook, "two") as other:  # type: ignore[arg-type]
                    assert other is not first
                assert closed == [other]
            assert closed == [other]  # "one" still has a user
            inner: list[Hook] = []
            with pytest.raises(RuntimeError):
                await fail_inside(inner)
            assert inner == [first]
            assert closed == [other]
        assert closed == [other, first]
        return [first, other]

    in_one_loop = asyncio.run(main())
    closed.clear()
    in_another = asyncio.run(main())  # another loop: new hooks, not the closed ones
    assert all(old is not new for old, new in zip(in_one_loop, in_another, strict=True))


def _hosts(wires: Sequence[Any]) -> set[str]:
    return {urlsplit(wire.url).netloc for wire in wires}


@pytest.mark.usefixtures("no_start_spread")
def test_a_trigger_started_after_the_connection_was_fixed_uses_the_new_connection(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = case.ids[:2]
    fake = case.fake({a: case.other, b: case.target})  # a never matches: its trigger runs on
    serve(monkeypatch, fake)
    old_host = urlsplit(case.connection["host"]).netloc
    new_host = f"fixed.{old_host}"
    fixed = {**case.connection, "host": f"https://{new_host}"}
    spy = HookSpy(monkeypatch)

    async def main() -> list[Payload]:
        # The first trigger polls once, then sleeps past the test: a second poll of its own would
        # land among the new trigger's requests.
        first = make_trigger(case, ids=[a], poll_interval=30, deadline_in=30)
        running = asyncio.create_task(drain(first))
        while not fake.reads:  # the first trigger has read its devices with the old connection
            await asyncio.sleep(0.005)
        monkeypatch.setenv(f"AIRFLOW_CONN_{case.conn_id.upper()}", json.dumps(fixed))
        before = len(fake.wires)
        started_after = await drain(make_trigger(case, ids=[b]))
        new_wires = fake.wires[before:]
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        assert _hosts(new_wires) == {new_host}, "the new trigger used the connection as first read"
        return started_after

    (payload,) = asyncio.run(main())

    assert payload["status"] == "success"
    assert _hosts(fake.wires) == {old_host, new_host}
    assert len(spy.used) == 2 and sorted(spy.closed) == sorted(spy.used)  # one hook per connection seen


@pytest.mark.parametrize(
    ("connection", "says"),
    [
        pytest.param(None, "is not defined", id="deleted"),
        pytest.param({"password": ""}, "password is empty", id="secret-removed"),
    ],
)
def test_a_trigger_whose_connection_is_gone_fires_an_error_naming_it(
    case: Case, monkeypatch: pytest.MonkeyPatch, connection: dict[str, Any] | None, says: str
) -> None:
    variable = f"AIRFLOW_CONN_{case.conn_id.upper()}"
    if connection is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, json.dumps({**case.connection, **connection}))
    fake = case.fake(dict.fromkeys(case.ids[:2], case.target))
    serve(monkeypatch, fake)

    payload = run(make_trigger(case, ids=case.ids[:2]))

    assert payload["status"] == "error"
    assert f"Connection {case.conn_id!r}" in payload["message"] and says in payload["message"]
    assert fake.reads == []
    with pytest.raises(IoTFleetSensorError, match=rf"Connection '{case.conn_id}'.*{says}"):
        case.sensor(FakeClock(), deferrable=True).execute_complete(operator_context(), payload)


@pytest.mark.usefixtures("no_start_spread")
def test_triggers_starting_together_on_one_connection_share_one_client(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = case.ids[:5]
    fake = case.fake(dict.fromkeys(ids, case.target))
    clients = serve(monkeypatch, fake)

    async def main() -> list[list[Payload]]:
        return await asyncio.gather(*(drain(make_trigger(case, ids=[i])) for i in ids))

    results = asyncio.run(main())

    # aclient() awaits the connection read before building its client: triggers starting together
    # must not each build one (the hook would keep the last, and close only that one)
    assert [payloads[0]["status"] for payloads in results] == ["success"] * 5
    assert all(client in clients.closed for client in clients.built), "an async client was never closed"
    assert len(clients.built) == 1
