"""Dry runs of the Huawei force-offline and the Palo Alto bulk update against the simulator: a plan
sends only reads (the simulator's request log), fails on bad input as the real run does, and the
apply right after it changes exactly the devices it said would change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator
from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import (
    NEVER_CONNECTED,
    OFFLINE,
    ONLINE,
    ROMA_ID_BASE,
    imei_of,
    ipv4_of,
)
from tests.fakes import operator_context
from tests.simulator_harness import SimulatorFactory, accounted_once, connections_with, run_task

pytestmark = pytest.mark.slow

SetConnection = Callable[..., None]


def _connect(simulator: Simulator, set_connection: SetConnection, **extra: Any) -> None:
    fast = {"requests_per_second": 1000, "requests_per_minute": 60_000, "max_concurrency": 8}
    for conn_id, conn in connections_with(simulator, **(fast | extra)).items():
        set_connection(conn_id, **conn)


def _writes(simulator: Simulator, vendor: str) -> list[dict[str, Any]]:
    return [record for record in simulator.state.request_log(vendor) if record["write"]]


# --- Huawei ROMA Connect -------------------------------------------------------------------------


@pytest.mark.parametrize("count", [8, 120], ids=["per-device-reads", "listings"])
def test_huawei_dry_run_reads_only_and_its_apply_forces_exactly_the_planned_devices(
    start_simulator: SimulatorFactory, set_connection: SetConnection, count: int
) -> None:
    simulator = start_simulator(devices=400)
    _connect(simulator, set_connection)
    fleet = simulator.state.fleet
    indices = list(range(count - 1))
    before = {i: fleet.device(i)["online_status"] for i in indices}
    unknown = ROMA_ID_BASE + simulator.config.devices + 5
    ids = [ROMA_ID_BASE + i for i in indices] + [unknown]

    def operator(dry_run: bool) -> HuaweiRomaForceOfflineOperator:
        return HuaweiRomaForceOfflineOperator(
            task_id="roma", device_ids=ids, batch_size=30, fail_on_error=False, dry_run=dry_run
        )

    planned, succeeded = run_task(operator(True))
    assert succeeded, planned
    assert _writes(simulator, "huawei") == []
    assert fleet.changed == {}
    status = accounted_once(planned, operation="force_offline", requested=ids)
    online = [ROMA_ID_BASE + i for i in indices if before[i] == ONLINE]
    assert planned["dry_run"] is True
    assert planned["devices"]["succeeded"] == online
    assert planned["devices"]["unchanged"] == [ROMA_ID_BASE + i for i in indices if before[i] == OFFLINE]
    assert planned["plan"] == {str(i): {"online_status": {"from": "online", "to": "offline"}} for i in online}
    never = [ROMA_ID_BASE + i for i in indices if before[i] == NEVER_CONNECTED]
    assert [(e["error_code"], e["attempted"], e["devices"]) for e in planned["errors"]] == [
        *([("never_connected", False, never)] if never else []),
        ("not_forced_offline", True, [unknown]),
    ]

    applied, _ = run_task(operator(False))
    assert applied["dry_run"] is False and "plan" not in applied
    # The apply agrees with its plan: the devices it says it forced are those the plan listed, each
    # device ends as planned, and only the planned devices changed.
    assert applied["devices"]["succeeded"] == planned["devices"]["succeeded"]
    assert applied["devices"]["unchanged"] == planned["devices"]["unchanged"]
    assert {d for e in applied["errors"] for d in e["devices"]} == {
        d for e in planned["errors"] for d in e["devices"]
    }
    assert set(fleet.changed) == {fleet.by_roma_id(device_id) for device_id in online}
    for device_id, planned_status in status.items():
        if planned_status == "succeeded":
            assert fleet.device(fleet.by_roma_id(device_id))["online_status"] == OFFLINE


def test_huawei_dry_run_fails_on_bad_ids_as_the_real_run_does_before_any_request(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=50)
    _connect(simulator, set_connection)
    messages = []
    for dry_run in (False, True):
        operator = HuaweiRomaForceOfflineOperator(
            task_id="roma", device_ids=[ROMA_ID_BASE, -1], dry_run=dry_run
        )
        with pytest.raises(IoTFleetValidationError) as caught:
            operator.execute(operator_context("roma"))
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert simulator.state.request_log("huawei") == []


# --- Palo Alto Networks IoT Security -------------------------------------------------------------


def test_paloalto_dry_run_reads_the_device_list_only_and_its_apply_changes_what_it_planned(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=1500)
    _connect(simulator, set_connection, device_reads_per_minute=60_000)
    fleet = simulator.state.fleet
    # Device 5 already shows what will be sent; device 6 shows another APN.
    fleet.update(5, {"paloalto": {"ipAddress": ipv4_of(5), "apn": "apn-5.iot"}})
    fleet.update(6, {"paloalto": {"ipAddress": ipv4_of(6), "apn": "old.iot"}})
    devices = [
        {"ipAddress": ipv4_of(5), "apn": "apn-5.iot"},  # listed, as it would be sent
        {"ipAddress": ipv4_of(6), "apn": "apn-6.iot"},  # listed, APN differs
        {"ipAddress": ipv4_of(1200), "apn": "apn-1200.iot"},  # listed (second page), no APN shown
        {"imei": imei_of(7), "SessionEvtType": "Start"},  # known, but the list shows no IMEI yet
        {"imei": imei_of(simulator.config.devices + 3)},  # unknown to IoT Security
    ]
    ids = [ipv4_of(5), ipv4_of(6), ipv4_of(1200), imei_of(7), imei_of(simulator.config.devices + 3)]
    before = {index: dict(fleet.device(index)["paloalto"]) for index in (5, 6, 7, 1200)}

    def operator(dry_run: bool) -> PaloAltoIoTBulkUpdateOperator:
        return PaloAltoIoTBulkUpdateOperator(task_id="pan", devices=devices, batch_size=2, dry_run=dry_run)

    planned, succeeded = run_task(operator(True))
    assert succeeded, planned
    log = simulator.state.request_log("paloalto")
    assert [(r["method"], r["write"]) for r in log] == [("GET", False)] * 2  # two pages, no write
    assert {index: dict(fleet.device(index)["paloalto"]) for index in before} == before
    accounted_once(planned, operation="bulk_update", requested=ids)
    assert planned["devices"]["unchanged"] == [ipv4_of(5)]
    assert planned["devices"]["succeeded"] == ids[1:]
    assert planned["devices"]["accepted"] == []
    assert planned["plan_source"] == {"device_list": ids[:3], "not_listed": ids[3:]}
    assert planned["plan"][ipv4_of(6)] == {"apn": {"from": "old.iot", "to": "apn-6.iot"}}
    assert planned["plan"][ipv4_of(1200)] == {"apn": {"from": None, "to": "apn-1200.iot"}}
    assert planned["plan"][imei_of(7)] == {
        "imei": {"from": None, "to": imei_of(7)},
        "SessionEvtType": {"from": None, "to": "Start"},
    }
    assert planned["batches"] == 3

    applied, succeeded = run_task(operator(False))
    assert succeeded, applied
    # The apply agrees with its plan: every planned field now reads as planned, and the device
    # planned unchanged is as it was.
    for key, changes in planned["plan"].items():
        index = fleet.by_ipv4(key) if "." in key else fleet.by_imei(key)
        if index is None:
            assert key in planned["plan_source"]["not_listed"]  # IoT Security ignores it
            continue
        shown = fleet.device(index)["paloalto"]
        assert {field: shown.get(field) for field in changes} == {f: c["to"] for f, c in changes.items()}
    assert fleet.device(5)["paloalto"] == before[5]
    assert applied["batches"] == planned["batches"]
    assert applied["updated"] == 4  # the four devices IoT Security knows, the unchanged one included

    # Planned again, the device list now shows what was sent: nothing would change but the unknown one.
    replanned, _ = run_task(operator(True))
    assert replanned["devices"]["unchanged"] == ids[:4]
    assert replanned["plan_source"]["not_listed"] == ids[4:]


def test_paloalto_dry_run_fails_on_bad_input_as_the_real_run_does_before_any_request(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=50)
    _connect(simulator, set_connection)
    messages = []
    for dry_run in (False, True):
        operator = PaloAltoIoTBulkUpdateOperator(
            task_id="pan", devices=[{"imei": "12345"}, {"apn": "x"}], dry_run=dry_run
        )
        with pytest.raises(IoTFleetValidationError) as caught:
            operator.execute(operator_context("pan"))
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert simulator.state.request_log("paloalto") == []
