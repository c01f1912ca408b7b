from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests_mock as rm

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetNotAttemptedError,
    IoTFleetNotFoundError,
    IoTFleetOutcomeUnknownError,
    IoTFleetRateLimitError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.huawei.answers import NEVER_CONNECTED_MESSAGE, NOT_FORCED_OFFLINE
from airflow_provider_iotfleet.hooks.huawei.auth import sign, string_to_sign
from tests.connections import ROMA_AK as AK
from tests.connections import ROMA_HOST as HOST
from tests.connections import ROMA_IAM_PASSWORD as IAM_PASSWORD
from tests.connections import ROMA_IAM_URL as IAM_URL
from tests.connections import ROMA_INSTANCE as INSTANCE
from tests.connections import ROMA_PROJECT as PROJECT
from tests.connections import ROMA_SK as SK
from tests.fakes import FakeClock

DEVICES = f"{HOST}/v2/{PROJECT}/link/instances/{INSTANCE}/devices"


def test_signature_reproduces_huaweis_published_vector() -> None:
    canonical_hash = "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
    assert (
        sign(SK, string_to_sign(canonical_hash, "20191115T033655Z"))
        == "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
    )


@pytest.fixture
def hook(roma_connection: None, clock: FakeClock) -> HuaweiRomaConnectHook:
    return HuaweiRomaConnectHook(clock=clock)


@pytest.fixture
def iam_hook(roma_iam_connection: None, clock: FakeClock) -> HuaweiRomaConnectHook:
    return HuaweiRomaConnectHook("roma_iam", clock=clock)


