"""No credential, token or signature ever appears in a log record or an exception's text.

Each hook is driven through success, retries, and failures with every logger at DEBUG (urllib3's
included); what is logged and what is raised is then searched for every secret involved.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests_mock as rm

from airflow_provider_iotfleet._compat import mask_secret  # noqa: F401 - imported to prove it resolves
from airflow_provider_iotfleet.exceptions import IoTFleetError
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.paloalto import PaloAltoIoTSecurityHook
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from tests.fakes import ICCID, IMEI, FakeClock
from tests.log_capture import Logs


@pytest.fixture
def everything_logged(logs: Logs, caplog: pytest.LogCaptureFixture) -> Logs:
    """Every log line of a scenario: stdlib records (urllib3 and requests-mock at DEBUG too) and
    the hooks' structlog events, raw: before Airflow's masking processors run, so these tests hold
    without relying on the masker."""
    for name in ("urllib3", "requests_mock"):
        caplog.set_level(logging.DEBUG, logger=name)
    return logs


def _assert_secret_free(
    secrets: list[str], logged: Logs, capsys: pytest.CaptureFixture[str], errors: list[str]
) -> None:
    captured = capsys.readouterr()
    # Format every record fully (message and arguments), not just the template.
    records = "\n".join(f"{r.getMessage()} {r.args!r}" for r in logged.caplog.records)
    events = "\n".join(repr(event) for event in logged.events)
    haystacks = {
        "log records": records,
        "hook log events": events,
        "stdout": captured.out,
        "stderr": captured.err,
        "errors": "\n".join(errors),
    }
    assert logged.events, "the scenario should have logged something through the hooks"
    for secret in secrets:
        for where, text in haystacks.items():
            assert secret not in text, f"secret {secret[:4]}... found in {where}"


def _run(calls: list[Callable[[], Any]]) -> list[str]:
    errors = []
    for call in calls:
        try:
            call()
        except IoTFleetError as error:
            errors.append(f"{error!s} {error!r}")
    assert errors, "the scenario should include failures"
    return errors


def test_cisco_never_leaks_the_api_key(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, everything_logged: Any, capsys: Any
) -> None:
    api_key = "cisco-api-key-0123456789"
    set_connection(
        "cisco_control_center_default",
        "cisco_control_center",
        host="https://rws.example.com",
        login="bot",
        password=api_key,
    )
    api = "https://rws.example.com/rws/api/v1"
    requests_mock.put(
        f"{api}/devices/{ICCID}", [{"status_code": 500, "json": {}}, {"json": {"iccid": ICCID}}]
    )
    requests_mock.get(
        f"{api}/devices/{ICCID}",
        status_code=401,
        json={"errorCode": "10000001", "errorMessage": "Invalid credentials."},
    )
    hook = CiscoControlCenterHook(clock=FakeClock())
    errors = _run([lambda: hook.edit_device(ICCID, {"status": "ACTIVATED"}), lambda: hook.get_device(ICCID)])
    basic = base64.b64encode(f"bot:{api_key}".encode()).decode()
    _assert_secret_free([api_key, basic], everything_logged, capsys, errors)


def test_paloalto_never_leaks_keys_or_tokens(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, everything_logged: Any, capsys: Any
) -> None:
    access_key, client_secret, token = "pa-access-key-987654", "pa-client-secret-1234", "pa-bearer-token-5678"
    set_connection(
        "pa_key",
        "paloalto_iot",
        host="https://acme.iot.paloaltonetworks.com",
        login="kid",
        password=access_key,
    )
    set_connection(
        "pa_scm",
        "paloalto_iot",
        login="cid",
        password=client_secret,
        extra={"auth_type": "scm", "tsg_id": "42"},
    )
    requests_mock.put(
        "https://acme.iot.paloaltonetworks.com/pub/v4.0/device/bulkUpdate",
        status_code=403,
        json={"code": 403, "msg": "Forbidden access."},
    )
    requests_mock.post(
        "https://auth.apps.paloaltonetworks.com/oauth2/access_token",
        json={"access_token": token, "expires_in": 899},
    )
    requests_mock.put(
        "https://api.strata.paloaltonetworks.com/iot/pub/v1/device/bulkUpdate",
        [
            {"status_code": 429, "headers": {"Retry-After": "1"}, "json": {"code": 429, "msg": "Too many"}},
            {"status_code": 401, "json": {"code": 401, "msg": "no"}},
            {"status_code": 401, "json": {"code": 401, "msg": "no"}},
        ],
    )
    clock = FakeClock()
    errors = _run(
        [
            lambda: PaloAltoIoTSecurityHook("pa_key", clock=clock).bulk_update([{"imei": IMEI}]),
            lambda: PaloAltoIoTSecurityHook("pa_scm", clock=clock).bulk_update([{"imei": IMEI}]),
        ]
    )
    basic = base64.b64encode(f"cid:{client_secret}".encode()).decode()
    _assert_secret_free([access_key, client_secret, token, basic], everything_logged, capsys, errors)


def test_huawei_never_leaks_sk_signature_or_token(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, everything_logged: Any, capsys: Any
) -> None:
    sk, password, iam_token = "huawei-secret-key-abcdef", "iam-password-13579", "MIIT-iam-token-24680"
    extra = {"project_id": "p1", "instance_id": "i1", "region": "cn-north-4"}
    set_connection("roma_aksk", "huawei_roma", login="AK0001", password=sk, extra=extra)
    set_connection(
        "roma_iam",
        "huawei_roma",
        login="ops",
        password=password,
        extra={**extra, "auth_type": "iam_token", "domain_name": "acme"},
    )
    devices = "https://roma.cn-north-4.myhuaweicloud.com/v2/p1/link/instances/i1/devices"
    route = requests_mock.post(
        f"{devices}/force-offline",
        status_code=401,
        json={"error_code": "APIGW.0301", "error_msg": "verify aksk signature fail"},
    )
    requests_mock.post(
        "https://iam.cn-north-4.myhuaweicloud.com/v3/auth/tokens",
        status_code=201,
        headers={"X-Subject-Token": iam_token},
        json={"token": {}},
    )
    requests_mock.get(
        f"{devices}/9",
        [
            {"status_code": 503, "json": {}},
            {"status_code": 404, "json": {"error_code": "ROMA.00110006", "error_msg": "gone"}},
        ],
    )
    clock = FakeClock()
    errors = _run(
        [
            lambda: HuaweiRomaConnectHook("roma_aksk", clock=clock).force_offline([1]),
            lambda: HuaweiRomaConnectHook("roma_iam", clock=clock).get_device(9),
        ]
    )
    signature = route.last_request.headers["Authorization"].rsplit("Signature=", 1)[1]
    _assert_secret_free([sk, password, iam_token, signature], everything_logged, capsys, errors)


def test_verizon_never_leaks_secrets_or_tokens(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, everything_logged: Any, capsys: Any
) -> None:
    secret, m2m_password = "vz-oauth-secret-112233", "vz-m2m-password-445566"
    access, session = "vz-access-token-778899", "vz-session-token-001122"
    set_connection(
        "verizon_thingspace_default",
        "verizon_thingspace",
        login="key",
        password=secret,
        extra={"m2m_username": "uws", "m2m_password": m2m_password},
    )
    requests_mock.post(
        "https://thingspace.verizon.com/api/ts/v1/oauth2/token",
        json={"access_token": access, "expires_in": 3600},
    )
    requests_mock.post(
        "https://thingspace.verizon.com/api/m2m/v1/session/login",
        [
            {"json": {"sessionToken": session}},
            {"status_code": 400, "json": {"errorCode": "X", "errorMessage": "bad login"}},
        ],
    )
    requests_mock.get(
        "https://thingspace.verizon.com/api/fota/v3/devices/0001",
        status_code=400,
        json={"errorCode": "FOTA.REQUEST_FAILED.SessionToken.Expired", "errorMessage": "expired"},
    )
    hook = VerizonThingSpaceHook(clock=FakeClock())
    errors = _run(
        [
            lambda: list(hook.iter_fota_devices(account_name="0001")),
            lambda: list(hook.iter_fota_devices(account_name="0001")),
        ]
    )
    _assert_secret_free([secret, m2m_password, access, session], everything_logged, capsys, errors)


def test_fetched_tokens_are_registered_with_airflows_secret_masker(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    from airflow.sdk.log import redact

    set_connection(
        "verizon_thingspace_default",
        "verizon_thingspace",
        login="key",
        password="vz-oauth-secret-9",
        extra={"m2m_username": "uws", "m2m_password": "vz-m2m-password-9"},
    )
    requests_mock.post(
        "https://thingspace.verizon.com/api/ts/v1/oauth2/token",
        json={"access_token": "masked-access-token-1", "expires_in": 3600},
    )
    requests_mock.post(
        "https://thingspace.verizon.com/api/m2m/v1/session/login",
        json={"sessionToken": "masked-session-token-1"},
    )
    VerizonThingSpaceHook().test_connection()
    text = redact("token masked-access-token-1 session masked-session-token-1 password vz-m2m-password-9")
    assert "masked-access-token-1" not in text
    assert "masked-session-token-1" not in text
    assert "vz-m2m-password-9" not in text


def test_an_iam_token_fetched_by_the_async_client_is_not_in_httpcores_header_log(
    set_connection: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    # httpx's transport (httpcore) logs each response's headers at DEBUG, the IAM token's
    # X-Subject-Token included, before the auth flow has read the token and masked it. A real
    # loopback server: httpx.MockTransport would bypass httpcore and its logging.
    import asyncio
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    token = "MIIT-iam-token-async-97531"

    class Iam(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # the IAM login
            self._answer(201, {"token": {}}, {"X-Subject-Token": token, "Content-Type": "application/json"})

        def do_GET(self) -> None:
            self._answer(404, {"error_code": "ROMA.00110006", "error_msg": "gone"}, {})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Iam)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    set_connection(
        "roma_iam_async",
        "huawei_roma",
        host=url,
        login="ops",
        password="iam-password-86420",
        extra={
            "project_id": "p1",
            "instance_id": "i1",
            "auth_type": "iam_token",
            "domain_name": "acme",
            "iam_endpoint": url,
        },
    )

    async def get_device() -> None:
        hook = HuaweiRomaConnectHook("roma_iam_async")
        try:
            await hook.aget_device(9)
        finally:
            await hook.aclose()

    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(IoTFleetError, match="gone"):
            asyncio.run(get_device())
    finally:
        server.shutdown()
        server.server_close()
    header_lines = [r.getMessage() for r in caplog.records if r.name.startswith("httpcore")]
    assert any(line.startswith("receive_response_headers") for line in header_lines), header_lines
    assert not [r.getMessage() for r in caplog.records if token in r.getMessage()]
