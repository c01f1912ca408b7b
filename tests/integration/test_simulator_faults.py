"""The simulator's fault modes, revocation and request log, seen with raw HTTP calls (no hooks)."""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from airflow_provider_iotfleet.simulator import Faults, Simulator, SimulatorConfig, SimulatorState
from airflow_provider_iotfleet.simulator.__main__ import parse_args
from airflow_provider_iotfleet.simulator.fleet import OFFLINE, ONLINE, ROMA_ID_BASE, iccid_of, imei_of
from tests.simulator_harness import SimulatorFactory

TIMEOUT = 10
POLL = 0.01


# --- raw clients, one per vendor ----------------------------------------------------------------


def _cisco_edit(sim: Simulator, index: int, value: str, timeout: float = TIMEOUT) -> requests.Response:
    creds = sim.config.credentials
    return requests.put(
        f"{sim.url}/cisco/rws/api/v1/devices/{iccid_of(index)}",
        json={"accountCustom1": value},
        auth=(creds.cisco_username, creds.cisco_api_key),
        timeout=timeout,
    )


def _cisco_get(sim: Simulator, index: int, **kwargs: Any) -> requests.Response:
    creds = sim.config.credentials
    return requests.get(
        f"{sim.url}/cisco/rws/api/v1/devices/{iccid_of(index)}",
        auth=(creds.cisco_username, creds.cisco_api_key),
        timeout=TIMEOUT,
        **kwargs,
    )


