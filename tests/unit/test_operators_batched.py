"""The three batched operators, driven through ``execute`` as a task would run them.

PaloAltoIoTBulkUpdateOperator, HuaweiRomaForceOfflineOperator and VerizonThingSpaceSyncFirmwareOperator
share the base's batching, validation and outcome accounting; each test asserts what a DAG author
sees: the returned outcome (see airflow_provider_iotfleet/outcome.py), the ``outcome`` XCom pushed
before the task fails, the error raised, the log lines and the requests sent. A retry is the same
operator run again with ``try_number=2`` and, on Airflow 3.3+, the same task state store.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import requests
import requests_mock as rm
from airflow.sdk import DAG

from airflow_provider_iotfleet.exceptions import IoTFleetError, IoTFleetValidationError
from airflow_provider_iotfleet.hooks.base import RATE_HEADROOM
from airflow_provider_iotfleet.hooks.huawei import hook as huawei_hook
from airflow_provider_iotfleet.hooks.huawei.answers import NEVER_CONNECTED_MESSAGE, NOT_FORCED_OFFLINE
from airflow_provider_iotfleet.operators import huawei as huawei_operator
from airflow_provider_iotfleet.operators.base import OUTCOME_KEY, IoTFleetOperationFailedError
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator
from airflow_provider_iotfleet.operators.verizon import VerizonThingSpaceSyncFirmwareOperator
from airflow_provider_iotfleet.validation import validate_roma_device_ids
from tests.connections import PALOALTO_ACCESS_KEY as ACCESS_KEY
from tests.connections import PALOALTO_KEY_ID as KEY_ID
from tests.connections import PALOALTO_TENANT_HOST as TENANT_HOST
from tests.connections import ROMA, ROMA_HOST, with_extra
from tests.connections import ROMA_IAM_PASSWORD as IAM_PASSWORD
from tests.connections import ROMA_IAM_URL as IAM_URL
from tests.connections import ROMA_INSTANCE as INSTANCE
from tests.connections import ROMA_PROJECT as PROJECT
from tests.connections import ROMA_SK as SK
from tests.connections import THINGSPACE_ACCOUNT as ACCOUNT
from tests.connections import THINGSPACE_KEY as KEY
from tests.connections import THINGSPACE_LOGIN_URL as LOGIN_URL
from tests.connections import THINGSPACE_M2M_PASSWORD as M2M_PASSWORD
from tests.connections import THINGSPACE_ROOT as ROOT
from tests.connections import THINGSPACE_SECRET as SECRET
from tests.connections import THINGSPACE_TOKEN_URL as TOKEN_URL
from tests.fakes import (
    ICCID,
    IMEI,
    IMEI_2,
    FakeClock,
    FakeTaskStateStore,
    assert_outcome_shape,
    luhn_complete,
    operator_context,
)
from tests.log_capture import Logs

# Operators build their hooks with the system clock: the test's fake clock instead (conftest).
pytestmark = pytest.mark.usefixtures("system_clock")

# --- Palo Alto Networks IoT Security (as in test_hooks_paloalto.py) -------------------------------
BULK_URL = f"{TENANT_HOST}/pub/v4.0/device/bulkUpdate"
SCM_URL = "https://api.strata.paloaltonetworks.com/iot/pub/v1/device/bulkUpdate"
SCM_TOKEN_URL = "https://auth.apps.paloaltonetworks.com/oauth2/access_token"
CLIENT_ID, CLIENT_SECRET = "svc@1234567.iam.panserviceaccount.com", "scm-client-secret-value"
SCM_TOKEN = "scm-bearer-token-0a1b2c3d"
PAN_500 = {"code": 500, "msg": "Internal server error. A unified status for API communication type errors."}
PAN_400 = {
    "code": "400",
    "msg": "Bad Request. This occurs when an HTTP request contains an invalid query string.",
}
PAN_403 = {
    "code": "403",
    "msg": "Forbidden access. Either the provided API key is invalid or it does not have the required "
    "RBAC permissions to run this API.",
}
#: What the outcome adds to a refused key: which fields of which connection to check.
PAN_403_HINT = (
    " Check the login (key id), password (access key) and the key's API role of connection "
    "'paloalto_iot_default'"
)

# --- Huawei ROMA Connect (as in test_hooks_huawei.py) -------------------------------------------
FORCE_OFFLINE_URL = f"{ROMA_HOST}/v2/{PROJECT}/link/instances/{INSTANCE}/devices/force-offline"
DEVICES_URL = f"{ROMA_HOST}/v2/{PROJECT}/link/instances/{INSTANCE}/devices"
STS_TOKEN = "sts-security-token-value-9876"
IAM_TOKEN = "MIIT-iam-token-24680"
ROMA_500 = {
    "error_code": "ROMA.00110002",
    "error_msg": "The instance does not exist.",
    "request_id": "c8c06d0a-be92-4fdf-9d10-bc20131ab158",
}
ROMA_400 = {
    "error_code": "SCB.00000000",
    "error_msg": "Parameter is not valid for operation [romalink.link-device.forceDisconnect].",
    "requestId": "cb39e78a-afd3-4e04-901d-70468b1c23dc",
}
ROMA_401 = {
    "error_code": "APIGW.0301",
    "error_msg": "Incorrect IAM authentication information: verify aksk signature fail",
    "request_id": "r-401",
}
ROMA_401_HINT = (
    ". Check the login (AK), password (SK) and security_token extra, and the worker's clock (the gateway "
    "refuses signatures more than 15 minutes off) of connection 'huawei_roma_default'"
)

# --- Verizon ThingSpace (as in test_hooks_verizon.py) -------------------------------------------
FOTA = f"{ROOT}/api/fota/v3"
SYNC_URL = f"{FOTA}/firmware/{ACCOUNT}/devices"
SUCCESS = "FirmwareVersionUpdateSuccess"
VZ_FAULT = {"fault": {"code": "900901", "message": "Invalid Credentials"}}
VZ_400 = {"errorCode": "FOTA.REQUEST_FAILED.InvalidBody", "errorMessage": "The request body is invalid."}

START = datetime(2026, 11, 1)


def imei(n: int) -> str:
    return luhn_complete(f"{35_000_000_000_000 + n:014d}")


def pan_device(n: int) -> dict[str, str]:
    return {"imei": imei(n), "SessionEvtType": "Start"}


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def roma_conn(set_connection: Callable[..., None]) -> None:
    """``huawei_roma_default`` with temporary credentials: the AK/SK and a security token."""
    set_connection("huawei_roma_default", **with_extra(ROMA, security_token=STS_TOKEN))


# --- answer builders -----------------------------------------------------------------------------


def pan_answer(
    fail: dict[str, tuple[int, dict[str, Any]]] | None = None,
) -> Callable[[Any, Any], dict[str, Any]]:
    """Answer bulk updates: every device counted, unless the batch holds an IMEI in ``fail``."""

    def answer(request: Any, context: Any) -> dict[str, Any]:
        devicelist = request.json()["devicelist"]
        for device in devicelist:
            if device.get("imei") in (fail or {}):
                context.status_code, body = (fail or {})[device["imei"]]
                return body
        return {
            "api": "device/bulkUpdate",
            "ver": "v4.0",
            "code": 1,
            "message": "OK",
            "updatedDeviceNum": len(devicelist),
        }

    return answer


def pan_sizes(requests_mock: rm.Mocker) -> list[int]:
    return [len(r.json()["devicelist"]) for r in requests_mock.request_history if r.method == "PUT"]


def roma_answer(
    fail: dict[int, tuple[int, dict[str, Any]]] | None = None,
) -> Callable[[Any, Any], dict[str, Any]]:
    """Answer force-offline: every id succeeds, unless the batch holds an id in ``fail``."""

    def answer(request: Any, context: Any) -> dict[str, Any]:
        ids = request.json()["device_ids"]
        for device_id in ids:
            if device_id in (fail or {}):
                context.status_code, body = (fail or {})[device_id]
                return body
        return {"success": [{"id": i, "device_name": f"meter-{i}"} for i in ids], "failed": []}

    return answer


def roma_sizes(requests_mock: rm.Mocker) -> list[int]:
    return [len(r.json()["device_ids"]) for r in requests_mock.request_history if r.method == "POST"]


def vz_answer(
    fail: dict[str, tuple[int, dict[str, Any]]] | None = None,
) -> Callable[[Any, Any], dict[str, Any]]:
    """Answer firmware syncs: every IMEI synced, unless the batch holds an IMEI in ``fail``."""

    def answer(request: Any, context: Any) -> dict[str, Any]:
        batch = request.json()["deviceList"]
        for device in batch:
            if device in (fail or {}):
                context.status_code, body = (fail or {})[device]
                return body
        return {
            "accountName": ACCOUNT,
            "deviceFirmwarVersionList": [  # sic
                {
                    "deviceId": device,
                    "status": SUCCESS,
                    "firmwareVersion": "SR1.2.0.0-10657",
                    "VersionUpdateTime": "2022-02-04 06:10:01.441 +0000 UTC",
                }
                for device in batch
            ],
        }

    return answer


def vz_sizes(requests_mock: rm.Mocker) -> list[int]:
    return [len(r.json()["deviceList"]) for r in requests_mock.request_history if r.method == "PUT"]


def assert_json_safe(outcome: dict[str, Any]) -> None:
    assert json.loads(json.dumps(outcome)) == outcome


# --- expected outcomes, written out as outcome.py documents them ----------------------------------

PAN_VENDOR = "Palo Alto Networks IoT Security"
ROMA_VENDOR = "Huawei Cloud ROMA Connect"
VZ_VENDOR = "Verizon ThingSpace"
DONE = ("succeeded", "unchanged", "scheduled", "accepted")


def error(
    error_code: str | None,
    http_status: int | None,
    message: str,
    devices: list[Any],
    *,
    request_id: str | None = None,
    retryable: bool = False,
    attempted: bool = True,
    status: str = "failed",
) -> dict[str, Any]:
    """One error group of an outcome, as XCom carries it."""
    return {
        "status": status,
        "error_code": error_code,
        "http_status": http_status,
        "message": message,
        "request_id": request_id,
        "retryable": retryable,
        "attempted": attempted,
        "devices": devices,
    }


def outcome(
    operation: str,
    vendor: str,
    requested: int,
    errors: list[dict[str, Any]] | None = None,
    *,
    details: dict[str, Any],
    **done: list[Any],
) -> dict[str, Any]:
    """A whole outcome: ``done`` maps statuses to devices, ``errors`` lists the error groups."""
    errors = errors or []
    counts = {status: len(done.get(status, [])) for status in DONE}
    for status in ("failed", "unknown"):
        counts[status] = sum(len(group["devices"]) for group in errors if group["status"] == status)
    return {
        "operation": operation,
        "vendor": vendor,
        "requested": requested,
        "dry_run": False,
        "counts": counts,
        "devices": {status: done.get(status, []) for status in DONE},
        "errors": errors,
        **details,
    }


def pan_outcome(
    requested: int,
    accepted: list[str],
    errors: list[dict[str, Any]] | None = None,
    *,
    updated: int,
    batches: int,
) -> dict[str, Any]:
    return outcome(
        "bulk_update",
        PAN_VENDOR,
        requested,
        errors,
        accepted=accepted,
        details={"updated": updated, "batches": batches},
    )


def roma_outcome(
    requested: int,
    succeeded: list[int],
    errors: list[dict[str, Any]] | None = None,
    unchanged: list[int] | None = None,
) -> dict[str, Any]:
    return outcome(
        "force_offline",
        ROMA_VENDOR,
        requested,
        errors,
        succeeded=succeeded,
        unchanged=unchanged or [],
        details={},
    )


def vz_outcome(
    requested: int,
    firmware: dict[str, str],
    errors: list[dict[str, Any]] | None = None,
    *,
    account: str = ACCOUNT,
) -> dict[str, Any]:
    return outcome(
        "sync_firmware",
        VZ_VENDOR,
        requested,
        errors,
        succeeded=list(firmware),
        details={"account_name": account, "firmware": firmware},
    )


# === construction ================================================================================


@pytest.mark.parametrize(
    ("make", "maximum"),
    [
        (lambda size: PaloAltoIoTBulkUpdateOperator(task_id="t", devices=[], batch_size=size), 1000),
        (lambda size: HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[], batch_size=size), 1000),
        (lambda size: VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=[], batch_size=size), 100),
    ],
    ids=["paloalto", "huawei", "verizon"],
)
def test_batch_size_outside_the_vendor_range_is_refused_at_construction(
    make: Callable[[Any], Any], maximum: int, requests_mock: rm.Mocker
) -> None:
    for bad in (0, maximum + 1, -1, True, "10"):
        with pytest.raises(IoTFleetValidationError, match=f"takes 1 to {maximum} per request"):
            make(bad)
    assert make(maximum).batch_size == maximum
    assert make(1).batch_size == 1
    assert requests_mock.call_count == 0


def test_rate_limit_share_spaces_the_requests_by_the_share(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    """Four tasks with a quarter each send, together, what the connection allows one task."""
    set_connection(
        "pan_quarter",
        "paloalto_iot",
        host=TENANT_HOST,
        login=KEY_ID,
        password=ACCESS_KEY,
        extra={"requests_per_minute": 120},
    )
    requests_mock.put(BULK_URL, json=pan_answer())
    devices = [pan_device(n) for n in range(4)]
    op = PaloAltoIoTBulkUpdateOperator(
        task_id="t", devices=devices, batch_size=1, paloalto_iot_conn_id="pan_quarter", rate_limit_share=0.25
    )
    op.execute(operator_context())
    assert pan_sizes(requests_mock) == [1, 1, 1, 1]
    # 120 per minute is one request every 0.5 s; a quarter of it, one every 2 s (paced a little under).
    assert op.hook.client.rate_limiter is not None and op.hook.client.rate_limiter.rate == 0.5 * RATE_HEADROOM
    assert [round(s, 6) for s in clock.sleeps] == [round(2.0 / RATE_HEADROOM, 6)] * 3


@pytest.mark.parametrize("share", [0, -0.5, 1.5, float("nan"), "0.5", True, None])
def test_rate_limit_share_outside_0_to_1_is_refused_at_construction(share: Any) -> None:
    with pytest.raises(IoTFleetValidationError) as raised:
        PaloAltoIoTBulkUpdateOperator(task_id="quarter", devices=[], rate_limit_share=share)
    assert "quarter: rate_limit_share is invalid" in str(raised.value)
    assert "above 0 and at most 1" in str(raised.value)


# === Palo Alto Networks IoT Security =============================================================


@pytest.mark.parametrize(("count", "sizes"), [(3, [3]), (4, [4]), (5, [4, 1])])
def test_pan_batch_boundaries(
    paloalto_connection: None, requests_mock: rm.Mocker, count: int, sizes: list[int]
) -> None:
    requests_mock.put(BULK_URL, json=pan_answer())
    devices = [pan_device(n) for n in range(count)]
    ctx = operator_context()
    result = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices, batch_size=4).execute(ctx)
    ids = [d["imei"] for d in devices]
    assert result == pan_outcome(count, ids, updated=count, batches=len(sizes))
    assert ctx["ti"].xcom == {}  # the outcome is the return value; nothing else is pushed
    assert pan_sizes(requests_mock) == sizes
    sent = [d for r in requests_mock.request_history for d in r.json()["devicelist"]]
    assert sent == devices  # in order, each once
    assert all(
        r.qs == {"customerid": ["acme-iot"], "updatesource": ["cellular"]}
        for r in requests_mock.request_history
    )


def test_pan_default_batch_is_the_vendor_maximum(paloalto_connection: None, requests_mock: rm.Mocker) -> None:
    requests_mock.put(BULK_URL, json=pan_answer())
    devices = [pan_device(n) for n in range(1001)]
    result = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices).execute(operator_context())
    assert pan_sizes(requests_mock) == [1000, 1]
    assert (result["requested"], result["updated"], result["batches"]) == (1001, 1001, 2)
    assert result["devices"]["accepted"] == [d["imei"] for d in devices]


def test_pan_devices_are_validated_once_not_again_per_batch(
    paloalto_connection: None, requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation must not dominate a bulk run: the operator checks its input once, the hook trusts it."""
    from airflow_provider_iotfleet.hooks.paloalto import hook as paloalto_hook
    from airflow_provider_iotfleet.operators import paloalto as paloalto_operator

    calls: list[int] = []
    original = paloalto_hook.validate_cellular_devices

    def counted(devices: Any, name: str = "devices") -> list[dict[str, str]]:
        calls.append(len(devices))
        return original(devices, name)

    monkeypatch.setattr(paloalto_operator, "validate_cellular_devices", counted)
    monkeypatch.setattr(paloalto_hook, "validate_cellular_devices", counted)
    requests_mock.put(BULK_URL, json=pan_answer())
    devices = [pan_device(n) for n in range(10)]

    PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices, batch_size=4).execute(operator_context())

    assert calls == [10]
    assert pan_sizes(requests_mock) == [4, 4, 2]
    # Called directly, the hook still checks what it is given.
    with pytest.raises(IoTFleetValidationError):
        paloalto_hook.PaloAltoIoTSecurityHook().bulk_update([{"imei": "123"}])
    assert calls == [10, 1]


