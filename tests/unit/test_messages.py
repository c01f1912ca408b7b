"""The messages a DAG author reads when they got something wrong: a connection of another type, a
misspelt field name, an upgrade that names no firmware. Each says what is wrong and what is right."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests_mock as rm
from airflow.sdk import DAG

from airflow_provider_iotfleet.exceptions import IoTFleetConfigurationError, IoTFleetValidationError
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.paloalto import PaloAltoIoTSecurityHook
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator
from airflow_provider_iotfleet.operators.verizon import VerizonThingSpaceFirmwareUpgradeOperator
from tests.connections import CISCO
from tests.fakes import ICCID, IMEI, operator_context

# --- a connection of another type ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("hook_class", "expected"),
    [
        (PaloAltoIoTSecurityHook, "paloalto_iot"),
        (CiscoControlCenterHook, "cisco_control_center"),
        (HuaweiRomaConnectHook, "huawei_roma"),
        (VerizonThingSpaceHook, "verizon_thingspace"),
    ],
)
def test_a_connection_of_another_type_is_named_with_its_type_and_the_one_expected(
    set_connection: Callable[..., None], hook_class: type[IoTFleetBaseHook], expected: str
) -> None:
    set_connection("fleet_api", **{**CISCO, "conn_type": "http"})
    with pytest.raises(IoTFleetConfigurationError) as caught:
        hook_class("fleet_api").settings  # noqa: B018 - reading the connection is what raises
    assert str(caught.value) == (
        f"Connection 'fleet_api' is of type 'http', expected {expected!r} ({hook_class.hook_name}): "
        f"pass the id of a {hook_class.hook_name} connection, or change this one's type"
    )


def test_an_operator_on_a_connection_of_another_type_fails_naming_the_type(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection("fleet_api", **{**CISCO, "conn_type": "http"})
    operator = CiscoControlCenterEditDevicesOperator(
        task_id="activate",
        iccids=[ICCID],
        changes={"status": "ACTIVATED"},
        cisco_control_center_conn_id="fleet_api",
    )
    with pytest.raises(
        IoTFleetConfigurationError, match="is of type 'http', expected 'cisco_control_center'"
    ):
        operator.execute(operator_context())
    assert requests_mock.call_count == 0


# --- a field name that is almost right ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (
            {"iccids": [ICCID], "changes": {"stauts": "ACTIVATED"}},
            "changes.stauts: Control Center has no editable field 'stauts' (did you mean 'status'?)",
        ),
        (
            {"iccids": [ICCID], "changes": {"rate_plan": "IOT-1GB"}},
            "changes.rate_plan: Control Center has no editable field 'rate_plan' (did you mean 'ratePlan'?)",
        ),
        (
            {"edits": [{"iccid": ICCID, "RatePlan": "IOT-1GB"}]},
            "Control Center has no editable field 'RatePlan' (did you mean 'ratePlan'?)",
        ),
        (
            {"iccids": [ICCID], "changes": {"colour": "blue"}},
            "changes.colour: Control Center has no editable field 'colour'",
        ),
    ],
)
def test_a_cisco_field_name_that_is_almost_right_gets_the_right_one(
    cisco_connection: None, requests_mock: rm.Mocker, arguments: dict[str, Any], problem: str
) -> None:
    with pytest.raises(IoTFleetValidationError) as caught:
        CiscoControlCenterEditDevicesOperator(task_id="edit", **arguments).execute(operator_context())
    (found,) = [line for line in caught.value.problems if "no editable field" in line]
    assert found.endswith(problem)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("field", "suggestion"),
    [("ip_address", " (did you mean 'ipAddress'?)"), ("IMEI", " (did you mean 'imei'?)"), ("mac", "")],
)
def test_a_palo_alto_field_name_that_is_almost_right_gets_the_right_one(
    paloalto_connection: None, requests_mock: rm.Mocker, field: str, suggestion: str
) -> None:
    devices = [{"imei": IMEI, field: "10.1.2.3"}]
    with pytest.raises(IoTFleetValidationError) as caught:
        PaloAltoIoTBulkUpdateOperator(task_id="tag", devices=devices).execute(operator_context())
    assert f"devices[0]: unknown field {field!r}{suggestion}" in caught.value.problems
    assert requests_mock.call_count == 0


# --- an upgrade that names no firmware -----------------------------------------------------------------


@pytest.mark.parametrize(
    "firmware",
    [{}, {"firmware_from": "SR1.2.0.0-10657"}, {"firmware_to": "SR1.3.0.0-11020"}],
    ids=["none", "from only", "to only"],
)
def test_an_upgrade_that_names_no_firmware_fails_when_the_dag_is_parsed(firmware: dict[str, str]) -> None:
    with pytest.raises(IoTFleetValidationError) as caught, DAG("fleet_upgrade", schedule=None):
        VerizonThingSpaceFirmwareUpgradeOperator(task_id="upgrade", imeis=[IMEI], **firmware)
    assert str(caught.value) == (
        "upgrade: the upgrade names no firmware:\n  - give firmware_name, or firmware_from and firmware_to"
    )


@pytest.mark.parametrize(
    "firmware",
    [
        {"firmware_name": "{{ params.firmware }}"},
        {"firmware_from": "{{ params.source }}", "firmware_to": "{{ params.target }}"},
        {"firmware_name": "FOTA_Verizon_Upgrade_SR1.2_to_SR1.3"},
    ],
)
def test_an_upgrade_with_a_firmware_argument_or_a_template_for_one_parses(firmware: dict[str, str]) -> None:
    with DAG("fleet_upgrade", schedule=None):
        operator = VerizonThingSpaceFirmwareUpgradeOperator(task_id="upgrade", imeis=[IMEI], **firmware)
    assert {key: getattr(operator, key) for key in firmware} == firmware
