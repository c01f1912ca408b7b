"""Every fleet operator run through ``execute`` against the simulator, device by device.

Each test runs an operator the way a task does (``operator.execute(context)``), then checks that the
outcome (the documented shape of airflow_provider_iotfleet/outcome.py, every device in exactly one
place) and the simulator's state tell the same story for every device: what the outcome says was
done was done exactly once, and what it says failed left the device as it was. The last test loses
an answer after the vendor applied the request, through a proxy. The same under the simulator's
fault knobs, at 5,000 devices per operator, is ``test_fault_tolerance.py``; a task's second try
after a first one that failed part-way is ``test_task_retries.py``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from airflow_provider_iotfleet.exceptions import IoTFleetError
from airflow_provider_iotfleet.operators.base import OUTCOME_KEY, IoTFleetOperationFailedError
from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator
from airflow_provider_iotfleet.operators.verizon import (
    VerizonThingSpaceFotaDevicesOperator,
    VerizonThingSpaceSyncFirmwareOperator,
)
from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import (
    NEVER_CONNECTED,
    OFFLINE,
    ONLINE,
    RATE_PLANS,
    ROMA_ID_BASE,
    iccid_of,
    imei_of,
    ipv4_of,
)
from tests.fakes import ICCID, IMEI, luhn_complete, operator_context
from tests.simulator_harness import SimulatorFactory, accounted_once, connections_with, error_of, run_task

pytestmark = pytest.mark.slow

SetConnection = Callable[..., None]


def _connect(simulator: Simulator, set_connection: SetConnection, **extra: Any) -> None:
    """Re-export the four default connections with generous client-side limits, plus ``extra``.

    The simulator's own rate limit is off; the connections' default limits (5 calls per second, one
    at a time for Control Center) would only make the tests slow.
    """
    fast = {"requests_per_second": 1000, "requests_per_minute": 60_000, "max_concurrency": 8}
    for conn_id, conn in connections_with(simulator, **(fast | extra)).items():
        set_connection(conn_id, **conn)


def _execute(operator: Any) -> dict[str, Any]:
    """Run ``operator`` as a task would; it must succeed, returning its outcome (pushed nowhere else)."""
    outcome, succeeded = run_task(operator)
    assert succeeded, outcome
    return outcome


def _counters(simulator: Simulator) -> dict[str, int]:
    return dict(simulator.state.snapshot()["counters"])


def _unknown_imeis(simulator: Simulator, count: int) -> list[str]:
    """Luhn-valid IMEIs with the fleet's TAC, past the end of the fleet."""
    return [imei_of(simulator.config.devices + k) for k in range(count)]


def _unknown_iccids(simulator: Simulator, count: int) -> list[str]:
    """Luhn-valid ICCIDs the fleet does not have: past its end, and one of another issuer."""
    past_the_end = [iccid_of(simulator.config.devices + k) for k in range(count - 1)]
    return [*past_the_end, ICCID]


# --- Palo Alto Networks IoT Security -------------------------------------------------------------


def _paloalto_entry(i: int) -> dict[str, str]:
    """A bulk update entry for device ``i``, identified in one of the documented ways."""
    if i % 3 == 0:
        return {"imei": imei_of(i), "apn": f"apn-{i}.iot", "SessionEvtType": "Start"}
    if i % 3 == 1:
        return {"iccid": iccid_of(i), "msisdn": f"1555{i:07d}", "SessionEvtType": "Stop"}
    return {"ipAddress": ipv4_of(i), "apn": f"apn-{i}.iot"}


def _paloalto_id(entry: dict[str, str]) -> str:
    """The id IoT Security's outcome lists an entry under: its first identifier, in the documented order."""
    return next(
        entry[key] for key in ("ipAddress", "ipv6Address", "imei", "iccid", "imsi", "msisdn") if key in entry
    )