def test_pan_every_bad_device_is_named_before_any_request(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    devices = [
        {"imei": IMEI},
        {"imei": "490154203237519"},  # Luhn check digit wrong
        {"apn": "iot.example"},  # no identifier
        {"ipAddress": "10.0.0.300"},
        {"iccid": ICCID, "colour": "red"},
        "not-a-device",
    ]
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices)
    with pytest.raises(IoTFleetValidationError) as caught:
        op.execute(operator_context())
    message = str(caught.value)
    assert "5 problems in 6 devices" in message
    for expected in (
        "devices[1].imei '490154203237519' fails the IMEI check digit",
        "devices[2]: needs at least one of",
        "devices[3].ipAddress '10.0.0.300'",
        "devices[4]: unknown field 'colour'",
        "devices[5]: must be a mapping",
    ):
        assert expected in message
    assert "devices[0]" not in message
    assert requests_mock.call_count == 0


def test_pan_plain_string_is_refused_before_any_request(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices="490154203237518")
    with pytest.raises(IoTFleetValidationError, match="devices must be a list"):
        op.execute(operator_context())
    assert requests_mock.call_count == 0


def test_pan_duplicates_are_sent_once(
    paloalto_connection: None, requests_mock: rm.Mocker, logs: Logs
) -> None:
    requests_mock.put(BULK_URL, json=pan_answer())
    devices = [
        {"imei": IMEI, "SessionEvtType": "Start"},
        {"SessionEvtType": "Start", "imei": int(IMEI)},  # same device: other key order, an int
        {"imei": IMEI_2},
        {"imei": IMEI_2},
    ]
    result = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices).execute(operator_context())
    assert result == pan_outcome(2, [IMEI, IMEI_2], updated=2, batches=1)
    assert requests_mock.call_count == 1
    assert requests_mock.last_request.json() == {
        "devicelist": [{"imei": IMEI, "SessionEvtType": "Start"}, {"imei": IMEI_2}]
    }
    assert any(
        "updating 2 devices in 1 request (2 duplicates dropped)" in line for line in logs.lines("info")
    )


def test_pan_empty_input_is_a_logged_no_op(
    paloalto_connection: None, requests_mock: rm.Mocker, logs: Logs
) -> None:
    ctx = operator_context()
    result = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=[]).execute(ctx)
    assert result == pan_outcome(0, [], updated=0, batches=0)
    assert ctx["ti"].xcom == {}
    assert requests_mock.call_count == 0
    assert any("devices is empty; nothing to do" in line for line in logs.lines("warning"))


@pytest.mark.parametrize(
    ("status", "body", "attempts", "retryable"),
    [(500, PAN_500, 4, True), (400, PAN_400, 1, False)],
    ids=["500-after-retries", "400-vendor-body"],
)
def test_pan_failed_middle_batch_keeps_the_others(
    paloalto_connection: None,
    requests_mock: rm.Mocker,
    logs: Logs,
    status: int,
    body: dict[str, Any],
    attempts: int,
    retryable: bool,
) -> None:
    devices = [pan_device(n) for n in range(6)]
    ids = [d["imei"] for d in devices]
    requests_mock.put(BULK_URL, json=pan_answer({devices[2]["imei"]: (status, body)}))
    ctx = operator_context()
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices, batch_size=2, fail_on_error=False)
    result = op.execute(ctx)
    assert result == pan_outcome(
        6,
        ids[:2] + ids[4:],
        [error(str(body["code"]), status, body["msg"], ids[2:4], retryable=retryable)],
        updated=4,
        batches=3,
    )
    assert ctx["ti"].xcom == {}  # fail_on_error=False: the failures are in the return value only
    assert_json_safe(result)
    # The failing batch was retried as the policy says, then the last batch still went out.
    assert pan_sizes(requests_mock) == [2] + [2] * attempts + [2]
    assert requests_mock.request_history[-1].json()["devicelist"] == devices[4:]
    retries = [line for line in logs.lines("warning") if "; retry " in line]
    assert len(retries) == attempts - 1


@pytest.mark.parametrize(
    ("answer", "updated"),
    [
        ({"code": "1", "message": "OK", "updatedDeviceNum": "2"}, 2),
        ({"code": 1, "message": "OK", "updatedDeviceNum": 1}, 1),
        ({"code": "1", "message": "OK", "updatedDeviceNum": "0"}, 0),
    ],
)
def test_pan_code_and_count_as_number_or_string(
    paloalto_connection: None, requests_mock: rm.Mocker, answer: dict[str, Any], updated: int
) -> None:
    requests_mock.put(BULK_URL, json={"api": "device/bulkUpdate", "ver": "v4.0", **answer})
    devices = [pan_device(n) for n in range(4)]
    result = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices, batch_size=2).execute(
        operator_context()
    )
    # Accepted whatever the count: IoT Security counts devices it knows, and does not say which.
    assert result == pan_outcome(4, [d["imei"] for d in devices], updated=2 * updated, batches=2)


def test_pan_success_status_without_code_1_fails_the_batch(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    requests_mock.put(
        BULK_URL,
        json={"api": "device/bulkUpdate", "code": "0", "message": "partial failure", "updatedDeviceNum": 0},
    )
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=[pan_device(0)], fail_on_error=False)
    result = op.execute(operator_context())
    assert result["devices"]["accepted"] == []
    (failed,) = result["errors"]
    assert (failed["devices"], failed["http_status"], failed["error_code"]) == ([imei(0)], 200, "0")
    assert (failed["status"], failed["retryable"], failed["attempted"]) == ("failed", False, True)
    assert "partial failure" in failed["message"]


