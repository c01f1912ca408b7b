"""The device-status sensors and their triggers against the simulator, over real sockets.

Triggers run in an event loop of the test (``asyncio.run``) while the fleet changes under them: the
simulator's clock is moved past a scheduled Cisco edit, or ROMA devices are forced offline from a
thread, and the trigger must fire its event only then, with exactly those devices matched. Each
sensor also runs once in poke mode, and the deferrable path is followed from ``execute`` through
the trigger (rebuilt from its serialised form, as the triggerer does) to ``execute_complete``.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.sensors.base import IoTFleetSensorError
from airflow_provider_iotfleet.sensors.cisco import CiscoControlCenterDeviceStatusSensor
from airflow_provider_iotfleet.sensors.huawei import HuaweiRomaDeviceStatusSensor
from airflow_provider_iotfleet.sensors.verizon import VerizonThingSpaceFirmwareSensor
from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import OFFLINE, ONLINE, ROMA_ID_BASE, iccid_of, imei_of
from airflow_provider_iotfleet.triggers import base as triggers_base
from airflow_provider_iotfleet.triggers.cisco import CiscoDeviceStatusTrigger
from airflow_provider_iotfleet.triggers.huawei import HuaweiRomaDeviceStatusTrigger
from tests.fakes import operator_context
from tests.integration.conftest import PollCounter, SimulatorFactory, one_event, rebuilt, run_while

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

DAY = 24 * 3600


@pytest.fixture
def simulator(start_simulator: SimulatorFactory, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    """A simulator whose default connections allow many requests a second (the sensors poll fast)."""
    started = start_simulator(devices=3000)
    for conn_id, connection in started.connections().items():
        fast = {**connection, "extra": {**connection.get("extra", {}), "requests_per_second": 1000}}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fast))
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
    original_statuses = CiscoControlCenterHook.adevice_statuses

    async def adevice_statuses(hook: CiscoControlCenterHook, iccids: Any, changed_since: Any = None) -> Any:
        since.append(changed_since)
        return await original_statuses(hook, iccids, changed_since=changed_since)

    monkeypatch.setattr(CiscoControlCenterHook, "adevice_statuses", adevice_statuses)

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
    assert payload["xcom"] == {"matched": targets, "statuses": {str(i): "offline" for i in targets}}
    assert payload["unmatched"] == {}
    assert counter.polls > at_change
    assert simulator.state.fleet.device(bystander)["online_status"] == ONLINE
    if count > 10:  # many devices: the listing filtered on "offline" (the fleet's fit on one page)
        assert (calls["listing"], calls["device"]) == (counter.polls, 0)
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

    assert result == {"matched": online + offline, "statuses": {str(i): "offline" for i in online + offline}}
    unknown = ROMA_ID_BASE + simulator.config.devices + 1
    with pytest.raises(IoTFleetSensorError, match=rf"{unknown} \(not read yet\)"):
        HuaweiRomaDeviceStatusSensor(
            task_id="poke_roma_unknown", device_ids=[unknown], poke_interval=0, timeout=20
        ).execute(operator_context())


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

    assert result == {"matched": imeis, "firmware": dict.fromkeys(imeis, firmware)}


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
    trigger = type(deferred.value.trigger)(**{**kwargs, "deadline": time.time() + 0.3})

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
    }

    outsider = imei_of(simulator.config.devices + 5)  # a valid IMEI the account does not have
    with pytest.raises(IoTFleetSensorError, match=rf"not in the account, e\.g\. {outsider}"):
        VerizonThingSpaceFirmwareSensor(
            task_id="poke_firmware_outsider",
            imeis=[imeis[0], outsider],
            target_firmware=firmware,
            poke_interval=0,
            timeout=20,
        ).execute(operator_context())