def _assert_paloalto_state(
    simulator: Simulator, known: dict[int, dict[str, str]], outcome: dict[str, Any], batch_size: int
) -> None:
    fleet = simulator.state.fleet
    assert outcome["errors"] == []
    assert outcome["batches"] == math.ceil(outcome["requested"] / batch_size)
    assert outcome["updated"] == len(known)
    for index, entry in known.items():
        assert fleet.device(index)["paloalto"] == entry, f"device {index}"
    # Nothing else was touched: not the devices left out, nor any for the unknown identifiers.
    assert set(fleet.changed) == set(known)
    assert _counters(simulator)["paloalto.bulk_updates"] == outcome["batches"]


def test_paloalto_bulk_update_records_each_device(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=500)
    _connect(simulator, set_connection)
    known = {i: _paloalto_entry(i) for i in range(0, 90, 2)}
    unknown = [{"imei": imei} for imei in _unknown_imeis(simulator, 3)] + [{"imei": IMEI}]
    devices = [*known.values(), *unknown, known[0], dict(known[2])]  # the last two are repeats
    outcome = _execute(
        PaloAltoIoTBulkUpdateOperator(task_id="pan", devices=devices, batch_size=16, fail_on_error=False)
    )
    requested = [_paloalto_id(entry) for entry in [*known.values(), *unknown]]
    status = accounted_once(outcome, operation="bulk_update", requested=requested)
    # IoT Security says how many devices a request updated, not which: every device of an accepted
    # request is accepted (the unknown ones too), in input order and once; the count says the rest.
    assert outcome["devices"]["accepted"] == requested
    assert set(status.values()) == {"accepted"}
    _assert_paloalto_state(simulator, known, outcome, batch_size=16)


# --- Cisco IoT Control Center --------------------------------------------------------------------


def _cisco_operator(**kwargs: Any) -> CiscoControlCenterEditDevicesOperator:
    return CiscoControlCenterEditDevicesOperator(task_id=kwargs.pop("task_id", "cisco"), **kwargs)


def _other_plan(plan: str) -> str:
    return RATE_PLANS[(RATE_PLANS.index(plan) + 1) % len(RATE_PLANS)]


