"""The device-status sensors in poke mode (requests-mock) and their hand-over to a trigger.

The vendors are played by the fakes of ``tests/watch_fakes.py``, which the trigger tests serve through
an ``httpx.MockTransport``, so both worlds read the very same fleet. Behaviour every sensor shares is
tested once per vendor; what each vendor reads, and how, is tested per vendor below.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
import requests_mock as rm
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSensorTimeout, TaskDeferred

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.sensors import base as sensors_base
from airflow_provider_iotfleet.sensors.base import (
    DEFERRAL_GRACE,
    SENSOR_FAILURES_KEY,
    DeviceWatchSensor,
    IoTFleetSensorError,
    IoTFleetUnreachableDevicesError,
)
from airflow_provider_iotfleet.sensors.cisco import CiscoControlCenterDeviceStatusSensor
from airflow_provider_iotfleet.triggers.cisco import CiscoDeviceStatusTrigger
from airflow_provider_iotfleet.triggers.handover import INLINE_DEVICES, WATCH_XCOM_KEY
from tests.fakes import FakeClock, FakeTaskStateStore, luhn_complete, operator_context
from tests.log_capture import Events
from tests.trigger_kwargs import deferral_for_devices, kwargs_bytes
from tests.watch_fakes import (
    ACCOUNT,
    CASES,
    CISCO,
    CISCO_PATH,
    ICCIDS,
    IMEIS,
    ROMA,
    ROMA_IDS,
    ROMA_PATH,
    SETTLED,
    VERIZON,
    VZ_LOGIN_PATH,
    VZ_ROOT,
    VZ_TOKEN_PATH,
    Case,
    FakeCisco,
    FakeRoma,
    FakeVendor,
    FakeVerizon,
    Settled,
    define_connection,
    reschedule_context,
)

# A sensor that keeps poking (a deferrable one that does not defer, say) must fail, not stall the run.
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Case:
    chosen: Case = request.param
    define_connection(monkeypatch, chosen)
    return chosen


def lines(events: Events, level: str | None = None) -> list[str]:
    return [str(e["event"]) for e in events if level is None or e["log_level"] == level]


def fake_for(case: Case, requests_mock: rm.Mocker, values: Mapping[Any, str | None]) -> FakeVendor:
    fake = case.fake(values)
    fake.mount(requests_mock)
    return fake


# --- Poke mode: shared behaviour, per vendor ----------------------------------------------------


def test_poke_is_not_done_then_done_with_the_designed_xcom(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a, b, c = case.ids[:3]
    values = {a: case.target, b: case.other, c: case.other}
    fake = fake_for(case, requests_mock, values)
    sensor = case.sensor(clock)

    first = sensor.poke(operator_context())
    assert first.is_done is False
    assert first.xcom_value is None

    fake.set({b: case.target, c: case.target})
    clock.advance(60)
    second = sensor.poke(operator_context())
    assert second.is_done is True
    assert second.xcom_value == {
        "matched": [a, b, c],
        case.values_key: {str(a): case.target, str(b): case.target, str(c): case.target},
        "unreachable": {},
    }
    json.dumps(second.xcom_value)  # JSON-safe


def test_execute_in_poke_mode_polls_until_every_device_matches(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a, b, c = case.ids[:3]
    fake = fake_for(case, requests_mock, {a: case.other, b: case.other, c: case.target})
    # The devices come round one at a time, while the sensor keeps poking.
    fake.after_reads(len(fake.values) + 1, {a: case.target})
    fake.after_reads(len(fake.values) + 3, {b: case.target})
    sensor = case.sensor(clock)

    result = sensor.execute(operator_context())

    assert result == case.xcom({a: case.target, b: case.target, c: case.target})
    assert len(fake.reads) > 2  # it did have to poll again
    assert "client" not in sensor.hook.__dict__  # the session was closed at the end


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
@pytest.mark.parametrize("what", ["ids", "target"])
def test_bad_input_fails_before_the_first_request(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock, what: str, deferrable: bool
) -> None:
    fake_for(case, requests_mock, {i: case.target for i in case.ids})
    if what == "ids":
        sensor = case.sensor(clock, ids=[case.ids[0], *case.bad_ids], deferrable=deferrable)
    else:
        sensor = case.sensor(clock, deferrable=deferrable, **{case.target_arg: case.bad_target})

    with pytest.raises(IoTFleetValidationError) as caught:
        sensor.execute(operator_context())
    with pytest.raises(IoTFleetValidationError):
        sensor.poke(operator_context())

    assert requests_mock.call_count == 0
    if what == "ids":
        problems = " ".join(caught.value.problems)
        assert all(repr(bad) in problems for bad in case.bad_ids), problems
        assert repr(case.ids[0]) not in problems


def test_repeated_devices_are_read_once(case: Case, requests_mock: rm.Mocker, clock: FakeClock) -> None:
    a, b = case.ids[:2]
    fake = fake_for(case, requests_mock, {a: case.target, b: case.target})
    sensor = case.sensor(clock, ids=case.repeated(case.ids))

    result = sensor.execute(operator_context())

    assert result == case.xcom({a: case.target, b: case.target}, ids=[a, b])
    if isinstance(fake, FakeVerizon):
        assert fake.bodies() == [[a, b]]
    elif isinstance(fake, FakeRoma):
        assert sorted(fake.device_reads()) == [a, b]
    else:
        assert isinstance(fake, FakeCisco)
        assert sorted(fake.full_reads()) == sorted([a, b])


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_an_empty_list_is_done_at_once_with_a_warning(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock, events: Events, deferrable: bool
) -> None:
    sensor = case.sensor(clock, ids=[], deferrable=deferrable)

    assert sensor.execute(operator_context()) == {"matched": [], case.values_key: {}, "unreachable": {}}

    assert requests_mock.call_count == 0
    warnings = lines(events, "warning")
    assert any("no devices to wait for" in line for line in warnings), warnings


def test_poke_alone_with_an_empty_list_is_done_at_once(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    sensor = case.sensor(clock, ids=[])
    result = sensor.poke(operator_context())
    assert result.is_done is True
    assert result.xcom_value == {"matched": [], case.values_key: {}, "unreachable": {}}
    assert requests_mock.call_count == 0


def test_unmatched_devices_are_logged_as_a_count_and_a_short_sample(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock, events: Events
) -> None:
    ids = case.ids[:8]
    fake_for(case, requests_mock, {i: case.other for i in ids})
    sensor = case.sensor(clock, ids=ids)

    assert sensor.poke(operator_context()).is_done is False

    (line,) = [line for line in lines(events, "info") if "not yet at" in line]
    assert f"8 of 8 devices not yet at {case.value_name} {case.target}" in line
    assert all(f"{i} ({case.other})" in line for i in ids[:5]), line
    assert not any(str(i) in line for i in ids[5:]), line
    assert line.endswith("and 3 more")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_tolerated_up_to_the_limit_then_fail(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock, events: Events, status: int
) -> None:
    a = case.ids[0]
    fake = fake_for(case, requests_mock, {a: case.other})
    fake.faults = [status] * 3
    sensor = case.sensor(clock, ids=[a], max_transient_errors=2)

    assert sensor.poke(operator_context()).is_done is False
    assert sensor.poke(operator_context()).is_done is False
    with pytest.raises(IoTFleetSensorError) as caught:
        sensor.poke(operator_context())

    assert len(fake.reads) == 3  # one request a poll (max_retries 0): the fault reached the sensor
    assert str(status) in str(caught.value)
    assert f"1 of 1 device not yet at {case.value_name} {case.target}: {a} (not read yet)" in str(
        caught.value
    )
    assert len([line for line in lines(events, "warning") if "trying again at the next poke" in line]) == 2


def test_the_transient_error_count_restarts_after_a_good_poll(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a = case.ids[0]
    fake = fake_for(case, requests_mock, {a: case.other})
    fake.faults = [503, 503, None, 503, 503]
    fake.after_reads(5, {a: case.target})  # the sixth read sees it matched
    sensor = case.sensor(clock, ids=[a], max_transient_errors=2)

    assert sensor.execute(operator_context()) == case.xcom({a: case.target}, ids=[a])
    assert len(fake.reads) == 6


# --- Reschedule mode: every poke a new run of the task --------------------------------------------


def poke_rescheduled(
    case: Case, clock: FakeClock, store: FakeTaskStateStore | None, try_number: int = 1
) -> Any:
    """One reschedule-mode run of the task: a fresh sensor, one poke; returns the XCom value or raises
    (``AirflowRescheduleException`` when it is to poke again later)."""
    sensor = case.sensor(clock, ids=case.ids[:1], mode="reschedule", max_transient_errors=2)
    return sensor.execute(reschedule_context(sensor.task_id, store, try_number))


def test_in_reschedule_mode_transient_failures_count_across_reschedules(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    fake = fake_for(case, requests_mock, {case.ids[0]: case.other})
    fake.faults = [503] * 3
    store = FakeTaskStateStore()

    for _ in range(2):  # two failed polls in a row are tolerated (max_transient_errors=2) ...
        with pytest.raises(AirflowRescheduleException):
            poke_rescheduled(case, clock, store)
    with pytest.raises(IoTFleetSensorError, match="HTTP 503"):  # ... the third fails the task
        poke_rescheduled(case, clock, store)

    assert len(fake.reads) == 3
    assert store.values == {}  # the count is cleared when the sensor ends


def test_in_reschedule_mode_a_good_poll_restarts_the_count_and_the_end_clears_it(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a = case.ids[0]
    fake = fake_for(case, requests_mock, {a: case.other})
    fake.faults = [503, 503, None, 503, 503]
    fake.after_reads(5, {a: case.target})  # the sixth read sees it matched
    store = FakeTaskStateStore()

    for _ in range(5):
        with pytest.raises(AirflowRescheduleException):
            poke_rescheduled(case, clock, store)
    assert store.get(SENSOR_FAILURES_KEY) == {"try": 1, "failures": 2}
    assert poke_rescheduled(case, clock, store) == case.xcom({a: case.target}, ids=[a])

    assert store.values == {}


def test_in_reschedule_mode_a_new_try_starts_counting_afresh(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    fake = fake_for(case, requests_mock, {case.ids[0]: case.other})
    fake.faults = [503] * 4
    store = FakeTaskStateStore()
    store.set(SENSOR_FAILURES_KEY, {"try": 1, "failures": 2})  # left by a first try that was killed

    for _ in range(2):
        with pytest.raises(AirflowRescheduleException):
            poke_rescheduled(case, clock, store, try_number=2)
    with pytest.raises(IoTFleetSensorError):
        poke_rescheduled(case, clock, store, try_number=2)


def test_in_reschedule_mode_without_a_task_state_store_each_reschedule_counts_afresh(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    """Airflow 3.2 has no task state store: what a sensor knows ends with each reschedule."""
    fake = fake_for(case, requests_mock, {case.ids[0]: case.other})
    fake.faults = [503] * 4

    for _ in range(4):
        with pytest.raises(AirflowRescheduleException):
            poke_rescheduled(case, clock, None)


def test_a_permanent_error_after_some_polls_names_the_unmatched_devices_and_their_last_value(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a, b, c = case.ids[:3]
    fake = fake_for(case, requests_mock, {a: case.target, b: case.other, c: case.other})
    sensor = case.sensor(clock, max_transient_errors=5)
    assert sensor.poke(operator_context()).is_done is False
    reads = len(fake.reads)

    fake.faults = [400]
    with pytest.raises(IoTFleetSensorError) as caught:
        sensor.poke(operator_context())

    message = str(caught.value)
    # failed in that very poll (one search, one listing, or a read per unmatched device), not retried
    assert len(fake.reads) == reads + (2 if case is ROMA else 1)
    assert "HTTP 400" in message
    assert "2 of 3 devices not yet at" in message
    assert f"{b} ({case.other})" in message and f"{c} ({case.other})" in message
    assert f"{a} (" not in message


def test_an_unknown_device_ends_its_wait_at_once_and_fails_the_task_once_the_rest_matched(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a, b = case.ids[:2]
    fake = fake_for(case, requests_mock, {a: case.target})  # b is unknown to the vendor
    sensor = case.sensor(clock, ids=[a, b], max_transient_errors=5)
    context = operator_context()

    with pytest.raises(IoTFleetUnreachableDevicesError) as caught:
        sensor.execute(context)

    reason = "not_in_account" if case is VERIZON else "not_found"
    expected = case.xcom({a: case.target}, ids=[a, b], unreachable={b: reason})
    message = str(caught.value)
    assert f"1 of 2 devices can never report {case.value_name} {case.target}: {b} ({reason}" in message
    assert "XCom key 'outcome'" in message and "fail_on_unreachable=False" in message
    assert caught.value.outcome == expected
    assert context["ti"].xcom == {"outcome": expected}  # type: ignore[attr-defined]
    assert len(fake.reads) == {"cisco": 2, "huawei": 2, "verizon": 1}[case.name]  # one poll


def test_with_fail_on_unreachable_off_the_wait_succeeds_and_names_the_unreachable_devices(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock, events: Events
) -> None:
    a, b = case.ids[:2]
    fake_for(case, requests_mock, {a: case.target})
    sensor = case.sensor(clock, ids=[a, b], fail_on_unreachable=False)
    context = operator_context()

    result = sensor.execute(context)

    reason = "not_in_account" if case is VERIZON else "not_found"
    assert result == case.xcom({a: case.target}, ids=[a, b], unreachable={b: reason})
    assert context["ti"].xcom == {}  # type: ignore[attr-defined]
    warnings = lines(events, "warning")
    assert any(f"{b} ({reason}" in line and "fail_on_unreachable=False" in line for line in warnings), (
        warnings
    )


def _mentions(wire: Any, device_id: Any) -> bool:
    return str(device_id) in wire.url or str(device_id).encode() in wire.body


@pytest.mark.parametrize("row", SETTLED, ids=[row.name for row in SETTLED])
def test_devices_that_can_never_reach_the_target_settle_at_once_and_the_rest_wait_on(
    row: Settled, monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    define_connection(monkeypatch, row.case)
    fake = row.fake()
    fake.mount(requests_mock)
    sensor = row.case.sensor(
        clock, ids=row.ids(), fail_on_unreachable=False, **{row.case.target_arg: row.target}
    )
    context = operator_context()

    polls = [sensor.poke(context)]
    reads = [list(fake.reads)]
    row.change(fake)
    while not polls[-1].is_done and len(polls) < 5:
        before = len(fake.reads)
        polls.append(sensor.poke(context))
        reads.append(fake.reads[before:])

    assert polls[-1].is_done, "the wait went on for devices that can never match"
    assert polls[-1].xcom_value == row.xcom()
    for position, device_id in zip(row.unreachable, row.ids(list(row.unreachable)), strict=True):
        reading = [n for n, wires in enumerate(reads) if any(_mentions(w, device_id) for w in wires)]
        assert len(reading) <= (2 if position in row.leaves else 1), (device_id, reading)


def test_poke_mode_timeout_names_the_unmatched_devices(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a, b, c = case.ids[:3]
    fake_for(case, requests_mock, {a: case.target, b: case.other, c: case.other})
    sensor = case.sensor(clock, timeout=0)

    with pytest.raises(AirflowSensorTimeout) as caught:
        sensor.execute(operator_context())

    message = str(caught.value)
    assert "timed out" in message
    assert f"2 of 3 devices not yet at {case.value_name} {case.target}" in message
    assert str(b) in message and str(c) in message
    assert f"{a} (" not in message


# --- Deferrable mode ----------------------------------------------------------------------------


def test_deferrable_finishes_without_deferring_when_every_device_already_matches(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a, b, c = case.ids[:3]
    values = {a: case.target, b: case.target, c: case.target}
    fake_for(case, requests_mock, values)
    sensor = case.sensor(clock, deferrable=True)

    assert sensor.execute(operator_context()) == case.xcom(values)  # no TaskDeferred raised
    assert "client" not in sensor.hook.__dict__


def test_deferrable_checks_once_then_defers_to_its_trigger(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a, b, c = case.ids[:3]
    fake = fake_for(case, requests_mock, {a: case.target, b: case.other, c: case.other})
    sensor = case.sensor(clock, deferrable=True, poke_interval=7, timeout=900, max_transient_errors=3)

    before = time.time()
    with pytest.raises(TaskDeferred) as caught:
        sensor.execute(operator_context())
    after = time.time()

    deferral = caught.value
    trigger = deferral.trigger
    assert type(trigger) is case.trigger_class
    assert deferral.method_name == "execute_complete"
    assert deferral.timeout == timedelta(seconds=900) + DEFERRAL_GRACE
    assert timedelta(0) < DEFERRAL_GRACE
    classpath, kwargs = trigger.serialize()
    assert classpath == f"{case.trigger_class.__module__}.{case.trigger_class.__name__}"
    assert kwargs["conn_id"] == case.conn_id
    assert kwargs["ids"] == [a, b, c]
    assert kwargs["target"] == case.target
    assert kwargs["poll_interval"] == 7
    assert kwargs["max_transient_errors"] == 3
    assert before + 900 <= kwargs["deadline"] <= after + 900
    assert kwargs["seen"] == [[a, case.target]]
    if case is VERIZON:
        assert kwargs["options"] == {"account_name": ACCOUNT}
    json.dumps(kwargs)
    assert len(fake.reads) == (1 if case is VERIZON else 3)  # the first check, then no more
    assert "client" not in sensor.hook.__dict__  # the worker's session is closed before deferring


def test_deferral_after_a_transient_first_check_starts_from_nothing_seen(
    case: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a = case.ids[0]
    fake = fake_for(case, requests_mock, {a: case.target})
    fake.faults = [503]
    sensor = case.sensor(clock, ids=[a], deferrable=True)

    with pytest.raises(TaskDeferred) as caught:
        sensor.execute(operator_context())

    assert caught.value.trigger.serialize()[1]["seen"] == []


@pytest.mark.parametrize("count", [10, 1_000, 100_000])
def test_deferral_kwargs_stay_under_16_kib_whatever_the_device_count(
    verizon: Case, requests_mock: rm.Mocker, clock: FakeClock, count: int
) -> None:
    ids = [luhn_complete(f"35{n:012d}") for n in range(count)]
    at_target = ids[::2]
    fake_for(
        verizon, requests_mock, dict.fromkeys(ids, verizon.other) | dict.fromkeys(at_target, verizon.target)
    )
    sensor = verizon.sensor(clock, ids=ids, deferrable=True)
    context = operator_context(task_id=sensor.task_id)

    with pytest.raises(TaskDeferred) as caught:
        sensor.execute(context)

    trigger = caught.value.trigger
    assert kwargs_bytes(trigger) <= 16 * 1024
    _, kwargs = trigger.serialize()
    seen = [[imei, verizon.target] for imei in at_target]
    ti = context["ti"]
    if count <= INLINE_DEVICES:  # few: inline, no XCom to read back
        assert (kwargs["ids"], kwargs["seen"], kwargs["devices_ref"]) == (ids, seen, None)
        assert ti.xcom == {}  # type: ignore[attr-defined]
    else:  # many: the trigger reads them back from an XCom of this very task instance
        assert (kwargs["ids"], kwargs["seen"], kwargs["unreachable"]) == (None, [], [])
        assert kwargs["devices_ref"] == {
            "dag_id": ti.dag_id,  # type: ignore[attr-defined]
            "run_id": ti.run_id,  # type: ignore[attr-defined]
            "task_id": sensor.task_id,
            "map_index": -1,
            "key": WATCH_XCOM_KEY,
        }
        assert ti.xcom == {WATCH_XCOM_KEY: {"ids": ids, "seen": seen, "unreachable": []}}  # type: ignore[attr-defined]


def test_the_deferral_of_100000_devices_measured_by_the_bench_stays_under_16_kib() -> None:
    trigger, ti = deferral_for_devices(100_000, matched_share=0.5, unreachable_share=0.01)

    assert kwargs_bytes(trigger) <= 16 * 1024
    handed = ti.xcom[WATCH_XCOM_KEY]
    assert isinstance(handed, dict)
    assert (len(handed["ids"]), len(handed["seen"]), len(handed["unreachable"])) == (100_000, 50_000, 1_000)


def test_execute_complete_returns_the_xcom_of_a_success_event(case: Case, clock: FakeClock) -> None:
    a, b = case.ids[:2]
    xcom = {
        "matched": [a, b],
        case.values_key: {str(a): case.target, str(b): case.target},
        "unreachable": {},
    }
    event = {"status": "success", "message": "", "xcom": xcom, "unmatched": {}, "description": "all"}
    ctx = operator_context()

    assert case.sensor(clock, deferrable=True).execute_complete(ctx, event) == xcom
    assert ctx["ti"].xcom == {}  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", ["timeout", "error"])
def test_execute_complete_fails_with_the_events_description(
    case: Case, clock: FakeClock, status: str
) -> None:
    a, b = case.ids[:2]
    xcom = {
        "matched": [a],
        case.values_key: {str(a): case.target, str(b): case.other},
        "unreachable": {},
    }
    description = f"1 of 2 devices not yet at {case.value_name} {case.target}: {b} ({case.other})"
    event = {
        "status": status,
        "message": "boom from the vendor (HTTP 400)" if status == "error" else "the sensor's timeout passed",
        "xcom": xcom,
        "unmatched": {str(b): case.other},
        "description": description,
    }
    ctx = operator_context()
    sensor = case.sensor(clock, deferrable=True, timeout=900)
    expected = AirflowSensorTimeout if status == "timeout" else IoTFleetSensorError

    with pytest.raises(expected) as caught:
        sensor.execute_complete(ctx, event)

    message = str(caught.value)
    assert description in message
    if status == "timeout":
        assert "900 s" in message
    else:
        assert "boom from the vendor (HTTP 400)" in message
    assert ctx["ti"].xcom == {"last_seen": xcom}  # type: ignore[attr-defined]


def test_deferrable_default_follows_the_operators_default_deferrable_setting(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    """``[operators] default_deferrable`` is read once, when the sensor class is defined (the usual
    Airflow idiom): a module imported with the setting on defers by default."""

    setting_at_start = conf.getboolean("operators", "default_deferrable", fallback=False)

    def default_when_defined(setting: str) -> Any:
        monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", setting)
        spec = importlib.util.spec_from_file_location(
            f"_iotfleet_sensors_base_{setting}", sensors_base.__file__
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        class Fresh(module.DeviceWatchSensor):  # type: ignore[name-defined,misc]
            trigger_class = CiscoDeviceStatusTrigger

        return Fresh(task_id="fresh", conn_id="c").deferrable

    assert default_when_defined("true") is True
    assert default_when_defined("false") is False

    # The classes imported at the start keep the value they were defined with: the setting's then.
    imported_default = inspect.signature(DeviceWatchSensor.__init__).parameters["deferrable"].default
    assert imported_default is setting_at_start
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", str(not setting_at_start).lower())
    sensor = CiscoControlCenterDeviceStatusSensor(
        task_id="default", iccids=[ICCIDS[0]], target_status="ACTIVATED"
    )
    assert sensor.deferrable is imported_default
    explicit = CiscoControlCenterDeviceStatusSensor(
        task_id="explicit", iccids=[ICCIDS[0]], target_status="ACTIVATED", deferrable=not setting_at_start
    )
    assert explicit.deferrable is not setting_at_start


# --- Cisco: full reads, then Search Devices -----------------------------------------------------


@pytest.fixture
def cisco(monkeypatch: pytest.MonkeyPatch) -> Case:
    define_connection(monkeypatch, CISCO)
    return CISCO


def test_cisco_reads_each_device_first_then_searches_what_changed_since_the_previous_poll(
    cisco: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a, b, c = ICCIDS[:3]
    fake = fake_for(cisco, requests_mock, {a: "ACTIVATED", b: "DEACTIVATED", c: "DEACTIVATED"})
    sensor = cisco.sensor(clock)

    assert sensor.poke(operator_context()).is_done is False
    assert [(w.method, w.path) for w in fake.reads] == [
        ("GET", f"{CISCO_PATH}/devices/{i}") for i in (a, b, c)
    ]

    first = len(fake.reads)
    clock.advance(300)
    fake.set({b: "ACTIVATED"})
    assert sensor.poke(operator_context()).is_done is False
    (search,) = fake.reads[first:]
    assert (search.method, search.path) == ("GET", f"{CISCO_PATH}/devices")
    # from ten minutes before the previous poll started, so clock skew cannot hide a change
    assert search.query == {
        "modifiedSince": ["2026-11-21T11:50:00+00:00"],
        "pageSize": ["50"],
        "pageNumber": ["1"],
    }

    second = len(fake.reads)
    clock.advance(300)
    fake.set({c: "ACTIVATED"})
    result = sensor.poke(operator_context())
    (search,) = fake.reads[second:]
    assert search.query["modifiedSince"] == ["2026-11-21T11:55:00+00:00"]
    assert result.is_done is True
    assert result.xcom_value == {
        "matched": [a, b, c],
        "statuses": {a: "ACTIVATED", b: "ACTIVATED", c: "ACTIVATED"},
        "unreachable": {},
    }


def test_cisco_reads_the_unmatched_devices_in_full_again_an_hour_after_the_last_full_read(
    cisco: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a, b, c = ICCIDS[:3]
    fake = fake_for(cisco, requests_mock, {a: "ACTIVATED", b: "DEACTIVATED", c: "DEACTIVATED"})
    sensor = cisco.sensor(clock)
    kinds: list[str] = []
    for _ in range(122):  # a poll a minute: a full read every 60 polls, whatever the poll interval
        before = len(fake.reads)
        assert sensor.poke(operator_context()).is_done is False
        polled = fake.reads[before:]
        if fake.searches(polled):
            assert len(polled) == 1
            kinds.append("search")
        else:
            kinds.append("full")
            if len(kinds) > 1:  # a full read again reads only the devices still unmatched
                assert fake.full_reads(polled) == [b, c]
        clock.advance(60)

    assert kinds == (["full"] + ["search"] * 59) * 2 + ["full", "search"]


def test_cisco_full_read_finds_a_change_search_did_not_report(
    cisco: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a = ICCIDS[0]
    fake = fake_for(cisco, requests_mock, {a: "DEACTIVATED"})
    sensor = cisco.sensor(clock, ids=[a])
    for _ in range(5):  # minutes 0 (a full read), 10, 20, 30, 40 (searches)
        assert sensor.poke(operator_context()).is_done is False
        clock.advance(600)
    fake.values[a] = "ACTIVATED"  # changed, but Search Devices does not report it (vendor lag)
    results = []
    for _ in range(2):  # minute 50 searches; minute 60, an hour after the full read, reads in full
        results.append(sensor.poke(operator_context()).is_done)
        clock.advance(600)
    assert results == [False, True]
    assert fake.full_reads() == [a, a]


# --- Huawei ROMA: one by one, or the filtered listing ------------------------------------------


@pytest.fixture
def roma(monkeypatch: pytest.MonkeyPatch) -> Case:
    define_connection(monkeypatch, ROMA)
    return ROMA


def test_roma_reads_few_devices_one_by_one(roma: Case, requests_mock: rm.Mocker, clock: FakeClock) -> None:
    ids = ROMA_IDS[:3]
    fake = fake_for(roma, requests_mock, {ids[0]: "offline", ids[1]: "online", ids[2]: "never"})
    sensor = roma.sensor(clock, ids=ids)

    assert sensor.poke(operator_context()).is_done is False
    assert fake.listings() == []
    assert sorted(fake.device_reads()) == list(ids)

    before = len(fake.reads)
    fake.set({ids[1]: "offline"})
    result = sensor.poke(operator_context())
    # only the unmatched: the never-connected device is not connected, so it counts as offline
    assert fake.device_reads(fake.reads[before:]) == [ids[1]]
    assert result.is_done is True
    assert result.xcom_value == {
        "matched": list(ids),
        "statuses": {str(ids[0]): "offline", str(ids[1]): "offline", str(ids[2]): "never"},
        "unreachable": {},
    }


def test_roma_reads_many_devices_from_the_listing_filtered_on_the_target(
    roma: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    ids = ROMA_IDS[:12]
    values = {i: "online" for i in ids} | {ids[0]: "offline", ids[5]: "offline"}
    fake = fake_for(roma, requests_mock, values)
    sensor = roma.sensor(clock, ids=ids)

    first = sensor.poke(operator_context())
    assert first.is_done is False
    # the offline devices, and the never-connected ones (not connected either)
    assert [(w.path, w.query) for w in fake.reads] == [
        (ROMA_PATH, {"offset": ["0"], "limit": ["999"], "online_status": [code]}) for code in ("2", "0")
    ]
    assert fake.device_reads() == []

    assert first.xcom_value is None
    fake.set(dict.fromkeys(ids, "offline"))
    result = sensor.poke(operator_context())
    assert result.is_done is True
    # ten devices were left: few enough to read one by one again
    assert len(fake.listings()) == 2
    assert sorted(fake.device_reads()) == [i for i in ids if i not in (ids[0], ids[5])]
    assert result.xcom_value == {
        "matched": list(ids),
        "statuses": {str(i): "offline" for i in ids},
        "unreachable": {},
    }


def test_roma_listing_says_not_target_about_the_devices_it_does_not_show(
    roma: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    ids = ROMA_IDS[:12]
    fake_for(roma, requests_mock, {i: "online" for i in ids} | {ids[0]: "offline"})
    sensor = roma.sensor(clock, ids=ids, timeout=0)

    with pytest.raises(AirflowSensorTimeout) as caught:
        sensor.execute(operator_context())

    assert f"11 of 12 devices not yet at status offline: {ids[1]} (not offline)" in str(caught.value)


def test_roma_listing_pages_through_when_that_is_still_cheaper(
    roma: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    ids = ROMA_IDS[:12]
    # 2 pages of 999 offline devices, and 2 of never-connected ones: 4 requests, cheaper than 12
    fake = FakeRoma({i: "online" for i in ids}, listing_padding=1500)
    fake.mount(requests_mock)
    sensor = roma.sensor(clock, ids=ids)

    assert sensor.poke(operator_context()).is_done is False

    assert [(w.query["online_status"], w.query["offset"]) for w in fake.listings()] == [
        (["2"], ["0"]),
        (["0"], ["0"]),
        (["2"], ["999"]),
        (["0"], ["999"]),
    ]
    assert fake.device_reads() == []


def test_roma_reads_one_by_one_when_the_listing_would_take_more_requests(
    roma: Case, requests_mock: rm.Mocker, clock: FakeClock, events: Events
) -> None:
    ids = ROMA_IDS[:11]
    # 13 pages of the instance's offline devices (and 13 of never-connected ones) cost more than 11 reads.
    fake = FakeRoma({i: "online" for i in ids}, listing_padding=12 * 999 + 1)
    fake.mount(requests_mock)
    sensor = roma.sensor(clock, ids=ids)

    assert sensor.poke(operator_context()).is_done is False

    assert len(fake.listings()) == 2  # the first page of each says how many there are
    assert sorted(fake.device_reads()) == list(ids)
    (line,) = [line for line in lines(events, "info") if "not yet at" in line]
    assert f"{ids[0]} (online)" in line


# --- Verizon ThingSpace: the subset listing -----------------------------------------------------


@pytest.fixture
def verizon(monkeypatch: pytest.MonkeyPatch) -> Case:
    define_connection(monkeypatch, VERIZON)
    return VERIZON


def test_verizon_lists_only_the_unmatched_imeis_and_logs_in_once(
    verizon: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    a, b, c = IMEIS[:3]
    fake = fake_for(verizon, requests_mock, {a: verizon.target, b: verizon.other, c: verizon.other})
    sensor = verizon.sensor(clock)

    assert sensor.poke(operator_context()).is_done is False
    fake.set({b: verizon.target})
    assert sensor.poke(operator_context()).is_done is False
    fake.set({c: verizon.target})
    result = sensor.poke(operator_context())

    assert fake.bodies() == [[a, b, c], [b, c], [c]]
    assert all(w.method == "POST" for w in fake.reads)
    assert (fake.count(VZ_TOKEN_PATH), fake.count(VZ_LOGIN_PATH)) == (1, 1)
    assert result.is_done is True
    assert result.xcom_value == {
        "matched": [a, b, c],
        "firmware": dict.fromkeys((a, b, c), verizon.target),
        "unreachable": {},
    }


def test_verizon_account_argument_wins_over_the_connections(
    verizon: Case, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    route = requests_mock.post(
        f"{VZ_ROOT}/api/fota/v3/devices/0000999999-00001",
        json={"deviceList": [{"deviceId": IMEIS[0], "firmware": verizon.target}], "hasMoreData": False},
    )
    requests_mock.post(f"{VZ_ROOT}{VZ_TOKEN_PATH}", json={"access_token": "t", "expires_in": 3600})
    requests_mock.post(f"{VZ_ROOT}{VZ_LOGIN_PATH}", json={"sessionToken": "s"})
    sensor = verizon.sensor(clock, ids=[IMEIS[0]], account_name="0000999999-00001")

    assert sensor.execute(operator_context()) == verizon.xcom({IMEIS[0]: verizon.target}, ids=[IMEIS[0]])
    assert route.call_count == 1


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_verizon_without_an_account_anywhere_fails_before_the_first_request(
    monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker, clock: FakeClock, deferrable: bool
) -> None:
    extra = {k: v for k, v in VERIZON.connection["extra"].items() if k != "account_name"}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{VERIZON.conn_id.upper()}", json.dumps({**VERIZON.connection, "extra": extra})
    )
    sensor = VERIZON.sensor(clock, deferrable=deferrable)

    with pytest.raises(IoTFleetValidationError, match="account_name is missing"):
        sensor.execute(operator_context())

    assert requests_mock.call_count == 0