def _expected_signature(request: rm.request._RequestObjectProxy, signed_headers: list[str]) -> str:
    """Rebuild the canonical request by hand from what went over the wire, as the gateway does."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in signed_headers)
    body = request.body or b""
    body = body.encode() if isinstance(body, str) else body
    query = "&".join(sorted(request.url.split("?", 1)[1].split("&"))) if "?" in request.url else ""
    canonical = "\n".join(
        [
            request.method,
            request.path_url.split("?")[0] + "/",
            query,
            canonical_headers,
            ";".join(signed_headers),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    string = (
        "SDK-HMAC-SHA256\n" + headers["x-sdk-date"] + "\n" + hashlib.sha256(canonical.encode()).hexdigest()
    )
    return hmac.new(SK.encode(), string.encode(), hashlib.sha256).hexdigest()


def _authorization(request: rm.request._RequestObjectProxy) -> tuple[str, list[str], str]:
    scheme, _, rest = request.headers["Authorization"].partition(" ")
    fields = dict(part.strip().split("=", 1) for part in rest.split(","))
    assert scheme == "SDK-HMAC-SHA256"
    return fields["Access"], fields["SignedHeaders"].split(";"), fields["Signature"]


def refused(
    device_id: int, error_code: str = "not_forced_offline", message: str = NOT_FORCED_OFFLINE, **fields: Any
) -> dict[str, Any]:
    """A ``failed`` entry of a force-offline result."""
    return {
        "id": device_id,
        "device_name": None,
        "error_code": error_code,
        "message": message,
        "attempted": True,
        **fields,
    }


def online_statuses(requests_mock: rm.Mocker, statuses: dict[int, int]) -> Any:
    """Answer ``GET .../devices/{id}`` with ``online_status`` (0 never connected, 1 online, 2 offline)."""

    def answer(request: Any, context: Any) -> dict[str, Any]:
        device_id = int(request.path.rsplit("/", 1)[1])
        return {"device_id": device_id, "online_status": statuses[device_id]}

    return requests_mock.get(re.compile(rf"{DEVICES}/\d+$"), json=answer)


def test_force_offline_is_signed_with_aksk(hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker) -> None:
    route = requests_mock.post(
        f"{DEVICES}/force-offline",
        json={
            "success": [{"id": 711554, "device_name": "meter-1", "device_id": 711554}],
            "failed": [{"id": 711555, "device_name": "meter-2"}],
        },
    )
    reads = online_statuses(requests_mock, {711555: 1})  # refused though online: truly refused
    result = hook.force_offline([711554, "711555"])
    assert result.succeeded == [{"id": 711554, "device_name": "meter-1"}]
    assert result.failed == [refused(711555, device_name="meter-2")]
    assert result.unchanged == []
    _, signed, signature = _authorization(reads.last_request)  # the read-back is signed too
    assert signature == _expected_signature(reads.last_request, signed)
    request = route.last_request
    assert request.json() == {"device_ids": [711554, 711555]}
    assert request.headers["X-Sdk-Date"] == "20261121T120000Z"
    assert request.headers["X-Project-Id"] == PROJECT
    assert request.headers["Host"] == "roma.cn-north-4.myhuaweicloud.com"
    access, signed, signature = _authorization(request)
    assert access == AK
    assert signed == sorted(signed)
    assert {"host", "x-sdk-date", "x-project-id", "content-type"} <= set(signed)
    assert signature == _expected_signature(request, signed)


def test_query_is_part_of_the_signature_and_retries_are_resigned(
    hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    route = requests_mock.get(
        DEVICES,
        [
            {
                "status_code": 429,
                "json": {
                    "error_code": "APIGW.0308",
                    "error_msg": "The throttling threshold has been reached",
                },
            },
            {"json": {"total": 1, "size": 1, "items": [{"device_id": 5, "online_status": 1}]}},
        ],
    )
    clock.advance(0.6)  # any backoff (at least 0.5 s) now crosses into the next second
    assert [d["device_id"] for d in hook.iter_devices(online_status="online")] == [5]
    first, second = route.request_history
    assert first.headers["X-Sdk-Date"] != second.headers["X-Sdk-Date"]  # a backoff passed: signed anew
    assert second.qs == {"limit": ["999"], "online_status": ["1"], "offset": ["0"]}
    _, signed, signature = _authorization(second)
    assert signature == _expected_signature(second, signed)


def test_temporary_credentials_add_the_security_token(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "roma_sts",
        "huawei_roma",
        host=HOST,
        login=AK,
        password=SK,
        extra={"project_id": PROJECT, "instance_id": INSTANCE, "security_token": "sts-token-value-123"},
    )
    route = requests_mock.get(f"{DEVICES}/42", json={"device_id": 42})
    HuaweiRomaConnectHook("roma_sts").get_device(42)
    request = route.last_request
    assert request.headers["X-Security-Token"] == "sts-token-value-123"
    assert "x-security-token" in _authorization(request)[1]


@pytest.mark.parametrize(
    ("status", "body", "error_class", "request_id"),
    [
        (
            400,
            {
                "error_code": "SCB.00000000",
                "error_msg": "Parameter is not valid for operation [romalink.link-device.forceDisconnect]. Parameter is [deviceDisconnectRequest]. Processor is [body].",
                "requestId": "cb39e78a-afd3-4e04-901d-70468b1c23dc-1619602712496-cnnorth7a-P-romalink-service01",
            },
            IoTFleetVendorResponseError,
            "cb39e78a-afd3-4e04-901d-70468b1c23dc-1619602712496-cnnorth7a-P-romalink-service01",
        ),
        (
            404,
            {
                "error_code": "ROMA.00110006",
                "error_msg": "The resource does not exist. Check whether the resource ID 1 is correct.",
                "requestId": "624c8be1-39b6-47b7-941d-c159aced368a-1619602544650-cnnorth7a-P-romalink-service01",
            },
            IoTFleetNotFoundError,
            "624c8be1-39b6-47b7-941d-c159aced368a-1619602544650-cnnorth7a-P-romalink-service01",
        ),
        (
            500,
            {
                "error_code": "ROMA.00110002",
                "error_msg": "The instance does not exist. project_id: 397cd10b30544c588b2f4a56d83856c4, instance_id: f3bb386a-23ec-47aa-9943-4c60ac658611",
                "request_id": "c8c06d0a-be92-4fdf-9d10-bc20131ab158-1619593104919-cnnorth7a-P-romalink-service01",
            },
            # A 500 may hide an applied force-offline, and the read-back fails too: unknown, with
            # the force-offline's own status, code and request id.
            IoTFleetOutcomeUnknownError,
            "c8c06d0a-be92-4fdf-9d10-bc20131ab158-1619593104919-cnnorth7a-P-romalink-service01",
        ),
    ],
)
def test_documented_errors(
    hook: HuaweiRomaConnectHook,
    requests_mock: rm.Mocker,
    status: int,
    body: dict[str, str],
    error_class: type[Exception],
    request_id: str,
) -> None:
    requests_mock.post(f"{DEVICES}/force-offline", status_code=status, json=body)
    # After a 5xx the force-offline is read back rather than sent again; the instance is gone for
    # reads too, so whether it applied is unknown.
    requests_mock.get(f"{DEVICES}/1", status_code=status, json=body)
    with pytest.raises(error_class) as caught:
        hook.force_offline([1])
    assert type(caught.value) is error_class
    assert (caught.value.http_status, caught.value.error_code, caught.value.request_id) == (
        status,
        body["error_code"],
        request_id,
    )
    assert body["error_msg"] in str(caught.value)


@pytest.mark.parametrize("code", ["APIGW.0308", "APIG.0308"])
def test_throttling_is_retried_then_raised_as_rate_limit(
    hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker, clock: FakeClock, code: str
) -> None:
    route = requests_mock.post(
        f"{DEVICES}/force-offline", status_code=429, json={"error_code": code, "error_msg": "throttled"}
    )
    with pytest.raises(IoTFleetRateLimitError):
        hook.force_offline([1])
    assert route.call_count == 4
    assert len(clock.sleeps) >= 3


def test_invalid_ids_and_oversized_batches_send_nothing(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "roma_small",
        "huawei_roma",
        host=HOST,
        login=AK,
        password=SK,
        extra={"project_id": PROJECT, "instance_id": INSTANCE},
    )
    hook = HuaweiRomaConnectHook("roma_small", max_devices_per_request=2)
    with pytest.raises(IoTFleetValidationError, match="2 of 3 ROMA device ids are invalid"):
        hook.force_offline([0, 5, 10**17])
    with pytest.raises(IoTFleetValidationError, match="at most 2 fit in one request"):
        hook.force_offline([1, 2, 3])
    with pytest.raises(IoTFleetValidationError, match="'asleep' is not one of never, online, offline"):
        hook.iter_devices(online_status="asleep")  # refused when called, not when iterated
    with pytest.raises(IoTFleetValidationError, match=r"1000 is not a whole number in 1\.\.999"):
        hook.iter_devices(page_size=1000)
    assert requests_mock.call_count == 0


def test_list_devices_pages_lazily(hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker) -> None:
    pages = {
        "0": {"total": 5, "size": 2, "items": [{"device_id": 1}, {"device_id": 2}]},
        "2": {"total": 5, "size": 2, "items": [{"device_id": 3}, {"device_id": 4}]},
        "4": {"total": 5, "size": 1, "items": [{"device_id": 5}]},
    }
    route = requests_mock.get(DEVICES, json=lambda request, context: pages[request.qs["offset"][0]])
    devices = hook.iter_devices(page_size=2)
    assert route.call_count == 0
    assert [next(devices)["device_id"], next(devices)["device_id"]] == [1, 2]
    assert route.call_count == 1
    assert [d["device_id"] for d in devices] == [3, 4, 5]
    assert route.call_count == 3


def test_iam_token_is_fetched_cached_and_refreshed(
    iam_hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    expires_at = (clock.now() + timedelta(hours=24)).isoformat().replace("+00:00", "Z")
    token_route = requests_mock.post(
        IAM_URL,
        [
            {
                "status_code": 201,
                "headers": {"X-Subject-Token": "MIIT-token-one"},
                "json": {"token": {"expires_at": expires_at}},
            },
            {"status_code": 201, "headers": {"X-Subject-Token": "MIIT-token-two"}, "json": {"token": {}}},
        ],
    )
    device_route = requests_mock.get(f"{DEVICES}/7", json={"device_id": 7, "online_status": 2})
    iam_hook.get_device(7)
    iam_hook.get_device(7)
    assert token_route.call_count == 1
    assert token_route.last_request.json() == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "fleet-ops", "password": IAM_PASSWORD, "domain": {"name": "acme"}}
                },
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }
    assert device_route.last_request.headers["X-Auth-Token"] == "MIIT-token-one"
    assert "Authorization" not in device_route.last_request.headers
    clock.advance(23 * 3600 + 1)  # inside the one-hour lead before the 24 h expiry
    iam_hook.get_device(7)
    assert token_route.call_count == 2
    assert device_route.last_request.headers["X-Auth-Token"] == "MIIT-token-two"


def test_iam_401_refreshes_once(iam_hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker) -> None:
    token_route = requests_mock.post(
        IAM_URL,
        [
            {"status_code": 201, "headers": {"X-Subject-Token": "MIIT-token-one"}, "json": {"token": {}}},
            {"status_code": 201, "headers": {"X-Subject-Token": "MIIT-token-two"}, "json": {"token": {}}},
        ],
    )
    device_route = requests_mock.get(
        f"{DEVICES}/7",
        [
            {
                "status_code": 401,
                "json": {"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information"},
            },
            {"json": {"device_id": 7}},
        ],
    )
    assert iam_hook.get_device(7) == {"device_id": 7}
    assert token_route.call_count == 2
    assert device_route.call_count == 2


def test_iam_wrong_password(iam_hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker) -> None:
    requests_mock.post(
        IAM_URL,
        status_code=401,
        json={
            "error": {"code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}
        },
    )
    with pytest.raises(IoTFleetAuthError, match="The username or password is wrong"):
        iam_hook.get_device(7)
    assert requests_mock.call_count == 1


def test_test_connection(hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(DEVICES, json={"total": 1234, "size": 1, "items": [{"device_id": 1}]})
    assert hook.test_connection() == (
        True,
        f"Authenticated to Huawei ROMA Connect instance {INSTANCE} (1234 devices)",
    )
    requests_mock.get(
        DEVICES,
        status_code=401,
        json={
            "error_code": "APIGW.0301",
            "error_msg": "Incorrect IAM authentication information: verify aksk signature fail",
            "request_id": "r1",
        },
    )
    ok, message = hook.test_connection()
    assert not ok
    assert "verify aksk signature fail" in message


def test_force_offline_accounts_every_requested_id_once(
    hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker
) -> None:
    requests_mock.post(
        f"{DEVICES}/force-offline",
        json={
            "success": [
                {"id": 1, "device_name": "a", "device_id": 1},
                {"id": 99, "device_name": "not asked for"},
                {"id": "abc"},
            ],
            "failed": [{"id": 2, "device_name": "b"}],
        },
    )
    online_statuses(requests_mock, {2: 1})
    result = hook.force_offline([1, 2, 3])
    assert result.succeeded == [{"id": 1, "device_name": "a"}]
    assert result.failed == [
        refused(2, device_name="b"),
        refused(3, "missing_from_answer", "missing from Huawei ROMA Connect's answer"),
    ]
    assert result.unchanged == []


def test_refused_devices_are_read_back_before_they_count_as_failed(
    hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker
) -> None:
    """ROMA refuses a device that is not online: already offline is as asked, never connected
    cannot be forced, online but refused stays refused. Each id lands in exactly one list."""
    post = requests_mock.post(
        f"{DEVICES}/force-offline",
        json={"success": [{"id": 1, "device_name": "a"}], "failed": [{"id": i} for i in (2, 3, 4)]},
    )
    reads = online_statuses(requests_mock, {2: 2, 3: 0, 4: 1})
    result = hook.force_offline([1, 2, 3, 4])
    assert result.succeeded == [{"id": 1, "device_name": "a"}]
    assert result.unchanged == [2]
    assert result.failed == [refused(3, "never_connected", NEVER_CONNECTED_MESSAGE), refused(4)]
    assert post.call_count == 1
    assert sorted(r.path.rsplit("/", 1)[1] for r in reads.request_history) == ["2", "3", "4"]


def test_a_read_back_that_fails_keeps_the_devices_refused(
    hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker
) -> None:
    requests_mock.post(
        f"{DEVICES}/force-offline", json={"success": [{"id": 1, "device_name": "a"}], "failed": [{"id": 2}]}
    )
    reads = requests_mock.get(
        f"{DEVICES}/2",
        status_code=404,
        json={"error_code": "ROMA.00110006", "error_msg": "The resource does not exist."},
    )
    result = hook.force_offline([1, 2])
    assert result.succeeded == [{"id": 1, "device_name": "a"}]
    assert result.unchanged == []
    assert result.failed == [refused(2)]
    assert reads.call_count == 1


def test_read_first_sends_only_the_devices_not_offline(
    hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker
) -> None:
    post = requests_mock.post(
        f"{DEVICES}/force-offline", json={"success": [{"id": 1}, {"id": 4}], "failed": []}
    )
    online_statuses(requests_mock, {1: 1, 2: 2, 3: 0, 4: 1})
    result = hook.force_offline([1, 2, 3, 4], read_first=True)
    assert [r.json() for r in post.request_history] == [{"device_ids": [1, 4]}]
    assert result.succeeded == [{"id": 1, "device_name": None}, {"id": 4, "device_name": None}]
    assert result.unchanged == [2]
    # Never sent: ROMA would refuse a device that never connected.
    assert result.failed == [refused(3, "never_connected", NEVER_CONNECTED_MESSAGE, attempted=False)]


def test_read_first_sends_nothing_when_every_device_is_offline(
    hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker
) -> None:
    post = requests_mock.post(f"{DEVICES}/force-offline", json={"success": [], "failed": []})
    online_statuses(requests_mock, {1: 2, 2: 2})
    result = hook.force_offline([1, 2], read_first=True)
    assert post.call_count == 0
    assert (result.succeeded, result.unchanged, result.failed) == ([], [1, 2], [])


def test_read_first_that_fails_sends_nothing_and_says_so(
    hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker
) -> None:
    """A read that fails before a retry's force-offline leaves the devices not attempted (the
    outcome must not call them sent), carrying the read's error as the cause."""
    post = requests_mock.post(f"{DEVICES}/force-offline", json={"success": [], "failed": []})
    body = {"error_code": "ROMA.00110002", "error_msg": "The instance does not exist.", "request_id": "r-5"}
    requests_mock.get(re.compile(rf"{DEVICES}/\d+$"), status_code=500, json=body)
    with pytest.raises(IoTFleetNotAttemptedError) as caught:
        hook.force_offline([1, 2], read_first=True)
    assert post.call_count == 0
    assert (caught.value.http_status, caught.value.error_code, caught.value.request_id) == (
        500,
        "ROMA.00110002",
        "r-5",
    )
    assert caught.value.bare_message == "not attempted after an earlier error: The instance does not exist."
    assert isinstance(caught.value.cause, IoTFleetVendorResponseError)


