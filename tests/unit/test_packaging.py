"""What a user installs: the license, the type marker, the project's links, the provider's docs links, and
a wheel that holds the simulator and the entry point Airflow discovers the provider by."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import airflow
import jsonschema
import pytest

import airflow_provider_iotfleet
from airflow_provider_iotfleet import get_provider_info

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE = "airflow_provider_iotfleet"


def test_project_urls_are_the_packages_own() -> None:
    assert PYPROJECT["project"]["urls"] == {
        "Documentation": airflow_provider_iotfleet.DOCUMENTATION_URL,
        "Source": airflow_provider_iotfleet.SOURCE_URL,
        "Changelog": airflow_provider_iotfleet.CHANGELOG_URL,
        "Issues": airflow_provider_iotfleet.ISSUES_URL,
    }


def test_the_license_is_apache_2_and_declared() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                        Version 2.0, January 2004")
    assert text.rstrip().endswith("limitations under the License.")


def test_the_type_marker_is_package_data() -> None:
    assert (ROOT / PACKAGE / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"][PACKAGE]


def test_each_integration_links_its_how_to_page_and_validates_against_airflows_schema() -> None:
    info = get_provider_info()
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    docs = airflow_provider_iotfleet.DOCUMENTATION_URL
    assert {
        integration["integration-name"]: (integration["external-doc-url"], integration["how-to-guide"])
        for integration in info["integrations"]
    } == {
        name: (f"{docs}en/latest/howto/{page}.html", [f"{docs}en/latest/howto/{page}.html"])
        for name, page in [
            ("Palo Alto Networks IoT Security", "paloalto"),
            ("Cisco IoT Control Center", "cisco"),
            ("Huawei Cloud ROMA Connect", "huawei"),
            ("Verizon ThingSpace", "verizon"),
        ]
    }


def test_read_the_docs_builds_the_sphinx_site_in_docs() -> None:
    config = (ROOT / ".readthedocs.yaml").read_text()
    assert "version: 2" in config
    assert "configuration: docs/conf.py" in config


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `uv build` builds from this checkout, in a directory of its own."""
    out = tmp_path_factory.mktemp("wheel")
    # A copy of the source without the build's leftovers, so that the build sees what a clone holds.
    source = out / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv*", ".git", "*.egg-info", "build", "__pycache__", ".*_cache"),
    )
    # uv sits beside the interpreter in .venv; .venv-oldest has none (and no pip), so look in .venv too.
    uv = shutil.which(
        "uv", path=os.pathsep.join([str(Path(sys.executable).parent), str(ROOT / ".venv" / "bin")])
    )
    assert uv is not None, "uv not found beside the interpreter or in .venv/bin: run `make .venv/.installed`"
    subprocess.run(
        [uv, "build", "--wheel", "--quiet", "--out-dir", str(out), str(source)],
        cwd=out,
        check=True,
        capture_output=True,
        timeout=240,
    )
    (built,) = out.glob("airflow_provider_iotfleet-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_ships_the_license_the_type_marker_the_simulator_and_the_entry_point(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    version = airflow_provider_iotfleet.__version__
    dist_info = f"airflow_provider_iotfleet-{version}.dist-info"
    assert f"{dist_info}/licenses/LICENSE" in names
    assert f"{PACKAGE}/py.typed" in names
    assert {f"{PACKAGE}/simulator/__init__.py", f"{PACKAGE}/simulator/__main__.py"} <= names
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert (
        "[apache_airflow_provider]\nprovider_info = airflow_provider_iotfleet:get_provider_info"
        in entry_points
    )
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert f"Project-URL: Documentation, {airflow_provider_iotfleet.DOCUMENTATION_URL}" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    assert not [name for name in names if name.startswith(("example_dags/", "tests/"))]


@pytest.mark.slow
def test_the_simulator_runs_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    # A pure-Python wheel unpacked is the package as installed; first on the path, it wins over the
    # editable install of this checkout.
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run(
        [sys.executable, "-c", f"import {PACKAGE}.simulator as s; print(s.__file__)"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed)
    shown = subprocess.run(
        [sys.executable, "-m", f"{PACKAGE}.simulator", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: ")
    assert "Verizon" in shown.stdout