def test_pan_fail_on_error_tries_every_batch_then_raises_grouped_by_code(
    paloalto_connection: None, requests_mock: rm.Mocker, logs: Logs
) -> None:
    devices = [pan_device(n) for n in range(8)]
    requests_mock.put(
        BULK_URL,
        json=pan_answer(
            {
                devices[0]["imei"]: (400, PAN_400),
                devices[4]["imei"]: (500, PAN_500),
                devices[6]["imei"]: (400, PAN_400),
            }
        ),
    )
    ctx = operator_context()
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices, batch_size=2)
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    # Every batch was sent (the 500 one four times), the one good batch counted.
    assert [r.json()["devicelist"][0]["imei"] for r in requests_mock.request_history] == [
        devices[n]["imei"] for n in (0, 2, 4, 4, 4, 4, 6)
    ]
    ids = [d["imei"] for d in devices]
    assert ctx["ti"].xcom == {OUTCOME_KEY: caught.value.outcome}  # pushed once, before failing
    # The two 400 batches are one group: the same error, listed once with all its devices.
    assert caught.value.outcome == pan_outcome(
        8,
        ids[2:4],
        [
            error("400", 400, PAN_400["msg"], ids[0:2] + ids[6:8]),
            error("500", 500, PAN_500["msg"], ids[4:6], retryable=True),
        ],
        updated=2,
        batches=4,
    )
    message = str(caught.value)
    assert message.startswith(f"6 of 8 devices not done: 4 failed with 400 (HTTP 400): {PAN_400['msg']}; ")
    assert f"; 2 failed with 500 (HTTP 500): {PAN_500['msg']}" in message
    assert message.count("with 400") == 1  # grouped, not one entry per batch
    assert "Every device was tried" in message
    assert "fail_on_error=False" in message
    # One error line per group, naming a few of its devices.
    examples_400 = f"{ids[0]}, {ids[1]}, {ids[6]} and 1 more"
    examples_500 = f"{ids[4]}, {ids[5]}"
    assert logs.lines("error") == [
        f"{PAN_VENDOR}: failed: 4 devices, 400 (HTTP 400): {PAN_400['msg']} e.g. {examples_400}",
        f"{PAN_VENDOR}: failed: 2 devices, 500 (HTTP 500): {PAN_500['msg']} e.g. {examples_500}",
    ]


def test_pan_refused_key_stops_the_run(paloalto_connection: None, requests_mock: rm.Mocker) -> None:
    requests_mock.put(BULK_URL, status_code=403, json=PAN_403)
    devices = [pan_device(n) for n in range(5)]
    ctx = operator_context()
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices, batch_size=2)
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    assert requests_mock.call_count == 1  # the later batches were not sent
    ids = [imei(n) for n in range(5)]
    assert ctx["ti"].xcom[OUTCOME_KEY] == pan_outcome(
        5,
        [],
        [
            error("403", 403, PAN_403["msg"] + PAN_403_HINT, ids[:2]),
            error(
                "403",
                403,
                f"not attempted after an earlier error: {PAN_403['msg']}{PAN_403_HINT}",
                ids[2:],
                attempted=False,
            ),
        ],
        updated=0,
        batches=3,
    )
    message = str(caught.value)
    assert message.startswith("5 of 5 devices not done: 2 failed with 403 (HTTP 403): ")
    assert "; 3 failed (not sent) with 403 (HTTP 403): not attempted after an earlier error: " in message
    assert "2 of 5 devices tried, 3 not sent; " in message


def test_pan_throttling_beyond_what_is_worth_waiting_for_stops_the_run(
    paloalto_connection: None, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    # An hour's Retry-After is handed to Airflow's task retries: the later batches are not thrown
    # into the same throttle.
    requests_mock.put(
        BULK_URL, status_code=429, headers={"Retry-After": "3600"}, json={"code": 429, "msg": "slow"}
    )
    ctx = operator_context()
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=[pan_device(n) for n in range(5)], batch_size=2)
    with pytest.raises(IoTFleetOperationFailedError):
        op.execute(ctx)
    assert requests_mock.call_count == 1
    ids = [imei(n) for n in range(5)]
    # Throttling passes with time: every device is one to retry, the ones not sent too.
    assert ctx["ti"].xcom[OUTCOME_KEY]["errors"] == [
        error("429", 429, "slow", ids[:2], retryable=True),
        error(
            "429", 429, "not attempted after an earlier error: slow", ids[2:], retryable=True, attempted=False
        ),
    ]
    assert clock.sleeps == []


def test_roma_unreachable_host_stops_the_run(roma_conn: None, requests_mock: rm.Mocker) -> None:
    requests_mock.post(rm.ANY, exc=requests.exceptions.ConnectTimeout("connect timed out"))
    ctx = operator_context()
    op = HuaweiRomaForceOfflineOperator(
        task_id="t", device_ids=list(range(1, 6)), batch_size=2, fail_on_error=False
    )
    result = op.execute(ctx)
    assert requests_mock.call_count == 4  # the first batch, retried; never the others
    assert result["devices"]["succeeded"] == []
    first, rest = result["errors"]
    assert (first["devices"], first["attempted"], first["retryable"]) == ([1, 2], True, True)
    assert (rest["devices"], rest["attempted"], rest["retryable"]) == ([3, 4, 5], False, True)
    assert "connect timed out" in first["message"]
    assert rest["message"] == f"not attempted after an earlier error: {first['message']}"


def test_pan_devices_template_rendered_as_native_list(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    requests_mock.put(BULK_URL, json=pan_answer())
    devices = [pan_device(n) for n in range(3)]
    with DAG(dag_id="pan_native", schedule=None, start_date=START, render_template_as_native_obj=True):
        op = PaloAltoIoTBulkUpdateOperator(
            task_id="t", devices="{{ params.devices }}", customer_id="{{ params.tenant }}", batch_size=2
        )
    ctx = operator_context()
    op.render_template_fields({**ctx, "params": {"devices": devices, "tenant": "other-tenant"}})
    assert op.devices == devices
    result = op.execute(ctx)
    assert result == pan_outcome(3, [d["imei"] for d in devices], updated=3, batches=2)
    assert pan_sizes(requests_mock) == [2, 1]
    assert requests_mock.last_request.qs["customerid"] == ["other-tenant"]


def test_pan_devices_template_rendered_as_a_string(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    requests_mock.put(BULK_URL, json=pan_answer())
    devices = [pan_device(n) for n in range(3)]
    with DAG(dag_id="pan_text", schedule=None, start_date=START):
        op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices="{{ params.devices }}")
    ctx = operator_context()
    op.render_template_fields({**ctx, "params": {"devices": devices}})
    assert isinstance(op.devices, str)  # a Python list literal, single quotes and all
    result = op.execute(ctx)
    assert result["requested"] == 3
    assert requests_mock.last_request.json() == {"devicelist": devices}


def test_pan_scm_never_leaks_credentials(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, logs: Logs
) -> None:
    set_connection(
        "pa_scm",
        "paloalto_iot",
        login=CLIENT_ID,
        password=CLIENT_SECRET,
        extra={"auth_type": "scm", "tsg_id": "1234567890"},
    )
    requests_mock.post(SCM_TOKEN_URL, json={"access_token": SCM_TOKEN, "expires_in": 899})
    devices = [pan_device(n) for n in range(4)]
    requests_mock.put(SCM_URL, json=pan_answer({devices[2]["imei"]: (500, PAN_500)}))
    ctx = operator_context()
    op = PaloAltoIoTBulkUpdateOperator(
        task_id="t", devices=devices, batch_size=2, paloalto_iot_conn_id="pa_scm"
    )
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    assert requests_mock.request_history[-1].headers["Authorization"] == f"Bearer {SCM_TOKEN}"
    haystack = "\n".join([logs.text(), str(caught.value), repr(caught.value), json.dumps(ctx["ti"].xcom)])
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    for secret in (CLIENT_SECRET, SCM_TOKEN, basic):
        assert secret not in haystack


def test_pan_api_key_never_leaks(paloalto_connection: None, requests_mock: rm.Mocker, logs: Logs) -> None:
    requests_mock.put(BULK_URL, status_code=403, json=PAN_403)
    ctx = operator_context()
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        PaloAltoIoTBulkUpdateOperator(task_id="t", devices=[pan_device(0)]).execute(ctx)
    assert requests_mock.last_request.headers["X-Access-Key"] == ACCESS_KEY
    haystack = "\n".join([logs.text(), str(caught.value), repr(caught.value), json.dumps(ctx["ti"].xcom)])
    assert ACCESS_KEY not in haystack


def test_paloalto_outcome_matches_the_documented_shape(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    devices = [pan_device(0), {"iccid": ICCID}, {"ipAddress": "10.0.0.7", "imei": IMEI}]
    requests_mock.put(BULK_URL, json=pan_answer({devices[0]["imei"]: (400, PAN_400)}))
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices, batch_size=1, fail_on_error=False)
    result = op.execute(operator_context())
    # A device's id is its first identifier among ipAddress, ipv6Address, imei, iccid, imsi, msisdn.
    assert_outcome_shape(result, operation="bulk_update", requested=[imei(0), ICCID, "10.0.0.7"])
    assert result["devices"]["accepted"] == [ICCID, "10.0.0.7"]
    assert [group["devices"] for group in result["errors"]] == [[imei(0)]]
    assert (result["updated"], result["batches"]) == (2, 3)


def test_pan_failed_request_is_one_error_group_with_its_request_id(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    devices = [pan_device(n) for n in range(6)]
    ids = [d["imei"] for d in devices]
    requests_mock.put(
        BULK_URL,
        [
            {"json": pan_answer()},
            {"status_code": 400, "json": PAN_400, "headers": {"X-Request-Id": "pan-rid-2"}},
            {"json": pan_answer()},
        ],
    )
    ctx = operator_context()
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices, batch_size=2)
    with pytest.raises(IoTFleetOperationFailedError):
        op.execute(ctx)
    assert ctx["ti"].xcom[OUTCOME_KEY]["errors"] == [
        error("400", 400, PAN_400["msg"], ids[2:4], request_id="pan-rid-2")
    ]


def _pan_try(
    devices: list[dict[str, str]], try_number: int, store: FakeTaskStateStore | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one try of a bulk update of ``devices`` in batches of 2; return its outcome and XCom."""
    ctx = operator_context(try_number=try_number, state_store=store)
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices, batch_size=2)
    try:
        return op.execute(ctx), ctx["ti"].xcom
    except IoTFleetOperationFailedError as failed:
        return failed.outcome, ctx["ti"].xcom


def test_pan_retry_sends_only_the_requests_an_earlier_try_did_not_get_accepted(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    """Airflow 3.3+: accepted requests are recorded in the task's state; try 2 sends only the rest."""
    devices = [pan_device(n) for n in range(6)]
    ids = [d["imei"] for d in devices]
    store = FakeTaskStateStore()
    route = requests_mock.put(BULK_URL, json=pan_answer({ids[2]: (400, PAN_400)}))
    first, _ = _pan_try(devices, 1, store)
    assert first["devices"]["accepted"] == ids[:2] + ids[4:]
    assert [group["devices"] for group in first["errors"]] == [ids[2:4]]

    route = requests_mock.put(BULK_URL, json=pan_answer())  # whatever was wrong is fixed
    second, xcom = _pan_try(devices, 2, store)
    assert [r.json()["devicelist"] for r in route.request_history] == [devices[2:4]]
    # Every device is accepted, and IoT Security's counts of both tries add up.
    assert second == pan_outcome(6, ids, updated=6, batches=3)
    assert xcom == {}


def test_pan_retry_without_a_task_state_store_sends_every_request_again(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    """Airflow 3.2 keeps no task state: a retry cannot know what was accepted and sends it all again,
    which the bulk update (absolute values) takes without harm. Pinned, as the operator documents."""
    devices = [pan_device(n) for n in range(6)]
    ids = [d["imei"] for d in devices]
    requests_mock.put(BULK_URL, json=pan_answer({ids[2]: (400, PAN_400)}))
    _pan_try(devices, 1, None)
    route = requests_mock.put(BULK_URL, json=pan_answer())
    second, _ = _pan_try(devices, 2, None)
    assert [r.json()["devicelist"] for r in route.request_history] == [
        devices[0:2],
        devices[2:4],
        devices[4:6],
    ]
    assert second == pan_outcome(6, ids, updated=6, batches=3)


def test_pan_journal_is_kept_per_request_content(paloalto_connection: None, requests_mock: rm.Mocker) -> None:
    """A retry with other devices in a batch (the upstream list changed) sends that batch again."""
    devices = [pan_device(n) for n in range(6)]
    store = FakeTaskStateStore()
    # Try 1 leaves the third request failed, so its journal stays for the retry.
    requests_mock.put(BULK_URL, json=pan_answer({devices[4]["imei"]: (400, PAN_400)}))
    _pan_try(devices, 1, store)
    route = requests_mock.put(BULK_URL, json=pan_answer())
    changed = [*devices[:3], pan_device(9), *devices[4:]]
    second, _ = _pan_try(changed, 2, store)
    assert [r.json()["devicelist"] for r in route.request_history] == [changed[2:4], changed[4:6]]
    assert second["devices"]["accepted"] == [d["imei"] for d in changed]


def test_pan_two_different_updates_of_one_device_are_refused_before_any_request(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    devices = [{"imei": IMEI, "apn": "a"}, {"imei": IMEI, "apn": "b"}, {"imei": IMEI, "apn": "a"}]
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices)
    with pytest.raises(IoTFleetValidationError, match=rf"devices 0 and 1 .* both update {IMEI} differently"):
        op.execute(operator_context())
    assert requests_mock.call_count == 0


def test_a_try_that_leaves_nothing_undone_clears_its_journal(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    """Task state outlives a successful run: a task cleared and run again must send everything again,
    not report the earlier run's requests as accepted."""
    devices = [pan_device(n) for n in range(4)]
    store = FakeTaskStateStore()
    route = requests_mock.put(BULK_URL, json=pan_answer())
    _pan_try(devices, 1, store)
    assert store.values == {}
    _pan_try(devices, 1, store)  # cleared in the UI and run again
    assert len(route.request_history) == 4


# === Size: 100,000 devices that fail the same way ================================================


def iccid(n: int) -> str:
    return luhn_complete(f"8901410321{n:09d}")


def test_100k_devices_failing_alike_make_one_small_error_group(
    paloalto_connection: None, requests_mock: rm.Mocker, logs: Logs
) -> None:
    """One error and its devices once, not 100,000 messages: the XCom stays within a few MiB."""
    iccids = [iccid(n) for n in range(100_000)]
    requests_mock.put(BULK_URL, status_code=400, json=PAN_400, headers={"X-Request-Id": "pan-rid"})
    ctx = operator_context()
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=[{"iccid": i} for i in iccids])
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    assert requests_mock.call_count == 100  # 1000 per request, every one tried
    pushed = ctx["ti"].xcom[OUTCOME_KEY]
    assert pushed == caught.value.outcome
    assert pushed["errors"] == [error("400", 400, PAN_400["msg"], iccids, request_id="pan-rid")]
    assert pushed["counts"]["failed"] == 100_000
    text = json.dumps(pushed)
    assert len(text.encode()) <= 3 * 2**20
    for n in (0, 1, 49_999, 99_999):
        assert text.count(iccids[n]) == 1
    # The failure message and the log name a few examples, not all of them.
    assert len(str(caught.value)) < 1000
    assert all(len(line) < 1000 for line in logs.lines("error"))


# === Huawei ROMA Connect =========================================================================


@pytest.mark.parametrize(("count", "sizes"), [(2, [2]), (3, [3]), (4, [3, 1])])
def test_roma_batch_boundaries(
    roma_conn: None, requests_mock: rm.Mocker, count: int, sizes: list[int]
) -> None:
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    ids = list(range(711_001, 711_001 + count))
    ctx = operator_context()
    result = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=ids, batch_size=3).execute(ctx)
    assert result == roma_outcome(count, ids)
    assert ctx["ti"].xcom == {}
    assert roma_sizes(requests_mock) == sizes
    assert [i for r in requests_mock.request_history for i in r.json()["device_ids"]] == ids


def test_roma_default_batch_is_the_vendor_maximum(roma_conn: None, requests_mock: rm.Mocker) -> None:
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    result = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=list(range(1, 1002))).execute(
        operator_context()
    )
    assert roma_sizes(requests_mock) == [1000, 1]
    assert result == roma_outcome(1001, list(range(1, 1002)))


def test_roma_every_bad_id_is_named_before_any_request(roma_conn: None, requests_mock: rm.Mocker) -> None:
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[5, 0, "abc", 10**17, 7, -3])
    with pytest.raises(IoTFleetValidationError) as caught:
        op.execute(operator_context())
    message = str(caught.value)
    assert "4 of 6 ROMA device ids are invalid" in message
    for position, value in ((1, "0"), (2, "'abc'"), (3, str(10**17)), (5, "-3")):
        assert f"device_ids[{position}] {value} " in message
    assert "device_ids[0]" not in message
    assert "device_ids[4]" not in message
    assert requests_mock.call_count == 0


