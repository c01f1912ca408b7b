"""The async client (httpx) against the sync one (requests).

Both drive the same calls through the same auth flows, so for every vendor auth mode they must put
the same requests on the wire (logins included); the async client must retry, renew, mask and rate
limit as the sync one does, without ever blocking the event loop; and a multi-call read must come to
the same result whichever client runs its plan.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar
from unittest import mock
from urllib.parse import urlsplit

import httpx
import pytest
import requests_mock as rm

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetError,
    IoTFleetNotFoundError,
    IoTFleetRateLimitError,
    IoTFleetTransportError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.huawei.auth import request_signature
from airflow_provider_iotfleet.hooks.paloalto import PaloAltoIoTSecurityHook
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.http import (
    AsyncVendorHttpClient,
    BackoffPolicy,
    Call,
    ErrorMapping,
    Reply,
    TokenBucket,
    VendorErrorBody,
    VendorHttpClient,
)
from airflow_provider_iotfleet.http.auth import TokenAuth, oauth_client_credentials
from tests.connections import ROMA_AK as AK
from tests.connections import ROMA_HOST, ROMA_IAM, THINGSPACE
from tests.connections import ROMA_IAM_URL as IAM_URL
from tests.connections import ROMA_INSTANCE as INSTANCE
from tests.connections import ROMA_PROJECT as PROJECT
from tests.connections import ROMA_SK as SK
from tests.connections import THINGSPACE_ACCOUNT as ACCOUNT
from tests.connections import THINGSPACE_LOGIN_URL as VZ_LOGIN_URL
from tests.connections import THINGSPACE_M2M_PASSWORD as M2M_PASSWORD
from tests.connections import THINGSPACE_M2M_USER as M2M_USER
from tests.connections import THINGSPACE_ROOT as VZ_ROOT
from tests.connections import THINGSPACE_TOKEN_URL as VZ_TOKEN_URL
from tests.fakes import ICCID, ICCID_19, IMEI, IMEI_2, FakeClock, Wire, luhn_complete

T = TypeVar("T")


class AsyncFakeClock(FakeClock):
    """A :class:`FakeClock` whose async sleep advances time too (the base class would really sleep).

    ``sleeps`` keeps recording blocking sleeps only: in the event loop there must be none.
    """

    def __init__(self) -> None:
        super().__init__()
        self.asleeps: list[float] = []

    async def asleep(self, seconds: float) -> None:
        self.asleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


# --- A fake vendor that both clients can talk to --------------------------------------------------

#: Every header the provider sets itself. Both clients must put the same values on the wire.
OUR_HEADERS = (
    "User-Agent",
    "Accept",
    "Accept-Encoding",
    "Content-Type",
    "Authorization",
    "VZ-M2M-Token",
    "X-Auth-Token",
    "X-Sdk-Date",
    "Host",
    "X-Project-Id",
    "X-Security-Token",
    "X-Key-Id",
    "X-Access-Key",
)

Answer = tuple[int, Mapping[str, str], bytes]


def _ours(headers: Any) -> dict[str, str]:
    """Our headers out of a requests ``CaseInsensitiveDict`` or an ``httpx.Headers``."""
    return {name: headers[name] for name in OUR_HEADERS if name in headers}


def answer(body: Any = None, status: int = 200, headers: Mapping[str, str] | None = None) -> Answer:
    raw = b"" if body is None else json.dumps(body).encode()
    return status, {"Content-Type": "application/json", **(headers or {})}, raw


Route = Answer | list[Answer] | Callable[[Wire], Answer]


class FakeVendor:
    """Endpoints as ``(method, path) -> answer``; a list answers in turn (its last answer repeats).

    Serves the sync client through requests-mock (:meth:`mount`) and the async one through an
    ``httpx.MockTransport`` (:meth:`transport`), and records what each received in :attr:`seen`.
    """

    def __init__(self, routes: Mapping[tuple[str, str], Route]) -> None:
        self._routes = {key: list(r) if isinstance(r, list) else r for key, r in routes.items()}
        self._lock = threading.Lock()
        self.seen: list[Wire] = []

    def respond(self, wire: Wire) -> Answer:
        with self._lock:
            self.seen.append(wire)
            route = self._routes.get((wire.method, wire.path))
            if isinstance(route, list):
                return route.pop(0) if len(route) > 1 else route[0]
        if route is None:
            return answer({"msg": f"no route for {wire.method} {wire.url}"}, 404)
        return route(wire) if callable(route) else route

    def mount(self, requests_mock: rm.Mocker) -> None:
        def callback(request: Any, context: Any) -> bytes:
            body = request.body or b""
            wire = Wire(
                request.method,
                request.url,
                body.encode() if isinstance(body, str) else body,
                _ours(request.headers),
            )
            status, headers, content = self.respond(wire)
            context.status_code = status
            context.headers.update(headers)
            return content

        requests_mock.register_uri(rm.ANY, rm.ANY, content=callback)

    def transport(self, turns: Callable[[Wire], int] = lambda wire: 1) -> httpx.MockTransport:
        """An async transport; ``turns`` says how many event-loop turns each answer takes."""

        async def handler(request: httpx.Request) -> httpx.Response:
            wire = Wire(request.method, str(request.url), await request.aread(), _ours(request.headers))
            for _ in range(turns(wire)):
                await asyncio.sleep(0)
            status, headers, content = self.respond(wire)
            return httpx.Response(status, headers=headers, content=content)

        return httpx.MockTransport(handler)

    def count(self, method: str, path: str) -> int:
        return sum(1 for wire in self.seen if (wire.method, wire.path) == (method, path))

    def lines(self) -> list[str]:
        return [f"{wire.method} {wire.url}" for wire in self.seen]


def assert_same_wire(sync: list[Wire], asynchronous: list[Wire]) -> None:
    assert len(sync) == len(asynchronous), (
        [f"{w.method} {w.url}" for w in sync],
        [f"{w.method} {w.url}" for w in asynchronous],
    )
    for index, (one, other) in enumerate(zip(sync, asynchronous, strict=True)):
        other_headers = dict(other.headers)
        if "Host" not in one.headers:
            # httpx writes Host itself; requests leaves it to http.client, below requests-mock.
            assert other_headers.pop("Host") == urlsplit(other.url).netloc
        assert (one.method, one.url, one.body) == (other.method, other.url, other.body), f"request {index}"
        assert dict(one.headers) == other_headers, f"headers of request {index}: {one.method} {one.url}"


def use_transport(hook: IoTFleetBaseHook, transport: httpx.AsyncBaseTransport) -> AsyncVendorHttpClient:
    """Give ``hook`` an async client on ``transport``, built from the hook's own client options."""
    client = AsyncVendorHttpClient(**hook.client_options, transport=transport)
    hook.__dict__["_async_client"] = client
    return client


def run_with(
    hook: IoTFleetBaseHook, transport: httpx.AsyncBaseTransport, action: Callable[[], Awaitable[T]]
) -> T:
    async def main() -> T:
        use_transport(hook, transport)
        try:
            return await action()
        finally:
            await hook.aclose()

    return asyncio.run(main())


def spy_sync(client: VendorHttpClient) -> list[tuple[Call, Any]]:
    """Record every call the sync client is asked to send, with the data it answered."""
    sent: list[tuple[Call, Any]] = []
    original = client.send

    def send(call: Call) -> Reply:
        reply = original(call)
        sent.append((call, reply.data))
        return reply

    client.send = send  # type: ignore[method-assign]
    return sent


def spy_async(client: AsyncVendorHttpClient) -> list[tuple[Call, Any]]:
    sent: list[tuple[Call, Any]] = []
    original = client.send

    async def send(call: Call) -> Reply:
        reply = await original(call)
        sent.append((call, reply.data))
        return reply

    client.send = send  # type: ignore[method-assign]
    return sent