def _groups(outcome: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Each error group as ``(status, http_status, error_code, retryable, attempted, devices)``."""
    return [
        (e["status"], e["http_status"], e["error_code"], e["retryable"], e["attempted"], e["devices"])
        for e in outcome["errors"]
    ]


def test_cisco_edits_apply_to_updated_devices_only(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=500)
    _connect(simulator, set_connection)
    fleet = simulator.state.fleet
    before = {i: fleet.device(i) for i in range(60)}
    active = [i for i in range(60) if before[i]["status"] == "ACTIVATED"]
    # Moving an active SIM back to a pre-activation status is refused as a whole: the rate plan of
    # these devices must stay as it was.
    refused = active[:4]
    accepted = [i for i in range(60) if i not in refused]
    unknown = _unknown_iccids(simulator, 3)
    edits = [
        {"iccid": iccid_of(i), "ratePlan": _other_plan(before[i]["rate_plan"]), "accountCustom1": f"e{i}"}
        for i in accepted
    ]
    edits += [{"iccid": iccid_of(i), "ratePlan": "IOT-10GB", "status": "TEST_READY"} for i in refused]
    edits += [{"iccid": iccid, "ratePlan": "IOT-10GB"} for iccid in unknown]
    edits.append(dict(edits[0]))  # a repeat is sent once
    outcome = _execute(_cisco_operator(edits=edits, fail_on_error=False))

    accounted_once(outcome, operation="edit_devices", requested=[edit["iccid"] for edit in edits])
    assert outcome["devices"]["succeeded"] == [iccid_of(i) for i in accepted]  # input order
    assert outcome["devices"]["scheduled"] == outcome["devices"]["unchanged"] == []
    # One group per distinct error, each device once under it: neither error is worth a retry.
    assert _groups(outcome) == [
        ("failed", 400, "10000029", False, True, [iccid_of(i) for i in refused]),
        ("failed", 404, "20000001", False, True, unknown),
    ]
    assert outcome["effective_date"] is None
    assert all(fleet.by_iccid(iccid) is None for iccid in unknown)

    for i in accepted:
        device = fleet.device(i)
        assert device["rate_plan"] == _other_plan(before[i]["rate_plan"]), f"device {i}"
        assert device["custom"] == {"accountCustom1": f"e{i}"}
    for i in refused:
        assert fleet.device(i)["rate_plan"] == before[i]["rate_plan"], f"device {i}"
        assert fleet.device(i)["status"] == "ACTIVATED"
    assert set(fleet.changed) == set(accepted)
    assert _counters(simulator)["cisco.edits"] == len(accepted)


def test_cisco_edit_with_effective_date_is_scheduled_until_the_clock_reaches_it(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=200)
    _connect(simulator, set_connection)
    fleet = simulator.state.fleet
    indices = list(range(10, 22))
    before = {i: fleet.device(i)["rate_plan"] for i in indices}
    when = datetime.now().astimezone() + timedelta(days=2)
    edits = [{"iccid": iccid_of(i), "ratePlan": _other_plan(before[i])} for i in indices]
    outcome = _execute(_cisco_operator(edits=edits, effective_date=when))

    status = accounted_once(outcome, operation="edit_devices", requested=[iccid_of(i) for i in indices])
    assert outcome["devices"]["scheduled"] == [iccid_of(i) for i in indices]
    assert set(status.values()) == {"scheduled"}
    assert abs(datetime.fromisoformat(outcome["effective_date"]) - when) < timedelta(seconds=1)
    pending = simulator.state.snapshot()["scheduled"]
    assert sorted(p["iccid"] for p in pending) == sorted(iccid_of(i) for i in indices)
    for entry in pending:
        i = fleet.by_iccid(entry["iccid"])
        assert entry["changes"] == {"rate_plan": _other_plan(before[i])}
        assert abs(datetime.fromisoformat(entry["due"]) - when) < timedelta(seconds=1)
    assert all(fleet.device(i)["rate_plan"] == before[i] for i in indices)

    simulator.state.advance(24 * 3600)  # one day: not due yet
    assert all(fleet.device(i)["rate_plan"] == before[i] for i in indices)
    assert len(simulator.state.snapshot()["scheduled"]) == len(indices)

    simulator.state.advance(24 * 3600 + 60)  # past the effective date
    assert all(fleet.device(i)["rate_plan"] == _other_plan(before[i]) for i in indices)
    assert simulator.state.snapshot()["scheduled"] == []


def test_cisco_activating_already_activated_sims_leaves_them_unchanged(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=500)
    _connect(simulator, set_connection)
    fleet = simulator.state.fleet
    statuses = {i: fleet.device(i)["status"] for i in range(500)}
    active = [i for i in range(500) if statuses[i] == "ACTIVATED"][:8]
    inactive = [i for i in range(500) if statuses[i] == "DEACTIVATED"][:3]
    assert len(inactive) == 3, "the fleet should have deactivated SIMs"
    indices = sorted(active + inactive)
    outcome = _execute(
        _cisco_operator(iccids=[iccid_of(i) for i in indices], changes={"status": "ACTIVATED"})
    )

    status = accounted_once(outcome, operation="edit_devices", requested=[iccid_of(i) for i in indices])
    assert outcome["devices"]["unchanged"] == [iccid_of(i) for i in indices if i in active]
    assert outcome["devices"]["succeeded"] == [iccid_of(i) for i in indices if i in inactive]
    assert set(status.values()) == {"unchanged", "succeeded"}
    assert all(fleet.device(i)["status"] == "ACTIVATED" for i in indices)
    assert set(fleet.changed) == set(inactive)  # the active ones were not written to
    assert _counters(simulator)["cisco.edits"] == len(inactive)


def test_cisco_rerun_with_skip_unchanged_sends_no_put(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=200)
    _connect(simulator, set_connection)
    fleet = simulator.state.fleet
    indices = list(range(30, 50))
    edits = [{"iccid": iccid_of(i), "ratePlan": "IOT-1GB", "accountCustom4": f"window-{i}"} for i in indices]
    first = _execute(_cisco_operator(edits=edits))
    assert first["devices"]["succeeded"] == [iccid_of(i) for i in indices]
    after_first = {i: fleet.device(i) for i in indices}
    counters = _counters(simulator)

    rerun = _execute(_cisco_operator(edits=edits, skip_unchanged=True))
    status = accounted_once(rerun, operation="edit_devices", requested=[iccid_of(i) for i in indices])
    assert rerun["devices"]["unchanged"] == [iccid_of(i) for i in indices]
    assert set(status.values()) == {"unchanged"}
    now = _counters(simulator)
    assert now["cisco.edits"] == counters["cisco.edits"]  # no PUT reached the devices
    assert now["cisco.requests"] == counters["cisco.requests"] + len(indices)  # one GET each, only
    assert all(fleet.device(i) == after_first[i] for i in indices)  # not even date_updated moved

    # Half the devices drifted since: the rerun sends only those, and only the drifted field.
    for i in indices[::2]:
        fleet.update(i, {"custom": {"accountCustom4": "drifted"}})
    third = _execute(_cisco_operator(edits=edits, skip_unchanged=True))
    accounted_once(third, operation="edit_devices", requested=[iccid_of(i) for i in indices])
    assert third["devices"]["succeeded"] == [iccid_of(i) for i in indices[::2]]
    assert third["devices"]["unchanged"] == [iccid_of(i) for i in indices[1::2]]
    assert _counters(simulator)["cisco.edits"] == counters["cisco.edits"] + len(indices[::2])
    assert all(fleet.device(i)["custom"] == {"accountCustom4": f"window-{i}"} for i in indices)


def test_cisco_fail_on_error_pushes_the_outcome_before_raising(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=300)
    _connect(simulator, set_connection)
    fleet = simulator.state.fleet
    known = list(range(5))
    # Luhn-valid, in the fleet's format, and not in the fleet (plus one of another issuer).
    unknown = [*_unknown_iccids(simulator, 2), luhn_complete("8901260001234567890")]
    iccids = [iccid_of(i) for i in known[:3]] + unknown + [iccid_of(i) for i in known[3:]]
    operator = _cisco_operator(iccids=iccids, changes={"accountCustom9": "tagged"})
    context = operator_context("cisco")
    with pytest.raises(IoTFleetOperationFailedError, match="20000001") as caught:
        operator.execute(context)

    pushed = context["ti"].xcom  # type: ignore[attr-defined]
    assert list(pushed) == [OUTCOME_KEY]  # pushed before raising; no return value
    assert pushed[OUTCOME_KEY] == caught.value.outcome
    outcome = caught.value.outcome
    accounted_once(outcome, operation="edit_devices", requested=iccids)
    assert outcome["devices"]["succeeded"] == [iccid_of(i) for i in known]  # every device was tried
    assert _groups(outcome) == [("failed", 404, "20000001", False, True, unknown)]
    assert outcome["counts"] == {
        "succeeded": len(known),
        "unchanged": 0,
        "scheduled": 0,
        "accepted": 0,
        "failed": 3,
        "unknown": 0,
    }
    # The task's error says how many failed, and how, in one line per error rather than per device.
    assert str(caught.value).startswith("3 of 8 devices not done: 3 failed with 20000001 (HTTP 404)")
    assert all(fleet.device(i)["custom"] == {"accountCustom9": "tagged"} for i in known)
    assert set(fleet.changed) == set(known)


# --- Huawei ROMA Connect -------------------------------------------------------------------------


def test_huawei_force_offline_matches_each_device_state(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=400)
    _connect(simulator, set_connection)
    fleet = simulator.state.fleet
    indices = list(range(100))
    before = {i: fleet.device(i)["online_status"] for i in indices}
    assert {ONLINE, OFFLINE, NEVER_CONNECTED} <= set(before.values())
    unknown = [ROMA_ID_BASE + simulator.config.devices + k for k in range(3)]
    ids = [ROMA_ID_BASE + i for i in indices] + unknown + [ROMA_ID_BASE + 1]  # one repeat
    outcome = _execute(
        HuaweiRomaForceOfflineOperator(task_id="roma", device_ids=ids, batch_size=30, fail_on_error=False)
    )

    accounted_once(outcome, operation="force_offline", requested=ids)
    online = [ROMA_ID_BASE + i for i in indices if before[i] == ONLINE]
    offline = [ROMA_ID_BASE + i for i in indices if before[i] == OFFLINE]
    never = [ROMA_ID_BASE + i for i in indices if before[i] == NEVER_CONNECTED]
    assert outcome["devices"]["succeeded"] == online
    # Already offline is already as asked, whichever way the refused devices were read back (one by
    # one in a batch with few, the filtered listing in one with many, next to unknown ids in the last).
    assert outcome["devices"]["unchanged"] == offline
    assert [(e["error_code"], e["attempted"], e["devices"]) for e in outcome["errors"]] == [
        ("never_connected", True, never),
        ("not_forced_offline", True, unknown),
    ]
    assert all(not e["retryable"] and e["status"] == "failed" for e in outcome["errors"])
    for device_id in online:
        assert fleet.device(fleet.by_roma_id(device_id))["online_status"] == OFFLINE
    for i in indices:
        if before[i] != ONLINE:
            assert fleet.device(i)["online_status"] == before[i]
    assert set(fleet.changed) == {i for i in indices if before[i] == ONLINE}
    assert _counters(simulator)["huawei.force_offline"] == math.ceil(len(set(ids)) / 30)

    # A rerun (another DAG run) finds them all offline already: unchanged, not failed; it fails on
    # the devices that can never be forced, after pushing the outcome.
    outcome, succeeded = run_task(
        HuaweiRomaForceOfflineOperator(task_id="roma", device_ids=ids, batch_size=30)
    )
    assert not succeeded
    accounted_once(outcome, operation="force_offline", requested=ids)
    assert outcome["devices"]["succeeded"] == []
    assert outcome["devices"]["unchanged"] == [d for d in dict.fromkeys(ids) if d in set(online + offline)]
    assert [(e["error_code"], e["devices"]) for e in outcome["errors"]] == [
        ("never_connected", never),
        ("not_forced_offline", unknown),
    ]
    assert set(fleet.changed) == {i for i in indices if before[i] == ONLINE}  # nothing more changed


def _one_of_each(simulator: Simulator) -> tuple[int, int, int]:
    """The ROMA ids of the first offline, never-connected and online devices of the fleet."""
    fleet = simulator.state.fleet
    first = {}
    for i in range(fleet.size):
        first.setdefault(fleet.device(i)["online_status"], ROMA_ID_BASE + i)
    return first[OFFLINE], first[NEVER_CONNECTED], first[ONLINE]


@pytest.mark.parametrize(
    "company",
    [
        pytest.param("online", id="with-an-online-device"),
        # An id ROMA does not know, refused in the same request: reading it back fails with a 404,
        # which must not cost the other devices their read-back.
        pytest.param("unknown", id="with-an-unknown-id"),
        # More refused devices than are read one by one: the read-back pages the filtered listing.
        pytest.param("many offline", id="with-eleven-more-offline"),
    ],
)
def test_huawei_an_offline_device_is_unchanged_and_a_never_connected_one_fails_as_such(
    start_simulator: SimulatorFactory, set_connection: SetConnection, company: str
) -> None:
    """In a first try, ROMA refuses both; the read-back tells them apart: the offline one is as
    asked (``unchanged``), the never-connected one can never be forced (``never_connected``).
    Neither is ever ``not_forced_offline``, whatever else the request carried."""
    simulator = start_simulator(devices=400)
    _connect(simulator, set_connection)
    fleet = simulator.state.fleet
    offline, never, online = _one_of_each(simulator)
    others = {
        "online": [online],
        "unknown": [online, ROMA_ID_BASE + simulator.config.devices + 1],
        "many offline": [
            ROMA_ID_BASE + i for i in range(fleet.size) if fleet.device(i)["online_status"] == OFFLINE
        ][1:12],
    }[company]
    ids = [offline, never, *others]
    outcome = _execute(HuaweiRomaForceOfflineOperator(task_id="roma", device_ids=ids, fail_on_error=False))

    status = accounted_once(outcome, operation="force_offline", requested=ids)
    assert status[offline] == "unchanged"
    failed = error_of(outcome)
    assert offline not in failed
    assert (failed[never]["error_code"], failed[never]["retryable"]) == ("never_connected", False)
    assert failed[never]["message"] == "never connected: only online MQTT devices can be forced offline"
    if company == "many offline":
        assert all(status[device] == "unchanged" for device in others)
    else:
        assert status[online] == "succeeded"
    if company == "unknown":
        assert failed[others[1]]["error_code"] == "not_forced_offline"
    assert _counters(simulator)["huawei.force_offline"] == 1  # one request; nothing sent twice
    assert fleet.device(never - ROMA_ID_BASE)["online_status"] == NEVER_CONNECTED
    assert fleet.device(offline - ROMA_ID_BASE)["online_status"] == OFFLINE


# --- Verizon ThingSpace ---------------------------------------------------------------------------


def test_verizon_sync_firmware_reports_what_each_device_now_has(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=400)
    _connect(simulator, set_connection)
    fleet = simulator.state.fleet
    indices = list(range(150))
    online = {i for i in indices if fleet.device(i)["online_status"] == ONLINE}
    # Some devices now report a newer firmware than ThingSpace has on record: syncing brings it in.
    upgraded = sorted(online)[::5]
    for i in upgraded:
        fleet.update(i, {"reported_firmware": "SR2.0.0.0-20001"})
    unknown = _unknown_imeis(simulator, 2)
    imeis = [imei_of(i) for i in indices] + unknown + [imei_of(3)]
    outcome = _execute(
        VerizonThingSpaceSyncFirmwareOperator(task_id="sync", imeis=imeis, batch_size=40, fail_on_error=False)
    )

    accounted_once(outcome, operation="sync_firmware", requested=imeis)
    assert outcome["account_name"] == simulator.config.credentials.verizon_account
    synced = [imei_of(i) for i in indices if i in online]
    assert outcome["devices"]["succeeded"] == synced
    # What each synced device now reports, as ThingSpace has it on record after the sync.
    assert outcome["firmware"] == {imei: fleet.device(fleet.by_imei(imei))["firmware"] for imei in synced}
    for imei in synced:
        device = fleet.device(fleet.by_imei(imei))
        assert device["firmware"] == device["reported_firmware"]
        assert "firmware_synced_at" in device
    assert all(outcome["firmware"][imei_of(i)] == "SR2.0.0.0-20001" for i in upgraded)
    assert all(fleet.device(i)["firmware"] == "SR2.0.0.0-20001" for i in upgraded)
    # ThingSpace's per-device status is the error code, its reason the message: one group each.
    assert [(e["status"], e["error_code"], e["message"], e["devices"]) for e in outcome["errors"]] == [
        (
            "failed",
            "FirmwareVersionUpdateFailed",
            "Device did not respond",
            [imei_of(i) for i in indices if i not in online],
        ),
        ("failed", "FirmwareVersionUpdateFailed", "Device not found in account", unknown),
    ]
    assert all(not e["retryable"] and e["attempted"] for e in outcome["errors"])
    assert all("firmware_synced_at" not in fleet.device(i) for i in indices if i not in online)
    assert _counters(simulator)["verizon.firmware_syncs"] == math.ceil(len(set(imeis)) / 40)


def _assert_listing_matches_fleet(
    simulator: Simulator, devices: list[dict[str, Any]], indices: list[int]
) -> None:
    fleet = simulator.state.fleet
    ids = [device["device_id"] for device in devices]
    assert ids == [imei_of(i) for i in indices]  # in order, each once
    for device, index in zip(devices, indices, strict=True):
        state = fleet.device(index)
        expected = {
            "mdn": state["mdn"],
            "make": state["make"],
            "model": state["model"],
            "firmware": state["firmware"],
            "protocol": state["protocol"],
            "fota_eligible": state["protocol"] != "HTTP",
            "status": "Active" if state["status"] == "ACTIVATED" else "Suspended",
        }
        assert {key: device[key] for key in expected} == expected, f"device {index}"
        assert (device["last_connection_time"] is None) == (state["online_status"] == NEVER_CONNECTED)


def test_verizon_fota_devices_lists_the_fleet_in_order(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=1234, verizon_page_size=100)
    _connect(simulator, set_connection)
    outcome = _execute(VerizonThingSpaceFotaDevicesOperator(task_id="fota"))
    assert (outcome["device_count"], outcome["pages"]) == (1234, 13)
    assert outcome["account_name"] == simulator.config.credentials.verizon_account
    _assert_listing_matches_fleet(simulator, outcome["devices"], list(range(1234)))

    lwm2m = _execute(VerizonThingSpaceFotaDevicesOperator(task_id="fota", protocol="LWM2M"))
    indices = [i for i in range(1234) if simulator.state.fleet.device(i)["protocol"] == "LWM2M"]
    assert lwm2m["device_count"] == len(indices)
    _assert_listing_matches_fleet(simulator, lwm2m["devices"], indices)

    with pytest.raises(IoTFleetError, match="output_path"):
        _execute(VerizonThingSpaceFotaDevicesOperator(task_id="fota", max_xcom_devices=1000))


def test_verizon_fota_devices_lists_a_requested_subset(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=1000, verizon_page_size=50)
    _connect(simulator, set_connection)
    subset = list(range(3, 1000, 7))
    unknown = _unknown_imeis(simulator, 2)
    imeis = [imei_of(i) for i in subset] + unknown + [imei_of(3)]
    outcome = _execute(VerizonThingSpaceFotaDevicesOperator(task_id="fota", imeis=imeis))
    assert outcome["requested"] == len(subset) + len(unknown)
    assert outcome["missing"] == unknown
    assert outcome["device_count"] == len(subset)
    _assert_listing_matches_fleet(simulator, outcome["devices"], subset)


# --- An answer lost after the vendor applied the request --------------------------------------------
#
# The simulator's dropped connections happen before the request reaches the vendor router, so the
# fault runs above never meet an applied request whose answer was lost. A proxy in front of the
# simulator makes that case: it forwards the request, lets the simulator apply it, and then closes the
# connection without an answer.


@contextmanager
def _proxy_losing_first_answer(upstream: str, method: str, path_suffix: str) -> Iterator[dict[str, Any]]:
    """Serve a forwarding proxy to ``upstream``; the first ``method`` request to a path ending with
    ``path_suffix`` is forwarded (and so applied) but answered by closing the connection."""
    state: dict[str, Any] = {"url": "", "lost": 0}
    lock = threading.Lock()
    upstream_session = requests.Session()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            # The Host header is kept: signatures (ROMA's AK/SK) cover the URL the client called.
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("connection", "accept-encoding")
            }
            answer = upstream_session.request(
                self.command,
                upstream + self.path,
                data=body,
                headers=headers,
                timeout=30,
                allow_redirects=False,
            )
            with lock:
                lose = (
                    self.command == method
                    and self.path.split("?")[0].endswith(path_suffix)
                    and not state["lost"]
                )
                state["lost"] += lose
            if lose:
                self.close_connection = True  # applied upstream; the client gets no answer
                return
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in (
                    "content-length",
                    "content-encoding",
                    "transfer-encoding",
                    "connection",
                ):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PUT = forward

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="losing-proxy", daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        upstream_session.close()


def test_huawei_force_offline_whose_answer_was_lost_after_it_was_applied(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=200)
    fleet = simulator.state.fleet
    online = [i for i in range(60) if fleet.device(i)["online_status"] == ONLINE][:10]
    ids = [ROMA_ID_BASE + i for i in online]
    with _proxy_losing_first_answer(simulator.url, "POST", "/devices/force-offline") as proxy:
        conn = simulator.connections()["huawei_roma_default"]
        extra = {**conn["extra"], "max_retries": 3, "requests_per_second": 1000}
        set_connection("huawei_roma_default", **{**conn, "host": f"{proxy['url']}/huawei", "extra": extra})
        outcome = _execute(
            HuaweiRomaForceOfflineOperator(task_id="roma", device_ids=ids, fail_on_error=False)
        )
    assert proxy["lost"] == 1
    # Applied, answer lost, read back: not sent again.
    assert _counters(simulator)["huawei.force_offline"] == 1
    assert all(fleet.device(i)["online_status"] == OFFLINE for i in online)  # this run did that
    status = accounted_once(outcome, operation="force_offline", requested=ids)
    assert outcome["devices"]["succeeded"] == ids  # and says so
    assert set(status.values()) == {"succeeded"}
