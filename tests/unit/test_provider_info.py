"""Airflow discovers the provider, its four connection types, their hooks and their form fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_iotfleet import __version__, get_provider_info

EXPECTED = {
    "paloalto_iot": ("PaloAltoIoTSecurityHook", "paloalto_iot_conn_id", "paloalto_iot_default"),
    "cisco_control_center": (
        "CiscoControlCenterHook",
        "cisco_control_center_conn_id",
        "cisco_control_center_default",
    ),
    "huawei_roma": ("HuaweiRomaConnectHook", "huawei_roma_conn_id", "huawei_roma_default"),
    "verizon_thingspace": (
        "VerizonThingSpaceHook",
        "verizon_thingspace_conn_id",
        "verizon_thingspace_default",
    ),
}


def test_entry_point_points_at_get_provider_info() -> None:
    (entry,) = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_iotfleet")
    ]
    assert entry.load() is get_provider_info


def test_provider_info_is_valid_for_airflow() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-provider-iotfleet"
    assert info["versions"] == [__version__]


@pytest.mark.parametrize("conn_type", sorted(EXPECTED))
def test_each_connection_type_matches_its_hook(conn_type: str) -> None:
    (entry,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type]
    module_name, _, class_name = entry["hook-class-name"].rpartition(".")
    hook_class = getattr(import_module(module_name), class_name)
    expected_class, conn_attr, default_conn = EXPECTED[conn_type]
    assert class_name == expected_class
    assert (hook_class.conn_type, hook_class.conn_name_attr, hook_class.default_conn_name) == (
        conn_type,
        conn_attr,
        default_conn,
    )
    assert entry["hook-name"] == hook_class.hook_name
    fields = entry["conn-fields"]
    assert {"timeout", "max_retries"} <= set(fields)
    for secret in hook_class.secret_extras:
        assert fields[secret]["schema"]["format"] == "password", secret
    behaviour = entry["ui-field-behaviour"]
    assert "password" in behaviour["relabeling"]
    assert set(behaviour["hidden-fields"]) <= {"schema", "port", "extra", "login", "password", "host"}


def test_providers_manager_registers_hooks_and_form_fields() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()  # what the API server uses for the connection form
    runtime = ProvidersManagerTaskRuntime()  # what tasks use to find a hook for a connection
    assert "airflow-provider-iotfleet" in manager.providers
    for conn_type, (class_name, _, _) in EXPECTED.items():
        hook_info = runtime.hooks[conn_type]
        assert hook_info is not None
        assert hook_info.hook_class_name.endswith(class_name)
        assert conn_type in manager.field_behaviours
    widgets = manager.connection_form_widgets
    assert widgets["extra__verizon_thingspace__m2m_password"].is_sensitive
    assert widgets["extra__huawei_roma__security_token"].is_sensitive
    assert not widgets["extra__cisco_control_center__max_concurrency"].is_sensitive


@pytest.mark.slow
def test_airflow_cli_lists_provider_hooks_and_behaviours() -> None:
    airflow_cli = [sys.executable, "-m", "airflow"]
    env = {**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}

    def run(*args: str) -> str:
        return subprocess.run(
            [*airflow_cli, *args], env=env, capture_output=True, text=True, check=True, timeout=120
        ).stdout

    assert "airflow-provider-iotfleet" in run("providers", "list")
    hooks = run("providers", "hooks")
    behaviours = run("providers", "behaviours")
    for conn_type, (class_name, _, _) in EXPECTED.items():
        assert class_name in hooks
        assert conn_type in behaviours
