"""What every write operator shares for plan-before-apply: the ``dry_run`` flag, the plan and the
``before`` values in the outcome, and :func:`rollback_edits` (each vendor's plan is tested with its
operator)."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import pytest

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.cisco.rules import cisco_change_problems
from airflow_provider_iotfleet.operators.base import IoTFleetWriteOperator
from airflow_provider_iotfleet.outcome import FleetOutcome, OutcomeBuilder
from airflow_provider_iotfleet.rollback import rollback_edits, rollback_plan
from airflow_provider_iotfleet.validation import as_flag
from tests.fakes import operator_context

CONN_ID = "dry_run_test"
FIRST, SECOND, THIRD = "89011703278100000001", "89011703278100000002", "89011703278100000003"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("True", True),
        ("false", False),
        (" yes ", True),
        ("0", False),
        ("", False),
    ],
)
def test_as_flag_takes_a_bool_or_what_a_template_renders_one_to(value: Any, expected: bool) -> None:
    assert as_flag(value, "dry_run") is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, ["True"]])
def test_as_flag_refuses_anything_else_and_says_what_it_takes(value: Any) -> None:
    with pytest.raises(IoTFleetValidationError, match="dry_run is invalid") as raised:
        as_flag(value, "dry_run")
    assert "give True or False" in str(raised.value)


def test_a_dry_run_outcome_carries_its_plan_keyed_by_device_id_as_text_in_input_order() -> None:
    builder = OutcomeBuilder("force_offline", "Huawei Cloud ROMA Connect", 3, order=[700003, 700001, 700002])
    builder.add("succeeded", 700001)
    builder.plan(700001, {"online_status": {"from": "online", "to": "offline"}})
    builder.add("succeeded", 700003)
    builder.plan(700003, {"online_status": {"from": "online", "to": "offline"}})
    builder.add("unchanged", 700002)
    outcome = builder.build(dry_run=True)
    xcom = outcome.to_xcom()
    assert xcom["dry_run"] is True
    assert list(xcom["plan"]) == ["700003", "700001"]
    assert FleetOutcome.from_xcom(xcom).plan == xcom["plan"]


def test_a_real_run_has_no_plan_and_before_only_when_its_devices_were_read() -> None:
    blind = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 1)
    blind.add("succeeded", FIRST)
    assert {"plan", "before"}.isdisjoint(blind.build().to_xcom())
    read = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 1)
    read.records_before()
    read.add("unchanged", FIRST)
    assert read.build().to_xcom()["before"] == {}


def _edit(**statuses: list[str]) -> FleetOutcome:
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 3)
    for status, iccids in statuses.items():
        builder.add_many(status, iccids)  # type: ignore[arg-type]
    builder.record_before(FIRST, {"status": "TEST_READY", "ratePlan": "Basic"})
    builder.record_before(SECOND, {"status": "DEACTIVATED"})
    return builder.build()


def test_rollback_edits_restore_the_changed_and_scheduled_devices_previous_values() -> None:
    outcome = _edit(succeeded=[FIRST], scheduled=[SECOND], unchanged=[THIRD])
    expected = [
        {"iccid": FIRST, "status": "TEST_READY", "ratePlan": "Basic"},
        {"iccid": SECOND, "status": "DEACTIVATED"},
    ]
    assert rollback_edits(outcome) == expected
    assert rollback_edits(outcome.to_xcom()) == expected


def test_rollback_edits_leave_out_unchanged_failed_and_unknown_devices() -> None:
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 3)
    builder.add("unchanged", FIRST)
    builder.record_before(SECOND, {"status": "TEST_READY"})
    builder.refuse([SECOND], "10000005", "Invalid status.")
    builder.refuse([THIRD], None, "answer lost", status="unknown")
    assert rollback_edits(builder.build()) == []


def _problems(edits: list[dict[str, Any]]) -> list[str]:
    """What the edit validation says of each rollback edit's fields (these ICCIDs are made up)."""
    return [
        p for edit in edits for p in cisco_change_problems({k: v for k, v in edit.items() if k != "iccid"})
    ]


def test_a_custom_field_empty_before_is_restored_blank_and_the_fields_that_cannot_be_cleared_are_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 3)
    builder.add_many("succeeded", [FIRST, SECOND, THIRD])
    builder.record_before(FIRST, {"accountCustom1": None, "ratePlan": "Basic"})
    builder.record_before(SECOND, {"customer": None, "deviceID": None})  # nothing left to send
    builder.record_before(THIRD, {"customer": None, "operatorCustom2": "rack 4"})
    outcome = builder.build()

    with caplog.at_level("WARNING"):
        edits = rollback_edits(outcome)

    # Control Center takes a blank custom field; it documents no way to clear a customer or device id.
    assert edits == [
        {"iccid": FIRST, "accountCustom1": "", "ratePlan": "Basic"},
        {"iccid": THIRD, "operatorCustom2": "rack 4"},
    ]
    assert not _problems(edits)  # valid edits: the rollback is not blocked
    assert rollback_plan(outcome).not_restorable == {SECOND: ["customer", "deviceID"], THIRD: ["customer"]}
    (warning,) = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert "2 devices had fields empty before that Control Center's edit cannot clear" in warning
    assert f"{SECOND}: customer, deviceID; {THIRD}: customer" in warning


