"""Regressions from driving the transport through hostile answers and inputs: no leaked secret, no
raw exception, no unbounded download or wait, and one throttled caller slows its siblings."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests
import requests_mock as rm
import structlog

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetCertificateError,
    IoTFleetConfigurationError,
    IoTFleetError,
    IoTFleetRateLimitError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.paloalto import PaloAltoIoTSecurityHook
from airflow_provider_iotfleet.http import (
    AsyncVendorHttpClient,
    BackoffPolicy,
    Call,
    ErrorMapping,
    TokenBucket,
    VendorErrorBody,
    VendorHttpClient,
)
from tests.fakes import ICCID, IMEI, FakeClock

BASE = "https://api.example.test"
ERRORS = ErrorMapping(vendor="Example", parse_body=lambda body: VendorErrorBody())


def client(clock: FakeClock, **options: Any) -> VendorHttpClient:
    return VendorHttpClient(
        base_url=BASE, errors=ERRORS, clock=clock, uniform=lambda low, high: high, **options
    )


def everything_said(error: BaseException, events: list[dict[str, Any]]) -> str:
    return " ".join([str(error), repr(error), *(json.dumps(event, default=str) for event in events)])


# --- secrets --------------------------------------------------------------------------------------


def test_a_credential_pasted_with_a_newline_is_stripped_not_quoted(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "pan_newline",
        "paloalto_iot",
        host="https://acme.iot.paloaltonetworks.com",
        login="key-id-1\n",
        password="access-key-SECRET-42\n",
    )
    route = requests_mock.put(
        "https://acme.iot.paloaltonetworks.com/pub/v4.0/device/bulkUpdate",
        json={"code": 1, "message": "OK", "updatedDeviceNum": 1},
    )
    PaloAltoIoTSecurityHook("pan_newline").bulk_update([{"imei": IMEI}])
    assert route.last_request.headers["X-Access-Key"] == "access-key-SECRET-42"


def test_a_header_that_would_break_is_refused_without_its_value(
    clock: FakeClock, requests_mock: rm.Mocker
) -> None:
    from airflow_provider_iotfleet.http.auth import HeaderAuth

    requests_mock.get(f"{BASE}/things", json={})
    bad = client(clock, auth=HeaderAuth({"X-Api-Key": "SECRET-in-header\r\nX-Evil: 1"}))
    with pytest.raises(IoTFleetConfigurationError) as caught:
        bad.send(Call("GET", "things"))
    assert "X-Api-Key header" in str(caught.value)
    assert "SECRET" not in str(caught.value) and "SECRET" not in repr(caught.value)
    assert requests_mock.call_count == 0  # http.client's ValueError (quoting the value) never happens


def test_a_form_encoded_token_answer_is_never_quoted(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    set_connection(
        "pan_scm",
        "paloalto_iot",
        login="client@1.iam.panserviceaccount.com",
        password="scm-client-secret-1",
        extra={"auth_type": "scm", "tsg_id": "1234567890", "max_retries": 1},
    )
    requests_mock.post(
        "https://auth.apps.paloaltonetworks.com/oauth2/access_token",
        text="access_token=eyJ-LEAKED-TOKEN-123&token_type=Bearer&expires_in=899",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with structlog.testing.capture_logs() as events, pytest.raises(IoTFleetVendorResponseError) as caught:
        PaloAltoIoTSecurityHook("pan_scm", clock=clock).bulk_update([{"imei": IMEI}])
    said = everything_said(caught.value, events)
    assert "a body that is not JSON" in str(caught.value)
    assert "LEAKED-TOKEN" not in said


def test_an_error_body_echoing_the_iam_password_is_masked(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "roma_iam",
        "huawei_roma",
        host="https://roma.cn-north-4.myhuaweicloud.com",
        login="iam-user",
        password="IAM-P4ssw0rd-SECRET",
        extra={
            "auth_type": "iam_token",
            "region": "cn-north-4",
            "domain_name": "acme",
            "project_id": "p1",
            "instance_id": "i1",
        },
    )
    requests_mock.post(
        "https://iam.cn-north-4.myhuaweicloud.com/v3/auth/tokens",
        status_code=401,
        json={
            "error": {
                "code": 401,
                "message": "The password IAM-P4ssw0rd-SECRET is wrong",
                "title": "Unauthorized",
            }
        },
    )
    with structlog.testing.capture_logs() as events, pytest.raises(IoTFleetAuthError) as caught:
        HuaweiRomaConnectHook("roma_iam").get_device(1)
    said = everything_said(caught.value, events)
    assert "IAM-P4ssw0rd-SECRET" not in said
    assert "The password *** is wrong" in str(caught.value)


# --- raw exceptions and unbounded reads ----------------------------------------------------------


def test_deeply_nested_json_is_a_typed_error(clock: FakeClock, requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{BASE}/things", text="[" * 100_000 + "]" * 100_000)
    with pytest.raises(IoTFleetVendorResponseError, match="a body that is not JSON"):
        client(clock, retry=BackoffPolicy(max_retries=0)).send(Call("GET", "things"))


def test_a_huge_error_page_is_not_downloaded_again_and_again(
    clock: FakeClock, requests_mock: rm.Mocker
) -> None:
    route = requests_mock.get(f"{BASE}/things", status_code=503, content=b"<html>" + b"x" * (2 * 2**20))
    with pytest.raises(IoTFleetVendorResponseError, match="more than 1 MiB; the answer was not read further"):
        client(clock, max_answer_bytes=2**20).send(Call("GET", "things"))
    assert route.call_count == 1
    assert clock.sleeps == []


# --- waits ----------------------------------------------------------------------------------------


def test_retry_after_waits_are_capped_per_call_in_total(clock: FakeClock, requests_mock: rm.Mocker) -> None:
    route = requests_mock.get(f"{BASE}/things", status_code=429, headers={"Retry-After": "70"}, json={})
    with pytest.raises(IoTFleetRateLimitError):
        client(clock, retry=BackoffPolicy(max_retries=5)).send(Call("GET", "things"))
    assert clock.sleeps == [70.0]  # a second 70 s would pass the 120 s a call may sleep for the vendor
    assert route.call_count == 2


def test_a_call_gives_up_at_its_deadline(clock: FakeClock, requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{BASE}/things", status_code=500, json={})
    policy = BackoffPolicy(max_retries=50, backoff_base=10.0, backoff_max=60.0, deadline=200.0)
    with pytest.raises(IoTFleetVendorResponseError):
        client(clock, retry=policy).send(Call("GET", "things"))
    assert sum(clock.sleeps) <= 200.0
    assert len(clock.sleeps) < 50


def test_a_429_pauses_the_shared_rate_limiter_for_every_caller(requests_mock: rm.Mocker) -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, clock=clock.monotonic, sleep=clock.sleep)
    seen_by_others: list[float] = []

    class Watching(FakeClock):
        def sleep(self, seconds: float) -> None:
            # While this caller backs off, what would any other caller of the client have to wait?
            seen_by_others.append(bucket.reserve())
            clock.sleep(seconds)

        def monotonic(self) -> float:
            return clock.monotonic()

    requests_mock.get(
        f"{BASE}/throttled",
        [{"status_code": 429, "headers": {"Retry-After": "30"}, "json": {}}, {"json": {}}],
    )
    client(Watching(), rate_limiter=bucket).send(Call("GET", "throttled"))
    assert seen_by_others[0] == pytest.approx(30.0, abs=0.1)


def test_pausing_the_limiter_delays_the_next_reservation() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock=clock.monotonic, sleep=clock.sleep)
    assert bucket.reserve() == 0.0
    bucket.pause(30.0)
    assert bucket.reserve() == pytest.approx(30.0)


@pytest.mark.parametrize("host", ["https://rws example.com", "https://rws.example.com:99999", "https://:443"])
def test_hosts_that_are_not_urls_are_configuration_errors(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, host: str
) -> None:
    set_connection("cc_bad_host", "cisco_control_center", host=host, login="u", password="secret-key-1")
    with pytest.raises(IoTFleetError) as caught:
        CiscoControlCenterHook("cc_bad_host").get_device(ICCID)
    assert isinstance(caught.value, IoTFleetConfigurationError)
    assert requests_mock.call_count == 0


# --- TLS and where credentials go ------------------------------------------------------------------


def test_a_certificate_that_fails_verification_is_not_retried(
    clock: FakeClock, requests_mock: rm.Mocker
) -> None:
    route = requests_mock.get(
        f"{BASE}/things",
        exc=requests.exceptions.SSLError("certificate verify failed: self-signed certificate"),
    )
    with pytest.raises(IoTFleetCertificateError, match="set the connection's ca_bundle extra"):
        client(clock).send(Call("GET", "things"))
    assert route.call_count == 1
    assert clock.sleeps == []


def test_the_async_client_does_not_retry_an_untrusted_certificate_either(clock: FakeClock) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("handshake failed") from ssl.SSLCertVerificationError(
            "unable to get local issuer"
        )

    async def send() -> None:
        async_client = AsyncVendorHttpClient(
            base_url=BASE, errors=ERRORS, clock=clock, transport=httpx.MockTransport(handler)
        )
        try:
            await async_client.send(Call("GET", "things"))
        finally:
            await async_client.aclose()

    with pytest.raises(IoTFleetCertificateError):
        asyncio.run(send())
    assert calls == 1


def test_the_ca_bundle_extra_is_what_requests_verify_against(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, tmp_path: Any
) -> None:
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    set_connection(
        "cc_proxy",
        "cisco_control_center",
        host="https://cc.example.com",
        login="u",
        password="secret-key-1",
        extra={"ca_bundle": str(bundle)},
    )
    route = requests_mock.get(f"https://cc.example.com/rws/api/v1/devices/{ICCID}", json={"iccid": ICCID})
    CiscoControlCenterHook("cc_proxy").get_device(ICCID)
    assert route.last_request.verify == str(bundle)
    set_connection(
        "cc_no_bundle",
        "cisco_control_center",
        host="https://cc.example.com",
        login="u",
        password="secret-key-1",
        extra={"ca_bundle": str(tmp_path / "missing.pem")},
    )
    with pytest.raises(IoTFleetConfigurationError, match=r"extra 'ca_bundle' is .* not a readable file"):
        CiscoControlCenterHook("cc_no_bundle").get_device(ICCID)


@pytest.mark.parametrize(
    ("conn_type", "extra", "key"),
    [
        (
            "paloalto_iot",
            {"auth_type": "scm", "tsg_id": "1", "auth_url": "http://auth.example.com/token"},
            "auth_url",
        ),
        (
            "verizon_thingspace",
            {"m2m_username": "u", "m2m_password": "p-secret-1", "oauth_url": "http://ts.example.com/t"},
            "oauth_url",
        ),
        (
            "verizon_thingspace",
            {"m2m_username": "u", "m2m_password": "p-secret-1", "m2m_login_url": "http://ts.example.com/l"},
            "m2m_login_url",
        ),
        (
            "huawei_roma",
            {
                "auth_type": "iam_token",
                "domain_name": "d",
                "project_id": "p",
                "instance_id": "i",
                "iam_endpoint": "http://iam.example.com",
            },
            "iam_endpoint",
        ),
    ],
)
def test_token_and_login_urls_must_be_https_too(
    set_connection: Callable[..., None],
    requests_mock: rm.Mocker,
    conn_type: str,
    extra: dict[str, str],
    key: str,
) -> None:
    from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook

    hooks = {
        "paloalto_iot": PaloAltoIoTSecurityHook,
        "verizon_thingspace": VerizonThingSpaceHook,
        "huawei_roma": HuaweiRomaConnectHook,
    }
    set_connection(
        "plain",
        conn_type,
        host="https://vendor.example.com",
        login="client",
        password="client-secret-1",
        extra=extra,
    )
    with pytest.raises(IoTFleetConfigurationError, match=f"extra '{key}'.*must use https"):
        hooks[conn_type]("plain").client  # noqa: B018 - building the client checks every endpoint
    assert requests_mock.call_count == 0


# --- a few more answers and inputs that used to misbehave -----------------------------------------


@pytest.mark.parametrize("expires_at", ["2020-01-01T00:00:00Z", "2030-01-01T00:00:00", "not a date", None])
def test_an_iam_expiry_in_the_past_or_without_zone_neither_crashes_nor_logs_in_per_request(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, clock: FakeClock, expires_at: Any
) -> None:
    set_connection(
        "roma_iam_exp",
        "huawei_roma",
        host="https://roma.cn-north-4.myhuaweicloud.com",
        login="iam-user",
        password="iam-password-1",
        extra={
            "auth_type": "iam_token",
            "region": "cn-north-4",
            "domain_name": "d",
            "project_id": "p1",
            "instance_id": "i1",
        },
    )
    token = requests_mock.post(
        "https://iam.cn-north-4.myhuaweicloud.com/v3/auth/tokens",
        status_code=201,
        headers={"X-Subject-Token": "iam-token-1"},
        json={"token": {"expires_at": expires_at}},
    )
    requests_mock.get(re.compile(r".*/devices/\d+$"), json={"device_id": 1, "online_status": 1})
    hook = HuaweiRomaConnectHook("roma_iam_exp", clock=clock)
    for device_id in range(1, 6):
        hook.get_device(device_id)
    assert token.call_count == 1


def test_a_fractional_roma_id_in_an_answer_is_not_read_as_another_device(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "roma_frac",
        "huawei_roma",
        host="https://roma.example.com",
        login="AK00000000000000000001",
        password="sk-secret-1",
        extra={"project_id": "p1", "instance_id": "i1"},
    )
    requests_mock.post(
        re.compile(r".*/force-offline$"), json={"success": [{"id": 1.9, "device_name": "x"}], "failed": []}
    )
    result = HuaweiRomaConnectHook("roma_frac").force_offline([1])
    assert result.succeeded == []  # 1.9 is not device 1
    assert [entry["id"] for entry in result.failed] == [1]


def test_max_concurrency_zero_is_refused_not_replaced_by_the_default(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "cc_zero", "cisco_control_center", host="https://cc.example.com", login="u", password="secret-key-1"
    )
    with pytest.raises(IoTFleetValidationError, match="max_concurrency is invalid"):
        CiscoControlCenterHook("cc_zero").edit_devices(
            [{"iccid": ICCID, "status": "ACTIVATED"}], max_concurrency=0
        )
    assert requests_mock.call_count == 0


def test_backoff_base_extra_sets_the_first_retry_wait(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    set_connection(
        "cc_quick_retry",
        "cisco_control_center",
        host="https://cc.example.com",
        login="u",
        password="secret-key-1",
        extra={"backoff_base": 0.2, "requests_per_second": 1_000_000},
    )
    requests_mock.get(
        f"https://cc.example.com/rws/api/v1/devices/{ICCID}",
        [{"status_code": 500, "json": {}}, {"status_code": 500, "json": {}}, {"json": {"iccid": ICCID}}],
    )
    hook = CiscoControlCenterHook("cc_quick_retry", clock=clock)
    assert hook.get_device(ICCID) == {"iccid": ICCID}
    # Equal jitter: half the ceiling plus up to the other half, the ceiling doubling per retry.
    first, second = [seconds for seconds in clock.sleeps if seconds > 0.01]
    assert 0.1 <= first <= 0.2
    assert 0.2 <= second <= 0.4


@pytest.mark.parametrize("value", ["nan", "inf", 0, -1, "soon"])
def test_a_backoff_base_that_is_not_a_positive_finite_number_is_refused(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, value: Any
) -> None:
    set_connection(
        "cc_bad_backoff",
        "cisco_control_center",
        host="https://cc.example.com",
        login="u",
        password="secret-key-1",
        extra={"backoff_base": value},
    )
    with pytest.raises(IoTFleetConfigurationError, match="extra 'backoff_base' must be a"):
        CiscoControlCenterHook("cc_bad_backoff").get_device(ICCID)
    assert requests_mock.call_count == 0