# --- Vendors: connections and endpoints ---------------------------------------------------------

PA_HOST = "https://acme-iot.iot.paloaltonetworks.com"
PA_BULK = f"{PA_HOST}/pub/v4.0/device/bulkUpdate"
SCM_BULK = "https://api.strata.paloaltonetworks.com/iot/pub/v1/device/bulkUpdate"
SCM_TOKEN_URL = "https://auth.apps.paloaltonetworks.com/oauth2/access_token"
PA_DEVICES = [{"imei": IMEI, "iccid": ICCID, "ipAddress": "10.20.30.40", "SessionEvtType": "Start"}]
PA_OK = {"api": "device/bulkUpdate", "ver": "v4.0", "code": 1, "message": "OK", "updatedDeviceNum": 1}

CISCO_HOST = "https://rws-jpotest.jasper.com"
CISCO_API = f"{CISCO_HOST}/rws/api/v1"
ICCID_3 = luhn_complete("8901410321111851073")
assert ICCID_3 not in (ICCID, ICCID_19)

DEVICES_PATH = f"/v2/{PROJECT}/link/instances/{INSTANCE}/devices"
ROMA_DEVICES = f"{ROMA_HOST}{DEVICES_PATH}"
STS_TOKEN = "sts-security-token-value-123"

VZ_FOTA = f"{VZ_ROOT}/api/fota/v3"
EXPIRED = {"errorCode": "FOTA.REQUEST_FAILED.SessionToken.Expired", "errorMessage": "Session token expired"}
VZ_FAULT = {"fault": {"code": "900901", "message": "Invalid Credentials"}}

CONNECTIONS: dict[str, dict[str, Any]] = {
    "pa_key": {
        "conn_type": "paloalto_iot",
        "host": PA_HOST,
        "login": "key-id-0001",
        "password": "access-key-s3cr3t",
    },
    "pa_scm": {
        "conn_type": "paloalto_iot",
        "login": "svc@1234567.iam.panserviceaccount.com",
        "password": "scm-client-secret-value",
        "extra": {"auth_type": "scm", "tsg_id": "1234567890"},
    },
    "cisco": {
        "conn_type": "cisco_control_center",
        "host": CISCO_HOST,
        "login": "fleet-bot",
        "password": "4f1d-api-key",
    },
    "roma_aksk": {
        "conn_type": "huawei_roma",
        "host": ROMA_HOST,
        "login": AK,
        "password": SK,
        "extra": {"project_id": PROJECT, "instance_id": INSTANCE},
    },
    "roma_sts": {
        "conn_type": "huawei_roma",
        "host": ROMA_HOST,
        "login": AK,
        "password": SK,
        "extra": {"project_id": PROJECT, "instance_id": INSTANCE, "security_token": STS_TOKEN},
    },
    "roma_iam": ROMA_IAM,
    "verizon": THINGSPACE,
}


def verizon_routes(data: Route | None = None) -> dict[tuple[str, str], Route]:
    routes: dict[tuple[str, str], Route] = {
        ("POST", urlsplit(VZ_TOKEN_URL).path): [
            answer({"access_token": f"access-token-{n}", "token_type": "Bearer", "expires_in": 3600})
            for n in range(1, 6)
        ],
        ("POST", urlsplit(VZ_LOGIN_URL).path): [
            answer({"sessionToken": f"session-token-{n}"}) for n in range(1, 6)
        ],
    }
    if data is not None:
        routes[("POST", f"/api/fota/v3/devices/{ACCOUNT}")] = data
        routes[("GET", f"/api/fota/v3/devices/{ACCOUNT}")] = data
    return routes


def _firmware_pages(wire: Wire) -> Answer:
    """Two devices, one per page: ``lastSeenDeviceId`` drives the next request."""
    if wire.query["lastSeenDeviceId"] == ["0"]:
        return answer(
            {
                "deviceList": [{"deviceId": IMEI, "firmware": "SR1.1"}],
                "hasMoreData": True,
                "lastSeenDeviceId": IMEI,
            }
        )
    return answer({"deviceList": [{"deviceId": IMEI_2, "firmware": "SR1.2"}], "hasMoreData": False})


def _signed_by_huawei(wire: Wire) -> list[str]:
    """Check the AK/SK signature against what reached the wire, as the gateway does; return the
    signed header names."""
    scheme, _, rest = wire.headers["Authorization"].partition(" ")
    fields = dict(part.strip().split("=", 1) for part in rest.split(","))
    assert (scheme, fields["Access"]) == ("SDK-HMAC-SHA256", AK)
    signed = fields["SignedHeaders"].split(";")
    on_wire = {name: value for name, value in wire.headers.items() if name.lower() in signed}
    assert sorted(name.lower() for name in on_wire) == signed  # every signed header was sent
    signature, names = request_signature(SK, wire.method, wire.url, on_wire, wire.body)
    assert (names, signature) == (signed, fields["Signature"])
    return signed


def _check_pa_key(wires: list[Wire]) -> None:
    (bulk,) = wires
    assert (bulk.headers["X-Key-Id"], bulk.headers["X-Access-Key"]) == ("key-id-0001", "access-key-s3cr3t")
    assert "Authorization" not in bulk.headers
    assert bulk.json() == {"devicelist": PA_DEVICES}
    assert bulk.headers["Content-Type"] == "application/json"


def _check_pa_scm(wires: list[Wire]) -> None:
    token, bulk = wires
    assert token.headers["Authorization"].startswith("Basic ")
    assert token.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert token.body == b"grant_type=client_credentials&scope=tsg_id%3A1234567890"
    assert bulk.headers["Authorization"] == "Bearer scm-token-1"
    assert "X-Key-Id" not in bulk.headers


def _check_cisco(wires: list[Wire]) -> None:
    basic = "Basic " + base64.b64encode(b"fleet-bot:4f1d-api-key").decode()
    assert {wire.headers["Authorization"] for wire in wires} == {basic}
    assert all(wire.body == b"" and "Content-Type" not in wire.headers for wire in wires)


def _check_roma(security_token: str | None) -> Callable[[list[Wire]], None]:
    def check(wires: list[Wire]) -> None:
        expected = {"accept", "accept-encoding", "host", "user-agent", "x-project-id", "x-sdk-date"}
        if security_token:
            expected.add("x-security-token")
        for wire in wires:
            signed = _signed_by_huawei(wire)
            assert set(signed) == expected | ({"content-type"} if wire.body else set())
            assert wire.headers["Host"] == "roma.cn-north-4.myhuaweicloud.com"
            assert wire.headers["X-Project-Id"] == PROJECT
            assert wire.headers.get("X-Security-Token") == security_token
        # The 503 was answered Retry-After: 2; the retry is signed anew, two seconds later.
        assert [wire.headers["X-Sdk-Date"] for wire in wires[:2]] == ["20261121T120000Z", "20261121T120002Z"]
        assert wires[0].headers["Authorization"] != wires[1].headers["Authorization"]

    return check


def _check_iam(wires: list[Wire]) -> None:
    login, device = wires
    assert login.json()["auth"]["identity"]["password"]["user"]["domain"] == {"name": "acme"}
    assert "X-Auth-Token" not in login.headers
    assert device.headers["X-Auth-Token"] == "MIIT-token-one"
    assert "Authorization" not in device.headers


def _check_verizon(wires: list[Wire]) -> None:
    token, login, *data = wires
    assert token.headers["Authorization"].startswith("Basic ")
    assert token.body == b"grant_type=client_credentials"
    assert login.headers["Authorization"] == "Bearer access-token-1"
    assert login.json() == {"username": M2M_USER, "password": M2M_PASSWORD}
    assert "VZ-M2M-Token" not in login.headers
    for wire in data:
        assert (wire.headers["Authorization"], wire.headers["VZ-M2M-Token"]) == (
            "Bearer access-token-1",
            "session-token-1",
        )
        assert wire.json() == {"deviceList": [IMEI, IMEI_2]}


