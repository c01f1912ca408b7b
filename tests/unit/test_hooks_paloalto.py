from __future__ import annotations

import base64
from collections.abc import Callable
from urllib.parse import parse_qs

import pytest
import requests_mock as rm

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetConfigurationError,
    IoTFleetRateLimitError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.base import RATE_HEADROOM
from airflow_provider_iotfleet.hooks.paloalto import PaloAltoIoTSecurityHook
from tests.connections import PALOALTO_ACCESS_KEY as ACCESS_KEY
from tests.connections import PALOALTO_KEY_ID as KEY_ID
from tests.connections import PALOALTO_TENANT_HOST as TENANT_HOST
from tests.fakes import ICCID, IMEI, FakeClock
from tests.log_capture import Logs

BULK_URL = f"{TENANT_HOST}/pub/v4.0/device/bulkUpdate"
SCM_URL = "https://api.strata.paloaltonetworks.com/iot/pub/v1/device/bulkUpdate"
SCM_TOKEN_URL = "https://auth.apps.paloaltonetworks.com/oauth2/access_token"
CLIENT_ID, CLIENT_SECRET = "svc@1234567.iam.panserviceaccount.com", "scm-client-secret-value"
DEVICES = [{"imei": IMEI, "iccid": ICCID, "ipAddress": "10.20.30.40", "SessionEvtType": "Start"}]
OK = {"api": "device/bulkUpdate", "ver": "v4.0", "code": 1, "message": "OK", "updatedDeviceNum": 1}


@pytest.fixture
def hook(paloalto_connection: None, clock: FakeClock) -> PaloAltoIoTSecurityHook:
    return PaloAltoIoTSecurityHook(clock=clock)


@pytest.fixture
def scm_hook(set_connection: Callable[..., None], clock: FakeClock) -> PaloAltoIoTSecurityHook:
    set_connection(
        "paloalto_scm",
        "paloalto_iot",
        login=CLIENT_ID,
        password=CLIENT_SECRET,
        extra={"auth_type": "scm", "tsg_id": "1234567890"},
    )
    return PaloAltoIoTSecurityHook("paloalto_scm", clock=clock)


@pytest.mark.parametrize("code", [1, "1"])
def test_bulk_update_with_api_key(
    hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker, code: object
) -> None:
    requests_mock.put(BULK_URL, json={**OK, "code": code})
    result = hook.bulk_update(DEVICES)
    assert (result.requested, result.updated, result.message) == (1, 1, "OK")
    request = requests_mock.last_request
    assert request.headers["X-Key-Id"] == KEY_ID
    assert request.headers["X-Access-Key"] == ACCESS_KEY
    assert "Authorization" not in request.headers
    assert parse_qs(request.query) == {"customerid": ["acme-iot"], "updatesource": ["cellular"]}
    assert request.json() == {"devicelist": DEVICES}
    assert (
        request.path == "/pub/v4.0/device/bulkupdate"
    )  # requests-mock lower-cases; the URL matched camelCase


def test_customer_id_from_extra_and_argument(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "pa_local",
        "paloalto_iot",
        host="http://127.0.0.1:8080/paloalto",
        login=KEY_ID,
        password=ACCESS_KEY,
        extra={"customer_id": "demo"},
    )
    requests_mock.put("http://127.0.0.1:8080/paloalto/pub/v4.0/device/bulkUpdate", json=OK)
    hook = PaloAltoIoTSecurityHook("pa_local")
    hook.bulk_update(DEVICES)
    assert requests_mock.last_request.qs["customerid"] == ["demo"]
    hook.bulk_update(DEVICES, customer_id="other")
    assert requests_mock.last_request.qs["customerid"] == ["other"]


def test_missing_customer_id_is_a_configuration_error(set_connection: Callable[..., None]) -> None:
    set_connection(
        "pa_nohost", "paloalto_iot", host="https://iot.example.com", login=KEY_ID, password=ACCESS_KEY
    )
    with pytest.raises(IoTFleetConfigurationError, match="'customer_id' is missing"):
        PaloAltoIoTSecurityHook("pa_nohost").bulk_update(DEVICES)


def test_non_success_code_is_an_error(hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker) -> None:
    requests_mock.put(BULK_URL, json={**OK, "code": 0, "message": "partial failure", "updatedDeviceNum": 0})
    with pytest.raises(IoTFleetVendorResponseError, match="did not confirm the bulk update: partial failure"):
        hook.bulk_update(DEVICES)


