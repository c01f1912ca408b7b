"""Auth written once as flows, and the token cache they share across threads and coroutines.

The flows are driven by hand here (they are plain generators), then through the clients: one login
serves every caller, a stale rejection never drops a newer token, odd lifetimes never mean a login
per request, and a caller waiting for someone else's renewal neither deadlocks nor waits forever,
in a thread or in the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Generator
from typing import Any

import httpx
import pytest
import requests
import requests.adapters
import requests_mock as rm
from requests.structures import CaseInsensitiveDict

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.huawei.auth import (
    HuaweiAkSkAuth,
    canonical_request,
    request_signature,
    sign,
    string_to_sign,
)
from airflow_provider_iotfleet.hooks.paloalto import PaloAltoIoTSecurityHook
from airflow_provider_iotfleet.hooks.verizon import M2MSession, ThingSpaceAuth, VerizonThingSpaceHook
from airflow_provider_iotfleet.http import (
    AsyncVendorHttpClient,
    Call,
    ErrorMapping,
    Reply,
    Request,
    VendorErrorBody,
    VendorHttpClient,
)
from airflow_provider_iotfleet.http.auth import (
    MIN_TOKEN_LIFETIME,
    Mask,
    TokenAuth,
    TokenCache,
    TokenSource,
    Wait,
    lifetime_from,
    oauth_client_credentials,
)
from airflow_provider_iotfleet.http.request import Headers, build_request
from tests.connections import ROMA_HOST
from tests.connections import ROMA_IAM_URL as IAM_URL
from tests.connections import ROMA_INSTANCE as INSTANCE
from tests.connections import ROMA_PROJECT as PROJECT
from tests.fakes import ICCID, IMEI, FakeClock


class AsyncFakeClock(FakeClock):
    """A :class:`FakeClock` whose async sleep advances time too (the base class would really sleep)."""

    def __init__(self) -> None:
        super().__init__()
        self.asleeps: list[float] = []

    async def asleep(self, seconds: float) -> None:
        self.asleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


BASE = "https://api.example.test"
TOKEN_URL = f"{BASE}/oauth/token"
CLIENT_BASIC = "Basic " + base64.b64encode(b"client-id:client-secret").decode()


def build(call: Call) -> Request:
    return build_request(call, BASE, {"User-Agent": "tests"})


def ok(data: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(data=data, status=200, headers=Headers(headers), vendor="Example", action="POST /x")


def rejected(status: int = 401, code: str | None = None) -> IoTFleetVendorResponseError:
    kind = IoTFleetAuthError if status in (401, 403) else IoTFleetVendorResponseError
    return kind("Example rejected GET /things: no", http_status=status, error_code=code, vendor="Example")


def token_auth(clock: FakeClock, **options: Any) -> TokenAuth:
    return TokenAuth(
        oauth_client_credentials(TOKEN_URL, "client-id", "client-secret", clock=clock, **options)
    )


DATA = build(Call("GET", "things"))


def to_data_request(flow: Generator[Any, Any, Any], token: str | None) -> Request:
    """Drive ``flow`` to its data request, answering a login with ``token`` if one is asked for."""
    step = next(flow)
    if isinstance(step, Request) and step.url == TOKEN_URL:
        assert token is not None, "unexpected login"
        assert flow.send(ok({"access_token": token, "expires_in": 3600})) == Mask(token)
        step = flow.send(None)
    assert isinstance(step, Request) and step.url == f"{BASE}/things", step
    return step


# --- Huawei AK/SK signing -----------------------------------------------------------------------

SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
AK = "HPUAL0EXAMPLEAK0001"


def test_huawei_signature_reproduces_the_published_vector() -> None:
    canonical_hash = "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
    text = string_to_sign(canonical_hash, "20191115T033655Z")
    assert text == f"SDK-HMAC-SHA256\n20191115T033655Z\n{canonical_hash}"
    assert sign(SK, text) == "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"


def test_huawei_canonical_request_follows_the_documented_steps() -> None:
    canonical, signed = canonical_request(
        "get",
        "https://roma.example.com/v2/p%20x/devices?b=2&a=1&a=0&sp=x%20y&t=~",
        {"Host": "roma.example.com", "X-Sdk-Date": " 20191115T033655Z ", "X_Not_Signed": "1"},
        b"",
    )
    assert signed == ["host", "x-sdk-date"]  # names with "_" are not signed
    assert canonical == "\n".join(
        [
            "GET",
            "/v2/p%20x/devices/",  # each segment encoded, a trailing slash
            "a=0&a=1&b=2&sp=x%20y&t=~",  # sorted by key then value; "~" stays
            "host:roma.example.com\nx-sdk-date:20191115T033655Z\n",
            "host;x-sdk-date",
            hashlib.sha256(b"").hexdigest(),
        ]
    )


@pytest.mark.parametrize("security_token", [None, "sts-token-value-123"])
def test_huawei_aksk_flow_signs_and_resigns_after_a_wait(security_token: str | None) -> None:
    clock = FakeClock()
    auth = HuaweiAkSkAuth(AK, SK, project_id="proj-1", security_token=security_token, clock=clock)
    request = build(
        Call("POST", "https://roma.example.com/v2/proj-1/devices", params={"x": "1"}, json={"a": 1})
    )
    (signed,) = list(auth.flow(request, build))
    assert signed.header("X-Sdk-Date") == "20261121T120000Z"
    assert signed.header("Host") == "roma.example.com"
    assert signed.header("X-Project-Id") == "proj-1"
    assert signed.header("X-Security-Token") == security_token

    def check(request: Request) -> str:
        scheme, _, rest = (request.header("Authorization") or "").partition(" ")
        fields = dict(part.strip().split("=", 1) for part in rest.split(","))
        names = fields["SignedHeaders"].split(";")
        expected = {"content-type", "host", "user-agent", "x-project-id", "x-sdk-date"}
        assert set(names) == expected | ({"x-security-token"} if security_token else set())
        # Independently of the module: hmac over the documented string to sign.
        unsigned = {name: value for name, value in request.headers.items() if name != "Authorization"}
        canonical, _ = canonical_request(request.method, request.url, unsigned, request.body)
        text = f"SDK-HMAC-SHA256\n{request.header('X-Sdk-Date')}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        assert fields["Signature"] == hmac.new(SK.encode(), text.encode(), hashlib.sha256).hexdigest()
        assert (scheme, fields["Access"]) == ("SDK-HMAC-SHA256", AK)
        return fields["Signature"]

    first = check(signed)
    clock.advance(5)
    again = auth.refresh(signed)  # the old Authorization is not signed into the new one
    assert again.header("X-Sdk-Date") == "20261121T120005Z"
    assert check(again) != first
    unsigned = {name: value for name, value in again.headers.items() if name != "Authorization"}
    assert request_signature(SK, again.method, again.url, unsigned, again.body)[0] == check(again)


# --- The token cache ----------------------------------------------------------------------------


def test_token_cache_hands_out_one_renewal_at_a_time() -> None:
    cache = TokenCache(FakeClock(), refresh_lead=120.0)
    assert cache.begin() == (None, True)  # the caller renews
    assert cache.begin() == (None, False)  # the next one waits
    assert cache.renewing
    cache.finish("tok-1", 3600.0)
    assert not cache.renewing
    assert cache.begin() == ("tok-1", False)


def test_a_failed_renewal_lets_the_next_caller_renew() -> None:
    cache = TokenCache(FakeClock(), refresh_lead=120.0)
    assert cache.begin() == (None, True)
    cache.finish(None, None)
    assert not cache.renewing
    assert cache.begin() == (None, True)


def test_compare_and_invalidate_keeps_a_newer_token() -> None:
    cache = TokenCache(FakeClock(), refresh_lead=120.0)
    cache.begin()
    cache.finish("tok-1", 3600.0)
    assert cache.invalidate("tok-1") is True
    assert cache.begin() == (None, True)
    cache.finish("tok-2", 3600.0)
    assert cache.invalidate("tok-1") is False  # a stale rejection
    assert cache.begin() == ("tok-2", False)


@pytest.mark.parametrize(
    ("lifetime", "renew_after"),
    [
        pytest.param(0.0, 30.0, id="zero"),
        pytest.param(-60.0, 30.0, id="negative"),
        pytest.param(1.5, 30.0, id="tiny"),
        pytest.param(100.0, 50.0, id="shorter-than-twice-the-lead"),
        pytest.param(3600.0, 3480.0, id="hour"),
        pytest.param(1e9, 1e9 - 120.0, id="very-long"),
    ],
)
def test_token_cache_lifetimes(lifetime: float, renew_after: float) -> None:
    clock = FakeClock()
    cache = TokenCache(clock, refresh_lead=120.0)
    cache.begin()
    cache.finish("tok", lifetime)
    assert max(lifetime, MIN_TOKEN_LIFETIME) - renew_after == min(
        120.0, max(lifetime, MIN_TOKEN_LIFETIME) / 2
    )
    clock.advance(renew_after - 1)
    assert cache.begin() == ("tok", False)
    clock.advance(1)
    assert cache.begin() == (None, True)


def test_a_token_without_lifetime_is_kept_until_rejected() -> None:
    clock = FakeClock()
    cache = TokenCache(clock, refresh_lead=0.0)
    cache.begin()
    cache.finish("session", None)
    clock.advance(10 * 365 * 86400)
    assert cache.begin() == ("session", False)
    assert cache.invalidate("session")
    assert cache.begin() == (None, True)


def test_token_cache_treats_a_nan_lifetime_like_any_unusable_one() -> None:
    clock = FakeClock()
    cache = TokenCache(clock, refresh_lead=120.0)
    cache.begin()
    cache.finish("tok", float("nan"))
    assert cache.begin() == ("tok", False)


def test_lifetime_from_vendor_values() -> None:
    assert [lifetime_from(v, 3600.0) for v in ("nan", "inf", "-inf", None, "soon", "899", 0, -60)] == [
        3600.0,
        3600.0,
        3600.0,
        3600.0,
        3600.0,
        899.0,
        0.0,
        -60.0,
    ]


def test_token_cache_wait_is_bounded_and_wakes_on_finish() -> None:
    cache = TokenCache(FakeClock(), refresh_lead=120.0)
    cache.begin()
    cache.wait(0.01)  # nobody finishes: returns after the timeout, still renewing
    assert cache.renewing
    woke = threading.Event()

    def waiter() -> None:
        cache.wait(10.0)
        woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    cache.finish("tok", 3600.0)
    assert woke.wait(5.0)
    thread.join(5.0)


# --- Flows driven by hand -----------------------------------------------------------------------


def test_token_flow_logs_in_masks_then_sends() -> None:
    auth = token_auth(FakeClock())
    flow = auth.flow(DATA, build)
    login = next(flow)
    assert isinstance(login, Request)
    assert (login.method, login.url, login.body) == ("POST", TOKEN_URL, b"grant_type=client_credentials")
    assert login.header("Authorization") == CLIENT_BASIC
    assert not login.call.rate_limited
    assert flow.send(ok({"access_token": "tok-1", "expires_in": 3600})) == Mask("tok-1")
    data = flow.send(None)
    assert data.header("Authorization") == "Bearer tok-1"
    with pytest.raises(StopIteration):
        flow.send(ok({"n": 1}))
    # The next flow finds the token cached: no login.
    assert to_data_request(auth.flow(DATA, build), None).header("Authorization") == "Bearer tok-1"


def test_a_flow_waits_while_another_renews_then_uses_its_token() -> None:
    auth = token_auth(FakeClock())
    renewing, waiting = auth.flow(DATA, build), auth.flow(DATA, build)
    assert next(renewing).url == TOKEN_URL
    step = next(waiting)
    assert isinstance(step, Wait) and step.cache is auth.source.cache
    assert isinstance(waiting.send(None), Wait)  # still renewing: wait again
    renewing.send(ok({"access_token": "tok-1"}))
    renewing.send(None)
    step = waiting.send(None)
    assert isinstance(step, Request) and step.header("Authorization") == "Bearer tok-1"


def test_a_stale_rejection_uses_the_newer_token_without_another_login() -> None:
    auth = token_auth(FakeClock())
    first, second = auth.flow(DATA, build), auth.flow(DATA, build)
    to_data_request(first, "tok-1")
    to_data_request(second, None)  # both sent tok-1
    login = first.send(rejected(401))  # the vendor revoked it: the first rejection renews
    assert login.url == TOKEN_URL
    assert first.send(ok({"access_token": "tok-2"})) == Mask("tok-2")
    assert first.send(None).header("Authorization") == "Bearer tok-2"
    resent = second.send(rejected(401))  # the same, already replaced token: no second login
    assert isinstance(resent, Request) and resent.header("Authorization") == "Bearer tok-2"
    assert auth.source.cache.begin() == ("tok-2", False)


def test_a_second_401_ends_the_flow_and_other_errors_are_not_renewed() -> None:
    auth = token_auth(FakeClock())
    flow = auth.flow(DATA, build)
    to_data_request(flow, "tok-1")
    assert flow.send(rejected(401)).url == TOKEN_URL
    flow.send(ok({"access_token": "tok-2"}))
    flow.send(None)
    with pytest.raises(StopIteration):
        flow.send(rejected(401))  # renewed once already: the client raises this outcome
    flow = auth.flow(DATA, build)
    to_data_request(flow, None)
    with pytest.raises(StopIteration):
        flow.send(rejected(403))  # a 403 is a permission, not an expired token
    assert auth.source.cache.begin() == ("tok-2", False)


def test_a_refused_login_is_raised_with_its_hint_and_releases_the_renewal() -> None:
    auth = token_auth(FakeClock(), credential_hint="the client id and secret")
    flow = auth.flow(DATA, build)
    next(flow)
    with pytest.raises(IoTFleetAuthError) as caught:
        flow.send(rejected(401))
    assert caught.value.credential_hint == "the client id and secret"
    assert not auth.source.cache.renewing
    assert next(auth.flow(DATA, build)).url == TOKEN_URL  # the next caller logs in, does not wait


def test_a_flow_closed_during_its_login_releases_the_renewal() -> None:
    auth = token_auth(FakeClock())
    flow = auth.flow(DATA, build)
    next(flow)
    assert auth.source.cache.renewing
    flow.close()  # a cancelled trigger, an interrupted thread
    assert not auth.source.cache.renewing
    assert next(auth.flow(DATA, build)).url == TOKEN_URL


def test_an_unreadable_login_answer_releases_the_renewal() -> None:
    auth = token_auth(FakeClock())
    flow = auth.flow(DATA, build)
    next(flow)
    with pytest.raises(IoTFleetVendorResponseError, match="no 'access_token' field"):
        flow.send(ok({"token": "x"}))
    assert not auth.source.cache.renewing


LOGIN_URL = f"{BASE}/session/login"


def thingspace(clock: FakeClock) -> ThingSpaceAuth:
    oauth = oauth_client_credentials(TOKEN_URL, "client-id", "client-secret", clock=clock)
    return ThingSpaceAuth(oauth, M2MSession(LOGIN_URL, "uws", "uws-password", clock))


def test_thingspace_flow_obtains_both_credentials_and_renews_each_once() -> None:
    auth = thingspace(FakeClock())
    flow = auth.flow(DATA, build)
    assert next(flow).url == TOKEN_URL
    assert flow.send(ok({"access_token": "bearer-1"})) == Mask("bearer-1")
    login = flow.send(None)
    assert (login.url, login.header("Authorization"), login.call.repeat) == (
        LOGIN_URL,
        "Bearer bearer-1",
        "never",
    )
    assert flow.send(ok({"sessionToken": "session-1"})) == Mask("session-1")
    data = flow.send(None)
    assert (data.header("Authorization"), data.header("VZ-M2M-Token")) == ("Bearer bearer-1", "session-1")
    # The session expired: one new login, with the bearer token still valid.
    login = flow.send(rejected(400, "FOTA.REQUEST_FAILED.SessionToken.Expired"))
    assert (login.url, login.header("Authorization")) == (LOGIN_URL, "Bearer bearer-1")
    flow.send(ok({"sessionToken": "session-2"}))
    data = flow.send(None)
    assert data.header("VZ-M2M-Token") == "session-2"
    # Then the bearer token: renewed once too, the session kept.
    assert flow.send(rejected(401)).url == TOKEN_URL
    flow.send(ok({"access_token": "bearer-2"}))
    data = flow.send(None)
    assert (data.header("Authorization"), data.header("VZ-M2M-Token")) == ("Bearer bearer-2", "session-2")
    # Each was renewed once for this request: a second expiry is the caller's error.
    with pytest.raises(StopIteration):
        flow.send(rejected(400, "FOTA.REQUEST_FAILED.SessionToken.Expired"))


def test_thingspace_refused_login_is_remembered_but_a_401_at_login_is_not() -> None:
    auth = thingspace(FakeClock())
    flow = auth.flow(DATA, build)
    next(flow)
    flow.send(ok({"access_token": "bearer-1"}))
    flow.send(None)
    with pytest.raises(IoTFleetAuthError) as caught:
        flow.send(rejected(401))  # the gateway refused the bearer token, not the M2M user
    assert caught.value.credential_hint == "the login (client id) and password (client secret)"
    assert auth.session.refused_login is None
    flow = auth.flow(DATA, build)
    assert next(flow).url == TOKEN_URL  # the bearer token was dropped
    flow.send(ok({"access_token": "bearer-2"}))
    flow.send(None)
    with pytest.raises(IoTFleetAuthError):
        flow.send(rejected(400, "REQUEST_FAILED.UnexpectedError"))
    assert auth.session.refused_login is not None
    with pytest.raises(IoTFleetAuthError, match="not logging in again"):
        next(auth.flow(DATA, build))  # nothing is sent: the account is one refusal nearer lockout


# --- Lifetimes through the client ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "renew_after"),
    [
        pytest.param(0, 30.0, id="zero"),
        pytest.param(-60, 30.0, id="negative"),
        pytest.param("nan", 3480.0, id="nan-string"),
        pytest.param(None, 3480.0, id="null"),
        pytest.param("3600", 3480.0, id="string"),
        pytest.param(10**9, 10**9 - 120.0, id="very-long"),
    ],
)
def test_odd_token_lifetimes_never_mean_a_login_per_request(
    expires_in: Any, renew_after: float, requests_mock: rm.Mocker
) -> None:
    clock = FakeClock()
    tokens = requests_mock.post(
        TOKEN_URL, [{"json": {"access_token": f"tok-{n}", "expires_in": expires_in}} for n in range(1, 4)]
    )
    things = requests_mock.get(f"{BASE}/things", json={})
    client = VendorHttpClient(
        base_url=BASE,
        errors=ErrorMapping(vendor="Example", parse_body=lambda body: VendorErrorBody()),
        auth=token_auth(clock, default_lifetime=3600.0, refresh_lead=120.0),
        clock=clock,
    )
    for _ in range(3):
        client.send(Call("GET", "things"))
    assert tokens.call_count == 1
    clock.advance(renew_after - 1)
    client.send(Call("GET", "things"))
    assert tokens.call_count == 1  # still ahead of the refresh point
    clock.advance(2)
    client.send(Call("GET", "things"))
    assert tokens.call_count == 2  # renewed ahead of expiry, before any 401
    assert things.last_request.headers["Authorization"] == "Bearer tok-2"
    assert things.call_count == 5


@pytest.mark.parametrize(
    ("token_body", "renew_after"),
    [
        pytest.param({"token": {"expires_at": "2026-11-21T11:00:00.000000Z"}}, 30.0, id="already-expired"),
        pytest.param({"token": {"expires_at": "2026-11-21T12:00:10Z"}}, 30.0, id="ten-seconds"),
        pytest.param({"token": {}}, 23 * 3600.0, id="no-expiry"),
        pytest.param({"token": {"expires_at": "tomorrow"}}, 23 * 3600.0, id="unreadable"),
    ],
)
def test_iam_token_lifetimes(
    token_body: dict[str, Any],
    renew_after: float,
    roma_iam_connection: None,
    requests_mock: rm.Mocker,
) -> None:
    clock = FakeClock()
    hook = HuaweiRomaConnectHook("roma_iam", clock=clock)
    logins = requests_mock.post(
        IAM_URL,
        [
            {"status_code": 201, "headers": {"X-Subject-Token": f"MIIT-{n}"}, "json": token_body}
            for n in (1, 2)
        ],
    )
    requests_mock.get(f"{ROMA_HOST}/v2/{PROJECT}/link/instances/{INSTANCE}/devices/7", json={"device_id": 7})
    hook.get_device(7)
    hook.get_device(7)
    assert logins.call_count == 1
    clock.advance(renew_after - 1)
    hook.get_device(7)
    assert logins.call_count == 1
    clock.advance(2)
    hook.get_device(7)
    assert logins.call_count == 2


def test_m2m_session_is_not_renewed_by_time_only_the_bearer_token_is(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "verizon",
        "verizon_thingspace",
        login="oauth-key",
        password="oauth-secret",
        extra={"m2m_username": "uws", "m2m_password": "uws-password", "account_name": "0000123456-00001"},
    )
    clock = FakeClock()
    hook = VerizonThingSpaceHook("verizon", clock=clock)
    root = "https://thingspace.verizon.com"
    tokens = requests_mock.post(
        f"{root}/api/ts/v1/oauth2/token",
        [{"json": {"access_token": f"a-{n}", "expires_in": 3600}} for n in (1, 2, 3)],
    )
    logins = requests_mock.post(f"{root}/api/m2m/v1/session/login", json={"sessionToken": "s-1"})
    requests_mock.post(f"{root}/api/fota/v3/devices/0000123456-00001", json={"deviceList": []})
    hook.firmware_versions([IMEI])
    clock.advance(2 * 3600)
    hook.firmware_versions([IMEI])
    assert (tokens.call_count, logins.call_count) == (2, 1)


# --- Single flight across threads and coroutines ------------------------------------------------

SCM_TOKEN_URL = "https://auth.apps.paloaltonetworks.com/oauth2/access_token"
SCM_BULK = "https://api.strata.paloaltonetworks.com/iot/pub/v1/device/bulkUpdate"
PA_OK = {"api": "device/bulkUpdate", "ver": "v4.0", "code": 1, "message": "OK", "updatedDeviceNum": 1}
PA_DEVICES = [{"imei": IMEI, "iccid": ICCID}]
BULK_CALL = Call(
    "PUT",
    "iot/pub/v1/device/bulkUpdate",
    params={"updateSource": "cellular"},
    json={"devicelist": PA_DEVICES},
)
SCM_HINT = "Check the login (client id), password (client secret) and tsg_id extra of connection 'pa_scm'"


def scm_hook(set_connection: Callable[..., None], clock: FakeClock) -> PaloAltoIoTSecurityHook:
    set_connection(
        "pa_scm",
        "paloalto_iot",
        login="svc@1234567.iam.panserviceaccount.com",
        password="scm-client-secret-value",
        extra={"auth_type": "scm", "tsg_id": "1234567890"},
    )
    return PaloAltoIoTSecurityHook("pa_scm", clock=clock)


def token_cache(hook: PaloAltoIoTSecurityHook) -> TokenCache:
    auth = hook.client_options["auth"]
    assert isinstance(auth, TokenAuth)
    return auth.source.cache


class WaitCounter:
    """Counts the callers that block in ``cache.wait`` (the sync client's :class:`Wait`)."""

    def __init__(self, cache: TokenCache) -> None:
        self.count = 0
        self._changed = threading.Condition()
        original = cache.wait

        def wait(timeout: float) -> None:
            with self._changed:
                self.count += 1
                self._changed.notify_all()
            original(timeout)

        cache.wait = wait  # type: ignore[method-assign]

    def until(self, count: int, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= count, timeout)


def run_threads(target: Callable[[], Any], count: int) -> tuple[list[Any], list[BaseException]]:
    results: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(target())
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15.0)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    return results, errors