def test_roma_duplicates_are_sent_once(roma_conn: None, requests_mock: rm.Mocker, logs: Logs) -> None:
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    result = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[7, "7", 8, 8, 7]).execute(
        operator_context()
    )
    assert result == roma_outcome(2, [7, 8])
    assert requests_mock.call_count == 1
    assert requests_mock.last_request.json() == {"device_ids": [7, 8]}
    assert any(
        "forcing offline 2 devices in 1 request (3 duplicates dropped)" in line for line in logs.lines()
    )


def test_roma_empty_input_is_a_logged_no_op(roma_conn: None, requests_mock: rm.Mocker, logs: Logs) -> None:
    ctx = operator_context()
    result = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[]).execute(ctx)
    assert result == roma_outcome(0, [])
    assert ctx["ti"].xcom == {}
    assert requests_mock.call_count == 0
    assert any("device_ids is empty; nothing to do" in line for line in logs.lines("warning"))


def test_roma_answer_quirks_account_for_every_id_once(roma_conn: None, requests_mock: rm.Mocker) -> None:
    requests_mock.post(
        FORCE_OFFLINE_URL,
        json={
            "success": [
                {"id": 1, "device_name": "a", "device_id": 1},  # device_id duplicates id
                {"device_id": 2, "device_name": "b"},  # only device_id
                {"id": "3", "device_name": "c"},  # id as a string
                {"id": 99, "device_name": "not asked for"},
            ],
            "failed": [{"id": 4, "device_name": "d", "device_id": 4}, {"id": 98}],
        },
    )
    reads = requests_mock.get(f"{DEVICES_URL}/4", json={"device_id": 4, "online_status": 1})  # online
    ctx = operator_context()
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[1, 2, 3, 4, 5], fail_on_error=False)
    result = op.execute(ctx)
    assert result == roma_outcome(
        5,
        [1, 2, 3],
        [
            error("not_forced_offline", None, NOT_FORCED_OFFLINE, [4]),
            error("missing_from_answer", None, "missing from Huawei ROMA Connect's answer", [5]),
        ],
    )
    assert reads.call_count == 1  # the refused device was read back: online, so truly refused
    assert ctx["ti"].xcom == {}


#: What a ROMA.00110002 500 to a force-offline, whose read-back fails the same way, is in an outcome.
ROMA_500_UNKNOWN = (
    "the answer to the force-offline was lost (The instance does not exist.) and reading the devices "
    "back failed too (The instance does not exist.)"
)


@pytest.mark.parametrize(
    ("status", "body", "request_id", "attempts", "group_status", "message"),
    [
        # A 500 may hide an applied force-offline; the read-back fails too, so nobody can tell.
        (500, ROMA_500, ROMA_500["request_id"], 1, "unknown", ROMA_500_UNKNOWN),
        # A 400 was refused: nothing applied, nothing read back.
        (400, ROMA_400, ROMA_400["requestId"], 1, "failed", ROMA_400["error_msg"]),
    ],
    ids=["500-not-repeated", "400-requestId"],
)
def test_roma_failed_middle_batch_puts_each_of_its_ids_in_one_error_group(
    roma_conn: None,
    requests_mock: rm.Mocker,
    status: int,
    body: dict[str, Any],
    request_id: str,
    attempts: int,
    group_status: str,
    message: str,
) -> None:
    ids = list(range(100, 109))
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer({104: (status, body)}))
    # After a 500 the force-offline is read back, not sent again; the instance is gone for reads too.
    reads = requests_mock.get(re.compile(rf"{DEVICES_URL}/\d+"), status_code=status, json=body)
    ctx = operator_context()
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=ids, batch_size=3, fail_on_error=False)
    result = op.execute(ctx)
    assert ctx["ti"].xcom == {}
    assert_json_safe(result)
    assert roma_sizes(requests_mock) == [3] + [3] * attempts + [3]
    assert reads.called is (status >= 500)
    assert result == roma_outcome(
        9,
        [100, 101, 102, 106, 107, 108],
        [
            error(
                body["error_code"],
                status,
                message,
                [103, 104, 105],
                request_id=request_id,
                # Neither is to be sent again as it is: an unknown one may have applied.
                retryable=False,
                status=group_status,
            )
        ],
    )


def test_roma_fail_on_error_tries_every_batch_then_raises_grouped(
    roma_conn: None, requests_mock: rm.Mocker, logs: Logs
) -> None:
    def answer(request: Any, context: Any) -> dict[str, Any]:
        ids = request.json()["device_ids"]
        if 4 in ids:
            context.status_code = 500
            return ROMA_500
        return {
            "success": [{"id": i, "device_name": f"m{i}"} for i in ids if i != 1],
            "failed": [{"id": 1, "device_name": "m1"}] if 1 in ids else [],
        }

    requests_mock.post(FORCE_OFFLINE_URL, json=answer)
    requests_mock.get(re.compile(rf"{DEVICES_URL}/\d+"), status_code=500, json=ROMA_500)  # the read-back
    ctx = operator_context()
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=list(range(1, 10)), batch_size=3)
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    # A force-offline is not sent again once it may have reached the vendor: it is read back (here the
    # read fails too, so whether batch [4, 5, 6] went offline is unknown).
    assert roma_sizes(requests_mock) == [3, 3, 3]
    assert ctx["ti"].xcom == {OUTCOME_KEY: caught.value.outcome}
    # Device 1 was refused, and reading it back failed too: it stays refused, no more.
    assert caught.value.outcome == roma_outcome(
        9,
        [2, 3, 7, 8, 9],
        [
            error("not_forced_offline", None, NOT_FORCED_OFFLINE, [1]),
            error(
                "ROMA.00110002",
                500,
                ROMA_500_UNKNOWN,
                [4, 5, 6],
                request_id=ROMA_500["request_id"],
                retryable=False,  # it may have applied: check the devices, do not just send it again
                status="unknown",
            ),
        ],
    )
    message = str(caught.value)
    assert message.startswith(
        f"4 of 9 devices not done: 1 failed with not_forced_offline: {NOT_FORCED_OFFLINE}; "
        f"3 unknown with ROMA.00110002 (HTTP 500): {ROMA_500_UNKNOWN}. Every device was tried"
    )
    errors = logs.lines("error")
    assert f"{ROMA_VENDOR}: failed: 1 device, not_forced_offline: {NOT_FORCED_OFFLINE}. e.g. 1" in errors
    assert (
        f"{ROMA_VENDOR}: unknown: 3 devices, ROMA.00110002 (HTTP 500): {ROMA_500_UNKNOWN} "
        f"(request id {ROMA_500['request_id']}). e.g. 4, 5, 6" in errors
    )


