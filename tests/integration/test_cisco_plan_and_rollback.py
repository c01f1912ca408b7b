"""Plan, apply and roll back a Cisco edit against the simulator over real sockets: a dry run sends
no PUT, the apply right after it changes exactly what it planned, and the rollback built from the
apply's ``before`` restores every changed device and writes no other."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.rollback import rollback_edits
from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import RATE_PLANS, iccid_of
from tests.simulator_harness import SimulatorFactory, accounted_once, connections_with, run_task

pytestmark = pytest.mark.slow

SetConnection = Callable[..., None]
#: The Control Center fields these tests edit and the simulator's name for each.
FIELDS = {"status": "status", "ratePlan": "rate_plan"}


@pytest.fixture
def simulator(start_simulator: SimulatorFactory, set_connection: SetConnection) -> Simulator:
    started = start_simulator(devices=300)
    fast = {"requests_per_second": 1000, "requests_per_minute": 60_000, "max_concurrency": 8}
    for conn_id, conn in connections_with(started, **fast).items():
        set_connection(conn_id, **conn)
    return started


def _run(**kwargs: Any) -> dict[str, Any]:
    """Run an edit as a task would; it must succeed, returning its outcome."""
    outcome, succeeded = run_task(CiscoControlCenterEditDevicesOperator(task_id="cisco", **kwargs))
    assert succeeded, outcome
    return outcome


def _state(simulator: Simulator, indices: list[int]) -> dict[str, dict[str, Any]]:
    """Each device's edited fields as the simulator has them, by ICCID."""
    fleet = simulator.state.fleet
    return {iccid_of(i): {field: fleet.device(i)[key] for field, key in FIELDS.items()} for i in indices}


def _writes(simulator: Simulator, since: int) -> list[str]:
    """The ICCIDs of the state-changing Cisco requests logged after the first ``since`` requests."""
    log = simulator.state.request_log("cisco")[since:]
    return [device for request in log if request["write"] for device in request["devices"]]


def _edits(simulator: Simulator, indices: list[int]) -> list[dict[str, str]]:
    """Edits that move every third device to another rate plan and deactivate the others that are
    active, and leave devices already as asked (every third one: its own values) alone."""
    fleet = simulator.state.fleet
    edits = []
    for n, i in enumerate(indices):
        device = fleet.device(i)
        if n % 3 == 0:
            edits.append({"iccid": iccid_of(i), "status": device["status"], "ratePlan": device["rate_plan"]})
        elif n % 3 == 1:
            plan = RATE_PLANS[(RATE_PLANS.index(device["rate_plan"]) + 1) % len(RATE_PLANS)]
            edits.append({"iccid": iccid_of(i), "ratePlan": plan})
        else:
            edits.append({"iccid": iccid_of(i), "status": "DEACTIVATED", "ratePlan": device["rate_plan"]})
    return edits


def test_a_plan_then_its_apply_then_a_rollback(simulator: Simulator) -> None:
    indices = list(range(40, 70))
    iccids = [iccid_of(i) for i in indices]
    edits = _edits(simulator, indices)
    initial = _state(simulator, indices)

    # The plan: one GET per device, no write, the current values as "from".
    logged = len(simulator.state.request_log("cisco"))
    plan = _run(edits=edits, dry_run=True)
    log = simulator.state.request_log("cisco")[logged:]
    assert [request["method"] for request in log] == ["GET"] * len(indices)
    assert sorted(device for request in log for device in request["devices"]) == sorted(iccids)
    assert _state(simulator, indices) == initial
    status = accounted_once(plan, operation="edit_devices", requested=iccids)
    assert plan["dry_run"] is True
    would_change = plan["devices"]["succeeded"]
    assert (
        would_change and plan["devices"]["unchanged"] and set(status.values()) == {"succeeded", "unchanged"}
    )
    assert list(plan["plan"]) == would_change
    for iccid, changes in plan["plan"].items():
        assert {field: change["from"] for field, change in changes.items()} == {
            field: initial[iccid][field] for field in changes
        }

    # The apply right after it changes exactly the devices the plan listed, to the plan's "to".
    logged = len(simulator.state.request_log("cisco"))
    applied = _run(edits=edits)
    assert applied["dry_run"] is False
    assert applied["devices"]["succeeded"] == would_change
    assert applied["devices"]["unchanged"] == plan["devices"]["unchanged"]
    assert sorted(_writes(simulator, logged)) == sorted(would_change)
    after = _state(simulator, indices)
    for iccid, changes in plan["plan"].items():
        assert {field: after[iccid][field] for field in changes} == {
            field: change["to"] for field, change in changes.items()
        }
    assert {iccid: after[iccid] for iccid in iccids if iccid not in would_change} == {
        iccid: initial[iccid] for iccid in iccids if iccid not in would_change
    }
    # What it replaced: the plan's "from", field for field.
    assert applied["before"] == {
        iccid: {field: change["from"] for field, change in changes.items()}
        for iccid, changes in plan["plan"].items()
    }

    # The rollback restores every changed device and writes none of the others.
    logged = len(simulator.state.request_log("cisco"))
    rolled_back = _run(edits=rollback_edits(applied))
    assert rolled_back["devices"]["succeeded"] == would_change
    assert sorted(_writes(simulator, logged)) == sorted(would_change)
    assert _state(simulator, indices) == initial