def test_read_first_refused_credentials_are_raised_as_they_are(
    hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker
) -> None:
    """Refused credentials stop a run whatever the call: they are not hidden as "not attempted"."""
    post = requests_mock.post(f"{DEVICES}/force-offline", json={"success": [], "failed": []})
    requests_mock.get(
        re.compile(rf"{DEVICES}/\d+$"),
        status_code=401,
        json={"error_code": "APIGW.0301", "error_msg": "verify aksk signature fail"},
    )
    with pytest.raises(IoTFleetAuthError):
        hook.force_offline([1], read_first=True)
    assert post.call_count == 0


def test_a_gateway_ignoring_offset_is_an_error_not_an_endless_listing(
    hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker
) -> None:
    page = {"total": 10, "size": 2, "items": [{"device_id": 1}, {"device_id": 2}]}
    route = requests_mock.get(DEVICES, json=page)  # the same page whatever the offset
    with pytest.raises(IoTFleetVendorResponseError, match="devices of the previous page again at offset 2"):
        list(hook.iter_devices(page_size=2))
    assert route.call_count == 2


def test_an_answer_without_items_is_not_an_empty_instance(
    hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker
) -> None:
    requests_mock.get(DEVICES, json={})
    with pytest.raises(IoTFleetVendorResponseError, match="no 'items' field"):
        list(hook.iter_devices())