def test_roma_lost_answer_is_read_back_not_sent_again(roma_conn: None, requests_mock: rm.Mocker) -> None:
    # Applied, then the answer was lost: reading back finds 101 offline; 102 never was online.
    post = requests_mock.post(FORCE_OFFLINE_URL, status_code=504, text="<html>Gateway Timeout</html>")
    requests_mock.get(f"{DEVICES_URL}/101", json={"device_id": 101, "online_status": 2})
    requests_mock.get(f"{DEVICES_URL}/102", json={"device_id": 102, "online_status": 0})
    result = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[101, 102], fail_on_error=False).execute(
        operator_context()
    )
    assert post.call_count == 1
    assert result == roma_outcome(2, [101], [error("never_connected", None, NEVER_CONNECTED_MESSAGE, [102])])


def test_roma_fail_on_error_false_returns_the_failures(roma_conn: None, requests_mock: rm.Mocker) -> None:
    requests_mock.post(FORCE_OFFLINE_URL, json={"success": [], "failed": [{"id": 1, "device_name": "m1"}]})
    requests_mock.get(f"{DEVICES_URL}/1", json={"device_id": 1, "online_status": 1})
    ctx = operator_context()
    result = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[1], fail_on_error=False).execute(ctx)
    assert result == roma_outcome(1, [], [error("not_forced_offline", None, NOT_FORCED_OFFLINE, [1])])
    assert ctx["ti"].xcom == {}


def test_roma_refused_signature_stops_the_run(roma_conn: None, requests_mock: rm.Mocker) -> None:
    requests_mock.post(FORCE_OFFLINE_URL, status_code=401, json=ROMA_401)
    ctx = operator_context()
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=list(range(1, 8)), batch_size=3)
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    assert requests_mock.call_count == 1
    assert ctx["ti"].xcom[OUTCOME_KEY] == roma_outcome(
        7,
        [],
        [
            error("APIGW.0301", 401, ROMA_401["error_msg"] + ROMA_401_HINT, [1, 2, 3], request_id="r-401"),
            error(
                "APIGW.0301",
                401,
                f"not attempted after an earlier error: {ROMA_401['error_msg']}{ROMA_401_HINT}",
                [4, 5, 6, 7],
                request_id="r-401",
                attempted=False,
            ),
        ],
    )
    assert str(caught.value).startswith("7 of 7 devices not done: 3 failed with APIGW.0301 (HTTP 401): ")


def test_roma_device_ids_template_rendered_as_native_list(roma_conn: None, requests_mock: rm.Mocker) -> None:
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    with DAG(dag_id="roma_native", schedule=None, start_date=START, render_template_as_native_obj=True):
        op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids="{{ params.ids }}", batch_size=2)
    ctx = operator_context()
    op.render_template_fields({**ctx, "params": {"ids": [11, 12, 13]}})
    assert op.device_ids == [11, 12, 13]
    result = op.execute(ctx)
    assert result == roma_outcome(3, [11, 12, 13])
    assert roma_sizes(requests_mock) == [2, 1]


def test_roma_device_ids_template_rendered_as_a_string(roma_conn: None, requests_mock: rm.Mocker) -> None:
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    with DAG(dag_id="roma_text", schedule=None, start_date=START):
        op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids="{{ params.ids }}")
    ctx = operator_context()
    op.render_template_fields({**ctx, "params": {"ids": [11, 12, 13]}})
    assert op.device_ids == "[11, 12, 13]"
    result = op.execute(ctx)
    assert result == roma_outcome(3, [11, 12, 13])
    assert requests_mock.last_request.json() == {"device_ids": [11, 12, 13]}


def test_roma_never_leaks_sk_or_security_token(roma_conn: None, requests_mock: rm.Mocker, logs: Logs) -> None:
    requests_mock.post(FORCE_OFFLINE_URL, [{"status_code": 401, "json": ROMA_401}])
    ctx = operator_context()
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[1, 2]).execute(ctx)
    request = requests_mock.last_request
    assert request.headers["X-Security-Token"] == STS_TOKEN
    signature = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    haystack = "\n".join([logs.text(), str(caught.value), repr(caught.value), json.dumps(ctx["ti"].xcom)])
    for secret in (SK, STS_TOKEN, signature):
        assert secret not in haystack


def test_roma_iam_password_and_token_never_leak(
    roma_iam_connection: None, requests_mock: rm.Mocker, logs: Logs
) -> None:
    requests_mock.post(IAM_URL, status_code=201, headers={"X-Subject-Token": IAM_TOKEN}, json={"token": {}})
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer({3: (500, ROMA_500)}))
    requests_mock.get(re.compile(rf"{DEVICES_URL}/\d+"), status_code=500, json=ROMA_500)  # the read-back
    ctx = operator_context()
    op = HuaweiRomaForceOfflineOperator(
        task_id="t", device_ids=[1, 2, 3, 4], batch_size=2, huawei_roma_conn_id="roma_iam"
    )
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    assert requests_mock.last_request.headers["X-Auth-Token"] == IAM_TOKEN
    assert ctx["ti"].xcom[OUTCOME_KEY]["devices"]["succeeded"] == [1, 2]
    haystack = "\n".join([logs.text(), str(caught.value), repr(caught.value), json.dumps(ctx["ti"].xcom)])
    for secret in (IAM_PASSWORD, IAM_TOKEN):
        assert secret not in haystack


def test_roma_long_runs_log_progress(roma_conn: None, requests_mock: rm.Mocker, logs: Logs) -> None:
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer({7: (400, ROMA_400)}))
    op = HuaweiRomaForceOfflineOperator(
        task_id="t", device_ids=list(range(1, 26)), batch_size=1, fail_on_error=False
    )
    op.execute(operator_context())
    progress = [line for line in logs.lines("info") if "/25 devices" in line]
    assert [line.split(",")[0] for line in progress] == [
        "Huawei Cloud ROMA Connect: 10/25 devices (40%)",
        "Huawei Cloud ROMA Connect: 20/25 devices (80%)",
    ]
    assert all(line.endswith("; 1 failed so far") for line in progress)
    assert "Huawei Cloud ROMA Connect: done in" in logs.lines("info")[-1]
    assert logs.lines("info")[-1].endswith(": 24 succeeded, 1 failed")


def roma_reads(requests_mock: rm.Mocker, statuses: dict[int, int]) -> Any:
    """Answer ``GET .../devices/{id}`` with each device's ``online_status`` (0 never, 1 on, 2 off)."""

    def answer(request: Any, context: Any) -> dict[str, Any]:
        device_id = int(request.path.rsplit("/", 1)[1])
        return {"device_id": device_id, "online_status": statuses[device_id]}

    return requests_mock.get(re.compile(rf"{DEVICES_URL}/\d+$"), json=answer)


def roma_refuses(refused: set[int]) -> Callable[[Any, Any], dict[str, Any]]:
    """Answer force-offline: the ids in ``refused`` fail (as ROMA answers a device not online)."""

    def answer(request: Any, context: Any) -> dict[str, Any]:
        ids = request.json()["device_ids"]
        return {
            "success": [{"id": i, "device_name": f"meter-{i}"} for i in ids if i not in refused],
            "failed": [{"id": i, "device_name": f"meter-{i}"} for i in ids if i in refused],
        }

    return answer


def test_huawei_outcome_matches_the_documented_shape(roma_conn: None, requests_mock: rm.Mocker) -> None:
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_refuses({700002, 700003}))
    roma_reads(requests_mock, {700002: 2, 700003: 0})
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[700001, 700002, 700003], fail_on_error=False)
    result = op.execute(operator_context())
    assert_outcome_shape(result, operation="force_offline", requested=[700001, 700002, 700003])
    assert result["devices"]["succeeded"] == [700001]
    assert result["devices"]["unchanged"] == [700002]
    assert [(group["error_code"], group["devices"]) for group in result["errors"]] == [
        ("never_connected", [700003])
    ]


def test_roma_refused_devices_are_read_back_offline_is_unchanged_never_connected_fails(
    roma_conn: None, requests_mock: rm.Mocker
) -> None:
    """ROMA refuses every device that is not online. One already offline is as asked (unchanged,
    not failed); one that never connected cannot be forced; one online but refused stays refused."""
    post = requests_mock.post(FORCE_OFFLINE_URL, json=roma_refuses({2, 3, 4}))
    reads = roma_reads(requests_mock, {2: 2, 3: 0, 4: 1})
    ctx = operator_context()
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[1, 2, 3, 4])
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    assert caught.value.outcome == roma_outcome(
        4,
        [1],
        [
            error("never_connected", None, NEVER_CONNECTED_MESSAGE, [3]),
            error("not_forced_offline", None, NOT_FORCED_OFFLINE, [4]),
        ],
        unchanged=[2],
    )
    assert post.call_count == 1
    assert sorted(r.path.rsplit("/", 1)[1] for r in reads.request_history) == ["2", "3", "4"]


def test_roma_refused_devices_all_offline_succeed_the_task(roma_conn: None, requests_mock: rm.Mocker) -> None:
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_refuses({2}))
    roma_reads(requests_mock, {2: 2})
    ctx = operator_context()
    result = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[1, 2]).execute(ctx)
    assert result == roma_outcome(2, [1], unchanged=[2])
    assert ctx["ti"].xcom == {}


def test_roma_retry_reads_first_and_sends_only_the_devices_still_online(
    roma_conn: None, requests_mock: rm.Mocker
) -> None:
    """Try 2 starts from what is true now: what try 1 took offline is unchanged and not sent again;
    a device that never connected is not sent at all."""
    post = requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    reads = roma_reads(requests_mock, {1: 1, 2: 2, 3: 0, 4: 1})
    ctx = operator_context(try_number=2)
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[1, 2, 3, 4], fail_on_error=False)
    result = op.execute(ctx)
    assert [r.json() for r in post.request_history] == [{"device_ids": [1, 4]}]
    assert reads.call_count == 4
    assert result == roma_outcome(
        4,
        [1, 4],
        [error("never_connected", None, NEVER_CONNECTED_MESSAGE, [3], attempted=False)],
        unchanged=[2],
    )


def test_roma_first_try_sends_without_reading(roma_conn: None, requests_mock: rm.Mocker) -> None:
    post = requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    reads = roma_reads(requests_mock, {1: 1, 2: 2})
    HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[1, 2]).execute(operator_context(try_number=1))
    assert [r.json() for r in post.request_history] == [{"device_ids": [1, 2]}]
    assert reads.call_count == 0


def test_roma_retry_whose_read_fails_reports_the_devices_not_sent(
    roma_conn: None, requests_mock: rm.Mocker
) -> None:
    """A retry reads before it writes; when that read fails, nothing was forced offline, and the
    outcome says so (not sent, retryable), and the other batches still go."""
    post = requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    reads = roma_reads(requests_mock, {2: 1, 3: 1, 4: 1})
    requests_mock.get(f"{DEVICES_URL}/1", status_code=500, json=ROMA_500)
    ctx = operator_context(try_number=2)
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[1, 2, 3, 4], batch_size=2)
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    assert [r.json() for r in post.request_history] == [{"device_ids": [3, 4]}]
    assert {"3", "4"} <= {r.path.rsplit("/", 1)[1] for r in reads.request_history}
    assert caught.value.outcome == roma_outcome(
        4,
        [3, 4],
        [
            error(
                "ROMA.00110002",
                500,
                f"not attempted after an earlier error: {ROMA_500['error_msg']}",
                [1, 2],
                request_id=ROMA_500["request_id"],
                retryable=True,
                attempted=False,
            )
        ],
    )
    assert "2 failed (not sent) with ROMA.00110002 (HTTP 500)" in str(caught.value)


