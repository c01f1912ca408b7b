"""The device-status sensors and their triggers against the simulator, over real sockets.

Triggers run in an event loop of the test (``asyncio.run``) while the fleet changes under them: the
simulator's clock is moved past a scheduled Cisco edit, or ROMA devices are forced offline from a
thread, and the trigger must fire its event only then, with exactly those devices matched. Each
sensor also runs once in poke mode, and the deferrable path is followed from ``execute`` through
the trigger (rebuilt from its serialised form, as the triggerer does) to ``execute_complete``.

Then the waits at fleet scale: devices that can never reach the target settle at once; many
devices travel to the trigger by XCom reference; a trigger reads the connection as it is when it
starts; a poll the vendor never answers ends at the deadline; and in reschedule mode failed polls
count across reschedules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSensorTimeout, TaskDeferred

from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.sensors.base import IoTFleetSensorError, IoTFleetUnreachableDevicesError
from airflow_provider_iotfleet.sensors.cisco import CiscoControlCenterDeviceStatusSensor
from airflow_provider_iotfleet.sensors.huawei import HuaweiRomaDeviceStatusSensor
from airflow_provider_iotfleet.sensors.verizon import VerizonThingSpaceFirmwareSensor
from airflow_provider_iotfleet.simulator import Faults, Simulator
from airflow_provider_iotfleet.simulator.fleet import (
    NEVER_CONNECTED,
    OFFLINE,
    ONLINE,
    ROMA_ID_BASE,
    iccid_of,
    imei_of,
)
from airflow_provider_iotfleet.triggers import base as triggers_base
from airflow_provider_iotfleet.triggers.cisco import CiscoDeviceStatusTrigger
from airflow_provider_iotfleet.triggers.handover import WATCH_XCOM_KEY
from airflow_provider_iotfleet.triggers.huawei import HuaweiRomaDeviceStatusTrigger
from tests.fakes import FakeTaskStateStore, operator_context
from tests.simulator_harness import (
    PollCounter,
    SimulatorFactory,
    connection_variables,
    one_event,
    rebuilt,
    run_while,
)
from tests.watch_fakes import FakeXComs, reschedule_context

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

DAY = 24 * 3600


@pytest.fixture
def simulator(start_simulator: SimulatorFactory, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    """A simulator whose default connections allow many requests a second (the sensors poll fast)."""
    started = start_simulator(devices=3000)
    for name, value in connection_variables(started, requests_per_second=1000).items():
        monkeypatch.setenv(name, value)
    return started


def indices(simulator: Simulator, count: int, **wanted: Any) -> list[int]:
    """The first ``count`` devices whose current attributes are ``wanted``."""
    found = [
        i
        for i in range(simulator.config.devices)
        if all(simulator.state.fleet.device(i)[key] == value for key, value in wanted.items())
    ]
    assert len(found) >= count
    return found[:count]


# --- Cisco: a scheduled edit ----------------------------------------------------------------------


def test_cisco_deferred_wait_matches_a_scheduled_edit_only_once_it_is_due(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduled, already = (iccid_of(i) for i in indices(simulator, 2, status="ACTIVATED"))
    with CiscoControlCenterHook() as hook:
        edit = hook.edit_device(
            scheduled, {"status": "DEACTIVATED"}, effective_date=simulator.state.now() + timedelta(days=2)
        )
        hook.edit_device(already, {"status": "DEACTIVATED"})
    assert edit.scheduled is True  # answered 202

    sensor = CiscoControlCenterDeviceStatusSensor(
        task_id="wait_cisco",
        iccids=[scheduled, already],
        target_status="DEACTIVATED",
        deferrable=True,
        poke_interval=0.05,
        timeout=30,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(operator_context())
    trigger = rebuilt(deferred.value.trigger)
    assert isinstance(trigger, CiscoDeviceStatusTrigger)
    assert trigger.seen == [[already, "DEACTIVATED"]]

    counter = PollCounter(monkeypatch, CiscoDeviceStatusTrigger.watch_class)
    since: list[object] = []
    original_statuses = CiscoControlCenterHook.aread_device_statuses

    async def aread_device_statuses(
        hook: CiscoControlCenterHook, iccids: Any, changed_since: Any = None
    ) -> Any:
        since.append(changed_since)
        return await original_statuses(hook, iccids, changed_since=changed_since)

    monkeypatch.setattr(CiscoControlCenterHook, "aread_device_statuses", aread_device_statuses)

    async def advance_past_the_effective_date() -> None:
        await asyncio.to_thread(simulator.state.advance, 2 * DAY + 60)

    payload, at_change = run_while(trigger, counter, 3, advance_past_the_effective_date)

    assert payload["status"] == "success"
    assert counter.polls > at_change  # it was the poll after the clock moved that matched
    assert since[0] is None and all(value is not None for value in since[1:])  # then Search Devices
    xcom = sensor.execute_complete(operator_context(), payload)
    assert xcom == {
        "matched": [scheduled, already],
        "statuses": dict.fromkeys((scheduled, already), "DEACTIVATED"),
        "unreachable": {},
    }
    assert simulator.state.snapshot()["scheduled"] == []
    assert triggers_base._SHARED == {}


def test_cisco_sensor_in_poke_mode(simulator: Simulator) -> None:
    scheduled, now_edited, untouched = (iccid_of(i) for i in indices(simulator, 3, status="ACTIVATED"))
    with CiscoControlCenterHook() as hook:
        hook.edit_device(
            scheduled, {"status": "DEACTIVATED"}, effective_date=simulator.state.now() + timedelta(days=1)
        )
        hook.edit_device(now_edited, {"status": "DEACTIVATED"})

    sensor = CiscoControlCenterDeviceStatusSensor(
        task_id="poke_cisco",
        iccids=[scheduled, now_edited],
        target_status="DEACTIVATED",
        poke_interval=0,
        timeout=20,
    )
    assert sensor.poke(operator_context()).is_done is False
    simulator.state.advance(DAY + 60)
    result = sensor.execute(operator_context())

    assert result == {
        "matched": [scheduled, now_edited],
        "statuses": dict.fromkeys((scheduled, now_edited), "DEACTIVATED"),
        "unreachable": {},
    }
    with pytest.raises(AirflowSensorTimeout, match=rf"{untouched} \(ACTIVATED\)"):
        CiscoControlCenterDeviceStatusSensor(
            task_id="poke_cisco_timeout",
            iccids=[untouched],
            target_status="DEACTIVATED",
            poke_interval=0,
            timeout=0,
        ).execute(operator_context())


# --- Huawei ROMA: devices forced offline -------------------------------------------------------


@pytest.mark.parametrize("count", [3, 12], ids=["one-by-one", "listing"])
def test_roma_trigger_fires_with_exactly_the_devices_forced_offline(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    online = indices(simulator, count + 1, online_status=ONLINE)
    targets, bystander = [ROMA_ID_BASE + i for i in online[:count]], online[count]
    trigger = HuaweiRomaDeviceStatusTrigger(
        conn_id="huawei_roma_default",
        ids=targets,
        target="offline",
        poll_interval=0.05,
        deadline=time.time() + 30,
    )
    counter = PollCounter(monkeypatch, HuaweiRomaDeviceStatusTrigger.watch_class)
    calls = {"listing": 0, "device": 0}
    for kind in calls:
        original = getattr(HuaweiRomaConnectHook, f"_{kind}_call")

        def counted(hook: Any, *args: Any, _kind: str = kind, _original: Any = original) -> Any:
            calls[_kind] += 1
            return _original(hook, *args)

        monkeypatch.setattr(HuaweiRomaConnectHook, f"_{kind}_call", counted)
    forced: list[list[int]] = []

    def force_offline() -> None:
        with HuaweiRomaConnectHook() as hook:
            result = hook.force_offline(targets)
        forced.append(sorted(entry["id"] for entry in result.succeeded))

    async def force_them_offline() -> None:
        await asyncio.to_thread(force_offline)

    payload, at_change = run_while(rebuilt(trigger), counter, 2, force_them_offline)

    assert forced == [sorted(targets)]
    assert payload["status"] == "success"
    assert payload["xcom"] == {
        "matched": targets,
        "statuses": {str(i): "offline" for i in targets},
        "unreachable": {},
    }
    assert payload["unmatched"] == {}
    assert counter.polls > at_change
    assert simulator.state.fleet.device(bystander)["online_status"] == ONLINE
    if count > 10:  # many devices: the listings of offline and never-connected devices (one page
        # each) on the first poll; then offline alone, since the devices were all seen connected
        assert (calls["listing"], calls["device"]) == (counter.polls + 1, 0)
    else:  # few: each read one by one, every poll
        assert (calls["listing"], calls["device"]) == (0, count * counter.polls)
    assert triggers_base._SHARED == {}


def test_roma_sensor_in_poke_mode(simulator: Simulator) -> None:
    online = [ROMA_ID_BASE + i for i in indices(simulator, 3, online_status=ONLINE)]
    offline = [ROMA_ID_BASE + i for i in indices(simulator, 1, online_status=OFFLINE)]
    sensor = HuaweiRomaDeviceStatusSensor(
        task_id="poke_roma",
        device_ids=online + offline,
        target_online_status="offline",
        poke_interval=0,
        timeout=20,
    )

    first = sensor.poke(operator_context())
    assert first.is_done is False
    with HuaweiRomaConnectHook() as hook:
        hook.force_offline(online)
    result = sensor.execute(operator_context())

    assert result == {
        "matched": online + offline,
        "statuses": {str(i): "offline" for i in online + offline},
        "unreachable": {},
    }


# --- Verizon: firmware -------------------------------------------------------------------------


def _firmware_devices(simulator: Simulator, count: int) -> tuple[str, list[str], str]:
    """A firmware version, ``count`` IMEIs reporting it, and one IMEI reporting another."""
    firmware = simulator.state.fleet.device(0)["firmware"]
    same = [imei_of(i) for i in indices(simulator, count, firmware=firmware)]
    other = next(
        imei_of(i)
        for i in range(simulator.config.devices)
        if simulator.state.fleet.device(i)["firmware"] != firmware
    )
    return firmware, same, other


def test_firmware_sensor_already_at_target_finishes_in_execute_without_deferring(
    simulator: Simulator,
) -> None:
    firmware, imeis, _ = _firmware_devices(simulator, 3)
    sensor = VerizonThingSpaceFirmwareSensor(
        task_id="firmware",
        imeis=imeis,
        target_firmware=firmware,
        deferrable=True,
        poke_interval=0.05,
        timeout=30,
    )

    result = sensor.execute(operator_context())  # raises TaskDeferred if it deferred

    assert result == {"matched": imeis, "firmware": dict.fromkeys(imeis, firmware), "unreachable": {}}


def test_firmware_sensor_deferred_wait_times_out_naming_the_device_behind(simulator: Simulator) -> None:
    firmware, imeis, behind = _firmware_devices(simulator, 2)
    sensor = VerizonThingSpaceFirmwareSensor(
        task_id="firmware_behind",
        imeis=[*imeis, behind],
        target_firmware=firmware,
        deferrable=True,
        poke_interval=0.05,
        timeout=30,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(operator_context())
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["seen"] == [[imei, firmware] for imei in imeis]
    assert kwargs["options"] == {"account_name": simulator.config.credentials.verizon_account}
    # The device behind never matches, so the wait lasts to its deadline: room for the first poll
    # (a token, a session, a listing) on a busy machine, which is what reports the device's firmware.
    trigger = type(deferred.value.trigger)(**{**kwargs, "deadline": time.time() + 3.0})

    payload = asyncio.run(one_event(trigger))

    behind_firmware = simulator.state.fleet.device(simulator.state.fleet.by_imei(behind))["firmware"]
    assert payload["status"] == "timeout"
    assert payload["unmatched"] == {behind: behind_firmware}
    assert payload["xcom"]["matched"] == imeis
    with pytest.raises(AirflowSensorTimeout, match=rf"{behind} \({behind_firmware}\)"):
        sensor.execute_complete(operator_context(), payload)


def test_firmware_sensor_in_poke_mode(simulator: Simulator) -> None:
    firmware, imeis, _ = _firmware_devices(simulator, 3)
    sensor = VerizonThingSpaceFirmwareSensor(
        task_id="poke_firmware", imeis=imeis, target_firmware=firmware, poke_interval=0, timeout=20
    )

    assert sensor.execute(operator_context()) == {
        "matched": imeis,
        "firmware": dict.fromkeys(imeis, firmware),
        "unreachable": {},
    }


# --- Devices that can never reach the target ------------------------------------------------------


@pytest.mark.parametrize("count", [3, 12], ids=["one-by-one", "listing"])
def test_roma_never_connected_devices_count_as_offline(simulator: Simulator, count: int) -> None:
    never = [ROMA_ID_BASE + i for i in indices(simulator, count, online_status=NEVER_CONNECTED)]
    sensor = HuaweiRomaDeviceStatusSensor(
        task_id="never_connected_are_offline", device_ids=never, poke_interval=0, timeout=20
    )

    first = sensor.poke(operator_context())

    assert first.is_done is True  # at once: they could never be forced offline, and are not online
    assert first.xcom_value == {
        "matched": never,
        "statuses": dict.fromkeys(map(str, never), "never"),
        "unreachable": {},
    }


def test_unknown_devices_end_their_wait_at_once_and_fail_the_task_naming_them(simulator: Simulator) -> None:
    known_roma = ROMA_ID_BASE + indices(simulator, 1, online_status=OFFLINE)[0]
    unknown_roma = ROMA_ID_BASE + simulator.config.devices + 1
    context = operator_context()
    with pytest.raises(IoTFleetUnreachableDevicesError, match=rf"{unknown_roma} \(not_found: "):
        HuaweiRomaDeviceStatusSensor(
            task_id="poke_roma_unknown", device_ids=[known_roma, unknown_roma], poke_interval=0, timeout=20
        ).execute(context)
    assert context["ti"].xcom["outcome"] == {  # type: ignore[attr-defined]
        "matched": [known_roma],
        "statuses": {str(known_roma): "offline", str(unknown_roma): None},
        "unreachable": {str(unknown_roma): "not_found"},
    }

    activated = iccid_of(indices(simulator, 1, status="ACTIVATED")[0])
    unknown_iccid = iccid_of(simulator.config.devices + 5)
    assert CiscoControlCenterDeviceStatusSensor(
        task_id="poke_cisco_unknown",
        iccids=[activated, unknown_iccid],
        target_status="ACTIVATED",
        fail_on_unreachable=False,
        poke_interval=0,
        timeout=20,
    ).execute(operator_context()) == {
        "matched": [activated],
        "statuses": {activated: "ACTIVATED", unknown_iccid: None},
        "unreachable": {unknown_iccid: "not_found"},
    }

    firmware, imeis, _ = _firmware_devices(simulator, 1)
    outsider = imei_of(simulator.config.devices + 5)  # a valid IMEI the account does not have
    assert VerizonThingSpaceFirmwareSensor(
        task_id="poke_firmware_outsider",
        imeis=[imeis[0], outsider],
        target_firmware=firmware,
        fail_on_unreachable=False,
        poke_interval=0,
        timeout=20,
    ).execute(operator_context()) == {
        "matched": imeis,
        "firmware": {imeis[0]: firmware, outsider: None},
        "unreachable": {outsider: "not_in_account"},
    }


def test_an_unknown_device_does_not_hold_a_deferred_wait(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    online = [ROMA_ID_BASE + i for i in indices(simulator, 2, online_status=ONLINE)]
    unknown = ROMA_ID_BASE + simulator.config.devices + 7
    sensor = HuaweiRomaDeviceStatusSensor(
        task_id="wait_roma_with_unknown",
        device_ids=[*online, unknown],
        fail_on_unreachable=False,
        deferrable=True,
        poke_interval=0.05,
        timeout=30,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(operator_context())
    trigger = rebuilt(deferred.value.trigger)
    assert trigger.unreachable == [[unknown, "not_found", None]]  # settled by the first check
    counter = PollCounter(monkeypatch, HuaweiRomaDeviceStatusTrigger.watch_class)

    async def force_offline() -> None:
        def force() -> None:
            with HuaweiRomaConnectHook() as hook:
                hook.force_offline(online)

        await asyncio.to_thread(force)

    payload, _ = run_while(trigger, counter, 2, force_offline)

    assert payload["status"] == "success"
    assert payload["unreachable"] == {str(unknown): "not_found"}
    assert sensor.execute_complete(operator_context(), payload)["matched"] == online


# --- Many devices: handed to the trigger by XCom reference -----------------------------------------


def test_many_devices_travel_by_reference_and_the_rebuilt_trigger_waits_on_exactly_them(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = indices(simulator, 151, online_status=ONLINE)
    targets, bystander = [ROMA_ID_BASE + i for i in found[:150]], found[150]
    xcoms = FakeXComs().install(monkeypatch)
    sensor = HuaweiRomaDeviceStatusSensor(
        task_id="wait_many_offline", device_ids=targets, deferrable=True, poke_interval=0.05, timeout=30
    )
    context = operator_context(task_id=sensor.task_id)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    xcoms.take(context["ti"])  # type: ignore[arg-type]
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["ids"] is None and kwargs["devices_ref"]["key"] == WATCH_XCOM_KEY
    assert len(json.dumps(kwargs)) < 1024
    trigger = rebuilt(deferred.value.trigger)  # as the triggerer builds it, after a restart too
    counter = PollCounter(monkeypatch, HuaweiRomaDeviceStatusTrigger.watch_class)

    async def force_them_offline() -> None:
        def force() -> None:
            with HuaweiRomaConnectHook() as hook:
                hook.force_offline(targets)

        await asyncio.to_thread(force)

    payload, _ = run_while(trigger, counter, 2, force_them_offline)

    assert payload["status"] == "success"
    assert payload["xcom"] == {
        "matched": targets,
        "statuses": dict.fromkeys(map(str, targets), "offline"),
        "unreachable": {},
    }
    assert xcoms.reads == 1
    assert simulator.state.fleet.device(bystander)["online_status"] == ONLINE


# --- The connection, read when a trigger starts ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_trigger_started_after_the_connection_was_fixed_reaches_the_vendor(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline = [ROMA_ID_BASE + i for i in indices(simulator, 2, online_status=OFFLINE)]
    good = simulator.connections()["huawei_roma_default"]
    variable = "AIRFLOW_CONN_HUAWEI_ROMA_DEFAULT"
    # Nothing listens there: every poll fails to connect.
    dead = {
        **good,
        "host": f"http://127.0.0.1:{_free_port()}/huawei",
        "extra": {**good["extra"], "max_retries": 0},
    }
    monkeypatch.setenv(variable, json.dumps(dead))

    def trigger(device_id: int) -> HuaweiRomaDeviceStatusTrigger:
        return HuaweiRomaDeviceStatusTrigger(
            conn_id="huawei_roma_default",
            ids=[device_id],
            target="offline",
            poll_interval=0.05,
            deadline=time.time() + 20,
            max_transient_errors=1000,
        )

    async def main() -> dict[str, Any]:
        stuck = asyncio.create_task(one_event(trigger(offline[0])))
        while not triggers_base._SHARED:  # it has read the dead connection and holds its hook
            await asyncio.sleep(0.01)
        monkeypatch.setenv(variable, json.dumps(good))  # the connection is fixed
        try:
            return await one_event(trigger(offline[1]))
        finally:
            stuck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stuck

    payload = asyncio.run(main())

    assert payload["status"] == "success"
    assert payload["xcom"]["matched"] == [offline[1]]
    assert triggers_base._SHARED == {}


def test_a_trigger_whose_connection_was_deleted_fires_an_error_naming_it(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_HUAWEI_ROMA_DEFAULT")
    device = ROMA_ID_BASE + indices(simulator, 1, online_status=OFFLINE)[0]
    trigger = HuaweiRomaDeviceStatusTrigger(
        conn_id="huawei_roma_default",
        ids=[device],
        target="offline",
        poll_interval=0.05,
        deadline=time.time() + 20,
    )

    payload = asyncio.run(one_event(trigger))

    assert payload["status"] == "error"
    assert "Connection 'huawei_roma_default' (Huawei Cloud ROMA Connect) is not defined" in payload["message"]
    sensor = HuaweiRomaDeviceStatusSensor(task_id="wait_deleted", device_ids=[device], deferrable=True)
    with pytest.raises(IoTFleetSensorError, match="Connection 'huawei_roma_default'"):
        sensor.execute_complete(operator_context(), payload)


# --- The deadline bounds each poll ------------------------------------------------------------------


def test_a_poll_the_vendor_never_answers_ends_at_the_deadline(
    start_simulator: SimulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every answer is held five minutes, and the client would wait ten for it: only the trigger's
    # deadline can end the wait in time.
    slow = start_simulator(devices=100, faults=Faults(applied_then_delayed=1.0), slow_answer_seconds=300)
    connection = slow.connections()["huawei_roma_default"]
    connection["extra"] = {**connection["extra"], "timeout": 600, "max_retries": 0}
    monkeypatch.setenv("AIRFLOW_CONN_HUAWEI_ROMA_DEFAULT", json.dumps(connection))
    trigger = HuaweiRomaDeviceStatusTrigger(
        conn_id="huawei_roma_default",
        ids=[ROMA_ID_BASE + 1],
        target="offline",
        poll_interval=0.05,
        deadline=time.time() + 1,
    )

    payload = asyncio.run(one_event(trigger))

    assert payload["status"] == "timeout"
    assert payload["unmatched"] == {str(ROMA_ID_BASE + 1): None}
    assert "timeout passed during a poll" in payload["message"]


# --- Reschedule mode -------------------------------------------------------------------------------


def test_in_reschedule_mode_failed_polls_count_across_reschedules(
    start_simulator: SimulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = start_simulator(devices=100, faults=Faults(server_error=1.0))
    connection = failing.connections()["huawei_roma_default"]
    connection["extra"] = {**connection["extra"], "max_retries": 0}
    monkeypatch.setenv("AIRFLOW_CONN_HUAWEI_ROMA_DEFAULT", json.dumps(connection))
    store = FakeTaskStateStore()

    def poke() -> Any:  # each reschedule: a new run of the task, a fresh sensor
        sensor = HuaweiRomaDeviceStatusSensor(
            task_id="wait_rescheduled",
            device_ids=[ROMA_ID_BASE + 1],
            mode="reschedule",
            max_transient_errors=2,
            poke_interval=5,
            timeout=600,
        )
        return sensor.execute(reschedule_context(sensor.task_id, store))

    for _ in range(2):
        with pytest.raises(AirflowRescheduleException):
            poke()
    with pytest.raises(IoTFleetSensorError, match="HTTP 500"):
        poke()
    assert store.values == {}
