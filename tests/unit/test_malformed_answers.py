"""Malformed vendor answers through each operator's ``execute``, as a task runs it.

Whatever a vendor (or a proxy in front of it) answers, the task ends with a typed error, an
:class:`IoTFleetError`; never a bare ``KeyError``, ``TypeError`` or ``JSONDecodeError``, and never an
XCom that says devices were done when they were not. A write operator's outcome (see
airflow_provider_iotfleet/outcome.py) puts the devices under one error group that says what was
wrong with the answer, keeps the vendor's request id, and names no device in its message (the
vendor is the outcome's ``vendor``); a read operator's error names the vendor, the endpoint and the
request id.

``tests/unit/test_http.py`` and ``test_http_hardening.py`` prove the bare client turns a non-JSON 2xx,
a mistyped field, JSON nested 100,000 deep and a huge error page into typed errors; here each of the
five operators meets an HTML error page, an HTML page sent as a 200, truncated JSON, an empty 200, a
body over the 16 MiB the client reads, and answers with missing or mistyped fields. Every answer
carries an ``X-Request-Id``, which the error must keep. A write whose answer was unusable is never
sent again blindly: Control Center and ROMA read back; Palo Alto's bulk update (absolute values) and
ThingSpace's firmware sync (it only reads the devices) are idempotent, so they are sent again like
reads.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import pytest
import requests_mock as rm

from airflow_provider_iotfleet.exceptions import (
    OUTCOME_KEY,
    IoTFleetError,
    IoTFleetOperationFailedError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator
from airflow_provider_iotfleet.operators.verizon import (
    VerizonThingSpaceFotaDevicesOperator,
    VerizonThingSpaceSyncFirmwareOperator,
)
from tests.fakes import ICCID, ICCID_19, IMEI, IMEI_2, FakeClock, operator_context

RID = "rid-malformed-0001"
MAX_RETRIES = 2

PAN_HOST = "https://acme.iot.paloaltonetworks.com"
PAN_VENDOR = "Palo Alto Networks IoT Security"
CC_HOST = "https://cc.example.com"
CC_VENDOR = "Cisco IoT Control Center"
ROMA_HOST, PROJECT, INSTANCE = "https://roma.example.com", "p1", "i1"
ROMA_DEVICES = f"{ROMA_HOST}/v2/{PROJECT}/link/instances/{INSTANCE}/devices"
#: The operator's display name of the platform (its outcome's ``vendor``).
ROMA_VENDOR_NAME = "Huawei Cloud ROMA Connect"
TS_ROOT, ACCOUNT = "https://ts.example.com", "0000123456-00001"
TS_VENDOR = "Verizon ThingSpace"
TS_TOKEN, TS_LOGIN = f"{TS_ROOT}/api/ts/v1/oauth2/token", f"{TS_ROOT}/api/m2m/v1/session/login"
TS_LIST_ACTION = f"GET /api/fota/v3/devices/{ACCOUNT}"
TS_SYNC_URL = f"{TS_ROOT}/api/fota/v3/firmware/{ACCOUNT}/devices"

HTML = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)
#: Answers that are not what any of the vendors documents, as requests-mock responses.
MALFORMED: dict[str, dict[str, Any]] = {
    "html error page": {"status_code": 502, "text": HTML, "headers": {"Content-Type": "text/html"}},
    "html page as a 200": {"status_code": 200, "text": HTML, "headers": {"Content-Type": "text/html"}},
    "truncated json": {"status_code": 200, "content": b'{"code": 1, "message": "OK", "updatedDev'},
    "empty 200": {"status_code": 200, "content": b""},
    "huge body": {"status_code": 200},  # content: see _huge
}
#: What each malformed answer becomes, in a read's error message.
SAYS = {
    "html error page": "rejected",
    "html page as a 200": "a body that is not JSON",
    "truncated json": "a body that is not JSON",
    "empty 200": "an empty body",
    "huge body": "with more than 16 MiB",
}
#: What each malformed answer becomes, in the message of an outcome's error group.
GROUP_SAYS = {
    "html error page": "502 Bad Gateway",  # the page's text, as the vendor's message
    "html page as a 200": "an answer with a body that is not JSON",
    "truncated json": "an answer with a body that is not JSON",
    "empty 200": "an answer with an empty body",
    "huge body": "an answer with more than 16 MiB",
}
#: Done statuses: no device of a failed answer may be in any of them.
DONE = ("succeeded", "unchanged", "scheduled", "accepted")


def _tries(kind: str) -> int:
    """How often a read (or an idempotent write) is sent: retried, except an answer over the limit,
    which is never downloaded again."""
    return 1 if kind == "huge body" else 1 + MAX_RETRIES


@functools.cache
def _huge() -> bytes:
    """Valid JSON, one byte past the 16 MiB the client reads (sent without Content-Length)."""
    return b"[" + b"0," * (8 * 2**20) + b"0]"


def _answer(kind: str) -> dict[str, Any]:
    spec = dict(MALFORMED[kind])
    if kind == "huge body":
        spec["content"] = _huge()
    return {**spec, "headers": {"X-Request-Id": RID, **spec.get("headers", {})}}


def _json(body: Any) -> dict[str, Any]:
    """A 200 with ``body`` as JSON and the request id."""
    return {"json": body, "headers": {"X-Request-Id": RID}}


@pytest.fixture(autouse=True)
def connections(set_connection: Callable[..., None], system_clock: FakeClock) -> None:
    """The four default connections, with quick retries on a fake clock (backoff waits nothing)."""
    quick = {"max_retries": MAX_RETRIES, "requests_per_second": 1000, "requests_per_minute": 60_000}
    set_connection(
        "paloalto_iot_default",
        "paloalto_iot",
        host=PAN_HOST,
        login="key-id",
        password="access-key-1",
        extra=quick,
    )
    set_connection(
        "cisco_control_center_default",
        "cisco_control_center",
        host=CC_HOST,
        login="user",
        password="api-key-1",
        extra=quick,
    )
    set_connection(
        "huawei_roma_default",
        "huawei_roma",
        host=ROMA_HOST,
        login="AK00000000000000000001",
        password="sk-secret-1",
        extra={**quick, "project_id": PROJECT, "instance_id": INSTANCE},
    )
    set_connection(
        "verizon_thingspace_default",
        "verizon_thingspace",
        host=TS_ROOT,
        login="oauth-key",
        password="oauth-secret-1",
        extra={
            **quick,
            "m2m_username": "uws-user",
            "m2m_password": "uws-password-1",
            "account_name": ACCOUNT,
        },
    )


@pytest.fixture
def thingspace_logins(requests_mock: rm.Mocker) -> None:
    requests_mock.post(TS_TOKEN, json={"access_token": "access-token-1", "expires_in": 3600})
    requests_mock.post(TS_LOGIN, json={"sessionToken": "session-token-1"})


def _fails(operator: Any) -> tuple[dict[str, Any], IoTFleetError]:
    """Run ``operator`` as a task does; it must fail with a typed error. Returns its XCom and error."""
    context = operator_context(operator.task_id)
    # Anything but an IoTFleetError (a KeyError, TypeError, JSONDecodeError) propagates and fails here.
    with pytest.raises(IoTFleetError) as caught:
        operator.execute(context)
    return context["ti"].xcom, caught.value  # type: ignore[attr-defined]


def _failed_outcome(operator: Any) -> dict[str, Any]:
    """The outcome of a run where every item failed: pushed before raising, no return value."""
    xcom, error = _fails(operator)
    assert isinstance(error, IoTFleetOperationFailedError)
    assert xcom == {OUTCOME_KEY: error.outcome}
    return error.outcome


def _assert_names(message: str, vendor: str, action: str, says: str) -> None:
    assert vendor in message
    assert action in message
    assert says in message


def _one_group(
    outcome: dict[str, Any],
    vendor: str,
    devices: list[Any],
    says: str,
    *,
    names_no_device: bool = True,
    status: str = "failed",
) -> dict[str, Any]:
    """Every device of ``outcome`` ended ``status`` under one error group that says ``says``, keeps
    the request id and (unless the error is about a device id) names none of the devices."""
    assert outcome["vendor"] == vendor
    assert all(outcome["devices"][status] == [] for status in DONE)
    (group,) = outcome["errors"]
    assert (group["status"], group["devices"], group["request_id"]) == (status, devices, RID)
    assert says in group["message"]
    if names_no_device:
        assert not any(str(device) in group["message"] for device in devices)
    return group


def _retryable(kind: str) -> bool:
    """A 5xx may pass later; a 2xx whose body was unusable, after its retries, is not expected to."""
    return kind == "html error page"


# --- HTML error pages, truncated JSON, empty 200s, huge bodies -------------------------------------


@pytest.mark.parametrize("kind", MALFORMED)
def test_paloalto_bulk_update(requests_mock: rm.Mocker, kind: str) -> None:
    """The batch fails with the vendor, endpoint and request id; nothing is counted as updated. The
    bulk update, an idempotent PUT, is sent again on each retry."""
    bulk = requests_mock.put(f"{PAN_HOST}/pub/v4.0/device/bulkUpdate", **_answer(kind))
    outcome = _failed_outcome(
        PaloAltoIoTBulkUpdateOperator(task_id="pan", devices=[{"imei": IMEI}, {"imei": IMEI_2}])
    )
    assert (outcome["requested"], outcome["updated"], outcome["batches"]) == (2, 0, 1)
    group = _one_group(outcome, PAN_VENDOR, [IMEI, IMEI_2], GROUP_SAYS[kind])
    assert group["retryable"] is _retryable(kind)
    assert bulk.call_count == _tries(kind)


@pytest.mark.parametrize("kind", MALFORMED)
def test_cisco_edit(requests_mock: rm.Mocker, kind: str) -> None:
    """After an unusable answer the edit may have applied: the device is read back (here unreadable
    too), so the edit ends unknown, with the request id of its answer, and is never sent twice."""
    edits = requests_mock.put(re.compile(rf"{CC_HOST}/rws/api/v1/devices/\d+$"), **_answer(kind))
    reads = requests_mock.get(re.compile(rf"{CC_HOST}/rws/api/v1/devices/\d+$"), **_answer(kind))
    outcome = _failed_outcome(
        CiscoControlCenterEditDevicesOperator(
            task_id="cisco", iccids=[ICCID, ICCID_19], changes={"accountCustom1": "x"}, skip_unchanged=False
        )
    )
    # The same error on both devices is one group, although each had its own request and path.
    group = _one_group(outcome, CC_VENDOR, [ICCID, ICCID_19], GROUP_SAYS[kind], status="unknown")
    assert group["retryable"] is False  # it may have applied: check before sending again
    assert "reading the device back failed too" in group["message"]
    assert edits.call_count == 2  # once per device
    # A 502 to a PUT, like a 2xx whose body is unusable, may hide an applied edit: each device is
    # read back (and the read, unusable too, retried) instead.
    assert reads.call_count == 2 * _tries(kind)


@pytest.mark.parametrize("kind", MALFORMED)
def test_huawei_force_offline(requests_mock: rm.Mocker, kind: str) -> None:
    """The devices are read back (unreadable here) rather than forced offline a second time, so
    every device of the request ends unknown, with the request id of the answer."""
    force = requests_mock.post(f"{ROMA_DEVICES}/force-offline", **_answer(kind))
    requests_mock.get(re.compile(rf"{ROMA_DEVICES}/\d+$"), **_answer(kind))
    outcome = _failed_outcome(HuaweiRomaForceOfflineOperator(task_id="roma", device_ids=[700001, 700002]))
    group = _one_group(outcome, ROMA_VENDOR_NAME, [700001, 700002], GROUP_SAYS[kind], status="unknown")
    assert group["retryable"] is False
    assert "reading the devices back failed too" in group["message"]
    assert force.call_count == 1


@pytest.mark.parametrize("kind", MALFORMED)
@pytest.mark.usefixtures("thingspace_logins")
def test_verizon_sync_firmware(requests_mock: rm.Mocker, kind: str) -> None:
    """A sync only makes ThingSpace read the devices, so an unusable answer is retried like a read's;
    then its devices fail under one group, never as synced (nor as an outcome unknown)."""
    sync = requests_mock.put(TS_SYNC_URL, **_answer(kind))
    outcome = _failed_outcome(VerizonThingSpaceSyncFirmwareOperator(task_id="sync", imeis=[IMEI, IMEI_2]))
    assert outcome["firmware"] == {}
    group = _one_group(outcome, TS_VENDOR, [IMEI, IMEI_2], GROUP_SAYS[kind])
    assert group["retryable"] is _retryable(kind)
    assert sync.call_count == _tries(kind)


@pytest.mark.parametrize("kind", MALFORMED)
@pytest.mark.usefixtures("thingspace_logins")
def test_verizon_fota_listing(requests_mock: rm.Mocker, kind: str) -> None:
    """The listing, a read, is tried again, then the task fails with a typed error naming the
    vendor, endpoint and request id, and nothing in XCom."""
    listing = requests_mock.get(f"{TS_ROOT}/api/fota/v3/devices/{ACCOUNT}", **_answer(kind))
    xcom, error = _fails(VerizonThingSpaceFotaDevicesOperator(task_id="fota"))
    assert isinstance(error, IoTFleetVendorResponseError)
    assert xcom == {}
    assert error.request_id == RID
    _assert_names(str(error), TS_VENDOR, TS_LIST_ACTION, SAYS[kind])
    assert listing.call_count == _tries(kind)


# --- valid JSON, but not what the vendor documents ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param({"message": "OK", "updatedDeviceNum": 2}, "no 'code' field", id="no-code"),
        pytest.param({"code": [1], "updatedDeviceNum": 2}, "'code' of type list", id="code-list"),
        pytest.param({"code": 1, "message": "OK"}, "no 'updatedDeviceNum' field", id="no-count"),
        pytest.param({"code": 1, "updatedDeviceNum": "two"}, "updatedDeviceNum 'two'", id="count-text"),
        pytest.param({"code": 1, "updatedDeviceNum": 3}, "updatedDeviceNum 3 for 2 devices", id="count-high"),
        pytest.param({"code": 0, "message": "partial"}, "did not confirm the bulk update", id="code-0"),
        pytest.param([{"code": 1}], "a list where a JSON object was expected", id="list"),
    ],
)
def test_paloalto_answer_with_missing_or_mistyped_fields(
    requests_mock: rm.Mocker, body: Any, says: str
) -> None:
    """The batch fails with a message naming the field, the endpoint and the request id."""
    requests_mock.put(f"{PAN_HOST}/pub/v4.0/device/bulkUpdate", **_json(body))
    outcome = _failed_outcome(
        PaloAltoIoTBulkUpdateOperator(task_id="pan", devices=[{"imei": IMEI}, {"imei": IMEI_2}])
    )
    assert outcome["updated"] == 0
    _one_group(outcome, PAN_VENDOR, [IMEI, IMEI_2], says)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param({}, "no 'iccid' field", id="no-iccid"),
        pytest.param({"iccid": 89014103211118510720}, "'iccid' of type int", id="iccid-number"),
        pytest.param({"iccid": ICCID_19}, f"the ICCID '{ICCID_19}' instead of '{ICCID}'", id="other-iccid"),
        pytest.param(["iccid"], "a list where a JSON object was expected", id="list"),
    ],
)
def test_cisco_answer_with_missing_or_mistyped_fields(requests_mock: rm.Mocker, body: Any, says: str) -> None:
    """The device fails with a message naming the field, the endpoint and the request id."""
    requests_mock.put(f"{CC_HOST}/rws/api/v1/devices/{ICCID}", **_json(body))
    outcome = _failed_outcome(
        CiscoControlCenterEditDevicesOperator(
            task_id="cisco", iccids=[ICCID], changes={"accountCustom1": "x"}, skip_unchanged=False
        )
    )
    # An answer about another ICCID can only be told by naming both.
    _one_group(outcome, CC_VENDOR, [ICCID], says, names_no_device=ICCID not in says)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param({"success": "all", "failed": []}, "'success' of type str", id="success-text"),
        pytest.param(
            {"success": [700001], "failed": []}, "'success' items that are not JSON objects", id="ids"
        ),
        pytest.param({"success": [], "failed": {"id": 700002}}, "'failed' of type dict", id="failed-dict"),
        pytest.param([], "a list where a JSON object was expected", id="list"),
    ],
)
def test_huawei_answer_with_missing_or_mistyped_fields(
    requests_mock: rm.Mocker, body: Any, says: str
) -> None:
    """Every device of the request fails with a message naming the field, endpoint and request id."""
    requests_mock.post(f"{ROMA_DEVICES}/force-offline", **_json(body))
    outcome = _failed_outcome(HuaweiRomaForceOfflineOperator(task_id="roma", device_ids=[700001, 700002]))
    _one_group(outcome, ROMA_VENDOR_NAME, [700001, 700002], says)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param({"accountName": ACCOUNT}, "no 'deviceFirmwarVersionList' field", id="no-list"),
        pytest.param(
            {"deviceFirmwarVersionList": {"deviceId": IMEI}},
            "'deviceFirmwarVersionList' of type dict",
            id="dict",
        ),
        pytest.param(
            {"deviceFirmwarVersionList": [IMEI]},
            "'deviceFirmwarVersionList' items that are not JSON objects",
            id="ids",
        ),
    ],
)
@pytest.mark.usefixtures("thingspace_logins")
def test_verizon_sync_answer_with_missing_or_mistyped_fields(
    requests_mock: rm.Mocker, body: Any, says: str
) -> None:
    """No device is claimed synced: both fail under one group naming the field."""
    requests_mock.put(TS_SYNC_URL, **_json(body))
    outcome = _failed_outcome(VerizonThingSpaceSyncFirmwareOperator(task_id="sync", imeis=[IMEI, IMEI_2]))
    assert outcome["firmware"] == {}
    _one_group(outcome, TS_VENDOR, [IMEI, IMEI_2], says)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param({"hasMoreData": False}, "no 'deviceList' field", id="no-list"),
        pytest.param({"deviceList": {"deviceId": IMEI}}, "'deviceList' of type dict", id="list-dict"),
        pytest.param(
            {"deviceList": [{"deviceId": IMEI}], "hasMoreData": "no"},
            "'hasMoreData' of type str",
            id="more-text",
        ),
        pytest.param(
            {"deviceList": [{"deviceId": IMEI}], "hasMoreData": True},
            "no 'lastSeenDeviceId' field",
            id="no-cursor",
        ),
        # A device without its IMEI used to be listed in XCom with device_id None (or a list, a dict).
        pytest.param(
            {"deviceList": [{"mdn": "5550000001"}]}, "a device without a deviceId", id="no-device-id"
        ),
        pytest.param(
            {"deviceList": [{"deviceId": [IMEI]}]}, "a device without a deviceId", id="device-id-list"
        ),
        pytest.param(
            {"deviceList": [{"deviceId": True}]}, "a device without a deviceId", id="device-id-bool"
        ),
        pytest.param(
            {"deviceList": [{"deviceId": " "}]}, "a device without a deviceId", id="device-id-blank"
        ),
    ],
)
@pytest.mark.usefixtures("thingspace_logins")
def test_verizon_fota_listing_with_missing_or_mistyped_fields(
    requests_mock: rm.Mocker, body: Any, says: str
) -> None:
    """The task fails with a typed error naming the field, the endpoint and the request id, and
    nothing in XCom: a listing with a hole in it is not a listing."""
    requests_mock.get(f"{TS_ROOT}/api/fota/v3/devices/{ACCOUNT}", **_json(body))
    xcom, error = _fails(VerizonThingSpaceFotaDevicesOperator(task_id="fota"))
    assert isinstance(error, IoTFleetVendorResponseError)
    assert xcom == {}
    assert error.request_id == RID
    _assert_names(str(error), TS_VENDOR, TS_LIST_ACTION, says)


@pytest.mark.parametrize("software", [5, 1.5, True, "fw", {"name": "modem", "version": "2"}])
@pytest.mark.usefixtures("thingspace_logins")
def test_verizon_fota_listing_with_a_mistyped_software_list(requests_mock: rm.Mocker, software: Any) -> None:
    """A softwareList that is not a list used to raise a bare TypeError (a number, a bool); it is
    read like a one-entry list, as filesList is, and entries that are not objects are left out."""
    requests_mock.get(
        f"{TS_ROOT}/api/fota/v3/devices/{ACCOUNT}",
        json={"deviceList": [{"deviceId": IMEI, "softwareList": software}], "hasMoreData": False},
    )
    context = operator_context("fota")
    outcome = VerizonThingSpaceFotaDevicesOperator(task_id="fota").execute(context)
    (device,) = outcome["devices"]
    assert device["device_id"] == IMEI
    expected = [{"name": "modem", "version": "2", "upgrade_time": None}] if isinstance(software, dict) else []
    assert device["software"] == expected


@pytest.mark.parametrize(
    ("url", "answer", "action", "says"),
    [
        pytest.param(
            TS_TOKEN,
            {"json": {"token_type": "Bearer"}},
            "POST /api/ts/v1/oauth2/token",
            "no 'access_token' field",
            id="token-no-field",
        ),
        pytest.param(
            TS_TOKEN,
            {"text": HTML},
            "POST /api/ts/v1/oauth2/token",
            "a body that is not JSON",
            id="token-html",
        ),
        pytest.param(
            TS_LOGIN,
            {"json": {"session": "s"}},
            "POST /api/m2m/v1/session/login",
            "no 'sessionToken' field",
            id="login-no-field",
        ),
        pytest.param(
            TS_LOGIN, {"content": b""}, "POST /api/m2m/v1/session/login", "an empty body", id="login-empty"
        ),
    ],
)
def test_verizon_login_answers_that_are_not_what_thingspace_documents(
    requests_mock: rm.Mocker, url: str, answer: dict[str, Any], action: str, says: str
) -> None:
    """A malformed token or session answer is a typed error naming the endpoint and request id; the
    answer, which would hold a credential, is never quoted."""
    requests_mock.post(TS_TOKEN, json={"access_token": "access-token-1", "expires_in": 3600})
    requests_mock.post(TS_LOGIN, json={"sessionToken": "session-token-1"})
    requests_mock.post(url, **{**answer, "headers": {"X-Request-Id": RID}})
    listing = requests_mock.get(f"{TS_ROOT}/api/fota/v3/devices/{ACCOUNT}", json={"deviceList": []})
    xcom, error = _fails(VerizonThingSpaceFotaDevicesOperator(task_id="fota"))
    assert isinstance(error, IoTFleetVendorResponseError)
    assert xcom == {}
    assert error.request_id == RID
    _assert_names(str(error), TS_VENDOR, action, says)
    assert "<html>" not in str(error)
    assert listing.call_count == 0