def test_roma_retry_of_many_devices_reads_the_offline_listing(
    roma_conn: None, requests_mock: rm.Mocker
) -> None:
    """Beyond ten devices a retry reads the instance's offline devices (one page here) instead of
    each device; the others are sent."""
    ids = list(range(1, 13))
    offline = {"total": 3, "size": 3, "items": [{"device_id": 2}, {"device_id": 5}, {"device_id": 999}]}

    def listing_of(request: Any, context: Any) -> dict[str, Any]:
        return offline if request.qs["online_status"] == ["2"] else {"total": 0, "size": 0, "items": []}

    listing = requests_mock.get(DEVICES_URL, json=listing_of)
    post = requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    result = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=ids).execute(
        operator_context(try_number=2)
    )
    # The offline devices, and the never-connected ones (none here): one page each.
    assert sorted(r.qs["online_status"][0] for r in listing.request_history) == ["0", "2"]
    sent = [i for i in ids if i not in (2, 5)]
    assert [r.json() for r in post.request_history] == [{"device_ids": sent}]
    assert result == roma_outcome(12, sent, unchanged=[2, 5])


def test_roma_refused_devices_of_every_batch_are_read_back_once_per_run(
    roma_conn: None, requests_mock: rm.Mocker
) -> None:
    """Many refused devices are read back with the instance's listing: once for the whole run, not
    once per batch (each read pages the whole listing, whatever the batch)."""
    ids = list(range(1, 61))
    offline = [i for i in ids if i % 2 == 0]
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_refuses(set(offline)))

    def listing(request: Any, context: Any) -> dict[str, Any]:
        items = [{"device_id": i} for i in offline] if request.qs["online_status"] == ["2"] else []
        return {"total": len(items), "size": len(items), "items": items}

    reads = requests_mock.get(DEVICES_URL, json=listing)
    result = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=ids, batch_size=15).execute(
        operator_context()
    )
    assert result == roma_outcome(60, [i for i in ids if i % 2], unchanged=offline)
    # 4 batches, one read-back: never-connected devices first, then which of the rest are offline.
    assert [r.qs["online_status"] for r in reads.request_history] == [["0"], ["2"]]


def test_roma_retry_of_many_devices_does_not_send_the_never_connected_ones(
    roma_conn: None, requests_mock: rm.Mocker
) -> None:
    """The retry's read pages the never-connected listing too: those devices are not sent."""
    ids = list(range(1, 13))
    listings = {"2": [2], "0": [7]}

    def listing_of(request: Any, context: Any) -> dict[str, Any]:
        items = [{"device_id": i} for i in listings[request.qs["online_status"][0]]]
        return {"total": len(items), "size": len(items), "items": items}

    requests_mock.get(DEVICES_URL, json=listing_of)
    post = requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=ids, fail_on_error=False)
    result = op.execute(operator_context(try_number=2))
    sent = [i for i in ids if i not in (2, 7)]
    assert [r.json() for r in post.request_history] == [{"device_ids": sent}]
    never = [e for e in result["errors"] if e["error_code"] == "never_connected"]
    assert [(e["devices"], e["attempted"]) for e in never] == [([7], False)]


def test_roma_read_back_that_fails_keeps_the_refused_devices_refused(
    roma_conn: None, requests_mock: rm.Mocker, logs: Logs
) -> None:
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_refuses({2}))
    reads = requests_mock.get(f"{DEVICES_URL}/2", status_code=500, json=ROMA_500)
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[1, 2], fail_on_error=False)
    result = op.execute(operator_context())
    assert result == roma_outcome(2, [1], [error("not_forced_offline", None, NOT_FORCED_OFFLINE, [2])])
    assert reads.call_count == 4  # a read: retried, then given up
    assert any("could not read back the 1 devices ROMA refused" in line for line in logs.lines("warning"))


# --- Palo Alto Networks IoT Security: dry run ---------------------------------------------------

LIST_URL = f"{TENANT_HOST}/pub/v4.0/device/list"


def pan_listing(requests_mock: rm.Mocker, entries: list[dict[str, Any]]) -> Any:
    """Answer ``GET .../device/list`` with ``entries`` paged by ``offset`` and ``pagelength``."""

    def answer(request: Any, context: Any) -> dict[str, Any]:
        offset, length = int(request.qs["offset"][0]), int(request.qs["pagelength"][0])
        return {"total": len(entries), "devices": entries[offset : offset + length]}

    return requests_mock.get(LIST_URL, json=answer)


def test_pan_dry_run_plans_from_the_device_list_and_sends_no_update(
    paloalto_connection: None, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    put = requests_mock.put(BULK_URL, json=pan_answer())
    entries: list[dict[str, Any]] = [{"deviceid": f"10.0.{n // 250}.{n % 250}"} for n in range(2500)]
    entries[3] = {"deviceid": "10.9.0.3", "ip_address": "10.9.0.3", "apn": "old.apn"}
    entries[1200] = {"deviceid": "x", "imei": imei(1), "SessionEvtType": "Start"}
    listing = pan_listing(requests_mock, entries)
    devices = [
        {"ipAddress": "10.9.0.3", "apn": "new.apn"},  # listed, apn differs
        pan_device(1),  # listed as it would be sent
        pan_device(2),  # not listed
        pan_device(1),  # a repeat
    ]
    op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices, batch_size=2, dry_run="true")
    ctx = operator_context()
    result = op.execute(ctx)
    assert put.call_count == 0
    assert ctx["ti"].xcom == {}
    assert result == {
        **outcome(
            "bulk_update",
            PAN_VENDOR,
            3,
            succeeded=["10.9.0.3", imei(2)],
            unchanged=[imei(1)],
            details={
                "updated": None,
                "batches": 2,
                "plan_source": {"device_list": ["10.9.0.3", imei(1)], "not_listed": [imei(2)]},
            },
        ),
        "dry_run": True,
        "plan": {
            "10.9.0.3": {"apn": {"from": "old.apn", "to": "new.apn"}},
            imei(2): {"imei": {"from": None, "to": imei(2)}, "SessionEvtType": {"from": None, "to": "Start"}},
        },
    }
    # Every page, since one device is in none: each at most 1000 entries, paced at 60 reads a minute.
    assert [(r.qs["offset"], r.qs["pagelength"]) for r in listing.request_history] == [
        (["0"], ["1000"]),
        (["1000"], ["1000"]),
        (["2000"], ["1000"]),
    ]
    assert listing.request_history[0].qs["customerid"] == ["acme-iot"]
    assert [round(s, 6) for s in clock.sleeps] == [round(1.0 / RATE_HEADROOM, 6)] * 2


def test_pan_dry_run_stops_paging_once_every_device_is_found(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    entries = [{"ip_address": f"10.0.{n // 250}.{n % 250}", "apn": "a.iot"} for n in range(3000)]
    listing = pan_listing(requests_mock, entries)
    devices = [{"ipAddress": "10.0.0.1", "apn": "a.iot"}, {"ipAddress": "10.0.4.10", "apn": "a.iot"}]
    result = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices, dry_run=True).execute(
        operator_context()
    )
    assert listing.call_count == 2  # 10.0.4.10 is entry 1010: on the second page; the third is not read
    assert result["devices"]["unchanged"] == ["10.0.0.1", "10.0.4.10"]
    assert result["plan"] == {}
    assert result["counts"]["accepted"] == 0


def test_pan_dry_run_fails_on_bad_input_as_the_real_run_does(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    bad = [{"imei": "123"}, {"apn": "x"}, pan_device(3), {**pan_device(3), "apn": "other"}]
    for devices in (bad[:2], bad[2:]):
        messages = []
        for dry_run in (False, True):
            op = PaloAltoIoTBulkUpdateOperator(task_id="t", devices=devices, dry_run=dry_run)
            with pytest.raises(IoTFleetValidationError) as caught:
                op.execute(operator_context())
            messages.append(str(caught.value))
        assert messages[0] == messages[1]
    assert requests_mock.call_count == 0


def test_pan_dry_run_is_templated() -> None:
    assert "dry_run" in PaloAltoIoTBulkUpdateOperator.template_fields


# --- Huawei ROMA Connect: dry run ---------------------------------------------------------------


def roma_dry_outcome(
    requested: int,
    succeeded: list[int],
    errors: list[dict[str, Any]] | None = None,
    unchanged: list[int] | None = None,
) -> dict[str, Any]:
    """A dry run's outcome: a real run's, marked, with each online device's would-be change."""
    plan = {str(i): {"online_status": {"from": "online", "to": "offline"}} for i in succeeded}
    return {**roma_outcome(requested, succeeded, errors, unchanged), "dry_run": True, "plan": plan}


def test_roma_dry_run_reads_each_of_few_devices_once_and_sends_no_force_offline(
    roma_conn: None, requests_mock: rm.Mocker, logs: Logs
) -> None:
    post = requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    reads = roma_reads(requests_mock, {1: 1, 2: 2, 3: 0, 4: 1})
    requests_mock.get(
        f"{DEVICES_URL}/5",
        status_code=404,
        json={"error_code": "ROMA.00110006", "error_msg": "The resource does not exist."},
    )
    ctx = operator_context()
    result = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[1, 2, 3, 4, 5, 1], dry_run=True).execute(
        ctx
    )
    assert result == roma_dry_outcome(
        5,
        [1, 4],
        [
            error("never_connected", None, NEVER_CONNECTED_MESSAGE, [3], attempted=False),
            error("not_forced_offline", None, NOT_FORCED_OFFLINE, [5]),
        ],
        unchanged=[2],
    )
    assert post.call_count == 0
    assert sorted(r.path.rsplit("/", 1)[1] for r in reads.request_history) == ["1", "2", "3", "4"]
    assert ctx["ti"].xcom == {}  # the task succeeds: it only says what would fail
    warnings = logs.lines("warning")
    assert any("would be failed (not sent): 1 device, never_connected" in line for line in warnings)
    assert any("would be failed: 1 device, not_forced_offline" in line for line in warnings)


def test_roma_dry_run_of_many_devices_pages_the_listings_instead(
    roma_conn: None, requests_mock: rm.Mocker
) -> None:
    """Beyond ten devices the plan reads the online listing, then tells the others apart as a real
    run reads back refused devices (never-connected listing, then the offline one)."""
    ids = list(range(1, 15))
    listed = {"1": [1, 3, 999], "0": [4], "2": [2, *range(5, 14)]}

    def listing_of(request: Any, context: Any) -> dict[str, Any]:
        items = listed[request.qs["online_status"][0]]
        return {"total": len(items), "size": len(items), "items": [{"device_id": i} for i in items]}

    listing = requests_mock.get(DEVICES_URL, json=listing_of)
    post = requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    result = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=ids, dry_run="True").execute(
        operator_context()
    )
    assert post.call_count == 0
    assert result == roma_dry_outcome(
        14,
        [1, 3],
        [
            error("never_connected", None, NEVER_CONNECTED_MESSAGE, [4], attempted=False),
            error("not_forced_offline", None, NOT_FORCED_OFFLINE, [14]),
        ],
        unchanged=[2, *range(5, 14)],
    )
    assert [r.qs["online_status"][0] for r in listing.request_history] == ["1", "0", "2"]


def test_roma_dry_run_fails_on_bad_ids_as_the_real_run_does(
    roma_conn: None, requests_mock: rm.Mocker
) -> None:
    messages = []
    for dry_run in (False, True):
        op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[5, 0, "abc"], dry_run=dry_run)
        with pytest.raises(IoTFleetValidationError) as caught:
            op.execute(operator_context())
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "2 of 3 ROMA device ids are invalid" in messages[1]
    assert requests_mock.call_count == 0