async def _replay(hook: IoTFleetBaseHook, calls: list[Call]) -> None:
    """For reads without an async twin: send the very calls the sync method sent."""
    client = await hook.aclient()
    for call in calls:
        await client.send(call)


async def _roma_async(hook: HuaweiRomaConnectHook, calls: list[Call]) -> tuple[Any, ...]:
    device = await hook.aget_device(42)
    statuses = await hook.aonline_statuses(list(range(1, 13)), "online")
    await _replay(hook, calls[-1:])  # force_offline has no async twin
    return device, statuses


def _roma_sync(hook: HuaweiRomaConnectHook) -> tuple[Any, ...]:
    device = hook.get_device(42)
    statuses = hook.online_statuses(list(range(1, 13)), "online")
    hook.force_offline([7])
    return device, statuses


def _cisco_sync(hook: CiscoControlCenterHook) -> tuple[Any, ...]:
    return (
        hook.get_device(ICCID),
        hook.device_statuses([ICCID, ICCID_19]),
        hook.device_statuses([ICCID, ICCID_3], changed_since=SINCE),
    )


async def _cisco_async(hook: CiscoControlCenterHook, calls: list[Call]) -> tuple[Any, ...]:
    return (
        await hook.aget_device(ICCID),
        await hook.adevice_statuses([ICCID, ICCID_19]),
        await hook.adevice_statuses([ICCID, ICCID_3], changed_since=SINCE),
    )


def _bulk_update(hook: PaloAltoIoTSecurityHook) -> None:
    hook.bulk_update(PA_DEVICES)


def _roma_routes() -> dict[tuple[str, str], Route]:
    return {
        ("GET", f"{DEVICES_PATH}/42"): [
            answer({"error_code": "ROMA.00000503", "error_msg": "busy"}, 503, {"Retry-After": "2"}),
            answer({"device_id": 42, "online_status": 1}),
        ],
        ("GET", DEVICES_PATH): answer({"total": 2, "size": 2, "items": [{"device_id": 3}, {"device_id": 5}]}),
        ("POST", f"{DEVICES_PATH}/force-offline"): answer(
            {"success": [{"id": 7, "device_name": "m-7"}], "failed": []}
        ),
    }


@dataclass(frozen=True)
class Parity:
    """One representative read per auth mode, for both clients."""

    conn_id: str
    hook: Callable[[str, FakeClock], IoTFleetBaseHook]
    routes: Callable[[], Mapping[tuple[str, str], Route]]
    sync: Callable[[Any], Any]
    asynchronous: Callable[[Any, list[Call]], Awaitable[Any]]
    expected: list[str]
    check: Callable[[list[Wire]], None]


ROMA_EXPECTED = [
    f"GET {ROMA_DEVICES}/42",
    f"GET {ROMA_DEVICES}/42",
    f"GET {ROMA_DEVICES}?offset=0&limit=999&online_status=1",
    f"POST {ROMA_DEVICES}/force-offline",
]
SINCE = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

PARITY = {
    "paloalto-api-key": Parity(
        "pa_key",
        lambda conn_id, clock: PaloAltoIoTSecurityHook(conn_id, clock=clock),
        lambda: {("PUT", "/pub/v4.0/device/bulkUpdate"): answer(PA_OK)},
        _bulk_update,
        _replay,
        [f"PUT {PA_BULK}?updateSource=cellular&customerid=acme-iot"],
        _check_pa_key,
    ),
    "paloalto-scm": Parity(
        "pa_scm",
        lambda conn_id, clock: PaloAltoIoTSecurityHook(conn_id, clock=clock),
        lambda: {
            ("POST", "/oauth2/access_token"): answer({"access_token": "scm-token-1", "expires_in": 899}),
            ("PUT", "/iot/pub/v1/device/bulkUpdate"): answer(PA_OK),
        },
        _bulk_update,
        _replay,
        [f"POST {SCM_TOKEN_URL}", f"PUT {SCM_BULK}?updateSource=cellular"],
        _check_pa_scm,
    ),
    "cisco-basic": Parity(
        "cisco",
        lambda conn_id, clock: CiscoControlCenterHook(conn_id, clock=clock),
        lambda: {
            ("GET", f"/rws/api/v1/devices/{ICCID}"): answer({"iccid": ICCID, "status": "ACTIVATED"}),
            ("GET", f"/rws/api/v1/devices/{ICCID_19}"): answer({"iccid": ICCID_19, "status": "DEACTIVATED"}),
            ("GET", "/rws/api/v1/devices"): [
                answer(
                    {"devices": [{"iccid": ICCID, "status": "RETIRED"}], "pageNumber": 1, "lastPage": False}
                ),
                answer(
                    {
                        "devices": [{"iccid": ICCID_3, "status": "TEST_READY"}],
                        "pageNumber": 2,
                        "lastPage": True,
                    }
                ),
            ],
        },
        _cisco_sync,
        _cisco_async,
        [
            f"GET {CISCO_API}/devices/{ICCID}",
            f"GET {CISCO_API}/devices/{ICCID}",
            f"GET {CISCO_API}/devices/{ICCID_19}",
            f"GET {CISCO_API}/devices?modifiedSince=2026-11-20T12%3A00%3A00%2B00%3A00&pageSize=50&pageNumber=1",
            f"GET {CISCO_API}/devices?modifiedSince=2026-11-20T12%3A00%3A00%2B00%3A00&pageSize=50&pageNumber=2",
        ],
        _check_cisco,
    ),
    "huawei-aksk": Parity(
        "roma_aksk",
        lambda conn_id, clock: HuaweiRomaConnectHook(conn_id, clock=clock),
        _roma_routes,
        _roma_sync,
        _roma_async,
        ROMA_EXPECTED,
        _check_roma(None),
    ),
    "huawei-aksk-security-token": Parity(
        "roma_sts",
        lambda conn_id, clock: HuaweiRomaConnectHook(conn_id, clock=clock),
        _roma_routes,
        _roma_sync,
        _roma_async,
        ROMA_EXPECTED,
        _check_roma(STS_TOKEN),
    ),
    "huawei-iam-token": Parity(
        "roma_iam",
        lambda conn_id, clock: HuaweiRomaConnectHook(conn_id, clock=clock),
        lambda: {
            ("POST", "/v3/auth/tokens"): answer(
                {"token": {"expires_at": "2026-11-22T12:00:00.000000Z"}},
                201,
                {"X-Subject-Token": "MIIT-token-one"},
            ),
            ("GET", f"{DEVICES_PATH}/7"): answer({"device_id": 7, "online_status": 2}),
        },
        lambda hook: hook.get_device(7),
        lambda hook, calls: hook.aget_device(7),
        [f"POST {IAM_URL}", f"GET {ROMA_DEVICES}/7"],
        _check_iam,
    ),
    "verizon-oauth-and-m2m": Parity(
        "verizon",
        lambda conn_id, clock: VerizonThingSpaceHook(conn_id, clock=clock),
        lambda: verizon_routes(_firmware_pages),
        lambda hook: hook.firmware_versions([IMEI, IMEI_2]),
        lambda hook, calls: hook.afirmware_versions([IMEI, IMEI_2]),
        [
            f"POST {VZ_TOKEN_URL}",
            f"POST {VZ_LOGIN_URL}",
            f"POST {VZ_FOTA}/devices/{ACCOUNT}?lastSeenDeviceId=0",
            f"POST {VZ_FOTA}/devices/{ACCOUNT}?lastSeenDeviceId={IMEI}",
        ],
        _check_verizon,
    ),
}


