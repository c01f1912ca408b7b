"""OpenLineage of every operator: what ``get_openlineage_facets_on_complete`` reports after
``execute``, as the openlineage provider reads it (its ``ExtractorManager`` where the choice between
the operator's lineage and hook lineage matters), and that nothing changes without the provider.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests_mock as rm
from airflow.providers.openlineage.extractors.manager import ExtractorManager
from airflow.sdk import lineage as sdk_lineage
from airflow.sdk.io import attach
from airflow.utils.state import TaskInstanceState
from fsspec.implementations.memory import MemoryFileSystem

from airflow_provider_iotfleet.exceptions import IoTFleetError, IoTFleetOperationFailedError
from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator
from airflow_provider_iotfleet.operators.verizon import (
    VerizonThingSpaceFotaDevicesOperator,
    VerizonThingSpaceSyncFirmwareOperator,
)
from tests.connections import CISCO_HOST, PALOALTO_TENANT_HOST, ROMA_HOST, ROMA_INSTANCE, ROMA_PROJECT
from tests.connections import THINGSPACE_ACCOUNT as ACCOUNT
from tests.connections import THINGSPACE_ROOT as ROOT
from tests.fakes import ICCID, IMEI, IMEI_2, luhn_complete, operator_context

# Operators build their hooks with the system clock: the test's fake clock instead (conftest).
pytestmark = pytest.mark.usefixtures("system_clock")

FOTA = f"{ROOT}/api/fota/v3"
THINGSPACE_DEVICES = ("https://thingspace.verizon.com", f"accounts/{ACCOUNT}/devices")


def imei(n: int) -> str:
    return luhn_complete(f"{35_000_000_000_000 + n:014d}")


def fota_device(device_id: str) -> dict[str, Any]:
    return {"deviceId": device_id, "make": "SEQUANS COMMUNICATIONS", "model": "GM01Q", "firmware": "SR1.2"}


def one_page(ids: list[str]) -> dict[str, Any]:
    return {"hasMoreData": False, "deviceList": [fota_device(device_id) for device_id in ids]}


def datasets(items: list[Any]) -> list[tuple[str, str]]:
    return [(item.namespace, item.name) for item in items]


def row_counts(lineage: Any) -> list[int | None]:
    return [
        stats.rowCount if (stats := item.outputFacets.get("outputStatistics")) else None
        for item in lineage.outputs
    ]


def run_facet(lineage: Any) -> dict[str, Any]:
    facet = lineage.run_facets["iotfleet"]
    return {
        "operation": facet.operation,
        "vendor": facet.vendor,
        "account": facet.account,
        "requested": facet.requested,
        "counts": facet.counts,
        "dryRun": facet.dryRun,
    }


@pytest.fixture
def recording_hook_lineage(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real hook lineage collector, as Airflow makes one when a lineage reader (the openlineage
    plugin) is registered: what the Task SDK's ``ObjectStoragePath`` records goes into it."""
    collector = sdk_lineage.HookLineageCollector()
    monkeypatch.setattr(sdk_lineage, "get_hook_lineage_collector", lambda: collector)
    return collector


# === the FOTA export ==============================================================================


def test_export_reports_the_final_file_its_device_count_and_the_account(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
    tmp_path: Path,
) -> None:
    requests_mock.get(f"{FOTA}/devices/{ACCOUNT}", json=one_page([imei(n) for n in range(5)]))
    target = tmp_path / "inventory" / "fota.jsonl"
    op = VerizonThingSpaceFotaDevicesOperator(task_id="export", output_path=str(target))
    op.execute(operator_context())

    lineage = op.get_openlineage_facets_on_complete(None)
    assert datasets(lineage.inputs) == [THINGSPACE_DEVICES]
    # A local file by its absolute path, as common.io names a file:// asset.
    assert datasets(lineage.outputs) == [("file", str(target))]
    assert row_counts(lineage) == [5]
    assert run_facet(lineage) == {
        "operation": "list_fota_devices",
        "vendor": "Verizon ThingSpace",
        "account": ACCOUNT,
        "requested": None,
        "counts": {"listed": 5},
        "dryRun": False,
    }
    assert [path.name for path in target.parent.iterdir()] == ["fota.jsonl"]


def test_export_to_object_storage_names_the_bucket_and_key(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
) -> None:
    # fsspec's in-memory file system stands in for a bucket (no provider registers "memory").
    attach("memory", fs=MemoryFileSystem())
    requests_mock.get(f"{FOTA}/devices/{ACCOUNT}", json=one_page([IMEI, IMEI_2]))
    op = VerizonThingSpaceFotaDevicesOperator(
        task_id="export", output_path="memory://fleet-bucket/fota/2026-11-21.jsonl"
    )
    op.execute(operator_context())

    lineage = op.get_openlineage_facets_on_complete(None)
    assert datasets(lineage.outputs) == [("memory://fleet-bucket", "fota/2026-11-21.jsonl")]
    assert row_counts(lineage) == [2]