def test_roma_dry_run_whose_read_fails_fails_rather_than_guess(
    roma_conn: None, requests_mock: rm.Mocker
) -> None:
    post = requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    requests_mock.get(f"{DEVICES_URL}/1", status_code=500, json=ROMA_500)
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=[1], dry_run=True)
    with pytest.raises(IoTFleetError, match=r"ROMA\.00110002"):
        op.execute(operator_context())
    assert post.call_count == 0


def test_roma_dry_run_is_templated() -> None:
    assert "dry_run" in HuaweiRomaForceOfflineOperator.template_fields


# === Verizon ThingSpace firmware sync ============================================================


@pytest.mark.parametrize(("count", "sizes"), [(99, [99]), (100, [100]), (101, [100, 1])])
def test_vz_sync_batch_boundaries_at_the_vendor_cap(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
    count: int,
    sizes: list[int],
) -> None:
    route = requests_mock.put(SYNC_URL, json=vz_answer())
    imeis = [imei(n) for n in range(count)]
    ctx = operator_context()
    result = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=imeis).execute(ctx)
    assert [len(r.json()["deviceList"]) for r in route.request_history] == sizes
    assert result == vz_outcome(count, dict.fromkeys(imeis, "SR1.2.0.0-10657"))
    assert ctx["ti"].xcom == {}


def test_vz_sync_smaller_batches(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    route = requests_mock.put(SYNC_URL, json=vz_answer())
    imeis = [imei(n) for n in range(7)]
    VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=imeis, batch_size=3).execute(operator_context())
    assert [r.json()["deviceList"] for r in route.request_history] == [imeis[0:3], imeis[3:6], imeis[6:]]


def test_vz_sync_every_bad_imei_is_named_before_any_request(
    thingspace_connection: None, requests_mock: rm.Mocker
) -> None:
    op = VerizonThingSpaceSyncFirmwareOperator(
        task_id="t", imeis=[IMEI, "12345", "490154203237519", "abcdefghijklmno", IMEI_2]
    )
    with pytest.raises(IoTFleetValidationError) as caught:
        op.execute(operator_context())
    message = str(caught.value)
    assert "3 of 5 IMEIs are invalid" in message
    assert "imeis[1] '12345' has 5 digits" in message
    assert "imeis[2] '490154203237519' fails the IMEI check digit" in message
    assert "imeis[3] 'abcdefghijklmno' is not a string of digits" in message
    assert requests_mock.call_count == 0  # not even a token


def test_vz_sync_duplicates_are_sent_once(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    route = requests_mock.put(SYNC_URL, json=vz_answer())
    result = VerizonThingSpaceSyncFirmwareOperator(
        task_id="t", imeis=[IMEI, IMEI_2, int(IMEI), f" {IMEI_2} "]
    ).execute(operator_context())
    assert result == vz_outcome(2, dict.fromkeys([IMEI, IMEI_2], "SR1.2.0.0-10657"))
    assert route.call_count == 1
    assert route.last_request.json() == {"deviceList": [IMEI, IMEI_2]}


def test_vz_sync_empty_input_is_a_logged_no_op(
    thingspace_connection: None, requests_mock: rm.Mocker, logs: Logs
) -> None:
    ctx = operator_context()
    result = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=[]).execute(ctx)
    assert result == vz_outcome(0, {})
    assert ctx["ti"].xcom == {}
    assert requests_mock.call_count == 0
    assert any("imeis is empty; nothing to do" in line for line in logs.lines("warning"))


def test_vz_sync_per_device_failures_and_answer_quirks(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    imeis = [imei(n) for n in range(5)]
    requests_mock.put(
        SYNC_URL,
        json={
            "accountName": ACCOUNT,
            "deviceFirmwarVersionList": [  # sic: the vendor's spelling
                {
                    "deviceId": imeis[0],
                    "status": SUCCESS,
                    "Reason": "",
                    "firmwareVersion": "SR1.2",
                    "firmwareVersionUpdateTime": "2022-02-04 06:10:01.441 +0000 UTC",
                },
                {
                    "deviceId": imeis[1],
                    "status": "FirmwareVersionUpdateFailed",
                    "Reason": "Device unreachable",
                },
                {"deviceId": imeis[2], "status": "FirmwareVersionUpdateFailed", "reason": "No response"},
                {"deviceId": int(imeis[3]), "status": "DeviceNotFound", "reason": "Unknown device"},
                {"deviceId": IMEI, "status": SUCCESS},  # not asked for: ignored
            ],
        },
    )
    ctx = operator_context()
    op = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=imeis, fail_on_error=False)
    result = op.execute(ctx)
    # Each refusal is grouped by ThingSpace's status and reason; a device left out of the answer
    # is missing_from_answer, never synced.
    assert result == vz_outcome(
        5,
        {imeis[0]: "SR1.2"},
        [
            error("FirmwareVersionUpdateFailed", None, "Device unreachable", [imeis[1]]),
            error("FirmwareVersionUpdateFailed", None, "No response", [imeis[2]]),
            error("DeviceNotFound", None, "Unknown device", [imeis[3]]),
            error("missing_from_answer", None, "missing from ThingSpace's answer", [imeis[4]]),
        ],
    )
    assert ctx["ti"].xcom == {}


def test_vz_sync_account_defaults_to_the_connection_and_can_be_given(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    other = "0000999999-00001"
    default_route = requests_mock.put(SYNC_URL, json=vz_answer())
    other_route = requests_mock.put(f"{FOTA}/firmware/{other}/devices", json=vz_answer())
    result = VerizonThingSpaceSyncFirmwareOperator(task_id="a", imeis=[IMEI]).execute(operator_context())
    assert result["account_name"] == ACCOUNT
    assert (default_route.call_count, other_route.call_count) == (1, 0)
    result = VerizonThingSpaceSyncFirmwareOperator(task_id="b", imeis=[IMEI], account_name=other).execute(
        operator_context()
    )
    assert result["account_name"] == other
    assert (default_route.call_count, other_route.call_count) == (1, 1)


@pytest.mark.parametrize(
    ("status", "body", "error_code", "reason", "attempts"),
    [
        (400, VZ_400, "FOTA.REQUEST_FAILED.InvalidBody", "The request body is invalid.", 1),
        (
            503,
            {"errorCode": "FOTA.REQUEST_FAILED.Unavailable", "errorMessage": "Try later"},
            "FOTA.REQUEST_FAILED.Unavailable",
            "Try later",
            4,
        ),
        (
            500,
            {"errorCode": "FOTA.REQUEST_FAILED.Internal", "errorMessage": "Internal error"},
            "FOTA.REQUEST_FAILED.Internal",
            "Internal error",
            4,  # a sync is idempotent: a 500 is retried like a read's
        ),
    ],
    ids=["400-vendor-body", "503-after-retries", "500-after-retries"],
)
def test_vz_sync_failed_middle_batch_keeps_the_others(
    thingspace_connection: None,
    thingspace_logins: tuple[Any, Any],
    requests_mock: rm.Mocker,
    status: int,
    body: dict[str, Any],
    error_code: str,
    reason: str,
    attempts: int,
) -> None:
    imeis = [imei(n) for n in range(9)]
    route = requests_mock.put(SYNC_URL, json=vz_answer({imeis[4]: (status, body)}))
    ctx = operator_context()
    op = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=imeis, batch_size=3, fail_on_error=False)
    result = op.execute(ctx)
    assert ctx["ti"].xcom == {}
    assert_json_safe(result)
    assert [len(r.json()["deviceList"]) for r in route.request_history] == [3] + [3] * attempts + [3]
    assert result == vz_outcome(
        9,
        dict.fromkeys(imeis[:3] + imeis[6:], "SR1.2.0.0-10657"),
        [error(error_code, status, reason, imeis[3:6], retryable=status >= 500)],
    )


def test_vz_sync_fail_on_error_tries_every_batch_then_raises_grouped(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, logs: Logs
) -> None:
    imeis = [imei(n) for n in range(6)]

    def answer(request: Any, context: Any) -> dict[str, Any]:
        batch = request.json()["deviceList"]
        if imeis[2] in batch:
            context.status_code = 400
            return VZ_400
        return {
            "deviceFirmwarVersionList": [
                {"deviceId": d, "status": "FirmwareVersionUpdateFailed", "Reason": "Device unreachable"}
                if d == imeis[0]
                else {"deviceId": d, "status": SUCCESS, "firmwareVersion": "SR1.2"}
                for d in batch
            ]
        }

    route = requests_mock.put(SYNC_URL, json=answer)
    ctx = operator_context()
    op = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=imeis, batch_size=2)
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    assert route.call_count == 3
    assert ctx["ti"].xcom == {OUTCOME_KEY: caught.value.outcome}
    assert caught.value.outcome == vz_outcome(
        6,
        dict.fromkeys([imeis[1], imeis[4], imeis[5]], "SR1.2"),
        [
            error("FirmwareVersionUpdateFailed", None, "Device unreachable", [imeis[0]]),
            error("FOTA.REQUEST_FAILED.InvalidBody", 400, VZ_400["errorMessage"], imeis[2:4]),
        ],
    )
    message = str(caught.value)
    assert message.startswith(
        "3 of 6 IMEIs not done: 1 failed with FirmwareVersionUpdateFailed: Device unreachable; "
        f"2 failed with FOTA.REQUEST_FAILED.InvalidBody (HTTP 400): {VZ_400['errorMessage']} "
    )
    assert "Every IMEI was tried" in message
    assert (
        f"{VZ_VENDOR}: failed: 2 devices, FOTA.REQUEST_FAILED.InvalidBody (HTTP 400): "
        f"{VZ_400['errorMessage']} e.g. {imeis[2]}, {imeis[3]}" in logs.lines("error")
    )


def test_vz_sync_refused_credentials_stop_the_run(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    token, login = thingspace_logins
    route = requests_mock.put(SYNC_URL, status_code=401, json=VZ_FAULT)
    imeis = [imei(n) for n in range(5)]
    ctx = operator_context()
    op = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=imeis, batch_size=2)
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    assert route.call_count == 2  # the first batch, and once more with a renewed token; no other batch
    assert route.request_history[0].json()["deviceList"] == imeis[:2]
    assert route.request_history[1].json()["deviceList"] == imeis[:2]
    assert (token.call_count, login.call_count) == (2, 1)
    pushed = ctx["ti"].xcom[OUTCOME_KEY]
    assert (pushed["devices"]["succeeded"], pushed["firmware"]) == ([], {})
    assert [(g["error_code"], g["http_status"], g["attempted"], g["devices"]) for g in pushed["errors"]] == [
        ("900901", 401, True, imeis[:2]),
        ("900901", 401, False, imeis[2:]),
    ]
    assert not any(group["retryable"] for group in pushed["errors"])
    assert str(caught.value).startswith("5 of 5 IMEIs not done: 2 failed with 900901 (HTTP 401): ")


def test_vz_sync_refused_m2m_login_is_not_repeated_for_later_batches(
    thingspace_connection: None, requests_mock: rm.Mocker
) -> None:
    requests_mock.post(TOKEN_URL, json={"access_token": "access-token-1", "expires_in": 3600})
    login = requests_mock.post(
        LOGIN_URL,
        status_code=400,
        json={"errorCode": "REQUEST_FAILED.UnexpectedError", "errorMessage": "Invalid username or password"},
    )
    route = requests_mock.put(SYNC_URL, json=vz_answer())
    ctx = operator_context()
    op = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=[imei(n) for n in range(5)], batch_size=2)
    with pytest.raises(IoTFleetOperationFailedError, match=r"2 failed with REQUEST_FAILED\.UnexpectedError"):
        op.execute(ctx)
    assert (login.call_count, route.call_count) == (1, 0)
    pushed = ctx["ti"].xcom[OUTCOME_KEY]
    assert pushed["counts"]["failed"] == 5
    assert [group["attempted"] for group in pushed["errors"]] == [True, False]