@pytest.mark.parametrize("name", list(PARITY))
def test_both_clients_put_the_same_requests_on_the_wire(
    name: str, set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    case = PARITY[name]
    set_connection(case.conn_id, **CONNECTIONS[case.conn_id])

    sync_vendor = FakeVendor(case.routes())
    sync_vendor.mount(requests_mock)
    sync_clock = AsyncFakeClock()
    sync_hook = case.hook(case.conn_id, sync_clock)
    sync_calls = spy_sync(sync_hook.client)
    sync_result = case.sync(sync_hook)

    async_vendor = FakeVendor(case.routes())
    async_clock = AsyncFakeClock()
    async_hook = case.hook(case.conn_id, async_clock)

    async def run() -> tuple[Any, list[tuple[Call, Any]]]:
        async_calls = spy_async(use_transport(async_hook, async_vendor.transport()))
        try:
            result = await case.asynchronous(async_hook, [call for call, _ in sync_calls])
        finally:
            await async_hook.aclose()
        return result, async_calls

    async_result, async_calls = asyncio.run(run())

    assert sync_vendor.lines() == case.expected
    case.check(sync_vendor.seen)
    assert_same_wire(sync_vendor.seen, async_vendor.seen)
    assert async_calls == sync_calls  # the same calls, answered with the same data
    assert async_result == sync_result
    # Waits happened on each world's own terms: blocking in the sync one, awaited in the async one.
    assert async_clock.sleeps == []
    assert async_clock.asleeps == sync_clock.sleeps
    assert async_clock.now() == sync_clock.now()


def test_the_hooks_own_async_client_is_built_once_from_the_connection(
    set_connection: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # aclient() as triggers use it: connection read with aget_connection, client built on first use.
    set_connection("cisco", **CONNECTIONS["cisco"])
    vendor = FakeVendor(
        {("GET", f"/rws/api/v1/devices/{ICCID}"): answer({"iccid": ICCID, "status": "ACTIVATED"})}
    )
    built: list[AsyncVendorHttpClient] = []

    def build(**options: Any) -> AsyncVendorHttpClient:
        built.append(AsyncVendorHttpClient(**options, transport=vendor.transport()))
        return built[-1]

    monkeypatch.setattr("airflow_provider_iotfleet.hooks.base.AsyncVendorHttpClient", build)
    hook = CiscoControlCenterHook("cisco", clock=AsyncFakeClock())

    async def run() -> list[dict[str, Any]]:
        try:
            return [await hook.aget_device(ICCID), await hook.aget_device(ICCID)]
        finally:
            await hook.aclose()

    assert asyncio.run(run()) == [{"iccid": ICCID, "status": "ACTIVATED"}] * 2
    assert len(built) == 1  # one client, reused
    assert built[0].auth is hook.client_options["auth"]  # the very auth the sync client uses
    assert vendor.lines() == [f"GET {CISCO_API}/devices/{ICCID}"] * 2


def test_concurrent_first_calls_share_one_async_client(
    set_connection: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection("cisco", **CONNECTIONS["cisco"])
    vendor = FakeVendor(
        {
            ("GET", f"/rws/api/v1/devices/{iccid}"): answer({"iccid": iccid, "status": "ACTIVATED"})
            for iccid in (ICCID, ICCID_19)
        }
    )
    built: list[AsyncVendorHttpClient] = []

    def build(**options: Any) -> AsyncVendorHttpClient:
        built.append(AsyncVendorHttpClient(**options, transport=vendor.transport()))
        return built[-1]

    monkeypatch.setattr("airflow_provider_iotfleet.hooks.base.AsyncVendorHttpClient", build)
    hook = CiscoControlCenterHook("cisco", clock=AsyncFakeClock())

    async def run() -> None:
        try:
            await asyncio.gather(
                hook.aget_device(ICCID), hook.aget_device(ICCID_19)
            )  # a trigger's first poll
        finally:
            await hook.aclose()

    asyncio.run(run())
    assert len(vendor.seen) == 2
    assert [client._client.is_closed for client in built] == [True]


# --- The async client's own behaviour -------------------------------------------------------------

BASE = "https://api.example.test"
TOKEN_URL = f"{BASE}/oauth/token"


def _parse(body: Any) -> VendorErrorBody:
    if not isinstance(body, dict):
        return VendorErrorBody()
    return VendorErrorBody(code=body.get("code"), message=body.get("msg"), request_id=body.get("rid"))


ERRORS = ErrorMapping(vendor="Example", parse_body=_parse, retryable_codes=frozenset({"BUSY"}))

Step = Answer | Exception


class Script:
    """An httpx handler answering (or failing) in turn, its last step repeating; records requests."""

    def __init__(self, *steps: Step) -> None:
        self._steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self._steps.pop(0) if len(self._steps) > 1 else self._steps[0]
        if isinstance(step, Exception):
            raise step
        status, headers, body = step
        return httpx.Response(status, headers=headers, content=body)


def make_aclient(
    clock: FakeClock, handler: Callable[[httpx.Request], Any], **options: Any
) -> AsyncVendorHttpClient:
    return AsyncVendorHttpClient(
        base_url=BASE,
        errors=ERRORS,
        clock=clock,
        uniform=lambda low, high: high,
        transport=httpx.MockTransport(handler),
        **options,
    )


def asend(client: AsyncVendorHttpClient, *calls: Call) -> list[Reply]:
    async def run() -> list[Reply]:
        try:
            return [await client.send(call) for call in calls]
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_async_429_waits_as_retry_after_says_then_succeeds() -> None:
    clock = AsyncFakeClock()
    script = Script(
        answer({"code": "429", "msg": "slow down"}, 429, {"Retry-After": "7"}), answer({"ok": True})
    )
    (reply,) = asend(make_aclient(clock, script), Call("GET", "things"))
    assert reply.object() == {"ok": True}
    assert len(script.requests) == 2
    assert (clock.asleeps, clock.sleeps) == ([7.0], [])


def test_what_httpx_imports_on_its_first_request_is_imported_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_iotfleet.http import aclient

    imported: list[tuple[str, int]] = []
    monkeypatch.setattr(aclient, "IMPORTED_ON_FIRST_REQUEST", ("a_module_httpx_would_import", "sys"))
    monkeypatch.setattr(
        aclient.importlib, "import_module", lambda name: imported.append((name, threading.get_ident()))
    )
    script = Script(answer({"ok": True}))

    async def run() -> int:
        client = make_aclient(AsyncFakeClock(), script)
        try:
            for _ in range(3):
                await client.send(Call("GET", "things"))
        finally:
            await client.aclose()
        return threading.get_ident()

    loop_thread = asyncio.run(run())

    assert len(script.requests) == 3
    # Once, before the first request; only what is not imported yet; in another thread than the loop's.
    assert [name for name, _ in imported] == ["a_module_httpx_would_import"]
    assert imported[0][1] != loop_thread


def test_async_5xx_backs_off_exponentially() -> None:
    clock = AsyncFakeClock()
    script = Script(
        answer({"code": "E", "msg": "boom"}, 500),
        (502, {}, b"<html>bad gateway</html>"),
        answer(None, 503),
        answer({"n": 1}),
    )
    (reply,) = asend(make_aclient(clock, script), Call("GET", "things"))
    assert reply.field("n", int) == 1
    assert clock.asleeps == [1.0, 2.0, 4.0]


def test_async_retries_run_out_with_a_typed_error() -> None:
    clock = AsyncFakeClock()
    script = Script(answer({"msg": "busy"}, 429, {"Retry-After": "1", "X-Request-Id": "req-9"}))
    with pytest.raises(IoTFleetRateLimitError) as caught:
        asend(make_aclient(clock, script, retry=BackoffPolicy(max_retries=2)), Call("GET", "things"))
    assert len(script.requests) == 3
    assert (caught.value.http_status, caught.value.request_id, caught.value.retry_after) == (
        429,
        "req-9",
        1.0,
    )
    assert caught.value.message == "Example rejected GET /things: busy"


def test_async_connection_errors_are_retried() -> None:
    clock = AsyncFakeClock()
    script = Script(
        httpx.ConnectError("Connection refused"), httpx.ReadTimeout("timed out"), answer({"n": 2})
    )
    (reply,) = asend(make_aclient(clock, script), Call("GET", "things"))
    assert reply.field("n", int) == 2
    assert (len(script.requests), clock.asleeps) == (3, [1.0, 2.0])


@pytest.mark.parametrize(
    ("failure", "reached"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), False),
        (httpx.ConnectTimeout("timed out"), False),
        (httpx.PoolTimeout("no connection"), False),
        (httpx.ReadTimeout("The read operation timed out"), True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
    ],
)
def test_async_transport_errors_say_whether_the_vendor_may_have_seen_the_request(
    failure: httpx.HTTPError, reached: bool
) -> None:
    clock = AsyncFakeClock()
    client = make_aclient(clock, Script(failure), retry=BackoffPolicy(max_retries=0), conn_id="vendor_conn")
    with pytest.raises(IoTFleetTransportError) as caught:
        asend(client, Call("GET", "things"))
    assert caught.value.may_have_reached_vendor is reached
    assert caught.value.message == (
        f"Example: GET /things could not be completed: {type(failure).__name__}: {failure} "
        "(host of connection 'vendor_conn')"
    )


@pytest.mark.parametrize(
    ("failure", "attempts"), [(httpx.ConnectError("refused"), 2), (httpx.ReadTimeout("slow"), 1)]
)
def test_async_write_is_resent_only_when_it_surely_never_left(
    failure: httpx.HTTPError, attempts: int
) -> None:
    clock = AsyncFakeClock()
    script = Script(failure, answer({"done": True}))
    client = make_aclient(clock, script)
    call = Call("POST", "things", json={"n": 1}, repeat="if-not-received")
    if attempts == 2:
        assert asend(client, call)[0].object() == {"done": True}
    else:
        with pytest.raises(IoTFleetTransportError):
            asend(client, call)
    assert len(script.requests) == attempts


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"<html>maintenance</html>", "a body that is not JSON: '<html>maintenance</html>'"),
        (b"", "an empty body"),
    ],
)
def test_async_non_json_success_is_a_typed_error(body: bytes, what: str) -> None:
    clock = AsyncFakeClock()
    script = Script((200, {"Content-Type": "text/html"}, body))
    with pytest.raises(IoTFleetVendorResponseError) as caught:
        asend(make_aclient(clock, script, retry=BackoffPolicy(max_retries=1)), Call("GET", "things"))
    assert caught.value.message == f"Example answered GET /things with {what}"
    assert type(caught.value) is IoTFleetVendorResponseError
    assert len(script.requests) == 2  # a garbled 2xx is retried once, like a 5xx