def test_export_to_xcom_reports_the_account_read_and_no_output(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    requests_mock.post(f"{FOTA}/devices/{ACCOUNT}", json=one_page([IMEI]))
    op = VerizonThingSpaceFotaDevicesOperator(task_id="export", imeis=[IMEI, IMEI_2])
    op.execute(operator_context())

    lineage = op.get_openlineage_facets_on_complete(None)
    assert datasets(lineage.inputs) == [THINGSPACE_DEVICES]
    assert lineage.outputs == []
    assert run_facet(lineage)["requested"] == 2
    assert run_facet(lineage)["counts"] == {"listed": 1}


def test_the_temporary_file_the_sdk_saw_written_never_reaches_lineage(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
    tmp_path: Path,
    recording_hook_lineage: Any,
) -> None:
    requests_mock.get(f"{FOTA}/devices/{ACCOUNT}", json=one_page([imei(n) for n in range(3)]))
    target = tmp_path / "fota.jsonl"
    op = VerizonThingSpaceFotaDevicesOperator(task_id="export", output_path=str(target))
    ti = SimpleNamespace(task=op, dag_id="fleet", task_id="export", run_id="r", map_index=-1)
    op.execute(operator_context("export"))

    # The Task SDK recorded the write of the temporary file, not the rename over the target ...
    written = [info.asset.uri for info in recording_hook_lineage.collected_assets.outputs]
    assert written
    assert all(uri.endswith(".partial") and ".fota.jsonl." in uri for uri in written)
    manager = ExtractorManager()
    assert [name.endswith(".partial") for _, name in datasets(manager.get_hook_lineage().outputs)] == [True]

    # ... and the openlineage provider reports the operator's lineage instead: the final file.
    lineage = manager.extract_metadata(SimpleNamespace(run_id="r"), op, TaskInstanceState.SUCCESS, ti)
    assert datasets(lineage.outputs) == [("file", str(target))]
    assert datasets(lineage.inputs) == [THINGSPACE_DEVICES]


def test_a_failed_export_reports_the_account_it_read_and_no_file(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
    tmp_path: Path,
    recording_hook_lineage: Any,
) -> None:
    requests_mock.get(
        f"{FOTA}/devices/{ACCOUNT}",
        [
            {"json": {**one_page([IMEI]), "hasMoreData": True, "lastSeenDeviceId": IMEI}},
            {"status_code": 400, "json": {"errorCode": "FOTA.REQUEST_FAILED.Backend", "errorMessage": "x"}},
        ],
    )
    op = VerizonThingSpaceFotaDevicesOperator(task_id="export", output_path=str(tmp_path / "fota.jsonl"))
    ti = SimpleNamespace(task=op, dag_id="fleet", task_id="export", run_id="r", map_index=-1)
    with pytest.raises(IoTFleetError):
        op.execute(operator_context("export"))
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone, though the SDK saw it written ...
    written = [info.asset.uri for info in recording_hook_lineage.collected_assets.outputs]
    assert written
    assert all(uri.endswith(".partial") for uri in written)

    lineage = ExtractorManager().extract_metadata(
        SimpleNamespace(run_id="r"), op, TaskInstanceState.FAILED, ti
    )
    assert datasets(lineage.inputs) == [THINGSPACE_DEVICES]
    assert lineage.outputs == []  # ... and lineage does not name it
    assert run_facet(lineage)["counts"] == {}


# === the write operators ==========================================================================

ROMA_DEVICES = f"{ROMA_HOST}/v2/{ROMA_PROJECT}/link/instances/{ROMA_INSTANCE}/devices"


def _pan(requests_mock: rm.Mocker) -> Any:
    requests_mock.put(
        f"{PALOALTO_TENANT_HOST}/pub/v4.0/device/bulkUpdate",
        json={"code": 1, "message": "OK", "updatedDeviceNum": 2},
    )
    return PaloAltoIoTBulkUpdateOperator(
        task_id="t", devices=[{"imei": IMEI, "apn": "iot.acme"}, {"imei": IMEI_2, "apn": "iot.acme"}]
    )


def _cisco(requests_mock: rm.Mocker) -> Any:
    requests_mock.put(f"{CISCO_HOST}/rws/api/v1/devices/{ICCID}", json={"iccid": ICCID})
    return CiscoControlCenterEditDevicesOperator(
        task_id="t", iccids=[ICCID], changes={"status": "ACTIVATED"}, skip_unchanged=False
    )


def _roma(requests_mock: rm.Mocker) -> Any:
    requests_mock.post(
        f"{ROMA_DEVICES}/force-offline",
        json={"success": [{"id": 7001, "device_name": "meter"}], "failed": [{"id": 7002}]},
    )
    # The refused device is read back: never connected, so it failed.
    requests_mock.get(f"{ROMA_DEVICES}/7002", json={"device_id": 7002, "online_status": 0})
    return HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[7001, 7002], fail_on_error=False)