def test_answer_without_updated_count_is_a_clear_error(
    hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker
) -> None:
    requests_mock.put(BULK_URL, json={"code": "1", "message": "OK"})
    with pytest.raises(IoTFleetVendorResponseError, match="no 'updatedDeviceNum' field"):
        hook.bulk_update(DEVICES)


@pytest.mark.parametrize("count", [len(DEVICES) + 1, -1, "many"])
def test_an_updated_count_that_cannot_be_true_is_refused(
    hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker, count: object
) -> None:
    requests_mock.put(BULK_URL, json={**OK, "updatedDeviceNum": count})
    with pytest.raises(
        IoTFleetVendorResponseError, match=f"updatedDeviceNum {count!r} for {len(DEVICES)} devices sent"
    ):
        hook.bulk_update(DEVICES)


@pytest.mark.parametrize(
    ("status", "body", "error_class", "attempts"),
    [
        (
            400,
            {
                "code": 400,
                "msg": "Bad Request. This occurs when an HTTP request contains an invalid query string.",
            },
            IoTFleetVendorResponseError,
            1,
        ),
        (
            403,
            {
                "code": "403",
                "msg": "Forbidden access. Either the provided API key is invalid or it does not have the required RBAC permissions to run this API.",
            },
            IoTFleetAuthError,
            1,
        ),
        (
            429,
            {
                "code": 429,
                "msg": "Too many requests. The number of requests for device details for a single device exceeded the rate limit of 180 queries per minute per tenant.",
            },
            IoTFleetRateLimitError,
            4,
        ),
        (
            500,
            {
                "code": 500,
                "msg": "Internal server error. A unified status for API communication type errors.",
            },
            IoTFleetVendorResponseError,
            4,
        ),
    ],
)
def test_documented_errors(
    hook: PaloAltoIoTSecurityHook,
    requests_mock: rm.Mocker,
    clock: FakeClock,
    status: int,
    body: dict[str, object],
    error_class: type[Exception],
    attempts: int,
) -> None:
    requests_mock.put(BULK_URL, status_code=status, json=body)
    with pytest.raises(error_class) as caught:
        hook.bulk_update(DEVICES)
    assert type(caught.value) is error_class
    assert caught.value.http_status == status
    assert caught.value.error_code == str(body["code"])
    assert str(body["msg"]) in str(caught.value)
    assert requests_mock.call_count == attempts
    assert len(clock.sleeps) == attempts - 1


def test_oversized_batch_is_refused_before_sending(
    paloalto_connection: None, requests_mock: rm.Mocker
) -> None:
    hook = PaloAltoIoTSecurityHook(max_devices_per_request=2)
    with pytest.raises(IoTFleetValidationError, match="devices has 3 items"):
        hook.bulk_update([{"imei": IMEI}] * 3)
    assert requests_mock.call_count == 0