def test_a_scheduled_edit_records_before_values_and_its_plan_says_scheduled(simulator: Simulator) -> None:
    indices = [i for i in range(100, 160) if simulator.state.fleet.device(i)["status"] == "ACTIVATED"][:5]
    iccids = [iccid_of(i) for i in indices]
    when = datetime.now().astimezone() + timedelta(days=2)
    plan = _run(iccids=iccids, changes={"status": "DEACTIVATED"}, effective_date=when, dry_run=True)
    assert plan["devices"]["scheduled"] == iccids
    assert plan["plan"] == {iccid: {"status": {"from": "ACTIVATED", "to": "DEACTIVATED"}} for iccid in iccids}
    assert simulator.state.snapshot()["scheduled"] == []  # the plan scheduled nothing
    applied = _run(iccids=iccids, changes={"status": "DEACTIVATED"}, effective_date=when)
    assert applied["devices"]["scheduled"] == iccids
    assert applied["before"] == {iccid: {"status": "ACTIVATED"} for iccid in iccids}
    assert rollback_edits(applied) == [{"iccid": iccid, "status": "ACTIVATED"} for iccid in iccids]


def _custom_and_ip(simulator: Simulator, index: int) -> dict[str, Any]:
    """A device's ``accountCustom1`` and fixed IPv4 address as a read of it shows them."""
    device = simulator.state.fleet.device(index)
    return {"accountCustom1": device["custom"].get("accountCustom1"), "ipv4Address": device.get("fixed_ipv4")}


def test_a_field_empty_before_is_restored_empty_and_an_ip_address_with_its_pdp_context(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    indices = [200, 201, 202]
    iccids = [iccid_of(i) for i in indices]
    assert all(_custom_and_ip(simulator, i) == {"accountCustom1": None, "ipv4Address": None} for i in indices)
    pdp = {"apn": "iot.apn", "pdpId": "1"}
    # The last device gets a fixed address first: the edit below changes it to another.
    _run(edits=[{"iccid": iccids[2], "ipv4Address": "10.20.0.2", **pdp}])
    edits = [
        {"iccid": iccids[0], "accountCustom1": "batch-7"},  # empty before
        {
            "iccid": iccids[1],
            "accountCustom1": "batch-7",
            "ipv4Address": "10.20.0.1",
            **pdp,
        },  # no address before
        {"iccid": iccids[2], "ipv4Address": "10.20.0.3", **pdp},
    ]
    applied = _run(edits=edits)
    assert applied["devices"]["succeeded"] == iccids
    assert applied["before"] == {
        iccids[0]: {"accountCustom1": None},
        iccids[1]: {"accountCustom1": None, "ipv4Address": None, **pdp},
        iccids[2]: {"ipv4Address": "10.20.0.2", **pdp},
    }

    with caplog.at_level("WARNING"):
        rollback = rollback_edits(applied)
    assert rollback == [
        {"iccid": iccids[0], "accountCustom1": ""},  # a blank custom field: empty again
        {"iccid": iccids[1], "accountCustom1": ""},  # Control Center has no way to clear an address
        {"iccid": iccids[2], "ipv4Address": "10.20.0.2", **pdp},
    ]
    assert any(f"{iccids[1]}: ipv4Address" in record.getMessage() for record in caplog.records)
    rolled_back = _run(edits=rollback)
    assert rolled_back["devices"]["succeeded"] == iccids
    assert [_custom_and_ip(simulator, i) for i in indices] == [
        {"accountCustom1": "", "ipv4Address": None},
        {"accountCustom1": "", "ipv4Address": "10.20.0.1"},  # left as the edit set it, and said so
        {"accountCustom1": None, "ipv4Address": "10.20.0.2"},
    ]


def test_bad_input_fails_the_dry_run_as_it_fails_the_edit_before_any_request(simulator: Simulator) -> None:
    edits = [{"iccid": iccid_of(1), "ratePlan": "IOT-1GB"}, {"iccid": "8901", "status": "ON"}]
    messages = []
    for dry_run in (True, False):
        logged = len(simulator.state.request_log("cisco"))
        operator = CiscoControlCenterEditDevicesOperator(task_id="cisco", edits=edits, dry_run=dry_run)
        with pytest.raises(IoTFleetValidationError) as caught:
            run_task(operator)
        messages.append(str(caught.value))
        assert len(simulator.state.request_log("cisco")) == logged
    assert messages[0] == messages[1]
    assert "edits[1].status: 'ON' is not a SIM status" in messages[0]


def test_a_plan_of_10000_devices_reads_each_once_and_writes_nothing(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=10_000)
    fast = {"requests_per_second": 100_000, "max_concurrency": 16}
    for conn_id, conn in connections_with(simulator, **fast).items():
        set_connection(conn_id, **conn)
    iccids = [iccid_of(i) for i in range(10_000)]
    plan = _run(iccids=iccids, changes={"accountCustom3": "planned"}, dry_run=True)
    assert plan["counts"]["succeeded"] == 10_000
    log = simulator.state.request_log("cisco")
    assert len(log) < simulator.config.request_log_size, "the request log was trimmed"
    assert not any(request["write"] for request in log)
    read = [device for request in log if request["method"] == "GET" for device in request["devices"]]
    assert sorted(read) == sorted(iccids)  # one read per device, no more