def _paloalto_token(sim: Simulator) -> str:
    creds = sim.config.credentials
    response = requests.post(
        f"{sim.url}/paloalto/oauth2/access_token",
        data={"grant_type": "client_credentials", "scope": f"tsg_id:{creds.paloalto_tsg_id}"},
        auth=(creds.paloalto_client_id, creds.paloalto_client_secret),
        timeout=TIMEOUT,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _paloalto_bulk_update(sim: Simulator, token: str, devicelist: list[dict[str, str]]) -> requests.Response:
    return requests.put(
        f"{sim.url}/paloalto/iot/pub/v1/device/bulkUpdate",
        params={"updateSource": "cellular"},
        json={"devicelist": devicelist},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )


def _huawei_token(sim: Simulator) -> str:
    creds = sim.config.credentials
    user = {
        "name": creds.huawei_iam_user,
        "password": creds.huawei_iam_password,
        "domain": {"name": creds.huawei_domain},
    }
    response = requests.post(
        f"{sim.url}/huawei/v3/auth/tokens",
        json={
            "auth": {
                "identity": {"methods": ["password"], "password": {"user": user}},
                "scope": {"project": {"id": creds.huawei_project_id}},
            }
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


def _huawei_devices_url(sim: Simulator) -> str:
    creds = sim.config.credentials
    return f"{sim.url}/huawei/v2/{creds.huawei_project_id}/link/instances/{creds.huawei_instance_id}/devices"


def _huawei_get(sim: Simulator, token: str, roma_id: int) -> requests.Response:
    return requests.get(
        f"{_huawei_devices_url(sim)}/{roma_id}", headers={"X-Auth-Token": token}, timeout=TIMEOUT
    )


def _huawei_force_offline(sim: Simulator, token: str, roma_ids: list[int]) -> requests.Response:
    return requests.post(
        f"{_huawei_devices_url(sim)}/force-offline",
        json={"device_ids": roma_ids},
        headers={"X-Auth-Token": token},
        timeout=TIMEOUT,
    )


def _verizon_login(sim: Simulator) -> dict[str, str]:
    """An access token and an M2M session: the headers every ThingSpace FOTA call needs."""
    creds = sim.config.credentials
    token = requests.post(
        f"{sim.url}/verizon/api/ts/v1/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(creds.verizon_key, creds.verizon_secret),
        timeout=TIMEOUT,
    ).json()["access_token"]
    session = requests.post(
        f"{sim.url}/verizon/api/m2m/v1/session/login",
        json={"username": creds.verizon_m2m_username, "password": creds.verizon_m2m_password},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    ).json()["sessionToken"]
    return {"Authorization": f"Bearer {token}", "VZ-M2M-Token": session}


def _verizon_list(
    sim: Simulator, headers: dict[str, str], imeis: list[str] | None = None
) -> requests.Response:
    url = f"{sim.url}/verizon/api/fota/v3/devices/{sim.config.credentials.verizon_account}"
    if imeis is None:
        return requests.get(url, headers=headers, timeout=TIMEOUT)
    return requests.post(url, json={"deviceList": imeis}, headers=headers, timeout=TIMEOUT)


def _verizon_sync(sim: Simulator, headers: dict[str, str], imeis: list[str]) -> requests.Response:
    account = sim.config.credentials.verizon_account
    return requests.put(
        f"{sim.url}/verizon/api/fota/v3/firmware/{account}/devices",
        json={"deviceList": imeis},
        headers=headers,
        timeout=TIMEOUT,
    )


def _custom(sim: Simulator, index: int) -> dict[str, Any]:
    return dict(sim.state.fleet.device(index)["custom"])


def _last(sim: Simulator, vendor: str) -> dict[str, Any]:
    return sim.state.request_log(vendor, limit=1)[0]


# --- faults that apply the change, then spoil the answer ----------------------------------------


@pytest.mark.slow
def test_applied_then_dropped_applies_the_change_and_breaks_the_answer(
    start_simulator: SimulatorFactory,
) -> None:
    sim = start_simulator(devices=50, faults=Faults(applied_then_dropped=1.0))
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        _cisco_edit(sim, 3, "first")
    assert _custom(sim, 3) == {"accountCustom1": "first"}  # applied although the client saw no answer
    # A client that retries applies it twice: the danger this fault exists to show.
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        _cisco_edit(sim, 3, "second")
    assert _custom(sim, 3) == {"accountCustom1": "second"}
    assert sim.state.counters["faults.applied_then_dropped"] == 2
    assert sim.state.per_device_writes(applied_only=True)[iccid_of(3)] == 2
    record = _last(sim, "cisco")
    assert (record["status"], record["fault"], record["applied"]) == (200, "applied_then_dropped", True)


@pytest.mark.slow
def test_applied_then_dropped_promises_more_than_it_sends(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=50, faults=Faults(applied_then_dropped=1.0))
    response = _cisco_get(sim, 4, stream=True)
    promised = int(response.headers["Content-Length"])
    received = bytearray()
    broken: Exception | None = None
    try:
        for chunk in response.iter_content(64):
            received += chunk
    except requests.RequestException as error:
        broken = error
    assert isinstance(broken, requests.exceptions.ChunkedEncodingError | requests.exceptions.ConnectionError)
    assert response.status_code == 200
    assert 0 < len(received) < promised
    assert received.startswith(b'{"iccid":"' + iccid_of(4).encode())  # the vendor's answer, cut short


@pytest.mark.slow
def test_dropped_connection_still_drops_before_applying(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=50, faults=Faults(dropped_connection=1.0))
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        _cisco_edit(sim, 3, "lost")
    assert _custom(sim, 3) == {}
    assert sim.state.per_device_writes()[iccid_of(3)] == 1  # sent once...
    assert sim.state.per_device_writes(applied_only=True)[iccid_of(3)] == 0  # ...never applied
    record = _last(sim, "cisco")
    assert (record["fault"], record["applied"]) == ("dropped_connection", False)


@pytest.mark.slow
def test_applied_then_delayed_applies_at_once_and_answers_late(start_simulator: SimulatorFactory) -> None:
    slow = 0.5
    sim = start_simulator(devices=50, slow_answer_seconds=slow, faults=Faults(applied_then_delayed=1.0))
    with pytest.raises(requests.exceptions.ReadTimeout):
        _cisco_edit(sim, 5, "early", timeout=slow / 3)
    # The client gave up, but the change is in.
    assert _custom(sim, 5) == {"accountCustom1": "early"}
    record = _last(sim, "cisco")
    assert (record["status"], record["fault"], record["applied"]) == (200, "applied_then_delayed", True)

    # A patient client gets the vendor's own answer, slow_answer_seconds later; meanwhile the server
    # keeps serving others.
    answers: list[requests.Response] = []
    done = threading.Event()

    def patient() -> None:
        answers.append(_cisco_edit(sim, 6, "late", timeout=TIMEOUT))
        done.set()

    started = time.monotonic()
    threading.Thread(target=patient, daemon=True).start()
    deadline = started + TIMEOUT
    while "6" not in requests.get(f"{sim.url}/_sim/state", timeout=TIMEOUT).json()["changed"]:
        assert time.monotonic() < deadline
    assert not done.is_set()  # applied, and other requests served, while the answer is held
    assert done.wait(TIMEOUT)
    assert time.monotonic() - started >= slow
    assert (answers[0].status_code, answers[0].json()) == (200, {"iccid": iccid_of(6)})


@pytest.mark.slow
def test_held_answers_do_not_delay_stopping_the_simulator(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=10, faults=Faults(applied_then_delayed=1.0))
    assert sim.config.slow_answer_seconds == 40  # the default outlasts the clients' usual timeout
    waiting = threading.Event()

    def hold() -> None:
        waiting.set()
        with contextlib.suppress(requests.RequestException):
            _cisco_edit(sim, 1, "held", timeout=TIMEOUT)

    threading.Thread(target=hold, daemon=True).start()
    assert waiting.wait(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    pause = threading.Event()
    while not [r for r in sim.state.requests if r["status"] is not None]:  # the router has answered
        assert time.monotonic() < deadline
        pause.wait(POLL)
    assert _custom(sim, 1) == {"accountCustom1": "held"}  # applied; its answer is now held
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 5


# --- faults that answer in the vendor's place ---------------------------------------------------


@pytest.mark.slow
def test_gzip_garbage(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=50, faults=Faults(gzip_garbage=1.0))
    with pytest.raises(requests.exceptions.ContentDecodingError):
        _cisco_edit(sim, 2, "never")
    assert _custom(sim, 2) == {}  # answered in the vendor's place: nothing applied
    response = _cisco_get(sim, 2, stream=True)
    raw = response.raw.read(decode_content=False)
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert len(raw) > 10 * 1024
    with pytest.raises((OSError, EOFError, zlib.error)):
        gzip.decompress(raw)
    assert _last(sim, "cisco")["fault"] == "gzip_garbage"


@pytest.mark.slow
def test_html_error_page_and_logins_are_never_faulted(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=50, verizon_page_size=5, faults=Faults(html_error_page=1.0))
    headers = _verizon_login(sim)  # token and session endpoints answer normally
    response = _verizon_list(sim, headers)
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<h1>502 Bad Gateway</h1>" in response.text
    with pytest.raises(requests.exceptions.JSONDecodeError):
        response.json()
    assert sim.state.counters["faults.html_error_page"] == 1
    assert [(r["path"].rsplit("/", 1)[-1], r["fault"]) for r in sim.state.requests] == [
        ("token", None),
        ("login", None),
        (sim.config.credentials.verizon_account, "html_error_page"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("size", [2, 3, 4, 3 * 65536 + 1001, 3 * 65536 + 1002])
def test_huge_body_is_valid_json_of_the_configured_size(start_simulator: SimulatorFactory, size: int) -> None:
    sim = start_simulator(devices=10, huge_body_bytes=size, faults=Faults(huge_body=1.0))
    response = _cisco_get(sim, 1)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content) == size
    body = response.json()
    assert isinstance(body, list)
    assert set(body) <= {0}


@pytest.mark.slow
def test_huge_body_default_size_is_streamed_whole(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=10, faults=Faults(huge_body=1.0))
    response = _cisco_get(sim, 1, stream=True)
    body = bytearray()
    for chunk in response.iter_content(1024 * 1024):
        body += chunk
    assert len(body) == int(response.headers["Content-Length"]) == 20 * 1024 * 1024
    assert set(json.loads(body)) == {0}


@pytest.mark.slow
def test_deeply_nested_json(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=10, faults=Faults(deeply_nested=1.0))
    response = _cisco_get(sim, 1)
    assert response.status_code == 200
    depth = len(response.content) - len(response.content.lstrip(b"["))
    assert depth == 100_000
    assert response.content == b"[" * depth + b"]" * depth
    with pytest.raises(RecursionError):
        json.loads(response.content)


def test_new_faults_are_checked_and_repeat_per_seed() -> None:
    with pytest.raises(ValueError, match="huge_body"):
        Faults(huge_body=1.5)
    with pytest.raises(ValueError, match="more than 1"):
        Faults(server_error=0.5, applied_then_dropped=0.3, deeply_nested=0.3)

    def rolls(faults: Faults) -> list[str | None]:
        state = SimulatorState(SimulatorConfig(devices=10, seed=5, faults=faults))
        return [state.roll_fault() for _ in range(200)]

    mixed = Faults(server_error=0.2, applied_then_dropped=0.2, applied_then_delayed=0.2, gzip_garbage=0.2)
    assert rolls(mixed) == rolls(mixed)
    assert {"server_error", "applied_then_dropped", "applied_then_delayed", "gzip_garbage", None} == set(
        rolls(mixed)
    )
    # The new faults come after the old ones: a seed's run of old faults is what it was.
    old = rolls(Faults(server_error=0.3))
    assert rolls(Faults(server_error=0.3, html_error_page=0.0)) == old
    assert [f if f == "server_error" else None for f in rolls(Faults(server_error=0.3, huge_body=0.4))] == old


def test_new_config_fields_are_checked() -> None:
    config = SimulatorConfig()
    assert (config.slow_answer_seconds, config.huge_body_bytes) == (40.0, 20 * 1024 * 1024)
    assert (config.retry_after_style, config.retry_after_seconds) == ("seconds", None)
    for bad in (
        {"slow_answer_seconds": -1},
        {"huge_body_bytes": 1},
        {"retry_after_style": "minutes"},
        {"retry_after_seconds": -5},
        {"request_log_size": -1},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SimulatorConfig(**bad)  # type: ignore[arg-type]


# --- Retry-After --------------------------------------------------------------------------------


@pytest.mark.slow
def test_retry_after_defaults_are_unchanged(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=10, faults=Faults(rate_limited=1.0))
    response = _cisco_get(sim, 1)
    assert (response.status_code, response.headers["Retry-After"]) == (429, "1")


@pytest.mark.slow
def test_retry_after_as_an_http_date(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=10, retry_after_style="http-date", faults=Faults(rate_limited=1.0))
    before = datetime.now(UTC).replace(microsecond=0)
    response = _cisco_get(sim, 1)
    assert response.status_code == 429
    assert response.headers["Retry-After"].endswith(" GMT")
    due = parsedate_to_datetime(response.headers["Retry-After"])
    assert before + timedelta(seconds=1) <= due <= datetime.now(UTC) + timedelta(seconds=2)


@pytest.mark.slow
def test_large_retry_after_for_the_fault_as_a_date(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(
        devices=10,
        retry_after_style="http-date",
        retry_after_seconds=3600,
        faults=Faults(rate_limited=1.0),
    )
    due = parsedate_to_datetime(_cisco_get(sim, 1).headers["Retry-After"])
    assert abs((due - datetime.now(UTC)).total_seconds() - 3600) < 5


@pytest.mark.slow
def test_large_retry_after_for_the_rate_limit(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=10, rate_limits={"cisco": 1}, retry_after_seconds=86400)
    statuses = []
    for _ in range(3):
        response = _cisco_get(sim, 1)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "86400"
    assert 429 in statuses
    throttled = [r for r in sim.state.requests if r["status"] == 429]
    assert throttled
    assert all(r["fault"] == "throttled" and r["applied"] is False for r in throttled)


# --- revocation -------------------------------------------------------------------------------


@pytest.mark.slow
def test_revoked_tokens_get_the_vendors_refusal(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=50, verizon_page_size=5)
    paloalto = _paloalto_token(sim)
    huawei = _huawei_token(sim)
    verizon = _verizon_login(sim)
    assert _paloalto_bulk_update(sim, paloalto, [{"imei": imei_of(1)}]).status_code == 200
    assert _huawei_get(sim, huawei, ROMA_ID_BASE + 1).status_code == 200
    assert _verizon_list(sim, verizon).status_code == 200

    assert sim.state.revoke("paloalto", "token") == 1
    refused = _paloalto_bulk_update(sim, paloalto, [{"imei": imei_of(1)}])
    assert (refused.status_code, refused.json()["code"]) == (401, 401)
    assert _paloalto_bulk_update(sim, _paloalto_token(sim), [{"imei": imei_of(1)}]).status_code == 200

    revoked = requests.post(
        f"{sim.url}/_sim/revoke", params={"vendor": "huawei", "what": "token"}, timeout=TIMEOUT
    )
    assert revoked.json() == {"vendor": "huawei", "what": "token", "revoked": 1}
    refused = _huawei_get(sim, huawei, ROMA_ID_BASE + 1)
    assert (refused.status_code, refused.json()["error_code"]) == (401, "APIGW.0301")

    sim.state.revoke("verizon", "token")
    refused = _verizon_list(sim, verizon)
    assert (refused.status_code, refused.json()["fault"]["code"]) == (401, "900901")


@pytest.mark.slow
def test_revoked_sessions_get_session_token_expired(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=50, verizon_page_size=5)
    first, second = _verizon_login(sim), _verizon_login(sim)
    assert _verizon_list(sim, first).status_code == 200
    revoked = requests.post(
        f"{sim.url}/_sim/revoke", params={"vendor": "verizon", "what": "session"}, timeout=TIMEOUT
    )
    assert revoked.json()["revoked"] == 2
    for headers in (first, second):
        refused = _verizon_list(sim, headers)
        assert refused.status_code == 400
        assert refused.json()["errorCode"] == "FOTA.REQUEST_FAILED.SessionToken.Expired"
    # Access tokens are untouched: a new session works at once.
    assert _verizon_list(sim, _verizon_login(sim)).status_code == 200


@pytest.mark.slow
def test_revoking_what_a_vendor_does_not_have_is_refused(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=10)
    for vendor, what in (("cisco", "token"), ("huawei", "session"), ("nokia", "token"), ("verizon", "key")):
        with pytest.raises(ValueError, match="cannot revoke"):
            sim.state.revoke(vendor, what)
        answer = requests.post(
            f"{sim.url}/_sim/revoke", params={"vendor": vendor, "what": what}, timeout=TIMEOUT
        )
        assert answer.status_code == 400


# --- the request log ----------------------------------------------------------------------------


@pytest.mark.slow
def test_request_log_records_who_sent_what(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=50, verizon_page_size=5)
    online = [i for i in range(20) if sim.state.fleet.device(i)["online_status"] == ONLINE][:2]
    assert len(online) == 2
    assert _cisco_edit(sim, 1, "a").status_code == 200
    assert _cisco_edit(sim, 1, "b").status_code == 200
    assert _cisco_get(sim, 2).status_code == 200
    token = _huawei_token(sim)
    assert _huawei_force_offline(sim, token, [ROMA_ID_BASE + i for i in online]).status_code == 200
    verizon = _verizon_login(sim)
    assert _verizon_list(sim, verizon, [imei_of(3), imei_of(4)]).status_code == 200
    assert _verizon_sync(sim, verizon, [imei_of(3)]).status_code == 200
    paloalto = _paloalto_token(sim)
    bulk = [{"imei": imei_of(5), "apn": "x"}, {"iccid": iccid_of(6)}]
    assert _paloalto_bulk_update(sim, paloalto, bulk).status_code == 200
    requests.get(f"{sim.url}/_sim/state", timeout=TIMEOUT)  # not an API request: not logged

    log = sim.state.requests
    assert sim.state.requests_seen == len(log) == 11
    assert [(r["vendor"], r["method"], r["devices"], r["write"]) for r in log] == [
        ("cisco", "PUT", [iccid_of(1)], True),
        ("cisco", "PUT", [iccid_of(1)], True),
        ("cisco", "GET", [iccid_of(2)], False),
        ("huawei", "POST", [], False),  # the IAM token
        ("huawei", "POST", [str(ROMA_ID_BASE + i) for i in online], True),
        ("verizon", "POST", [], False),  # OAuth token
        ("verizon", "POST", [], False),  # M2M session
        ("verizon", "POST", [imei_of(3), imei_of(4)], False),  # a listing of a subset
        ("verizon", "PUT", [imei_of(3)], True),
        ("paloalto", "POST", [], False),  # SCM token
        ("paloalto", "PUT", [imei_of(5)], True),
    ]
    assert all(r["status"] in (200, 201) and r["fault"] is None and r["applied"] for r in log)
    assert log[-1]["path"] == "/paloalto/iot/pub/v1/device/bulkUpdate"
    assert log[-1]["query"] == "updateSource=cellular"
    assert [r["time"] for r in log] == sorted(r["time"] for r in log)
    assert all(r["time"] <= sim.state.now() for r in log)
    assert all(r["client"].startswith("127.0.0.1:") for r in log)
    assert all(sim.state.fleet.device(i)["online_status"] == OFFLINE for i in online)  # force-offline ran

    writes = sim.state.per_device_writes()
    assert writes == {
        iccid_of(1): 2,
        str(ROMA_ID_BASE + online[0]): 1,
        str(ROMA_ID_BASE + online[1]): 1,
        imei_of(3): 1,
        imei_of(5): 1,
    }
    assert sim.state.per_device_writes("cisco") == {iccid_of(1): 2}

    over_http = requests.get(
        f"{sim.url}/_sim/requests", params={"vendor": "cisco", "limit": 2}, timeout=TIMEOUT
    ).json()
    assert over_http["total"] == 11
    assert [(r["method"], r["devices"], r["status"]) for r in over_http["requests"]] == [
        ("PUT", [iccid_of(1)], 200),
        ("GET", [iccid_of(2)], 200),
    ]
    assert datetime.fromisoformat(over_http["requests"][0]["time"]) == log[1]["time"]
    assert len(requests.get(f"{sim.url}/_sim/requests", timeout=TIMEOUT).json()["requests"]) == 11
    device_writes = requests.get(
        f"{sim.url}/_sim/device-writes", params={"vendor": "verizon"}, timeout=TIMEOUT
    ).json()
    assert device_writes == {"writes": {imei_of(3): 1}}
    for bad in ({"vendor": "nokia"}, {"limit": "-1"}, {"limit": "many"}):
        assert requests.get(f"{sim.url}/_sim/requests", params=bad, timeout=TIMEOUT).status_code == 400


@pytest.mark.slow
def test_per_device_writes_tell_sent_from_applied(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=50)
    creds = sim.config.credentials
    url = f"{sim.url}/cisco/rws/api/v1/devices"
    wrong_key = requests.put(
        f"{url}/{iccid_of(7)}",
        json={"accountCustom1": "x"},
        auth=(creds.cisco_username, "wrong"),
        timeout=TIMEOUT,
    )
    assert wrong_key.status_code == 401
    assert _cisco_edit(sim, 7, "x").status_code == 200
    invalid = requests.put(
        f"{url}/{iccid_of(8)}",
        json={"status": "SUSPENDED"},
        auth=(creds.cisco_username, creds.cisco_api_key),
        timeout=TIMEOUT,
    )
    assert invalid.status_code == 400
    assert sim.state.per_device_writes() == {iccid_of(7): 2, iccid_of(8): 1}
    assert sim.state.per_device_writes(applied_only=True) == {iccid_of(7): 1}
    applied = requests.get(
        f"{sim.url}/_sim/device-writes", params={"applied_only": "true"}, timeout=TIMEOUT
    ).json()
    assert applied == {"writes": {iccid_of(7): 1}}
    assert [(r["status"], r["fault"], r["applied"]) for r in sim.state.requests] == [
        (401, None, False),
        (200, None, True),
        (400, None, False),
    ]


@pytest.mark.slow
def test_request_log_is_bounded(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=50, request_log_size=3)
    for index in range(5):
        assert _cisco_edit(sim, index, "v").status_code == 200
    assert sim.state.requests_seen == 5
    assert [r["devices"] for r in sim.state.requests] == [[iccid_of(i)] for i in (2, 3, 4)]
    # The per-device counts are not trimmed with the log.
    assert sim.state.per_device_writes() == {iccid_of(i): 1 for i in range(5)}


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_flags_for_the_new_knobs() -> None:
    _, config = parse_args(
        [
            "--fault-applied-then-dropped",
            "0.1",
            "--fault-applied-then-delayed",
            "0.1",
            "--fault-gzip-garbage",
            "0.05",
            "--fault-html-error-page",
            "0.05",
            "--fault-huge-body",
            "0.01",
            "--fault-deeply-nested",
            "0.02",
            "--slow-answer-seconds",
            "45",
            "--huge-body-bytes",
            "1048576",
            "--retry-after-style",
            "http-date",
            "--retry-after-seconds",
            "120",
        ]
    )
    assert config.faults == Faults(
        applied_then_dropped=0.1,
        applied_then_delayed=0.1,
        gzip_garbage=0.05,
        html_error_page=0.05,
        huge_body=0.01,
        deeply_nested=0.02,
    )
    assert (config.slow_answer_seconds, config.huge_body_bytes) == (45.0, 1048576)
    assert (config.retry_after_style, config.retry_after_seconds) == ("http-date", 120.0)
    _, defaults = parse_args([])
    assert defaults == SimulatorConfig()


@pytest.mark.parametrize(
    "argv",
    [
        ["--fault-huge-body", "0.6", "--fault-applied-then-dropped", "0.6"],
        ["--fault-gzip-garbage", "2"],
        ["--slow-answer-seconds", "-1"],
        ["--slow-answer-seconds", "soon"],
        ["--huge-body-bytes", "1"],
        ["--retry-after-style", "minutes"],
        ["--retry-after-seconds", "-3"],
    ],
)
def test_cli_refuses_bad_new_knobs_with_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage:")
    assert "Traceback" not in error


@pytest.mark.slow
def test_faults_injected_for_a_while_on_one_vendors_writes(start_simulator: SimulatorFactory) -> None:
    sim = start_simulator(devices=50)
    online = [i for i in range(20) if sim.state.fleet.device(i)["online_status"] == ONLINE][:2]
    token = _huawei_token(sim)
    sim.state.inject_faults(Faults(server_error=1.0), ["cisco"], writes_only=True)

    refused = _cisco_edit(sim, 1, "during")
    assert refused.status_code == 500
    assert refused.json() == {"errorCode": "30000001", "errorMessage": "Unknown server error."}
    assert _last(sim, "cisco")["fault"] == "server_error"
    assert _custom(sim, 1) == {}  # not applied
    assert _cisco_get(sim, 1).status_code == 200  # reads are served
    assert _huawei_force_offline(sim, token, [ROMA_ID_BASE + online[0]]).status_code == 200  # other vendors

    sim.state.inject_faults(Faults(server_error=1.0), ["cisco"])  # reads too, now
    assert _cisco_get(sim, 1).status_code == 500
    sim.state.clear_faults(["cisco"])
    assert _cisco_edit(sim, 1, "after").status_code == 200
    assert _custom(sim, 1) == {"accountCustom1": "after"}
    assert sim.state.per_device_writes("cisco") == {iccid_of(1): 2}
    assert sim.state.per_device_writes("cisco", applied_only=True) == {iccid_of(1): 1}

    # Every vendor by default; the configured faults (none here) again once cleared.
    sim.state.inject_faults(Faults(server_error=1.0))
    assert _huawei_force_offline(sim, token, [ROMA_ID_BASE + online[1]]).status_code == 500
    sim.state.clear_faults()
    assert _huawei_force_offline(sim, token, [ROMA_ID_BASE + online[1]]).status_code == 200
    assert sim.state.fleet.device(online[1])["online_status"] == OFFLINE
    with pytest.raises(ValueError, match="unknown vendors nokia"):
        sim.state.inject_faults(Faults(server_error=1.0), ["nokia"])