SCRIPTS: dict[str, list[Answer]] = {
    "429-then-ok": [answer({"msg": "slow"}, 429, {"Retry-After": "3"}), answer({"ok": 1})],
    "5xx-then-ok": [answer({"msg": "boom"}, 500), answer(None, 503), answer({"ok": 1})],
    "throttling-code": [answer({"code": "BUSY", "msg": "busy"}, 400), answer({"ok": 1})],
    "not-found": [answer({"code": "C1", "msg": "nope", "rid": "r-1"}, 404)],
    "long-retry-after": [answer({"msg": "quota"}, 429, {"Retry-After": "3600"})],
    "retry-after-date": [
        answer(None, 503, {"Retry-After": "Sat, 21 Nov 2026 12:00:12 GMT"}),
        answer({"ok": 1}),
    ],
    "redirect": [(302, {"Location": "https://elsewhere.test/"}, b"")],
    "garbled": [(200, {}, b"<html>")],
    "forbidden": [answer({"code": "403", "msg": "denied"}, 403)],
}


def _outcome(run: Callable[[], Any]) -> Any:
    try:
        return ("reply", run())
    except IoTFleetError as error:
        fields = (error.http_status, error.error_code, error.request_id, getattr(error, "retry_after", None))
        return (type(error).__name__, str(error), fields)


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_both_clients_come_to_the_same_outcome(name: str, requests_mock: rm.Mocker) -> None:
    steps = SCRIPTS[name]
    call = Call("PUT", "things/1", params={"q": "a b"}, json={"n": 1})
    sync_clock = FakeClock()
    requests_mock.put(
        f"{BASE}/things/1",
        [
            # A real server sends its reason phrase; requests-mock's list responses would not.
            {"status_code": s, "headers": dict(h), "content": b, "reason": HTTPStatus(s).phrase}
            for s, h, b in steps
        ],
    )
    sync_client = VendorHttpClient(
        base_url=BASE, errors=ERRORS, clock=sync_clock, uniform=lambda low, high: high, conn_id="c"
    )
    sync = _outcome(lambda: sync_client.send(call).data)

    async_clock = AsyncFakeClock()
    script = Script(*steps)
    async_client = make_aclient(async_clock, script, conn_id="c")
    asynchronous = _outcome(lambda: asend(async_client, call)[0].data)

    assert asynchronous == sync
    assert len(script.requests) == requests_mock.call_count
    assert async_clock.asleeps == sync_clock.sleeps
    assert [str(r.url) for r in script.requests] == [r.url for r in requests_mock.request_history]


def _token_client(
    clock: FakeClock, accepted: set[str], seen: list[tuple[str, str | None]]
) -> AsyncVendorHttpClient:
    """An async client with OAuth client credentials against a vendor accepting ``accepted`` tokens."""
    issued = iter(f"tok-{n}" for n in range(1, 10))

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("Authorization")))
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": next(issued), "expires_in": 3600})
        if request.headers["Authorization"].removeprefix("Bearer ") in accepted:
            return httpx.Response(200, json={"ok": True})
        return httpx.Response(401, json={"code": "401", "msg": "token revoked"})

    source = oauth_client_credentials(TOKEN_URL, "client-id", "client-secret", clock=clock)
    return make_aclient(clock, handler, auth=TokenAuth(source), conn_id="vendor_conn")


def test_async_401_renews_the_token_once_and_resends() -> None:
    clock = AsyncFakeClock()
    seen: list[tuple[str, str | None]] = []
    (reply,) = asend(_token_client(clock, {"tok-2"}, seen), Call("GET", "things"))
    assert reply.object() == {"ok": True}
    assert seen == [
        ("/oauth/token", "Basic Y2xpZW50LWlkOmNsaWVudC1zZWNyZXQ="),
        ("/things", "Bearer tok-1"),
        ("/oauth/token", "Basic Y2xpZW50LWlkOmNsaWVudC1zZWNyZXQ="),
        ("/things", "Bearer tok-2"),
    ]


def test_async_second_401_is_raised_naming_the_credentials_and_the_connection() -> None:
    clock = AsyncFakeClock()
    seen: list[tuple[str, str | None]] = []
    with pytest.raises(IoTFleetAuthError) as caught:
        asend(_token_client(clock, set(), seen), Call("GET", "things"))
    assert [path for path, _ in seen] == ["/oauth/token", "/things", "/oauth/token", "/things"]
    assert caught.value.http_status == 401
    assert caught.value.message == (
        "Example rejected GET /things: token revoked. Check the login (client id) and password "
        "(client secret) of connection 'vendor_conn'"
    )


# --- ThingSpace: two credentials -----------------------------------------------------------------

DATA_PATH = f"/api/fota/v3/devices/{ACCOUNT}"


def verizon_hook(set_connection: Callable[..., None], clock: FakeClock) -> VerizonThingSpaceHook:
    set_connection("verizon", **CONNECTIONS["verizon"])
    return VerizonThingSpaceHook("verizon", clock=clock)