def test_vz_sync_imeis_template_rendered_as_native_list(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    route = requests_mock.put(f"{FOTA}/firmware/0000777777-00001/devices", json=vz_answer())
    with DAG(dag_id="vz_native", schedule=None, start_date=START, render_template_as_native_obj=True):
        op = VerizonThingSpaceSyncFirmwareOperator(
            task_id="t", imeis="{{ params.imeis }}", account_name="{{ params.account }}"
        )
    ctx = operator_context()
    op.render_template_fields({**ctx, "params": {"imeis": [IMEI, IMEI_2], "account": "0000777777-00001"}})
    assert op.imeis == [IMEI, IMEI_2]
    result = op.execute(ctx)
    assert result == vz_outcome(
        2, dict.fromkeys([IMEI, IMEI_2], "SR1.2.0.0-10657"), account="0000777777-00001"
    )
    assert route.last_request.json() == {"deviceList": [IMEI, IMEI_2]}


def test_vz_sync_imeis_template_rendered_as_a_string(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    route = requests_mock.put(SYNC_URL, json=vz_answer())
    with DAG(dag_id="vz_text", schedule=None, start_date=START):
        op = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis="{{ params.imeis }}")
    ctx = operator_context()
    op.render_template_fields({**ctx, "params": {"imeis": [IMEI, IMEI_2]}})
    assert op.imeis == f"['{IMEI}', '{IMEI_2}']"
    result = op.execute(ctx)
    assert result["devices"]["succeeded"] == [IMEI, IMEI_2]
    assert route.last_request.json() == {"deviceList": [IMEI, IMEI_2]}


def test_verizon_outcome_matches_the_documented_shape(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    requests_mock.put(
        SYNC_URL,
        json={
            "accountName": ACCOUNT,
            "deviceFirmwarVersionList": [
                {"deviceId": IMEI, "status": SUCCESS, "firmwareVersion": "SR1.2"},
                {"deviceId": IMEI_2, "status": "FirmwareVersionUpdateFailed", "reason": "Device unreachable"},
            ],
        },
    )
    op = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=[IMEI, IMEI_2], fail_on_error=False)
    result = op.execute(operator_context())
    assert_outcome_shape(result, operation="sync_firmware", requested=[IMEI, IMEI_2])
    assert (result["account_name"], result["firmware"]) == (ACCOUNT, {IMEI: "SR1.2"})
    assert result["devices"]["succeeded"] == [IMEI]
    assert [(group["error_code"], group["devices"]) for group in result["errors"]] == [
        ("FirmwareVersionUpdateFailed", [IMEI_2])
    ]


VZ_500 = {"errorCode": "FOTA.REQUEST_FAILED.Internal", "errorMessage": "Internal error"}


def test_vz_sync_500_then_200_on_the_same_batch_ends_synced(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    """A sync is idempotent (ThingSpace reads the devices' firmware again): a 5xx is retried like a
    read's, not reported as an outcome unknown."""
    imeis = [imei(n) for n in range(3)]
    route = requests_mock.put(SYNC_URL, [{"status_code": 500, "json": VZ_500}, {"json": vz_answer()}])
    ctx = operator_context()
    result = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=imeis).execute(ctx)
    assert [r.json() for r in route.request_history] == [{"deviceList": imeis}] * 2
    assert result == vz_outcome(3, dict.fromkeys(imeis, "SR1.2.0.0-10657"))


def test_vz_sync_5xx_after_every_retry_is_one_retryable_error_group(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    imeis = [imei(n) for n in range(5)]
    route = requests_mock.put(SYNC_URL, json=vz_answer({imeis[3]: (500, VZ_500)}))
    ctx = operator_context()
    op = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=imeis, batch_size=3)
    with pytest.raises(IoTFleetOperationFailedError):
        op.execute(ctx)
    assert [len(r.json()["deviceList"]) for r in route.request_history] == [3, 2, 2, 2, 2]
    assert ctx["ti"].xcom[OUTCOME_KEY] == vz_outcome(
        5,
        dict.fromkeys(imeis[:3], "SR1.2.0.0-10657"),
        [error("FOTA.REQUEST_FAILED.Internal", 500, "Internal error", imeis[3:], retryable=True)],
    )


def _vz_try(
    imeis: list[str], try_number: int, store: FakeTaskStateStore | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one try of a sync of ``imeis`` in batches of 2; return its outcome and XCom."""
    ctx = operator_context(try_number=try_number, state_store=store)
    op = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=imeis, batch_size=2)
    try:
        return op.execute(ctx), ctx["ti"].xcom
    except IoTFleetOperationFailedError as failed:
        return failed.outcome, ctx["ti"].xcom


def vz_versions(version: str, refused: set[str]) -> Callable[[Any, Any], dict[str, Any]]:
    """Answer syncs: each IMEI on ``version``, those in ``refused`` not synced."""

    def answer(request: Any, context: Any) -> dict[str, Any]:
        return {
            "accountName": ACCOUNT,
            "deviceFirmwarVersionList": [
                {"deviceId": d, "status": "FirmwareVersionUpdateFailed", "reason": "Device unreachable"}
                if d in refused
                else {"deviceId": d, "status": SUCCESS, "firmwareVersion": version}
                for d in request.json()["deviceList"]
            ],
        }

    return answer


def test_vz_sync_retry_syncs_only_the_devices_an_earlier_try_did_not(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    """Airflow 3.3+: synced devices are recorded in the task's state, so try 2 sends only the rest,
    and its outcome still has every device's firmware, the earlier try's included."""
    imeis = [imei(n) for n in range(6)]
    store = FakeTaskStateStore()
    requests_mock.put(SYNC_URL, json=vz_versions("SR1.2", {imeis[1], imeis[4]}))
    first, xcom = _vz_try(imeis, 1, store)
    assert first["devices"]["succeeded"] == [imeis[0], imeis[2], imeis[3], imeis[5]]
    assert xcom == {OUTCOME_KEY: first}

    route = requests_mock.put(SYNC_URL, json=vz_versions("SR1.3", set()))
    second, xcom = _vz_try(imeis, 2, store)
    assert [r.json() for r in route.request_history] == [{"deviceList": [imeis[1], imeis[4]]}]
    firmware = {d: "SR1.3" if d in (imeis[1], imeis[4]) else "SR1.2" for d in imeis}
    assert second == vz_outcome(6, firmware)
    assert xcom == {}


def test_vz_sync_retry_without_a_task_state_store_syncs_everything_again(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    imeis = [imei(n) for n in range(4)]
    requests_mock.put(SYNC_URL, json=vz_versions("SR1.2", {imeis[1]}))
    _vz_try(imeis, 1, None)
    route = requests_mock.put(SYNC_URL, json=vz_versions("SR1.3", set()))
    second, _ = _vz_try(imeis, 2, None)
    assert [r.json()["deviceList"] for r in route.request_history] == [imeis[:2], imeis[2:]]
    assert second == vz_outcome(4, dict.fromkeys(imeis, "SR1.3"))


def test_vz_sync_journal_is_kept_per_account(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker
) -> None:
    """What was synced in one account is not taken as synced in another."""
    other = "0000999999-00001"
    store = FakeTaskStateStore()
    requests_mock.put(SYNC_URL, json=vz_answer())
    VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=[IMEI]).execute(
        operator_context(state_store=store)
    )
    other_route = requests_mock.put(f"{FOTA}/firmware/{other}/devices", json=vz_answer())
    VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=[IMEI], account_name=other).execute(
        operator_context(try_number=2, state_store=store)
    )
    assert other_route.call_count == 1


def test_vz_sync_never_leaks_secrets_or_tokens(
    thingspace_connection: None, thingspace_logins: tuple[Any, Any], requests_mock: rm.Mocker, logs: Logs
) -> None:
    imeis = [imei(n) for n in range(4)]
    requests_mock.put(
        SYNC_URL,
        [
            {
                "status_code": 400,
                "json": {"errorCode": "FOTA.REQUEST_FAILED.SessionToken.Expired", "errorMessage": "expired"},
            },
            {"json": vz_answer()},
            {"status_code": 401, "json": VZ_FAULT},
            {"status_code": 401, "json": VZ_FAULT},
        ],
    )
    ctx = operator_context()
    op = VerizonThingSpaceSyncFirmwareOperator(task_id="t", imeis=imeis, batch_size=2)
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    sent = requests_mock.request_history
    assert any(r.headers.get("VZ-M2M-Token") == "session-token-2" for r in sent)
    haystack = "\n".join([logs.text(), str(caught.value), repr(caught.value), json.dumps(ctx["ti"].xcom)])
    secrets = (
        [SECRET, M2M_PASSWORD]
        + [f"access-token-{n}" for n in (1, 2)]
        + [f"session-token-{n}" for n in (1, 2)]
    )
    secrets.append(base64.b64encode(f"{KEY}:{SECRET}".encode()).decode())
    for secret in secrets:
        assert secret not in haystack


@pytest.mark.parametrize("try_number", [1, 2], ids=["first-try", "retry-reads-first"])
def test_roma_ids_are_validated_once_by_the_operator_not_again_by_the_hook(
    roma_conn: None, requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch, try_number: int
) -> None:
    checked: list[list[Any]] = []

    def counting(values: Any, name: str = "device_ids") -> list[int]:
        checked.append(list(values))
        return validate_roma_device_ids(values, name)

    for module in (huawei_operator, huawei_hook):
        monkeypatch.setattr(module, "validate_roma_device_ids", counting)
    requests_mock.post(FORCE_OFFLINE_URL, json=roma_answer())
    roma_reads(requests_mock, {1: 1, 2: 1, 3: 1, 4: 1})
    op = HuaweiRomaForceOfflineOperator(task_id="t", device_ids=["1", 2, 3, 4], batch_size=2)
    op.execute(operator_context(try_number=try_number))
    assert checked == [["1", 2, 3, 4]]


def test_pan_two_requests_in_flight_send_every_batch_once_with_the_same_outcome(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    devices = [pan_device(n) for n in range(7)]
    ids = [d["imei"] for d in devices]
    requests_mock.put(BULK_URL, json=pan_answer({devices[2]["imei"]: (400, {"code": 400, "msg": "bad"})}))
    op = PaloAltoIoTBulkUpdateOperator(
        task_id="t", devices=devices, batch_size=2, fail_on_error=False, requests_in_flight=2
    )
    result = op.execute(operator_context())
    assert result["devices"]["accepted"] == ids[:2] + ids[4:]  # input order, whatever order answers came
    assert [group["devices"] for group in result["errors"]] == [ids[2:4]]
    assert result["updated"] == 5
    sent = sorted(
        tuple(d["imei"] for d in r.json()["devicelist"])
        for r in requests_mock.request_history
        if r.method == "PUT"
    )
    assert sorted(set(sent)) == sorted({tuple(ids[i : i + 2]) for i in range(0, 7, 2)})


@pytest.mark.parametrize("in_flight", [0, 5, True, "2"])
def test_pan_requests_in_flight_out_of_range_is_refused(paloalto_connection: None, in_flight: Any) -> None:
    with pytest.raises(IoTFleetValidationError, match="requests_in_flight"):
        PaloAltoIoTBulkUpdateOperator(task_id="t", devices=[pan_device(0)], requests_in_flight=in_flight)