def _thingspace(requests_mock: rm.Mocker) -> Any:
    requests_mock.put(
        f"{FOTA}/firmware/{ACCOUNT}/devices",
        json={
            "accountName": ACCOUNT,
            "deviceFirmwarVersionList": [  # sic
                {"deviceId": IMEI, "status": "FirmwareVersionUpdateSuccess", "firmwareVersion": "SR1.2"}
            ],
        },
    )
    return VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=[IMEI])


# One row per vendor: (connection fixture, operator set up against requests-mock, namespace,
# dataset name, account in the facet, devices changed).
WRITE_CASES = [
    pytest.param(
        "paloalto_connection",
        _pan,
        "https://acme-iot.iot.paloaltonetworks.com",
        "customers/acme-iot/devices",
        "acme-iot",
        2,
        id="paloalto",
    ),
    pytest.param("cisco_connection", _cisco, CISCO_HOST, "devices", "rws-jpotest.jasper.com", 1, id="cisco"),
    pytest.param(
        "roma_connection",
        _roma,
        ROMA_HOST,
        f"instances/{ROMA_INSTANCE}/devices",
        ROMA_INSTANCE,
        1,
        id="huawei",
    ),
    pytest.param(
        "thingspace_connection", _thingspace, ROOT, f"accounts/{ACCOUNT}/devices", ACCOUNT, 1, id="verizon"
    ),
]


@pytest.mark.parametrize(("connection", "make", "namespace", "name", "account", "changed"), WRITE_CASES)
def test_write_operators_name_the_vendor_account_and_count_the_devices_changed(
    request: pytest.FixtureRequest,
    requests_mock: rm.Mocker,
    thingspace_logins: tuple[Any, Any],
    connection: str,
    make: Callable[[rm.Mocker], Any],
    namespace: str,
    name: str,
    account: str,
    changed: int,
) -> None:
    request.getfixturevalue(connection)
    op = make(requests_mock)
    outcome = op.execute(operator_context())

    lineage = op.get_openlineage_facets_on_complete(None)
    assert datasets(lineage.inputs) == [(namespace, name)]
    assert datasets(lineage.outputs) == [(namespace, name)]
    assert row_counts(lineage) == [changed]
    facet = run_facet(lineage)
    assert facet["account"] == account
    assert facet["counts"] == outcome["counts"]
    assert (facet["operation"], facet["vendor"], facet["dryRun"]) == (
        outcome["operation"],
        outcome["vendor"],
        False,
    )


def test_a_task_failed_for_its_devices_still_reports_what_it_changed(
    roma_connection: None, requests_mock: rm.Mocker
) -> None:
    op = _roma(requests_mock)
    op.fail_on_error = True
    with pytest.raises(IoTFleetOperationFailedError):
        op.execute(operator_context())
    # The openlineage provider calls on_complete on failure too (the operators define no on_failure).
    lineage = op.get_openlineage_facets_on_complete(None)
    assert row_counts(lineage) == [1]
    assert run_facet(lineage)["counts"]["failed"] == 1


def test_a_dry_run_reads_the_account_and_writes_nothing(
    roma_connection: None, requests_mock: rm.Mocker
) -> None:
    requests_mock.get(
        f"{ROMA_DEVICES}/7001", json={"device_id": 7001, "device_name": "meter", "online_status": 1}
    )
    requests_mock.get(ROMA_DEVICES, json={"total": 1, "devices": [{"device_id": 7001, "online_status": 1}]})
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[7001], dry_run=True)
    op.execute(operator_context())

    lineage = op.get_openlineage_facets_on_complete(None)
    assert datasets(lineage.inputs) == [(ROMA_HOST, f"instances/{ROMA_INSTANCE}/devices")]
    assert lineage.outputs == []
    assert run_facet(lineage)["dryRun"] is True


def test_before_a_run_ends_there_is_nothing_to_report() -> None:
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[7001])
    assert op.get_openlineage_facets_on_complete(None) is None


# === without the openlineage provider =============================================================


def test_without_the_openlineage_provider_operators_run_and_report_no_lineage(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An entry of None in sys.modules makes its import fail, as if the package were not installed.
    for module in (
        "airflow.providers.openlineage",
        "airflow.providers.openlineage.extractors",
        "airflow.providers.common.compat.openlineage",
        "airflow.providers.common.compat.openlineage.facet",
        "openlineage",
        "openlineage.client",
        "openlineage.client.facet_v2",
        "airflow_provider_iotfleet.operators.lineage_facets",
    ):
        monkeypatch.setitem(sys.modules, module, None)
    requests_mock.get(f"{FOTA}/devices/{ACCOUNT}", json=one_page([IMEI, IMEI_2]))
    target = tmp_path / "fota.jsonl"
    op = VerizonThingSpaceFotaDevicesOperator(task_id="export", output_path=str(target))

    result = op.execute(operator_context())

    assert result["device_count"] == 2
    assert len(target.read_text().splitlines()) == 2
    assert op.get_openlineage_facets_on_complete(None) is None