def test_async_expired_session_logs_in_again_exactly_once(set_connection: Callable[..., None]) -> None:
    hook = verizon_hook(set_connection, AsyncFakeClock())
    vendor = FakeVendor(
        verizon_routes(
            [answer(EXPIRED, 400), answer({"deviceList": [{"deviceId": IMEI, "firmware": "SR1"}]})]
        )
    )
    assert run_with(hook, vendor.transport(), lambda: hook.afirmware_versions([IMEI])) == {IMEI: "SR1"}
    assert (
        vendor.count("POST", "/api/ts/v1/oauth2/token"),
        vendor.count("POST", "/api/m2m/v1/session/login"),
    ) == (1, 2)
    assert [wire.headers["VZ-M2M-Token"] for wire in vendor.seen if wire.path == DATA_PATH] == [
        "session-token-1",
        "session-token-2",
    ]
    # The second login carried the bearer token still valid, not a new one.
    assert vendor.seen[3].headers["Authorization"] == "Bearer access-token-1"


def test_async_session_still_expired_after_one_relogin_is_raised(set_connection: Callable[..., None]) -> None:
    hook = verizon_hook(set_connection, AsyncFakeClock())
    vendor = FakeVendor(verizon_routes(answer(EXPIRED, 400)))
    with pytest.raises(IoTFleetVendorResponseError, match="Session token expired"):
        run_with(hook, vendor.transport(), lambda: hook.afirmware_versions([IMEI]))
    assert vendor.count("POST", "/api/m2m/v1/session/login") == 2
    assert vendor.count("POST", DATA_PATH) == 2


