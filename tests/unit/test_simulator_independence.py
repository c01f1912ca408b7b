"""The simulator keeps its own copy of the vendor rules it enforces, and the two copies agree.

If the simulator imported the client's rules, a wrong client rule would pass against it: both
sides would be wrong the same way. So the simulator imports nothing from the client package, and
these tests compare the two copies, so that a change to one shows up as drift.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_iotfleet import simulator
from airflow_provider_iotfleet.hooks.cisco.rules import (
    CISCO_CUSTOM_FIELD_MAX_LENGTH,
    CISCO_CUSTOM_FIELDS,
    CISCO_EDITABLE_FIELDS,
    CISCO_KNOWN_STATUSES,
    CISCO_MAX_SCHEDULE_DAYS,
    CISCO_OVERAGE_VALUES,
)
from airflow_provider_iotfleet.simulator import cisco as simulated_cisco
from airflow_provider_iotfleet.simulator import fleet as simulated_fleet
from airflow_provider_iotfleet.validation import luhn_check_digit
from tests.fakes import ICCID, ICCID_19, IMEI, IMEI_2

PACKAGE = "airflow_provider_iotfleet"
SIMULATOR_DIR = Path(simulator.__file__).parent


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, absolute, with its line (``from x import y`` counts as ``x.y``).

    :param root: the directory that holds the package, against which relative imports resolve.
    """
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the file's own package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def test_the_simulator_imports_nothing_from_the_client_package() -> None:
    # Python imports the package root itself before any subpackage; nothing else is shared.
    outside = [
        f"{path.relative_to(SIMULATOR_DIR.parent)}:{line} imports {name}"
        for path in sorted(SIMULATOR_DIR.rglob("*.py"))
        for line, name in imported_modules(path, SIMULATOR_DIR.parent.parent)
        if name.startswith(f"{PACKAGE}.") and not name.startswith(f"{PACKAGE}.simulator")
    ]
    assert outside == []


def test_the_import_scan_sees_client_imports_of_every_form(tmp_path: Path) -> None:
    fake = tmp_path / PACKAGE / "simulator"
    fake.mkdir(parents=True)
    probe = fake / "probe.py"
    probe.write_text(
        "import airflow_provider_iotfleet.validation\n"
        "from airflow_provider_iotfleet.hooks import cisco\n"
        "from airflow_provider_iotfleet import outcome\n"
        "from .. import exceptions\n"
        "from . import fleet\n"
        "def later():\n"
        "    from airflow_provider_iotfleet.http.client import Client\n"
    )
    assert [name for _, name in imported_modules(probe, tmp_path)] == [
        "airflow_provider_iotfleet.validation",
        "airflow_provider_iotfleet.hooks.cisco",
        "airflow_provider_iotfleet.outcome",
        "airflow_provider_iotfleet.exceptions",
        "airflow_provider_iotfleet.simulator.fleet",
        "airflow_provider_iotfleet.http.client.Client",
    ]


@pytest.mark.parametrize(
    "body",
    [
        IMEI[:-1],
        IMEI_2[:-1],
        ICCID[:-1],
        ICCID_19[:-1],
        "0",
        "5",
        "00000000000000",
        "99999999999999",
        "35690800123456",
    ],
)
def test_client_and_simulator_compute_the_same_luhn_check_digit(body: str) -> None:
    assert simulated_fleet.luhn_check_digit(body) == luhn_check_digit(body)


@pytest.mark.parametrize(
    ("rule", "client", "simulated"),
    [
        ("SIM statuses", CISCO_KNOWN_STATUSES, frozenset(simulated_fleet.SIM_STATUSES)),
        ("editable fields", CISCO_EDITABLE_FIELDS, simulated_cisco.EDITABLE_FIELDS),
        ("custom fields", CISCO_CUSTOM_FIELDS, simulated_cisco.CUSTOM_FIELDS),
        ("overage values", CISCO_OVERAGE_VALUES, simulated_cisco.OVERAGE_VALUES),
        ("custom field length", CISCO_CUSTOM_FIELD_MAX_LENGTH, simulated_cisco.CUSTOM_FIELD_MAX_LENGTH),
        ("days an edit may be scheduled ahead", CISCO_MAX_SCHEDULE_DAYS, simulated_cisco.MAX_SCHEDULE_DAYS),
    ],
)
def test_client_and_simulator_agree_on_control_center_edit_rules(
    rule: str, client: Any, simulated: Any
) -> None:
    assert client == simulated, f"the client and the simulator disagree on Control Center's {rule}"


@pytest.mark.parametrize(
    ("field", "editable"),
    [
        ("status", True),
        ("pdpId", True),
        ("operatorCustom5", True),
        ("accountCustom10", True),
        ("customerCustom5", True),
        ("operatorCustom6", False),
        ("accountCustom11", False),
        ("iccid", False),
        ("effectiveDate", False),  # a parameter of the edit, not a field it changes
        ("Status", False),
    ],
)
def test_both_copies_say_the_same_of_a_handful_of_fields(field: str, editable: bool) -> None:
    assert (field in CISCO_EDITABLE_FIELDS, field in simulated_cisco.EDITABLE_FIELDS) == (
        editable,
        editable,
    )