def test_an_ip_address_is_restored_with_the_apn_and_pdp_id_the_edit_sent_and_only_with_them() -> None:
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 3)
    builder.add_many("succeeded", [FIRST, SECOND, THIRD])
    builder.record_before(FIRST, {"ipv4Address": "10.0.0.7", "apn": "iot.apn", "pdpId": "1"})
    builder.record_before(
        SECOND, {"ipv4Address": None, "apn": "iot.apn", "pdpId": "1", "status": "ACTIVATED"}
    )
    builder.record_before(THIRD, {"ipv6Address": "2001:db8::7"})  # recorded before apn/pdpId were
    rollback = rollback_plan(builder.build())

    assert rollback.edits == [
        {"iccid": FIRST, "ipv4Address": "10.0.0.7", "apn": "iot.apn", "pdpId": "1"},
        {"iccid": SECOND, "status": "ACTIVATED"},  # no address to restore: no PDP context either
    ]
    assert not _problems(rollback.edits)
    assert rollback.not_restorable == {SECOND: ["ipv4Address"], THIRD: ["ipv6Address"]}


@pytest.mark.parametrize(
    ("outcome", "says"),
    [
        (OutcomeBuilder("force_offline", "Huawei Cloud ROMA Connect", 0).build(), "reconnect by themselves"),
        (OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 0).build(dry_run=True), "dry run"),
        (OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 0).build(), "skip_unchanged=False"),
    ],
)
def test_rollback_edits_refuse_what_they_cannot_roll_back_and_say_why(
    outcome: FleetOutcome, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        rollback_edits(outcome)


class PlanningOperator(IoTFleetWriteOperator[CiscoControlCenterHook]):
    """A write operator reduced to its contract: a prepared outcome for a real run and for a plan."""

    hook_class = CiscoControlCenterHook
    operation = "edit_devices"
    template_fields = ("dry_run",)

    def __init__(self, *, real: FleetOutcome, planned: FleetOutcome, **kwargs: Any) -> None:
        super().__init__(conn_id=CONN_ID, **kwargs)
        self.real, self.planned = real, planned
        self.called: list[str] = []

    def operate(self, context: Any) -> FleetOutcome:
        self.called.append("operate")
        return self.real

    def plan(self, context: Any) -> FleetOutcome:
        self.called.append("plan")
        return self.planned


@pytest.fixture(autouse=True)
def planning_connection(set_connection: Callable[..., None]) -> None:
    set_connection(CONN_ID, "cisco_control_center", host="https://cc.example", login="bot", password="k-42")


def _would_fail() -> FleetOutcome:
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 2)
    builder.add("succeeded", FIRST)
    builder.plan(FIRST, {"status": {"from": "TEST_READY", "to": "ACTIVATED"}})
    builder.refuse([SECOND], "not_found", "Control Center does not know this ICCID")
    return builder.build()  # not marked: the base marks a plan as a dry run


@pytest.mark.parametrize("dry_run", [True, "True", "true"])
def test_a_dry_run_plans_instead_of_operating_and_never_fails_for_devices_that_would(
    dry_run: Any, events: list[MutableMapping[str, Any]]
) -> None:
    op = PlanningOperator(task_id="plan", real=_would_fail(), planned=_would_fail(), dry_run=dry_run)
    context = operator_context("plan")
    xcom = op.execute(context)  # type: ignore[arg-type]
    assert op.called == ["plan"]
    assert xcom["dry_run"] is True
    assert xcom["plan"] == {FIRST: {"status": {"from": "TEST_READY", "to": "ACTIVATED"}}}
    assert context["ti"].xcom == {}  # type: ignore[attr-defined]  # nothing under "outcome": it did not fail
    lines = [(event["log_level"], str(event["event"])) for event in events]
    assert ("info", "Cisco IoT Control Center: DRY RUN: reading only, nothing will be changed") in lines
    assert any(level == "warning" and "would be failed: 1 device, not_found" in line for level, line in lines)
    assert not any(level == "error" for level, _ in lines)


def test_without_dry_run_the_operator_operates() -> None:
    op = PlanningOperator(
        task_id="apply", real=_edit(succeeded=[FIRST]), planned=_would_fail(), dry_run="False"
    )
    xcom = op.execute(operator_context("apply"))  # type: ignore[arg-type]
    assert op.called == ["operate"]
    assert xcom["dry_run"] is False and "plan" not in xcom


def test_a_dry_run_flag_that_is_no_flag_fails_before_anything_runs() -> None:
    op = PlanningOperator(task_id="plan", real=_would_fail(), planned=_would_fail(), dry_run="perhaps")
    with pytest.raises(IoTFleetValidationError, match="plan: dry_run is invalid"):
        op.execute(operator_context("plan"))  # type: ignore[arg-type]
    assert op.called == []
