"""Dry runs of the Huawei force-offline and the Palo Alto bulk update against the simulator: a plan
sends only reads (the simulator's request log), fails on bad input as the real run does, and the
apply right after it changes exactly the devices it said would change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import NEVER_CONNECTED, OFFLINE, ONLINE, ROMA_ID_BASE
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


def _plan_then_apply(operator: Callable[[bool], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    planned, succeeded = run_task(operator(True))
    assert succeeded, planned
    applied, _ = run_task(operator(False))
    return planned, applied


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
