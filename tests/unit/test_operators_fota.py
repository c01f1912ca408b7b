"""VerizonThingSpaceFotaDevicesOperator, driven through ``execute`` as a task would run it.

The listing goes to XCom (bounded by ``max_xcom_devices``) or is streamed to a JSON Lines file that
only ever appears complete; a subset of IMEIs is listed with POST; asset events carry the outcome.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests_mock as rm
from airflow.sdk import DAG, Asset, ObjectStoragePath

from airflow_provider_iotfleet.exceptions import (
    IoTFleetError,
    IoTFleetOutputError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.operators.verizon import VerizonThingSpaceFotaDevicesOperator
from tests.connections import THINGSPACE_ACCOUNT as ACCOUNT
from tests.connections import THINGSPACE_KEY as KEY
from tests.connections import THINGSPACE_M2M_PASSWORD as M2M_PASSWORD
from tests.connections import THINGSPACE_M2M_USER as M2M_USER
from tests.connections import THINGSPACE_ROOT as ROOT
from tests.connections import THINGSPACE_SECRET as SECRET
from tests.fakes import IMEI, IMEI_2, luhn_complete, operator_context, pausing_fota_operator
from tests.log_capture import Logs

# Operators build their hooks with the system clock: the test's fake clock instead (conftest).
pytestmark = pytest.mark.usefixtures("system_clock")

FOTA = f"{ROOT}/api/fota/v3"
DEVICES_URL = f"{FOTA}/devices/{ACCOUNT}"
START = datetime(2026, 11, 1)


def imei(n: int) -> str:
    return luhn_complete(f"{35_000_000_000_000 + n:014d}")


def vendor_device(device_id: str, **extra: Any) -> dict[str, Any]:
    """A FOTA device item as ThingSpace sends it."""
    return {
        "deviceId": device_id,
        "mdn": "5551234567",
        "model": "GM01Q",
        "make": "SEQUANS COMMUNICATIONS",
        "firmware": "SR1.2.0.0-10657",
        "fotaEligible": True,
        "licenseAssigned": False,
        "status": "Active",
        "protocol": "LWM2M",
        "softwareList": [
            {"name": "app", "version": "1.0", "upgradeTime": "2022-02-04 06:10:01.441 +0000 UTC"}
        ],
        "fileList": [{"name": "fw.bin"}],
        "createTime": "2020-11-10 15:35:00.122 +0000 UTC",
        "upgradeTime": "2022-02-04 06:10:01.441 +0000 UTC",
        "statusTime": "2022-02-04 04:03:04.048 +0000 UTC",
        "refreshTime": "2022-02-20 07:39:31.584 +0000 UTC",
        "lastConnectionTime": "N/A",
        **extra,
    }


def normalised(device_id: str) -> dict[str, Any]:
    """What ``vendor_device(device_id)`` must become in XCom and in the file."""
    return {
        "device_id": device_id,
        "mdn": "5551234567",
        "make": "SEQUANS COMMUNICATIONS",
        "model": "GM01Q",
        "firmware": "SR1.2.0.0-10657",
        "fota_eligible": True,
        "license_assigned": False,
        "status": "Active",
        "protocol": "LWM2M",
        "software": [{"name": "app", "version": "1.0", "upgrade_time": "2022-02-04T06:10:01.441Z"}],
        "files": ["fw.bin"],
        "create_time": "2020-11-10T15:35:00.122Z",
        "upgrade_time": "2022-02-04T06:10:01.441Z",
        "status_time": "2022-02-04T04:03:04.048Z",
        "refresh_time": "2022-02-20T07:39:31.584Z",
        "last_connection_time": None,
    }


def paged(ids: list[str], page_size: int, fail_on_page: int | None = None) -> Callable[[Any, Any], Any]:
    """Serve ``ids`` as ThingSpace pages of ``page_size``, following ``lastSeenDeviceId``.

    ``fail_on_page`` (1-based) answers that page with a 400 and ThingSpace's error body.
    """
    pages = [ids[start : start + page_size] for start in range(0, len(ids), page_size)] or [[]]
    by_last_seen = {"0": 0} | {page[-1]: n + 1 for n, page in enumerate(pages[:-1])}

    def answer(request: Any, context: Any) -> dict[str, Any]:
        number = by_last_seen[request.qs["lastseendeviceid"][0]]
        if fail_on_page is not None and number + 1 == fail_on_page:
            context.status_code = 400
            return {"errorCode": "FOTA.REQUEST_FAILED.Backend", "errorMessage": "Listing failed"}
        page = pages[number]
        more = number + 1 < len(pages)
        return {
            "hasMoreData": more,
            "lastSeenDeviceId": page[-1] if more else None,
            "deviceList": [vendor_device(device_id) for device_id in page],
        }

    return answer


def output_location(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path, str]:
    """``(output_path argument, file it must write, path the XCom must report)``."""
    if kind == "local":
        target = tmp_path / "fota.jsonl"
        return str(target), target, str(target)
    if kind == "file-uri":
        target = tmp_path / "fota.jsonl"
        return target.as_uri(), target, target.as_uri()
    if kind == "new-subdirectory":
        target = tmp_path / "inventory" / "2026-11-21" / "fota.jsonl"
        return str(target), target, str(target)
    assert kind == "relative"
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "out" / "fota.jsonl"
    return "out/fota.jsonl", target, str(target)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


# === listing to XCom ==============================================================================


def test_devices_go_to_xcom_normalised(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    ids = [imei(n) for n in range(5)]
    route = requests_mock.get(DEVICES_URL, json=paged(ids, 2))
    ctx = operator_context()
    result = VerizonThingSpaceFotaDevicesOperator(task_id="t").execute(ctx)
    assert result == {
        "account_name": ACCOUNT,  # the connection's extra
        "devices": [normalised(device_id) for device_id in ids],
        "device_count": 5,
        "pages": 3,
    }
    # A read operator returns its listing (Airflow pushes it as return_value) and pushes nothing
    # itself: no copy under the write operators' "outcome" key.
    assert ctx["ti"].xcom == {}
    assert json.loads(json.dumps(result)) == result
    assert [r.qs["lastseendeviceid"][0] for r in route.request_history] == ["0", ids[1], ids[3]]
    assert all("protocol" not in r.qs for r in route.request_history)


def test_file_list_spelled_as_in_the_doc_and_timestamps_with_offsets(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    item = vendor_device(
        IMEI,
        fileList=None,
        filesList=["a.bin", "b.bin"],
        createTime="2021-12-20 17:21:25 +0200",
        lastConnectionTime="2021-12-20 15:21:25.724 +0000 UTC",
        statusTime="",
    )
    requests_mock.get(DEVICES_URL, json={"hasMoreData": False, "deviceList": [item]})
    (device,) = VerizonThingSpaceFotaDevicesOperator(task_id="t").execute(operator_context())["devices"]
    assert device["files"] == ["a.bin", "b.bin"]
    assert device["create_time"] == "2021-12-20T15:21:25.000Z"
    assert device["last_connection_time"] == "2021-12-20T15:21:25.724Z"
    assert device["status_time"] is None


@pytest.mark.parametrize(("limit", "allowed"), [(5, True), (4, False)])
def test_max_xcom_devices_boundary(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
    limit: int,
    allowed: bool,
) -> None:
    requests_mock.get(DEVICES_URL, json=paged([imei(n) for n in range(5)], 5))
    op = VerizonThingSpaceFotaDevicesOperator(task_id="t", max_xcom_devices=limit)
    if allowed:
        assert op.execute(operator_context())["device_count"] == 5
        return
    with pytest.raises(IoTFleetError, match=f"more than max_xcom_devices={limit}") as caught:
        op.execute(operator_context())
    assert "set output_path" in str(caught.value)


def test_refusal_past_max_xcom_devices_stops_listing(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    route = requests_mock.get(DEVICES_URL, json=paged([imei(n) for n in range(10)], 2))
    ctx = operator_context()
    op = VerizonThingSpaceFotaDevicesOperator(task_id="t", max_xcom_devices=3)
    with pytest.raises(IoTFleetError, match="set output_path to stream them to a file"):
        op.execute(ctx)
    assert route.call_count == 2  # the fourth device came on page 2: pages 3 to 5 never asked for
    assert ctx["ti"].xcom == {}


def test_account_name_given_and_missing(
    set_connection: Callable[..., None], thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "vz_no_account",
        "verizon_thingspace",
        login=KEY,
        password=SECRET,
        extra={"m2m_username": M2M_USER, "m2m_password": M2M_PASSWORD},
    )
    other = "0000999999-00001"
    route = requests_mock.get(f"{FOTA}/devices/{other}", json={"hasMoreData": False, "deviceList": []})
    op = VerizonThingSpaceFotaDevicesOperator(task_id="a", verizon_thingspace_conn_id="vz_no_account")
    with pytest.raises(IoTFleetValidationError, match="account_name is missing"):
        op.execute(operator_context())
    assert requests_mock.call_count == 0
    op = VerizonThingSpaceFotaDevicesOperator(
        task_id="b", account_name=other, verizon_thingspace_conn_id="vz_no_account"
    )
    assert op.execute(operator_context()) == {
        "account_name": other,
        "devices": [],
        "device_count": 0,
        "pages": 1,
    }
    assert route.call_count == 1


# === protocol and validation ======================================================================


@pytest.mark.parametrize(("given", "sent"), [("OMADM", "OMADM"), ("lwm2m", "LWM2M"), ("HTTP", "HTTP")])
def test_protocol_is_sent_as_a_query_parameter(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
    given: str,
    sent: str,
) -> None:
    ids = [imei(n) for n in range(3)]
    route = requests_mock.get(DEVICES_URL, json=paged(ids, 2))
    VerizonThingSpaceFotaDevicesOperator(task_id="t", protocol=given).execute(operator_context())
    assert route.call_count == 2
    assert all(f"protocol={sent}" in r.url for r in route.request_history)  # on every page


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"protocol": "SNMP"}, "'SNMP' is not one of LWM2M, OMADM, HTTP"),
        ({"imeis": [IMEI, "12345", "490154203237519"]}, "2 of 3 IMEIs are invalid"),
        ({"imeis": "490154203237518"}, "imeis must be a list"),
    ],
    ids=["protocol", "imeis", "plain-string"],
)
def test_bad_inputs_are_refused_before_any_request(
    thingspace_connection: None,
    requests_mock: rm.Mocker,
    tmp_path: Path,
    kwargs: dict[str, Any],
    expected: str,
) -> None:
    op = VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=str(tmp_path / "x.jsonl"), **kwargs)
    with pytest.raises(IoTFleetValidationError, match=expected):
        op.execute(operator_context())
    assert requests_mock.call_count == 0
    assert list(tmp_path.iterdir()) == []


def test_every_bad_imei_is_named(thingspace_connection: None, requests_mock: rm.Mocker) -> None:
    op = VerizonThingSpaceFotaDevicesOperator(task_id="t", imeis=[IMEI, "12345", "490154203237519", IMEI_2])
    with pytest.raises(IoTFleetValidationError) as caught:
        op.execute(operator_context())
    assert "imeis[1] '12345' has 5 digits" in str(caught.value)
    assert "imeis[2] '490154203237519' fails the IMEI check digit" in str(caught.value)
    assert requests_mock.call_count == 0


def test_empty_imeis_is_a_logged_no_op(
    thingspace_connection: None, requests_mock: rm.Mocker, logs: Logs
) -> None:
    ctx = operator_context()
    result = VerizonThingSpaceFotaDevicesOperator(task_id="t", imeis=[]).execute(ctx)
    assert requests_mock.call_count == 0  # above all, not the whole account
    assert (result["account_name"], result["device_count"]) == (ACCOUNT, 0)
    assert (result["requested"], result["missing"]) == (0, [])
    assert ctx["ti"].xcom == {}
    assert any("imeis is empty; nothing to do" in line for line in logs.lines("warning"))


# === subset of IMEIs ==============================================================================


def test_imeis_subset_is_listed_with_post_at_most_1000_per_body(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, logs: Logs
) -> None:
    wanted = [imei(n) for n in range(1001)]
    not_in_account = {wanted[3], wanted[1000]}

    def answer(request: Any, context: Any) -> dict[str, Any]:
        asked = request.json()["deviceList"]
        return {
            "hasMoreData": False,
            "deviceList": [vendor_device(i) for i in asked if i not in not_in_account],
        }

    route = requests_mock.post(DEVICES_URL, json=answer)
    listing = requests_mock.get(DEVICES_URL, json={"deviceList": []})
    ctx = operator_context()
    op = VerizonThingSpaceFotaDevicesOperator(task_id="t", imeis=[*wanted, wanted[0], int(wanted[1])])
    result = op.execute(ctx)
    assert listing.call_count == 0
    assert [r.json()["deviceList"] for r in route.request_history] == [wanted[:1000], wanted[1000:]]
    assert all(r.qs == {"lastseendeviceid": ["0"]} for r in route.request_history)
    assert result["requested"] == 1001  # the repeated IMEIs count once
    assert result["missing"] == [wanted[3], wanted[1000]]
    assert result["device_count"] == 999
    assert result["pages"] == 2
    assert [d["device_id"] for d in result["devices"]] == [i for i in wanted if i not in not_in_account]
    assert ctx["ti"].xcom == {}
    assert any("2 of 1001 IMEIs are not in account" in line for line in logs.lines("warning"))


def test_imeis_subset_all_found_has_no_missing(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    route = requests_mock.post(
        DEVICES_URL, json={"hasMoreData": False, "deviceList": [vendor_device(IMEI), vendor_device(IMEI_2)]}
    )
    result = VerizonThingSpaceFotaDevicesOperator(
        task_id="t", imeis=[IMEI, IMEI_2], protocol="LWM2M"
    ).execute(operator_context())
    assert (result["requested"], result["missing"], result["device_count"]) == (2, [], 2)
    assert route.last_request.json() == {"deviceList": [IMEI, IMEI_2]}
    assert "protocol=LWM2M" in route.last_request.url


# === listing to a JSON Lines file =================================================================


@pytest.mark.parametrize("kind", ["local", "file-uri", "new-subdirectory", "relative"])
def test_devices_are_written_as_json_lines(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    ids = [imei(n) for n in range(5)]
    requests_mock.get(DEVICES_URL, json=paged(ids, 2))
    output_path, target, reported = output_location(kind, tmp_path, monkeypatch)
    ctx = operator_context()
    result = VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=output_path).execute(ctx)
    assert result == {"account_name": ACCOUNT, "path": reported, "device_count": 5, "pages": 3}
    assert ctx["ti"].xcom == {}
    assert read_json_lines(target) == [normalised(device_id) for device_id in ids]
    assert sorted(p.name for p in target.parent.iterdir()) == ["fota.jsonl"]  # no temporary file left


def test_a_complete_file_is_replaced_by_the_new_listing(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, tmp_path: Path
) -> None:
    target = tmp_path / "fota.jsonl"
    target.write_text('{"device_id": "old"}\n' * 7)
    requests_mock.get(DEVICES_URL, json=paged([IMEI, IMEI_2], 5))
    result = VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=str(target)).execute(
        operator_context()
    )
    assert result["device_count"] == 2
    assert [d["device_id"] for d in read_json_lines(target)] == [IMEI, IMEI_2]
    assert [p.name for p in tmp_path.iterdir()] == ["fota.jsonl"]


def test_an_empty_account_writes_an_empty_file(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, tmp_path: Path
) -> None:
    requests_mock.get(DEVICES_URL, json={"hasMoreData": False, "deviceList": []})
    target = tmp_path / "fota.jsonl"
    result = VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=str(target)).execute(
        operator_context()
    )
    assert (result["device_count"], result["pages"]) == (0, 1)
    assert target.read_text() == ""


@pytest.mark.parametrize("previous", [None, '{"device_id": "from yesterday"}\n'])
@pytest.mark.parametrize("kind", ["local", "file-uri"])
def test_listing_failing_on_page_3_leaves_no_partial_file(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    previous: str | None,
) -> None:
    route = requests_mock.get(DEVICES_URL, json=paged([imei(n) for n in range(10)], 2, fail_on_page=3))
    output_path, target, _ = output_location(kind, tmp_path, monkeypatch)
    if previous is not None:
        target.write_text(previous)
    ctx = operator_context()
    op = VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=output_path)
    with pytest.raises(IoTFleetVendorResponseError, match="Listing failed") as caught:
        op.execute(ctx)
    assert caught.value.error_code == "FOTA.REQUEST_FAILED.Backend"
    assert route.call_count == 3
    if previous is None:
        assert list(tmp_path.iterdir()) == []  # neither the target nor a partial file
    else:
        assert target.read_text() == previous  # the earlier complete file is untouched
        assert [p.name for p in tmp_path.iterdir()] == ["fota.jsonl"]
    assert ctx["ti"].xcom == {}


def test_export_reads_ahead_yet_writes_the_pages_in_order_and_leaves_no_thread(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, tmp_path: Path
) -> None:
    ids = [imei(n) for n in range(9)]
    route = requests_mock.get(DEVICES_URL, json=paged(ids, 2))
    target = tmp_path / "fota.jsonl"
    result = VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=str(target)).execute(
        operator_context()
    )
    assert (result["device_count"], result["pages"]) == (9, 5)
    assert [json.loads(line)["device_id"] for line in target.read_text().splitlines()] == ids
    assert route.call_count == 5  # the look-ahead asked for nothing past the last page
    assert not [t for t in threading.enumerate() if t.name.startswith("thingspace-fota-pages")]


def test_export_failing_on_a_page_leaves_no_look_ahead_thread(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, tmp_path: Path
) -> None:
    route = requests_mock.get(DEVICES_URL, json=paged([imei(n) for n in range(10)], 2, fail_on_page=4))
    with pytest.raises(IoTFleetVendorResponseError, match="Listing failed"):
        VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=str(tmp_path / "x.jsonl")).execute(
            operator_context()
        )
    assert route.call_count == 4  # pages 1 to 3 delivered, page 4's error raised, page 5 never asked
    assert list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("thingspace-fota-pages")]


def test_listing_failing_after_retries_leaves_no_partial_file(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, tmp_path: Path
) -> None:
    ids = [imei(n) for n in range(6)]
    good = paged(ids, 2)

    def answer(request: Any, context: Any) -> dict[str, Any]:
        if request.qs["lastseendeviceid"][0] == ids[3]:
            context.status_code = 503
            return {"errorCode": "FOTA.REQUEST_FAILED.Unavailable", "errorMessage": "Try later"}
        return good(request, context)

    route = requests_mock.get(DEVICES_URL, json=answer)
    target = tmp_path / "fota.jsonl"
    with pytest.raises(IoTFleetVendorResponseError, match="Try later"):
        VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=str(target)).execute(operator_context())
    assert route.call_count == 2 + 4  # page 3 tried four times
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "wrap", [Path, lambda p: ObjectStoragePath(p.as_uri())], ids=["pathlib", "objectstorage"]
)
def test_output_path_given_as_a_path_object(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
    tmp_path: Path,
    wrap: Callable[[Path], Any],
) -> None:
    requests_mock.get(DEVICES_URL, json=paged([IMEI, IMEI_2], 5))
    target = tmp_path / "fota.jsonl"
    ctx = operator_context()
    result = VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=wrap(target)).execute(ctx)
    assert [d["device_id"] for d in read_json_lines(target)] == [IMEI, IMEI_2]
    assert isinstance(result["path"], str)  # JSON-safe XCom
    assert result["path"].endswith(str(target))


# === asset events =================================================================================


def test_outlets_get_an_asset_event_with_the_outcome(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, tmp_path: Path
) -> None:
    requests_mock.get(DEVICES_URL, json=paged([imei(n) for n in range(3)], 2))
    target = tmp_path / "fota.jsonl"
    inventory = Asset(target.as_uri())
    other = Asset("file:///data/fota/latest.jsonl")
    ctx = operator_context()
    op = VerizonThingSpaceFotaDevicesOperator(
        task_id="t", output_path=str(target), outlets=[inventory, other]
    )
    op.execute(ctx)
    expected = {"account_name": ACCOUNT, "device_count": 3, "path": str(target)}
    assert ctx["outlet_events"][inventory].extra == expected
    assert ctx["outlet_events"][other].extra == expected


def test_outlets_without_output_path_have_no_path(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    requests_mock.get(DEVICES_URL, json=paged([IMEI], 2))
    inventory = Asset("file:///data/fota/latest.jsonl")
    ctx = operator_context()
    VerizonThingSpaceFotaDevicesOperator(task_id="t", outlets=[inventory]).execute(ctx)
    assert ctx["outlet_events"][inventory].extra == {"account_name": ACCOUNT, "device_count": 1, "path": None}


def test_no_asset_event_when_the_listing_fails(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, tmp_path: Path
) -> None:
    requests_mock.get(DEVICES_URL, json=paged([imei(n) for n in range(6)], 2, fail_on_page=2))
    inventory = Asset("file:///data/fota/latest.jsonl")
    ctx = operator_context()
    op = VerizonThingSpaceFotaDevicesOperator(
        task_id="t", output_path=str(tmp_path / "fota.jsonl"), outlets=[inventory]
    )
    with pytest.raises(IoTFleetVendorResponseError):
        op.execute(ctx)
    assert inventory not in ctx["outlet_events"]


# === templates ====================================================================================


def test_templated_imeis_and_output_path_rendered_as_native_objects(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, tmp_path: Path
) -> None:
    route = requests_mock.post(DEVICES_URL, json={"hasMoreData": False, "deviceList": [vendor_device(IMEI)]})
    with DAG(dag_id="fota_native", schedule=None, start_date=START, render_template_as_native_obj=True):
        op = VerizonThingSpaceFotaDevicesOperator(
            task_id="t",
            imeis="{{ params.imeis }}",
            protocol="{{ params.protocol }}",
            output_path="{{ params.dir }}/fota-{{ params.day }}.jsonl",
        )
    ctx = operator_context()
    op.render_template_fields(
        {
            **ctx,
            "params": {
                "imeis": [IMEI, IMEI_2],
                "protocol": "OMADM",
                "dir": str(tmp_path),
                "day": "2026-11-21",
            },
        }
    )
    assert op.imeis == [IMEI, IMEI_2]
    result = op.execute(ctx)
    target = tmp_path / "fota-2026-11-21.jsonl"
    assert result == {
        "account_name": ACCOUNT,
        "path": str(target),
        "device_count": 1,
        "pages": 1,
        "requested": 2,
        "missing": [IMEI_2],
    }
    assert [d["device_id"] for d in read_json_lines(target)] == [IMEI]
    assert route.last_request.json() == {"deviceList": [IMEI, IMEI_2]}
    assert "protocol=OMADM" in route.last_request.url


def test_templated_imeis_rendered_as_a_string(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    route = requests_mock.post(DEVICES_URL, json={"hasMoreData": False, "deviceList": [vendor_device(IMEI)]})
    with DAG(dag_id="fota_text", schedule=None, start_date=START):
        op = VerizonThingSpaceFotaDevicesOperator(task_id="t", imeis="{{ params.imeis }}")
    ctx = operator_context()
    op.render_template_fields({**ctx, "params": {"imeis": [IMEI]}})
    assert op.imeis == f"['{IMEI}']"
    result = op.execute(ctx)
    assert (result["requested"], result["device_count"]) == (1, 1)
    assert route.last_request.json() == {"deviceList": [IMEI]}


# === secrets ======================================================================================


def test_no_credential_in_logs_errors_xcom_or_file(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
    tmp_path: Path,
    logs: Logs,
) -> None:
    ids = [imei(n) for n in range(4)]
    good = paged(ids, 2)
    expired = {
        "errorCode": "FOTA.REQUEST_FAILED.SessionToken.Expired",
        "errorMessage": "Session token expired",
    }
    calls: list[int] = []

    def answer(request: Any, context: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 2:  # the session expires mid-listing: a second login
            context.status_code = 400
            return expired
        return good(request, context)

    requests_mock.get(DEVICES_URL, json=answer)
    target = tmp_path / "fota.jsonl"
    ctx = operator_context()
    result = VerizonThingSpaceFotaDevicesOperator(task_id="a", output_path=str(target)).execute(ctx)
    assert result["device_count"] == 4
    assert requests_mock.request_history[-1].headers["VZ-M2M-Token"] == "session-token-2"
    # Then a listing that fails on refused credentials.
    requests_mock.get(
        DEVICES_URL, status_code=401, json={"fault": {"code": "900901", "message": "Invalid Credentials"}}
    )
    failing = operator_context()
    with pytest.raises(IoTFleetError) as caught:
        VerizonThingSpaceFotaDevicesOperator(task_id="b").execute(failing)
    haystack = "\n".join(
        [
            logs.text(),
            str(caught.value),
            repr(caught.value),
            json.dumps(result),  # the XCom Airflow pushes as return_value
            json.dumps(ctx["ti"].xcom),
            json.dumps(failing["ti"].xcom),
            target.read_text(),
        ]
    )
    secrets = (
        [SECRET, M2M_PASSWORD]
        + [f"access-token-{n}" for n in (1, 2, 3)]
        + [f"session-token-{n}" for n in (1, 2, 3)]
    )
    secrets.append(base64.b64encode(f"{KEY}:{SECRET}".encode()).decode())
    for secret in secrets:
        assert secret not in haystack


# === where the file goes: refused before listing, typed errors while writing ======================


@pytest.mark.parametrize("form", ["path", "file-uri", "trailing-slash"])
def test_an_existing_directory_as_output_path_is_refused_before_any_request(
    thingspace_connection: None, requests_mock: rm.Mocker, tmp_path: Path, form: str
) -> None:
    directory = tmp_path / "exports"
    directory.mkdir()
    output_path = {"path": str(directory), "file-uri": directory.as_uri(), "trailing-slash": f"{directory}/"}[
        form
    ]
    op = VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=output_path)
    with pytest.raises(IoTFleetValidationError, match="output_path is invalid") as caught:
        op.execute(operator_context())
    assert "directory" in str(caught.value)
    assert requests_mock.call_count == 0
    assert list(directory.iterdir()) == []  # no data hidden in it


@pytest.mark.parametrize(
    "output_path", ["file://exports/fota.jsonl", "file:exports/fota.jsonl", "file://localhost/tmp/fota.jsonl"]
)
def test_a_file_uri_that_is_not_absolute_is_refused_not_guessed(
    thingspace_connection: None,
    requests_mock: rm.Mocker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    output_path: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    op = VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=output_path)
    with pytest.raises(IoTFleetValidationError, match="file:///absolute/path") as caught:
        op.execute(operator_context())
    assert repr(output_path) in str(caught.value)
    assert requests_mock.call_count == 0
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_cannot_be_created_is_a_typed_error_naming_the_path(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, tmp_path: Path
) -> None:
    requests_mock.get(DEVICES_URL, json=paged([IMEI, IMEI_2], 5))
    (tmp_path / "exports").write_text("a file where the directory should be\n")
    target = tmp_path / "exports" / "fota.jsonl"
    op = VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=str(target))
    with pytest.raises(IoTFleetOutputError) as caught:
        op.execute(operator_context())
    assert not isinstance(caught.value, OSError)
    assert caught.value.path == str(target)
    assert str(target) in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports"]


def test_a_rename_that_fails_is_a_typed_error_and_removes_the_temporary_file(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, tmp_path: Path
) -> None:
    ids = [imei(n) for n in range(4)]
    target = tmp_path / "fota.jsonl"
    good = paged(ids, 2)

    def answer(request: Any, context: Any) -> dict[str, Any]:
        if request.qs["lastseendeviceid"][0] == ids[1]:
            target.mkdir()  # something else puts a directory where the file is to go, meanwhile
        return good(request, context)

    requests_mock.get(DEVICES_URL, json=answer)
    op = VerizonThingSpaceFotaDevicesOperator(task_id="t", output_path=str(target))
    with pytest.raises(IoTFleetOutputError, match="could not write the FOTA devices to") as caught:
        op.execute(operator_context())
    assert caught.value.path == str(target)
    assert list(target.iterdir()) == []  # the listing was not moved into it as a hidden file
    assert [p.name for p in tmp_path.iterdir()] == ["fota.jsonl"]  # no temporary file left


def test_overlapping_tries_of_one_task_instance_each_publish_a_whole_file(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, tmp_path: Path
) -> None:
    """Two tries of the same task instance (a zombie and its retry) write at once: each writes its
    own temporary file and renames it whole; the target holds one try's listing, every line whole."""
    ids = [imei(n) for n in range(6)]
    good = paged(ids, 2)

    def answer(request: Any, context: Any) -> dict[str, Any]:
        body = good(request, context)
        # Each try has its own token, and gets its own firmware: lines of different lengths, so
        # that two tries writing into one file would garble it.
        firmware = "A" if request.headers["Authorization"].endswith("-1") else "B" * 40
        for device in body["deviceList"]:
            device["firmware"] = firmware
        return body

    requests_mock.get(DEVICES_URL, json=answer)
    target = tmp_path / "fota.jsonl"
    # Both tries have written page 1 before either goes on. The timeout only keeps a broken run from
    # hanging; tries that overlap as they should never wait it out.
    both_wrote_page_1 = threading.Barrier(2, timeout=60)
    operator_class = pausing_fota_operator(both_wrote_page_1.wait)

    def one_try(try_number: int) -> dict[str, Any]:
        operator = operator_class(task_id="export", output_path=str(target))
        return operator.execute(operator_context("export", try_number=try_number))  # type: ignore[no-any-return]

    with ThreadPoolExecutor(max_workers=2) as pool:
        tries = [pool.submit(one_try, n) for n in (1, 2)]
        results = [t.result() for t in tries]  # neither raises, an OSError least of all
    assert results == [{"account_name": ACCOUNT, "path": str(target), "device_count": 6, "pages": 3}] * 2
    devices = read_json_lines(target)  # every line parses
    assert [d["device_id"] for d in devices] == ids
    assert len({d["firmware"] for d in devices}) == 1  # one try's listing, not a mix
    assert [p.name for p in tmp_path.iterdir()] == ["fota.jsonl"]  # both temporary files renamed


def test_the_export_leaves_the_garbage_collector_as_it_found_it() -> None:
    import gc

    from airflow_provider_iotfleet.operators.fota_export import _collecting_only_new_objects

    assert gc.get_freeze_count() == 0
    with _collecting_only_new_objects():
        assert gc.get_freeze_count() > 0  # what was there before is left out of full collections
        cycle: list[Any] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # what the export makes is still collected
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), _collecting_only_new_objects():
        raise RuntimeError("the export failed")
    assert gc.get_freeze_count() == 0
    gc.freeze()  # a process that froze its own objects (before forking) keeps them frozen
    try:
        frozen = gc.get_freeze_count()
        with _collecting_only_new_objects():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