def test_a_clock_too_far_off_the_gateway_is_compensated_once(
    hook: HuaweiRomaConnectHook, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    from email.utils import format_datetime

    gateway_now = clock.now() + timedelta(minutes=40)
    expired = {
        "status_code": 401,
        "headers": {"Date": format_datetime(gateway_now, usegmt=True)},
        "json": {
            "error_code": "APIGW.0301",
            "error_msg": "Incorrect IAM authentication information: x-sdk-date expired",
        },
    }
    route = requests_mock.get(f"{DEVICES}/5", [expired, {"json": {"device_id": 5, "online_status": 1}}])
    assert hook.get_device(5)["online_status"] == 1
    first, second = (request.headers["X-Sdk-Date"] for request in route.request_history)
    assert first == clock.now().strftime("%Y%m%dT%H%M%SZ")
    assert second == gateway_now.strftime("%Y%m%dT%H%M%SZ")
    requests_mock.get(f"{DEVICES}/6", json={"device_id": 6})
    hook.get_device(6)  # later calls keep the gateway's time: no refusal first
    assert requests_mock.last_request.headers["X-Sdk-Date"] == gateway_now.strftime("%Y%m%dT%H%M%SZ")


def listings(requests_mock: rm.Mocker, members: dict[int, list[int]]) -> Any:
    """Answer the listing filtered on ``online_status`` with the ids in ``members[code]``, one page."""

    def answer(request: Any, context: Any) -> dict[str, Any]:
        ids = members.get(int(request.qs["online_status"][0]), [])
        return {"total": len(ids), "size": len(ids), "items": [{"device_id": i, "id": i} for i in ids]}

    return requests_mock.get(re.compile(rf"{DEVICES}\?"), json=answer)


@pytest.mark.parametrize(
    ("with_never", "listed", "never_value"),
    [(True, [["2"], ["0"]], "never"), (False, [["2"]], "not offline")],
)
def test_reading_for_an_offline_wait_pages_the_never_connected_listing_unless_told_not_to(
    hook: HuaweiRomaConnectHook,
    requests_mock: rm.Mocker,
    with_never: bool,
    listed: list[list[str]],
    never_value: str,
) -> None:
    ids = list(range(1, 21))
    route = listings(requests_mock, {2: [1, 2], 0: [3]})
    reads = hook.read_online_statuses(ids, "offline", with_never=with_never)
    assert [request.qs["online_status"] for request in route.request_history] == listed
    assert reads.values[1] == reads.values[2] == "offline"
    assert reads.values[3] == never_value
    assert reads.values[4] == "not offline"
    assert reads.missing == {}
