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


@pytest.mark.parametrize("kind", ["hooks", "operators", "sensors", "triggers"])
def test_every_declared_module_imports_and_each_vendor_has_one(kind: str) -> None:
    entries = get_provider_info()[kind]
    vendors = [integration["integration-name"] for integration in get_provider_info()["integrations"]]
    if kind in ("sensors", "triggers"):
        vendors.remove("Palo Alto Networks IoT Security")  # nothing there to wait for
    assert [entry["integration-name"] for entry in entries] == vendors
    for entry in entries:
        for module in entry["python-modules"]:
            import_module(module)


@pytest.mark.parametrize(
    ("conn_type", "field"),
    [
        ("huawei_roma", "project_id"),
        ("huawei_roma", "instance_id"),
        ("verizon_thingspace", "m2m_username"),
        ("verizon_thingspace", "m2m_password"),
    ],
)
def test_fields_the_hook_cannot_do_without_cannot_be_saved_empty(conn_type: str, field: str) -> None:
    (entry,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type]
    definition = entry["conn-fields"][field]
    assert definition["schema"]["type"] == "string"  # not nullable: an empty field is not saved as null
    assert definition["schema"]["minLength"] == 1
    assert definition["label"].endswith("(required)")


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

    # Each CLI call imports Airflow (about 10 s): the hooks listing also names the package.
    hooks = run("providers", "hooks")
    behaviours = run("providers", "behaviours")
    for conn_type, (class_name, _, _) in EXPECTED.items():
        line = next(line for line in hooks.splitlines() if class_name in line)
        assert "airflow-provider-iotfleet" in line
        assert conn_type in behaviours


class _RecordingExtras(dict):  # type: ignore[type-arg]
    """Extras that remember which keys a hook asked for."""

    asked: set[str] = set()

    def get(self, key: str, default: object = None) -> object:
        _RecordingExtras.asked.add(key)
        return super().get(key, default)


# Per connection type: connections covering each auth mode, and the lazily read settings to touch.
FULL_CONNECTIONS: dict[str, list[tuple[dict[str, object], tuple[str, ...]]]] = {
    "paloalto_iot": [
        (
            {"host": "https://t.iot.paloaltonetworks.com", "login": "k", "password": "secret-1"},
            ("customer_id", "_device_reads"),
        ),
        ({"login": "c", "password": "secret-1", "extra": {"auth_type": "scm", "tsg_id": "1"}}, ()),
    ],
    "cisco_control_center": [
        ({"host": "https://rws.example.com", "login": "u", "password": "secret-1"}, ("max_concurrency",))
    ],
    "huawei_roma": [
        (
            {
                "login": "ak",
                "password": "secret-1",
                "extra": {"region": "r", "project_id": "p", "instance_id": "i"},
            },
            ("_devices_path",),
        ),
        (
            {
                "login": "u",
                "password": "secret-1",
                "extra": {
                    "auth_type": "iam_token",
                    "region": "r",
                    "project_id": "p",
                    "instance_id": "i",
                    "domain_name": "d",
                },
            },
            ("_devices_path",),
        ),
    ],
    "verizon_thingspace": [
        (
            {
                "login": "k",
                "password": "secret-1",
                "extra": {"m2m_username": "u", "m2m_password": "secret-2"},
            },
            (),
        )
    ],
}


@pytest.mark.parametrize("conn_type", sorted(EXPECTED))
def test_every_extra_a_hook_reads_is_on_the_connection_form(
    conn_type: str, set_connection: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_iotfleet.http.config import ConnectionSettings

    original = ConnectionSettings.from_connection.__func__  # type: ignore[attr-defined]

    def recording(cls: type, conn: object, vendor: str, conn_type: str | None = None) -> ConnectionSettings:
        settings = original(cls, conn, vendor, conn_type)
        object.__setattr__(settings, "extras", _RecordingExtras(settings.extras))
        return settings

    monkeypatch.setattr(ConnectionSettings, "from_connection", classmethod(recording))
    _RecordingExtras.asked = set()
    (entry,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type]
    module_name, _, class_name = entry["hook-class-name"].rpartition(".")
    hook_class = getattr(import_module(module_name), class_name)
    for n, (fields, lazies) in enumerate(FULL_CONNECTIONS[conn_type]):
        set_connection(f"form_{conn_type}_{n}", conn_type, **fields)  # type: ignore[operator]
        hook = hook_class(f"form_{conn_type}_{n}")
        hook.client  # noqa: B018 - building the client reads the extras
        for lazy in lazies:
            getattr(hook, lazy)
    assert _RecordingExtras.asked
    assert _RecordingExtras.asked <= set(entry["conn-fields"]), _RecordingExtras.asked - set(
        entry["conn-fields"]
    )


def test_provider_info_imports_nothing_of_airflow_nor_the_hooks() -> None:
    # Airflow calls get_provider_info while `import airflow` sets up its configuration: importing
    # Airflow (or a hook, which imports it) from here would be a circular import.
    probe = (
        "import sys; from airflow_provider_iotfleet import get_provider_info; get_provider_info(); "
        "loaded = sorted(name for name in sys.modules if name == 'airflow' or name.startswith('airflow.') "
        "or name.endswith('.hook') or name.startswith('requests')); print(loaded)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("conn_type", sorted(EXPECTED))
def test_each_hook_takes_its_connection_type_from_the_form_it_declares(conn_type: str) -> None:
    (entry,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type]
    module_name, _, class_name = entry["hook-class-name"].rpartition(".")
    hook_class = getattr(import_module(module_name), class_name)
    form = import_module(f"{module_name}.connection").CONNECTION_FORM
    assert hook_class.connection_form is form
    assert (hook_class.conn_type, hook_class.hook_name, hook_class.default_conn_name) == (
        form.conn_type,
        form.hook_name,
        form.default_conn_id,
    )
    assert entry["conn-fields"] == form.conn_fields() and entry["conn-fields"] is not form.conn_fields()


def test_a_vendor_package_imports_its_hook_only_when_a_name_of_it_is_asked_for() -> None:
    probe = (
        "import sys; from airflow_provider_iotfleet.hooks.verizon import CONNECTION_FORM, DEFAULT_HOST; "
        "import airflow_provider_iotfleet.hooks.cisco as cisco; "
        "before = sorted(name for name in sys.modules if name.endswith('.hook') or name == 'airflow'); "
        "listed = 'CiscoControlCenterHook' in dir(cisco); "
        "from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook; "
        "after = 'airflow_provider_iotfleet.hooks.cisco.hook' in sys.modules; print('RESULT', before, listed, after)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    # Importing Airflow (after the hook) logs to stdout too: read the probe's own line.
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert line == "RESULT [] True True"
