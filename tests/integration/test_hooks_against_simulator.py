"""Every hook method against the running simulator, asserting on the simulator's state afterwards."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.paloalto import PaloAltoIoTSecurityHook
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import (
    NEVER_CONNECTED,
    OFFLINE,
    ONLINE,
    ROMA_ID_BASE,
    iccid_of,
    imei_of,
)
from tests.simulator_harness import SimulatorFactory

pytestmark = pytest.mark.slow


def test_every_hook_passes_test_connection(simulator: Simulator) -> None:
    for hook_class in (
        PaloAltoIoTSecurityHook,
        CiscoControlCenterHook,
        HuaweiRomaConnectHook,
        VerizonThingSpaceHook,
    ):
        ok, message = hook_class().test_connection()
        assert ok, f"{hook_class.__name__}: {message}"


def test_paloalto_bulk_update_records_attributes(simulator: Simulator) -> None:
    devices = [
        {"imei": imei_of(10), "apn": "iot.fleet", "SessionEvtType": "Start"},
        {"iccid": iccid_of(11), "ipAddress": "10.64.0.11"},
        {"imei": "490154203237518"},  # valid, but not in the fleet: not counted
    ]
    with PaloAltoIoTSecurityHook() as hook:
        result = hook.bulk_update(devices)
    assert (result.requested, result.updated) == (3, 2)
    assert simulator.state.fleet.device(10)["paloalto"] == {
        "imei": imei_of(10),
        "apn": "iot.fleet",
        "SessionEvtType": "Start",
    }
    assert simulator.state.fleet.device(11)["paloalto"]["ipAddress"] == "10.64.0.11"


def test_paloalto_scm_mode(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch, set_connection: object
) -> None:
    creds = simulator.config.credentials
    set_connection(  # type: ignore[operator]
        "paloalto_scm",
        "paloalto_iot",
        host=f"{simulator.url}/paloalto",
        login=creds.paloalto_client_id,
        password=creds.paloalto_client_secret,
        extra={
            "auth_type": "scm",
            "tsg_id": creds.paloalto_tsg_id,
            "auth_url": f"{simulator.url}/paloalto/oauth2/access_token",
        },
    )
    with PaloAltoIoTSecurityHook("paloalto_scm") as hook:
        assert hook.bulk_update([{"imei": imei_of(5)}]).updated == 1
        assert hook.bulk_update([{"imei": imei_of(6)}]).updated == 1
    counters = simulator.state.snapshot()["counters"]
    assert counters["paloalto.tokens"] == 1
    assert counters["paloalto.bulk_updates"] == 2


def test_cisco_edit_now_and_read_back(simulator: Simulator) -> None:
    iccid = iccid_of(20)
    with CiscoControlCenterHook() as hook:
        result = hook.edit_device(iccid, {"ratePlan": "IOT-1GB", "accountCustom3": "rack 7"})
        device = hook.get_device(iccid)
    assert result.scheduled is False
    assert (device["ratePlan"], device["accountCustom3"]) == ("IOT-1GB", "rack 7")
    changed = simulator.state.snapshot()["changed"]["20"]
    assert changed["rate_plan"] == "IOT-1GB"
    assert changed["custom"] == {"accountCustom3": "rack 7"}


def test_cisco_scheduled_edit_applies_when_the_clock_reaches_it(simulator: Simulator) -> None:
    index = next(i for i in range(100) if simulator.state.fleet.device(i)["status"] == "ACTIVATED")
    iccid = iccid_of(index)
    when = simulator.state.now() + timedelta(days=3)
    with CiscoControlCenterHook() as hook:
        result = hook.edit_device(iccid, {"status": "DEACTIVATED"}, effective_date=when)
        assert result.scheduled is True
        assert hook.get_device(iccid)["status"] == "ACTIVATED"
        assert simulator.state.snapshot()["scheduled"][0]["iccid"] == iccid
        simulator.state.advance(3 * 24 * 3600 + 1)
        assert hook.get_device(iccid)["status"] == "DEACTIVATED"
    assert simulator.state.snapshot()["scheduled"] == []


def test_cisco_edit_devices_concurrently(simulator: Simulator, set_connection: object) -> None:
    # A larger contract than the default 5 calls per second, one at a time.
    cisco = simulator.connections()["cisco_control_center_default"]
    set_connection("cisco_big", **{**cisco, "extra": {"requests_per_second": 200, "max_concurrency": 4}})  # type: ignore[operator]
    edits = [{"iccid": iccid_of(i), "accountCustom1": f"batch-{i}"} for i in range(100, 140)]
    with CiscoControlCenterHook("cisco_big") as hook:
        outcomes = hook.edit_devices(edits)
    assert all(outcome.ok for outcome in outcomes)
    assert {simulator.state.fleet.device(i)["custom"]["accountCustom1"] for i in range(100, 140)} == {
        f"batch-{i}" for i in range(100, 140)
    }


def test_cisco_search_sees_the_change(simulator: Simulator) -> None:
    with CiscoControlCenterHook() as hook:
        hook.edit_device(iccid_of(7), {"accountCustom1": "x"})
        since = simulator.state.now() - timedelta(minutes=1)
        changed = list(hook.search_devices(since, page_size=2))
        statuses = hook.device_statuses([iccid_of(7), iccid_of(8)], changed_since=since)
    assert [d["iccid"] for d in changed] == [iccid_of(7)]
    assert statuses == {iccid_of(7): "ACTIVATED"}  # only what changed is reported


def test_huawei_force_offline_flips_online_devices_and_reports_the_rest(simulator: Simulator) -> None:
    """ROMA refuses devices that are not online; read back, one already offline is as asked
    (unchanged), one that never connected can never be forced (failed, never_connected)."""
    fleet = simulator.state.fleet
    online = [i for i in range(50) if fleet.device(i)["online_status"] == ONLINE][:3]
    offline = [i for i in range(50) if fleet.device(i)["online_status"] == OFFLINE][:2]
    never = [i for i in range(50) if fleet.device(i)["online_status"] == NEVER_CONNECTED][:1]
    with HuaweiRomaConnectHook() as hook:
        result = hook.force_offline([ROMA_ID_BASE + i for i in online + offline + never])
        assert hook.get_device(ROMA_ID_BASE + online[0])["online_status"] == OFFLINE
    assert sorted(d["id"] for d in result.succeeded) == [ROMA_ID_BASE + i for i in online]
    assert sorted(result.unchanged) == [ROMA_ID_BASE + i for i in offline]
    assert [(d["id"], d["error_code"]) for d in result.failed] == [
        (ROMA_ID_BASE + never[0], "never_connected")
    ]
    assert all(fleet.device(i)["online_status"] == OFFLINE for i in online + offline)
    assert fleet.device(never[0])["online_status"] == NEVER_CONNECTED


def test_huawei_list_devices_pages_through_the_instance(simulator: Simulator) -> None:
    with HuaweiRomaConnectHook() as hook:
        ids = [device["device_id"] for device in hook.iter_devices(page_size=500)]
        online = list(hook.iter_devices(online_status="online", page_size=999))
    assert ids == [ROMA_ID_BASE + i for i in range(3000)]
    assert len(online) == sum(
        1 for i in range(3000) if simulator.state.fleet.device(i)["online_status"] == ONLINE
    )
    assert simulator.state.snapshot()["counters"]["huawei.requests"] == 6 + 3  # 3000 in 500s; ~2100 in 999s


def test_huawei_iam_token_mode(simulator: Simulator, set_connection: object) -> None:
    creds = simulator.config.credentials
    set_connection(  # type: ignore[operator]
        "roma_iam",
        "huawei_roma",
        host=f"{simulator.url}/huawei",
        login=creds.huawei_iam_user,
        password=creds.huawei_iam_password,
        extra={
            "auth_type": "iam_token",
            "project_id": creds.huawei_project_id,
            "instance_id": creds.huawei_instance_id,
            "iam_endpoint": f"{simulator.url}/huawei",
            "domain_name": creds.huawei_domain,
        },
    )
    with HuaweiRomaConnectHook("roma_iam") as hook:
        hook.get_device(ROMA_ID_BASE + 1)
        hook.get_device(ROMA_ID_BASE + 2)
    assert simulator.state.snapshot()["counters"]["huawei.iam_tokens"] == 1


def test_verizon_lists_the_account_in_pages(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=2500, verizon_page_size=1000)
    with VerizonThingSpaceHook() as hook:
        pages = [len(page) for page in hook.iter_fota_device_pages()]
        subset = list(hook.iter_fota_devices([imei_of(3), imei_of(2000)]))
        lwm2m = sum(1 for _ in hook.iter_fota_devices(protocol="LWM2M"))
    assert pages == [1000, 1000, 500]
    assert [d["device_id"] for d in subset] == [imei_of(3), imei_of(2000)]
    assert lwm2m == sum(1 for i in range(2500) if simulator.state.fleet.device(i)["protocol"] == "LWM2M")
    assert simulator.state.snapshot()["counters"]["verizon.logins"] == 1


def test_verizon_sync_firmware_reports_each_device_and_updates_state(simulator: Simulator) -> None:
    fleet = simulator.state.fleet
    online = [i for i in range(300) if fleet.device(i)["online_status"] == ONLINE][:150]
    offline = [i for i in range(300) if fleet.device(i)["online_status"] != ONLINE][:5]
    with VerizonThingSpaceHook() as hook:
        result = hook.sync_firmware([imei_of(i) for i in online + offline])
    assert sorted(d["device_id"] for d in result.synced) == sorted(imei_of(i) for i in online)
    assert sorted(d["device_id"] for d in result.failed) == sorted(imei_of(i) for i in offline)
    assert {d["reason"] for d in result.failed} == {"Device did not respond"}
    assert simulator.state.snapshot()["counters"]["verizon.firmware_syncs"] == 2  # 155 IMEIs, 100 per call
    assert "firmware_synced_at" in fleet.device(online[0])