class Gate:
    """Stands in for the rate limiter, which the client calls once the flow has put the token on the
    request: holds the first ``parties`` requests until all of them carry their token."""

    def __init__(self, parties: int) -> None:
        self._barrier = threading.Barrier(parties, timeout=5.0)
        self._left = parties
        self._lock = threading.Lock()

    def acquire(self) -> float:
        with self._lock:
            gated = self._left > 0
            self._left -= 1
        if gated:
            self._barrier.wait()
        return 0.0


def test_one_login_serves_eight_threads_after_the_token_is_revoked(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    hook = scm_hook(set_connection, FakeClock())
    tokens = requests_mock.post(
        SCM_TOKEN_URL, [{"json": {"access_token": f"tok-{n}", "expires_in": 899}} for n in range(1, 10)]
    )

    def bulk(request: Any, context: Any) -> dict[str, Any]:
        if request.headers["Authorization"] == "Bearer tok-1":
            context.status_code = 401
            return {"code": 401, "msg": "token revoked"}
        return PA_OK

    route = requests_mock.put(SCM_BULK, json=bulk)
    hook.client.obtain()
    # requests-mock answers one request at a time; the gate makes sure that all eight threads have
    # sent the revoked token before the first 401 comes back and anyone renews it.
    hook.client.rate_limiter = Gate(8)  # type: ignore[assignment]
    results, errors = run_threads(lambda: hook.bulk_update(PA_DEVICES).updated, 8)
    assert errors == []
    assert results == [1] * 8
    assert tokens.call_count == 2  # one login at the start, one renewal for all eight
    auths = [r.headers["Authorization"] for r in route.request_history]
    assert sorted(auths) == ["Bearer tok-1"] * 8 + ["Bearer tok-2"] * 8
    assert auths[0] == "Bearer tok-1"


class ConcurrentVendor(requests.adapters.BaseAdapter):
    """A requests adapter answering in the calling thread, so that requests really are in flight
    together (requests-mock serialises them under one lock)."""

    def __init__(self, respond: Callable[[requests.PreparedRequest], tuple[int, dict[str, Any]]]) -> None:
        super().__init__()
        self._respond = respond

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        status, body = self._respond(request)
        response = requests.Response()
        response.status_code = status
        response.reason = "OK" if status < 400 else "Unauthorized"
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        response._content = json.dumps(body).encode()
        response._content_consumed = True
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def test_eight_threads_in_flight_together_wait_for_one_renewal(set_connection: Callable[..., None]) -> None:
    hook = scm_hook(set_connection, FakeClock())
    hook.client_options["max_connections"] = 8  # so that all eight are in flight at once
    waits = WaitCounter(token_cache(hook))
    revoked = threading.Barrier(8, timeout=5.0)
    lock = threading.Lock()
    logins: list[int] = []
    sent: list[str] = []

    def respond(request: requests.PreparedRequest) -> tuple[int, dict[str, Any]]:
        if request.url == SCM_TOKEN_URL:
            with lock:
                logins.append(1)
                number = len(logins)
            if number == 2:
                waits.until(7)  # the renewal lasts until every other thread waits for it
            return 200, {"access_token": f"tok-{number}", "expires_in": 899}
        authorization = str(request.headers["Authorization"])
        with lock:
            sent.append(authorization)
        if authorization == "Bearer tok-1":
            revoked.wait()  # all eight hold the revoked token at once
            return 401, {"code": 401, "msg": "token revoked"}
        return 200, PA_OK

    hook.client.session.mount("https://", ConcurrentVendor(respond))
    hook.client.obtain()
    results, errors = run_threads(lambda: hook.bulk_update(PA_DEVICES).updated, 8)
    assert errors == []
    assert results == [1] * 8
    assert len(logins) == 2
    assert waits.count == 7  # the seven others waited for the one renewal, none logged in
    assert sorted(sent) == ["Bearer tok-1"] * 8 + ["Bearer tok-2"] * 8


def test_one_login_serves_twenty_coroutines(set_connection: Callable[..., None]) -> None:
    clock = AsyncFakeClock()
    hook = scm_hook(set_connection, clock)
    logins: list[str] = []
    sent: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/access_token":
            logins.append(request.headers["Authorization"])
            for _ in range(5):
                await asyncio.sleep(0)  # the others arrive while it is in flight
            return httpx.Response(200, json={"access_token": f"tok-{len(logins)}", "expires_in": 899})
        sent.append(request.headers["Authorization"])
        return httpx.Response(200, json=PA_OK)

    async def run() -> list[Reply]:
        client = AsyncVendorHttpClient(**hook.client_options, transport=httpx.MockTransport(handler))
        try:
            return await asyncio.wait_for(asyncio.gather(*(client.send(BULK_CALL) for _ in range(20))), 10)
        finally:
            await client.aclose()

    replies = asyncio.run(run())
    assert [reply.field("updatedDeviceNum", int) for reply in replies] == [1] * 20
    assert len(logins) == 1
    assert sent == ["Bearer tok-1"] * 20
    assert 0.05 in clock.asleeps  # the others waited in the event loop...
    assert clock.sleeps == []  # ...without blocking it


def test_one_renewal_serves_twenty_coroutines_after_the_token_is_revoked(
    set_connection: Callable[..., None],
) -> None:
    clock = AsyncFakeClock()
    hook = scm_hook(set_connection, clock)
    logins: list[str] = []
    sent: list[str] = []

    async def run() -> list[Reply]:
        revoked = asyncio.Barrier(20)

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/oauth2/access_token":
                logins.append(request.headers["Authorization"])
                await asyncio.sleep(0)
                return httpx.Response(200, json={"access_token": f"tok-{len(logins)}", "expires_in": 899})
            sent.append(request.headers["Authorization"])
            if request.headers["Authorization"] == "Bearer tok-1":
                await asyncio.wait_for(revoked.wait(), 5)  # all twenty hold the revoked token at once
                return httpx.Response(401, json={"code": 401, "msg": "token revoked"})
            return httpx.Response(200, json=PA_OK)

        # Twenty connections, so that all twenty requests can be in flight with the revoked token.
        options = {**hook.client_options, "max_connections": 20}
        client = AsyncVendorHttpClient(**options, transport=httpx.MockTransport(handler))
        try:
            await client.obtain()
            return await asyncio.wait_for(asyncio.gather(*(client.send(BULK_CALL) for _ in range(20))), 10)
        finally:
            await client.aclose()

    replies = asyncio.run(run())
    assert len(replies) == 20
    assert len(logins) == 2
    assert sorted(sent) == ["Bearer tok-1"] * 20 + ["Bearer tok-2"] * 20
    assert clock.sleeps == []


# --- Waiting for someone else's renewal: honoured, bounded, never a deadlock --------------------


def test_sync_waiter_renews_itself_when_the_renewal_it_waited_for_fails(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    hook = scm_hook(set_connection, FakeClock())
    waits = WaitCounter(token_cache(hook))
    logins: list[int] = []
    first_login_sent, release = threading.Event(), threading.Event()

    def token(request: Any, context: Any) -> dict[str, Any]:
        logins.append(1)
        if len(logins) == 1:
            first_login_sent.set()
            release.wait(5.0)
            context.status_code = 401
            return {"error": "invalid_client", "error_description": "Client authentication failed"}
        return {"access_token": "tok-2", "expires_in": 899}

    requests_mock.post(SCM_TOKEN_URL, json=token)
    requests_mock.put(SCM_BULK, json=PA_OK)
    outcomes: dict[str, Any] = {}

    def attempt(name: str) -> None:
        try:
            outcomes[name] = hook.bulk_update(PA_DEVICES).updated
        except IoTFleetError as error:
            outcomes[name] = error

    assert hook.client is not None  # built before the threads start
    first = threading.Thread(target=attempt, args=("first",))
    first.start()
    assert first_login_sent.wait(5.0)
    second = threading.Thread(target=attempt, args=("second",))
    second.start()
    assert waits.until(1)  # the second waits for the first's renewal
    release.set()
    first.join(10.0)
    second.join(10.0)
    assert not first.is_alive() and not second.is_alive()
    assert isinstance(outcomes["first"], IoTFleetAuthError)
    assert outcomes["first"].message.endswith(SCM_HINT)
    assert outcomes["second"] == 1
    assert len(logins) == 2


def test_async_waiter_renews_itself_when_the_renewing_coroutine_is_cancelled(
    set_connection: Callable[..., None],
) -> None:
    clock = AsyncFakeClock()
    hook = scm_hook(set_connection, clock)
    logins: list[str] = []

    async def run() -> tuple[Reply, asyncio.Task[Reply]]:
        first_login_sent, never = asyncio.Event(), asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/oauth2/access_token":
                logins.append(request.headers["Authorization"])
                if len(logins) == 1:
                    first_login_sent.set()
                    await never.wait()  # a login that hangs
                return httpx.Response(200, json={"access_token": f"tok-{len(logins)}", "expires_in": 899})
            return httpx.Response(200, json=PA_OK)

        client = AsyncVendorHttpClient(**hook.client_options, transport=httpx.MockTransport(handler))
        try:
            first = asyncio.create_task(client.send(BULK_CALL))
            await asyncio.wait_for(first_login_sent.wait(), 5)
            second = asyncio.create_task(client.send(BULK_CALL))
            for _ in range(10):
                await asyncio.sleep(0)
            assert token_cache(hook).renewing and not second.done()  # waiting, not logging in
            first.cancel()  # a trigger cancelled mid-login
            reply = await asyncio.wait_for(second, 5)
            return reply, first
        finally:
            await client.aclose()

    reply, first = asyncio.run(run())
    assert reply.field("updatedDeviceNum", int) == 1
    assert first.cancelled()
    assert len(logins) == 2
    assert not token_cache(hook).renewing
    assert clock.sleeps == []


def test_a_coroutine_waits_for_a_renewal_made_by_a_thread(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    # A hook's sync and async clients share one auth: a trigger and a task thread in the same process.
    clock = AsyncFakeClock()
    hook = scm_hook(set_connection, clock)
    first_login_sent, release = threading.Event(), threading.Event()

    def token(request: Any, context: Any) -> dict[str, Any]:
        first_login_sent.set()
        release.wait(5.0)
        return {"access_token": "tok-from-thread", "expires_in": 899}

    logins = requests_mock.post(SCM_TOKEN_URL, json=token)
    requests_mock.put(SCM_BULK, json=PA_OK)
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.url.path} {request.headers.get('Authorization')}")
        return httpx.Response(200, json=PA_OK)

    async def run() -> Reply:
        client = AsyncVendorHttpClient(**hook.client_options, transport=httpx.MockTransport(handler))
        try:
            waiting = asyncio.create_task(client.send(BULK_CALL))
            for _ in range(10):
                await asyncio.sleep(0)
            assert token_cache(hook).renewing and not waiting.done()
            release.set()
            return await asyncio.wait_for(waiting, 5)
        finally:
            await client.aclose()

    assert hook.client is not None  # built before the thread starts
    thread = threading.Thread(target=lambda: hook.bulk_update(PA_DEVICES))
    thread.start()
    assert first_login_sent.wait(5.0)
    try:
        reply = asyncio.run(run())
    finally:
        release.set()
        thread.join(10.0)
    assert not thread.is_alive()
    assert reply.field("updatedDeviceNum", int) == 1
    assert logins.call_count == 1  # the coroutine used the thread's token
    assert sent == ["/iot/pub/v1/device/bulkUpdate Bearer tok-from-thread"]
    assert clock.sleeps == []


def test_token_source_accepts_custom_readers() -> None:
    # Both the read function and the login builder are data: a source for any vendor's shape.
    clock = FakeClock()
    source = TokenSource(
        login=lambda: Call("POST", f"{BASE}/login", json={"u": "x"}, rate_limited=False),
        read=lambda reply: (reply.field("t", str), float(reply.field("ttl", int))),
        clock=clock,
        refresh_lead=10.0,
        credential_hint="the login",
    )
    auth = TokenAuth(source, header="X-Auth-Token", prefix="")
    flow = auth.flow(DATA, build)
    assert next(flow).url == f"{BASE}/login"
    flow.send(ok({"t": "abc", "ttl": 600}))
    data = flow.send(None)
    assert data.header("X-Auth-Token") == "abc"
    assert data.header("Authorization") is None
    clock.advance(589)
    assert source.cache.begin() == ("abc", False)
    clock.advance(2)
    assert source.cache.begin() == (None, True)