def test_rate_limit_defaults_to_180_per_minute(
    hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    requests_mock.put(BULK_URL, json=OK)
    start = clock.monotonic()
    for _ in range(4):
        hook.bulk_update(DEVICES)
    assert clock.monotonic() - start == pytest.approx(
        1.0 / RATE_HEADROOM
    )  # three waits of 1/3 s, paced under


def _token_reply(token: str, expires_in: int = 899) -> dict[str, object]:
    return {"json": {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}}


def test_scm_token_is_fetched_once_and_sent_as_bearer(
    scm_hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker
) -> None:
    token_route = requests_mock.post(SCM_TOKEN_URL, [_token_reply("tok-one-aaaaaaaa")])
    bulk_route = requests_mock.put(SCM_URL, json=OK)
    scm_hook.bulk_update(DEVICES)
    scm_hook.bulk_update(DEVICES)
    assert token_route.call_count == 1
    token_request = token_route.last_request
    assert parse_qs(token_request.text) == {
        "grant_type": ["client_credentials"],
        "scope": ["tsg_id:1234567890"],
    }
    expected_basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_request.headers["Authorization"] == f"Basic {expected_basic}"
    assert bulk_route.last_request.headers["Authorization"] == "Bearer tok-one-aaaaaaaa"
    assert bulk_route.last_request.qs == {"updatesource": ["cellular"]}  # no customerid on SCM


def test_scm_token_is_renewed_ahead_of_expiry(
    scm_hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    token_route = requests_mock.post(
        SCM_TOKEN_URL, [_token_reply("tok-one-aaaaaaaa"), _token_reply("tok-two-bbbbbbbb")]
    )
    bulk_route = requests_mock.put(SCM_URL, json=OK)
    scm_hook.bulk_update(DEVICES)
    clock.advance(899 - 121)  # still more than the 120 s lead left
    scm_hook.bulk_update(DEVICES)
    assert token_route.call_count == 1
    clock.advance(2)  # now inside the lead time
    scm_hook.bulk_update(DEVICES)
    assert token_route.call_count == 2
    assert bulk_route.last_request.headers["Authorization"] == "Bearer tok-two-bbbbbbbb"


def test_scm_401_renews_the_token_once(scm_hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker) -> None:
    token_route = requests_mock.post(
        SCM_TOKEN_URL, [_token_reply("tok-one-aaaaaaaa"), _token_reply("tok-two-bbbbbbbb")]
    )
    requests_mock.put(
        SCM_URL, [{"status_code": 401, "json": {"code": 401, "msg": "token expired"}}, {"json": OK}]
    )
    assert scm_hook.bulk_update(DEVICES).updated == 1
    assert token_route.call_count == 2


def test_scm_repeated_401_is_raised_not_looped(
    scm_hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker
) -> None:
    token_route = requests_mock.post(
        SCM_TOKEN_URL, [_token_reply("tok-one-aaaaaaaa"), _token_reply("tok-two-bbbbbbbb")]
    )
    bulk_route = requests_mock.put(SCM_URL, status_code=401, json={"code": 401, "msg": "unauthorized"})
    with pytest.raises(IoTFleetAuthError):
        scm_hook.bulk_update(DEVICES)
    assert (token_route.call_count, bulk_route.call_count) == (2, 2)


def test_scm_bad_client_secret(scm_hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker) -> None:
    requests_mock.post(SCM_TOKEN_URL, status_code=401, json={"error": "invalid_client"})
    ok, message = scm_hook.test_connection()
    assert not ok
    assert "POST /oauth2/access_token" in message
    assert requests_mock.call_count == 1


def test_test_connection_reads_one_device(hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker) -> None:
    route = requests_mock.get(f"{TENANT_HOST}/pub/v4.0/device/list", json={"total": 0, "devices": []})
    assert hook.test_connection() == (
        True,
        "Authenticated to Palo Alto Networks IoT Security tenant acme-iot",
    )
    assert route.last_request.qs == {"customerid": ["acme-iot"], "offset": ["0"], "pagelength": ["1"]}


def test_scm_test_connection_obtains_a_token(
    scm_hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker
) -> None:
    requests_mock.post(SCM_TOKEN_URL, [_token_reply("tok-one-aaaaaaaa")])
    assert scm_hook.test_connection() == (True, "Obtained a Strata Cloud Manager token for 1234567890")


LIST_URL = f"{TENANT_HOST}/pub/v4.0/device/list"


def test_read_devices_matches_by_any_identifier_and_keeps_input_order(
    hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker
) -> None:
    listed = [
        {"deviceid": "aa:bb", "iccid": ICCID, "apn": "x.iot"},
        {"deviceid": "10.20.30.40", "ip_address": "10.20.30.40"},
    ]
    requests_mock.get(LIST_URL, json={"total": 2, "devices": listed})
    found = hook.read_devices([{"ipAddress": "10.20.30.40"}, {"imei": IMEI}, {"imei": IMEI, "iccid": ICCID}])
    assert found == [listed[1], None, listed[0]]
    assert parse_qs(requests_mock.last_request.query) == {
        "customerid": ["acme-iot"],
        "offset": ["0"],
        "pagelength": ["1000"],
    }


def test_read_devices_with_scm_reads_nothing_and_says_why(
    scm_hook: PaloAltoIoTSecurityHook, requests_mock: rm.Mocker, logs: Logs
) -> None:
    assert scm_hook.read_devices(DEVICES) == [None]
    assert requests_mock.call_count == 0
    assert any("documented for the v4.0 API only" in line for line in logs.lines("warning"))


def test_device_reads_have_their_own_limit_from_the_connection(
    set_connection: Callable[..., None], clock: FakeClock
) -> None:
    set_connection(
        "pan_reads",
        "paloalto_iot",
        host=TENANT_HOST,
        login=KEY_ID,
        password=ACCESS_KEY,
        extra={"device_reads_per_minute": 30},
    )
    hook = PaloAltoIoTSecurityHook("pan_reads", clock=clock, rate_limit_share=0.5)
    assert hook._device_reads.rate == pytest.approx(30 / 60 * 0.5 * RATE_HEADROOM)