@pytest.mark.parametrize("world", ["sync", "async"])
@pytest.mark.parametrize(
    "first",
    [
        pytest.param(answer(VZ_FAULT, 401), id="401-first"),
        pytest.param(answer(EXPIRED, 400), id="expired-first"),
    ],
)
def test_both_credentials_expiring_on_one_request_renew_once_each(
    world: str, first: Answer, set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    second = answer(EXPIRED, 400) if first[0] == 401 else answer(VZ_FAULT, 401)
    vendor = FakeVendor(
        verizon_routes([first, second, answer({"deviceList": [{"deviceId": IMEI, "firmware": "SR2"}]})])
    )
    hook = verizon_hook(set_connection, AsyncFakeClock())
    if world == "sync":
        vendor.mount(requests_mock)
        result = hook.firmware_versions([IMEI])
    else:
        result = run_with(hook, vendor.transport(), lambda: hook.afirmware_versions([IMEI]))
    assert result == {IMEI: "SR2"}
    counts = [
        vendor.count("POST", path)
        for path in ("/api/ts/v1/oauth2/token", "/api/m2m/v1/session/login", DATA_PATH)
    ]
    assert counts == [2, 2, 3]
    last = vendor.seen[-1]
    assert (last.headers["Authorization"], last.headers["VZ-M2M-Token"]) == (
        "Bearer access-token-2",
        "session-token-2",
    )


def test_async_refused_m2m_login_is_never_repeated(set_connection: Callable[..., None]) -> None:
    hook = verizon_hook(set_connection, AsyncFakeClock())
    refusal = answer(
        {"errorCode": "REQUEST_FAILED.UnexpectedError", "errorMessage": "Invalid username or password"}, 400
    )
    routes = verizon_routes(answer({"deviceList": []}))
    routes[("POST", "/api/m2m/v1/session/login")] = refusal
    vendor = FakeVendor(routes)

    async def twice() -> list[IoTFleetError]:
        errors = []
        for _ in range(2):
            with pytest.raises(IoTFleetAuthError) as caught:
                await hook.afirmware_versions([IMEI])
            errors.append(caught.value)
        return errors

    first, second = run_with(hook, vendor.transport(), twice)
    assert first.message.endswith("Check the m2m_username and m2m_password extras of connection 'verizon'")
    assert "not logging in again" in second.message
    assert vendor.count("POST", "/api/m2m/v1/session/login") == 1
    assert vendor.count("POST", DATA_PATH) == 0


@pytest.mark.parametrize("world", ["sync", "async"])
def test_a_throttled_m2m_login_is_not_remembered_as_a_refusal(
    world: str, set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    clock = AsyncFakeClock()
    hook = verizon_hook(set_connection, clock)
    routes = verizon_routes(answer({"deviceList": [{"deviceId": IMEI, "firmware": "SR3"}]}))
    routes[("POST", "/api/m2m/v1/session/login")] = [
        answer(
            {"errorCode": "REQUEST_FAILED.TooManyRequests", "errorMessage": "slow down"},
            429,
            {"Retry-After": "1"},
        ),
        answer({"sessionToken": "session-token-after-429"}),
    ]
    vendor = FakeVendor(routes)

    async def twice() -> dict[str, str | None]:
        with pytest.raises(IoTFleetRateLimitError):
            await hook.afirmware_versions([IMEI])
        return await hook.afirmware_versions([IMEI])

    if world == "sync":
        vendor.mount(requests_mock)
        with pytest.raises(IoTFleetRateLimitError):
            hook.firmware_versions([IMEI])
        result = hook.firmware_versions([IMEI])
    else:
        result = run_with(hook, vendor.transport(), twice)
    assert result == {IMEI: "SR3"}
    assert (
        vendor.count("POST", "/api/m2m/v1/session/login") == 2
    )  # never resent at once; not locked out either
    assert vendor.count("POST", "/api/ts/v1/oauth2/token") == 1
    assert vendor.seen[-1].headers["VZ-M2M-Token"] == "session-token-after-429"
    assert clock.sleeps == clock.asleeps == []  # a login that counts towards the lockout is not retried


# --- Masking ------------------------------------------------------------------------------------


def test_async_new_tokens_are_masked_before_they_are_sent() -> None:
    clock = AsyncFakeClock()
    events: list[tuple[str, str | None]] = []
    client = _token_client(clock, {"tok-2"}, events)
    masker = mock.AsyncMock(side_effect=lambda secret, *args: events.append(("mask", secret)))
    with mock.patch("airflow_provider_iotfleet.http.aclient.amask_secret", masker):
        asend(client, Call("GET", "things"))
    assert [call.args[0] for call in masker.await_args_list] == ["tok-1", "tok-2"]
    assert events.index(("mask", "tok-1")) < events.index(("/things", "Bearer tok-1"))
    assert events.index(("mask", "tok-2")) < events.index(("/things", "Bearer tok-2"))


def test_sync_new_tokens_are_masked_before_they_are_sent(requests_mock: rm.Mocker) -> None:
    clock = FakeClock()
    events: list[tuple[str, str | None]] = []
    requests_mock.post(TOKEN_URL, [{"json": {"access_token": f"tok-{n}", "expires_in": 60}} for n in (1, 2)])

    def things(request: Any, context: Any) -> dict[str, Any]:
        events.append(("/things", request.headers["Authorization"]))
        context.status_code = 200 if request.headers["Authorization"] == "Bearer tok-2" else 401
        return {"ok": True}

    requests_mock.get(f"{BASE}/things", json=things)
    source = oauth_client_credentials(TOKEN_URL, "client-id", "client-secret", clock=clock)
    client = VendorHttpClient(base_url=BASE, errors=ERRORS, clock=clock, auth=TokenAuth(source))
    with mock.patch(
        "airflow_provider_iotfleet.http.client.mask_secret",
        side_effect=lambda s, *a: events.append(("mask", s)),
    ) as masker:
        client.send(Call("GET", "things"))
    assert [call.args[0] for call in masker.call_args_list] == ["tok-1", "tok-2"]
    assert events == [
        ("mask", "tok-1"),
        ("/things", "Bearer tok-1"),
        ("mask", "tok-2"),
        ("/things", "Bearer tok-2"),
    ]


def test_async_thingspace_masks_both_tokens(set_connection: Callable[..., None]) -> None:
    hook = verizon_hook(set_connection, AsyncFakeClock())
    vendor = FakeVendor(verizon_routes(answer({"deviceList": []})))
    masker = mock.AsyncMock()
    with mock.patch("airflow_provider_iotfleet.http.aclient.amask_secret", masker):
        run_with(hook, vendor.transport(), lambda: hook.afirmware_versions([IMEI]))
    assert [call.args[0] for call in masker.await_args_list] == ["access-token-1", "session-token-1"]


def test_async_iam_token_is_masked(set_connection: Callable[..., None]) -> None:
    set_connection("roma_iam", **CONNECTIONS["roma_iam"])
    hook = HuaweiRomaConnectHook("roma_iam", clock=AsyncFakeClock())
    vendor = FakeVendor(PARITY["huawei-iam-token"].routes())
    masker = mock.AsyncMock()
    with mock.patch("airflow_provider_iotfleet.http.aclient.amask_secret", masker):
        run_with(hook, vendor.transport(), lambda: hook.aget_device(7))
    masker.assert_awaited_once_with("MIIT-token-one")


# --- Rate limit ---------------------------------------------------------------------------------


def test_token_bucket_aacquire_awaits_the_next_slot() -> None:
    clock = AsyncFakeClock()
    bucket = TokenBucket(5.0, clock=clock.monotonic, sleep=clock.sleep)

    async def run() -> list[float]:
        return [await bucket.aacquire(clock.asleep) for _ in range(4)]

    assert asyncio.run(run()) == pytest.approx([0.0, 0.2, 0.2, 0.2])
    assert clock.asleeps == pytest.approx([0.2, 0.2, 0.2])
    assert clock.sleeps == []


def test_async_client_spaces_requests_but_not_logins() -> None:
    clock = AsyncFakeClock()
    times: list[tuple[str, float]] = []
    issued = iter(["tok-1"])

    def handler(request: httpx.Request) -> httpx.Response:
        times.append((request.url.path, clock.monotonic()))
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": next(issued), "expires_in": 3600})
        return httpx.Response(200, json={})

    source = oauth_client_credentials(TOKEN_URL, "id", "secret", clock=clock)
    client = make_aclient(
        clock,
        handler,
        auth=TokenAuth(source),
        rate_limiter=TokenBucket(5.0, clock=clock.monotonic, sleep=clock.sleep),
    )
    start = clock.monotonic()
    asend(client, *[Call("GET", "things")] * 4)
    assert [(path, round(at - start, 6)) for path, at in times] == [
        ("/oauth/token", 0.0),
        ("/things", 0.0),
        ("/things", 0.2),
        ("/things", 0.4),
        ("/things", 0.6),
    ]
    assert clock.sleeps == []  # nothing blocked the event loop


# --- Plans: one read, two clients ---------------------------------------------------------------


def run_both(
    hook_factory: Callable[[FakeClock], IoTFleetBaseHook],
    routes: Callable[[], Mapping[tuple[str, str], Route]],
    sync: Callable[[Any], Any],
    asynchronous: Callable[[Any], Awaitable[Any]],
    requests_mock: rm.Mocker,
    turns: Callable[[Wire], int] = lambda wire: 1,
) -> tuple[Any, Any, FakeVendor, FakeVendor]:
    """Run the same read with the sync and async client of two hooks on one connection; return each
    world's outcome (result, or the error raised) and vendor."""
    sync_vendor, async_vendor = FakeVendor(routes()), FakeVendor(routes())
    sync_vendor.mount(requests_mock)
    sync_hook, async_hook = hook_factory(AsyncFakeClock()), hook_factory(AsyncFakeClock())
    outcomes: list[Any] = []
    try:
        outcomes.append(sync(sync_hook))
    except IoTFleetError as error:
        outcomes.append(error)
    try:
        outcomes.append(run_with(async_hook, async_vendor.transport(turns), lambda: asynchronous(async_hook)))
    except IoTFleetError as error:
        outcomes.append(error)
    return outcomes[0], outcomes[1], sync_vendor, async_vendor


def _cisco_routes(statuses: Mapping[str, Answer]) -> Callable[[], dict[tuple[str, str], Route]]:
    def routes() -> dict[tuple[str, str], Route]:
        table: dict[tuple[str, str], Route] = {
            ("GET", f"/rws/api/v1/devices/{iccid}"): reply for iccid, reply in statuses.items()
        }
        table[("GET", "/rws/api/v1/devices")] = [
            answer(
                {
                    "devices": [{"iccid": ICCID, "status": "RETIRED"}, {"iccid": "8900", "status": "X"}],
                    "lastPage": False,
                }
            ),
            answer({"devices": [{"iccid": ICCID_3, "status": "TEST_READY"}]}),  # no lastPage: the last one
        ]
        return table

    return routes


@pytest.mark.parametrize("since", [None, SINCE], ids=["per-device", "search"])
def test_cisco_statuses_plan_gives_the_same_result_in_both_worlds(
    since: datetime | None, set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection("cisco", **{**CONNECTIONS["cisco"], "extra": {"max_concurrency": 3}})
    iccids = [ICCID, ICCID_19, ICCID_3]
    sync, asynchronous, sync_vendor, async_vendor = run_both(
        lambda clock: CiscoControlCenterHook("cisco", clock=clock),
        _cisco_routes({iccid: answer({"iccid": iccid, "status": f"S{n}"}) for n, iccid in enumerate(iccids)}),
        lambda hook: hook.device_statuses(iccids, changed_since=since),
        lambda hook: hook.adevice_statuses(iccids, changed_since=since),
        requests_mock,
    )
    expected = (
        {ICCID: "RETIRED", ICCID_3: "TEST_READY"} if since else {ICCID: "S0", ICCID_19: "S1", ICCID_3: "S2"}
    )
    assert sync == asynchronous == expected
    assert sorted(sync_vendor.lines()) == sorted(async_vendor.lines())
    assert len(sync_vendor.seen) == (2 if since else 3)


def test_the_first_failed_calls_error_is_raised_in_both_worlds(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection("cisco", **{**CONNECTIONS["cisco"], "extra": {"max_concurrency": 3}})
    iccids = [ICCID, ICCID_19, ICCID_3]
    replies = {
        ICCID: answer({"iccid": ICCID, "status": "ACTIVATED"}),
        ICCID_19: answer(
            {"errorCode": "20000001", "errorMessage": "Resource not found - Invalid ICCID"}, 404
        ),
        ICCID_3: answer({"errorCode": "10000028", "errorMessage": "Invalid request."}, 400),
    }
    sync, asynchronous, _, async_vendor = run_both(
        lambda clock: CiscoControlCenterHook("cisco", clock=clock),
        _cisco_routes(replies),
        lambda hook: hook.device_statuses(iccids),
        lambda hook: hook.adevice_statuses(iccids),
        requests_mock,
        # The second device's answer comes last: "first" is the first call, not the first answer.
        turns=lambda wire: 20 if wire.path.endswith(ICCID_19) else 1,
    )
    assert async_vendor.seen[-1].path.endswith(ICCID_19)
    assert isinstance(sync, IoTFleetNotFoundError)
    assert isinstance(asynchronous, IoTFleetNotFoundError)
    assert str(sync) == str(asynchronous)
    assert f"GET /rws/api/v1/devices/{ICCID_19}" in sync.message


REFUSED = answer({"errorMessage": "Invalid credentials"}, 401)


def test_refused_credentials_raise_the_same_error_from_both_plans(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection("cisco", **CONNECTIONS["cisco"])
    iccids = [ICCID, ICCID_19, ICCID_3]
    sync, asynchronous, _, _ = run_both(
        lambda clock: CiscoControlCenterHook("cisco", clock=clock),
        _cisco_routes(dict.fromkeys(iccids, REFUSED)),
        lambda hook: hook.device_statuses(iccids),
        lambda hook: hook.adevice_statuses(iccids),
        requests_mock,
    )
    assert isinstance(sync, IoTFleetAuthError) and isinstance(asynchronous, IoTFleetAuthError)
    assert str(sync) == str(asynchronous)
    assert sync.message.endswith("Check the login (user name) and password (API key) of connection 'cisco'")


def test_refused_credentials_stop_both_plans_alike(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection("cisco", **CONNECTIONS["cisco"])  # one call at a time, the published limit
    iccids = [ICCID, ICCID_19, ICCID_3]
    _, _, sync_vendor, async_vendor = run_both(
        lambda clock: CiscoControlCenterHook("cisco", clock=clock),
        _cisco_routes(dict.fromkeys(iccids, REFUSED)),
        lambda hook: hook.device_statuses(iccids),
        lambda hook: hook.adevice_statuses(iccids),
        requests_mock,
    )
    assert len(sync_vendor.seen) == 1
    assert len(async_vendor.seen) == len(sync_vendor.seen)


def _roma_listing(total: int, online: set[int]) -> Callable[[Wire], Answer]:
    def listing(wire: Wire) -> Answer:
        offset = int(wire.query["offset"][0])
        assert wire.query["online_status"] == ["1"] and wire.query["limit"] == ["999"]
        items = [
            {"device_id": device_id} for device_id in sorted(online) if offset <= device_id - 1 < offset + 999
        ]
        return answer({"total": total, "size": len(items), "items": items})

    return listing


@pytest.mark.parametrize(
    ("ids", "total", "requests"),
    [
        pytest.param(list(range(1, 4)), 2, ["device"] * 3, id="few-devices-read-one-by-one"),
        pytest.param(list(range(1, 13)), 2, ["listing"], id="many-devices-one-listing-page"),
        pytest.param(list(range(1, 13)), 1500, ["listing"] * 2, id="many-devices-two-listing-pages"),
        pytest.param(list(range(1, 13)), 999 * 13, ["listing"] + ["device"] * 12, id="listing-too-long"),
    ],
)
def test_huawei_online_statuses_choose_the_same_reads_in_both_worlds(
    ids: list[int],
    total: int,
    requests: list[str],
    set_connection: Callable[..., None],
    requests_mock: rm.Mocker,
) -> None:
    set_connection("roma_aksk", **CONNECTIONS["roma_aksk"])
    online = {2, 3, 1001}

    def routes() -> dict[tuple[str, str], Route]:
        table: dict[tuple[str, str], Route] = {("GET", DEVICES_PATH): _roma_listing(total, online)}
        for device_id in ids:
            table[("GET", f"{DEVICES_PATH}/{device_id}")] = answer(
                {"device_id": device_id, "online_status": 1 if device_id in online else 2}
            )
        return table

    sync, asynchronous, sync_vendor, async_vendor = run_both(
        lambda clock: HuaweiRomaConnectHook("roma_aksk", clock=clock),
        routes,
        lambda hook: hook.online_statuses(ids, "online"),
        lambda hook: hook.aonline_statuses(ids, "online"),
        requests_mock,
    )
    listing = requests == ["listing"] * len(requests)
    assert (
        sync
        == asynchronous
        == {
            device_id: ("online" if device_id in online else ("not online" if listing else "offline"))
            for device_id in ids
        }
    )
    assert ["listing" if wire.path == DEVICES_PATH else "device" for wire in sync_vendor.seen] == requests
    assert_same_wire(sync_vendor.seen, async_vendor.seen)


def test_verizon_firmware_plan_pages_1000_imei_bodies_alike_in_both_worlds(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection("verizon", **CONNECTIONS["verizon"])
    imeis = [luhn_complete(f"{35_000_000_000_000 + n:014d}") for n in range(2500)]
    known = {imei for n, imei in enumerate(imeis) if n % 7}  # the account lacks every seventh

    def devices(wire: Wire) -> Answer:
        body = [imei for imei in wire.json()["deviceList"] if imei in known]
        last = wire.query["lastSeenDeviceId"][0]
        start = 0 if last == "0" else body.index(last) + 1
        page = body[start : start + 400]
        more = start + 400 < len(body)
        return answer(
            {
                "deviceList": [{"deviceId": imei, "firmware": f"FW-{imei[-4:]}"} for imei in page],
                "hasMoreData": more,
                **({"lastSeenDeviceId": page[-1]} if more else {}),
            }
        )

    sync, asynchronous, sync_vendor, async_vendor = run_both(
        lambda clock: VerizonThingSpaceHook("verizon", clock=clock),
        lambda: verizon_routes(devices),
        lambda hook: hook.firmware_versions(imeis),
        lambda hook: hook.afirmware_versions(imeis),
        requests_mock,
    )
    assert sync == asynchronous == {imei: f"FW-{imei[-4:]}" for imei in imeis if imei in known}
    bodies = [len(wire.json()["deviceList"]) for wire in sync_vendor.seen if wire.path == DATA_PATH]
    known_per_body = [len(known & set(imeis[start : start + 1000])) for start in (0, 1000, 2000)]
    pages = [math.ceil(count / 400) for count in known_per_body]
    assert pages == [3, 3, 2]
    assert bodies == [1000] * pages[0] + [1000] * pages[1] + [500] * pages[2]
    assert_same_wire(sync_vendor.seen, async_vendor.seen)


def test_async_requests_wait_for_a_connection_first_come_first_served_and_not_forever() -> None:
    """Hundreds of triggers share one client: they queue for its connections in arrival order, and a
    request that finds none free within the pool timeout fails as never sent."""
    order: list[str] = []
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        order.append(request.url.path)
        if request.url.path.endswith("/slow"):
            await release.wait()
        return httpx.Response(200, json={})

    async def run() -> tuple[list[str], BaseException]:
        client = AsyncVendorHttpClient(
            base_url=BASE,
            errors=ERRORS,
            transport=httpx.MockTransport(handler),
            max_connections=1,
            pool_timeout=0.2,
            retry=BackoffPolicy(max_retries=0),
        )
        try:
            slow = asyncio.create_task(client.send(Call("GET", "slow")))
            await asyncio.sleep(0)
            with pytest.raises(IoTFleetTransportError) as waited:
                await client.send(Call("GET", "starved"))
            queued = [asyncio.create_task(client.send(Call("GET", f"d{n}"))) for n in range(5)]
            await asyncio.sleep(0)
            release.set()
            await asyncio.gather(slow, *queued)
            return order, waited.value
        finally:
            await client.aclose()

    served, starved = asyncio.run(run())
    assert served == ["/slow", "/d0", "/d1", "/d2", "/d3", "/d4"]
    assert "no free connection within 0.2 s" in str(starved)
    assert starved.may_have_reached_vendor is False  # type: ignore[attr-defined]


def test_a_poll_waits_for_a_turn_before_it_builds_requests_and_not_forever() -> None:
    """Triggers sharing a client queue for one of its turns (as many as its connections) before a
    poll builds anything; a caller finding none free within the pool timeout goes on without one."""

    async def run() -> tuple[list[bool], list[str]]:
        client = AsyncVendorHttpClient(
            base_url=BASE,
            errors=ERRORS,
            transport=httpx.MockTransport(lambda request: httpx.Response(200, json={})),
            max_connections=1,
            pool_timeout=0.2,
        )
        served: list[str] = []

        async def poll(name: str) -> bool:
            turn = await client.take_turn()
            try:
                await client.send(Call("GET", name))
                served.append(name)
            finally:
                if turn:
                    client.end_turn()
            return turn

        try:
            assert await client.take_turn()  # the only turn, held: the next caller waits
            starved = await poll("starved")  # no turn within 0.2 s: sent anyway
            client.end_turn()
            turns = await asyncio.gather(*(poll(f"d{n}") for n in range(3)))
            return [starved, *turns], served
        finally:
            await client.aclose()

    turns, served = asyncio.run(run())
    assert turns == [False, True, True, True]
    assert served == ["starved", "d0", "d1", "d2"]
