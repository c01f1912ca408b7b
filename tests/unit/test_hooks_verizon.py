from __future__ import annotations

import base64
import json
import random
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests_mock as rm

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook, normalise_timestamp
from airflow_provider_iotfleet.hooks.verizon.paging import UNKNOWN, scan_cursor
from tests.connections import THINGSPACE_ACCOUNT as ACCOUNT
from tests.connections import THINGSPACE_KEY as KEY
from tests.connections import THINGSPACE_LOGIN_URL as LOGIN_URL
from tests.connections import THINGSPACE_M2M_PASSWORD as M2M_PASSWORD
from tests.connections import THINGSPACE_M2M_USER as M2M_USER
from tests.connections import THINGSPACE_ROOT as ROOT
from tests.connections import THINGSPACE_SECRET as SECRET
from tests.connections import THINGSPACE_TOKEN_URL as TOKEN_URL
from tests.fakes import IMEI, IMEI_2, FakeClock, luhn_complete

FOTA = f"{ROOT}/api/fota/v3"
EXPIRED = {"errorCode": "FOTA.REQUEST_FAILED.SessionToken.Expired", "errorMessage": "Session token expired"}


def _device(imei: str, **extra: Any) -> dict[str, Any]:
    return {
        "deviceId": imei,
        "mdn": "5551234567",
        "model": "GM01Q",
        "make": "SEQUANS COMMUNICATIONS",
        "firmware": "SR1.2.0.0-10657",
        "fotaEligible": True,
        "licenseAssigned": True,
        "status": "Active",
        "protocol": "LWM2M",
        "createTime": "2020-11-10 15:35:00.122 +0000 UTC",
        "upgradeTime": "2022-02-04 06:10:01.441 +0000 UTC",
        "statusTime": "2022-02-04 04:03:04.048 +0000 UTC",
        "refreshTime": "2022-02-20 07:39:31.584 +0000 UTC",
        "lastConnectionTime": "N/A",
        **extra,
    }


@pytest.fixture
def hook(thingspace_connection: None, clock: FakeClock) -> VerizonThingSpaceHook:
    return VerizonThingSpaceHook(clock=clock)


def test_both_tokens_are_obtained_once_and_sent_on_every_call(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    token, login = thingspace_logins
    sync = requests_mock.put(
        f"{FOTA}/firmware/{ACCOUNT}/devices",
        json={
            "accountName": ACCOUNT,
            "deviceFirmwarVersionList": [
                {
                    "deviceId": IMEI,
                    "status": "FirmwareVersionUpdateSuccess",
                    "Reason": "",
                    "firmwareVersion": "SR1.2",
                    "VersionUpdateTime": "2022-02-04 06:10:01.441 +0000 UTC",
                }
            ],
        },
    )
    hook.sync_firmware([IMEI], account_name=ACCOUNT)
    hook.sync_firmware([IMEI])  # the connection's default account
    assert (token.call_count, login.call_count, sync.call_count) == (1, 1, 2)
    basic = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert token.last_request.headers["Authorization"] == f"Basic {basic}"
    assert parse_qs(token.last_request.text) == {"grant_type": ["client_credentials"]}
    assert login.last_request.json() == {"username": M2M_USER, "password": M2M_PASSWORD}
    assert login.last_request.headers["Authorization"] == "Bearer access-token-1"
    assert sync.last_request.headers["Authorization"] == "Bearer access-token-1"
    assert sync.last_request.headers["VZ-M2M-Token"] == "session-token-1"


def test_access_token_is_renewed_ahead_of_expiry(
    hook: VerizonThingSpaceHook,
    requests_mock: rm.Mocker,
    thingspace_logins: tuple[Any, Any],
    clock: FakeClock,
) -> None:
    token, login = thingspace_logins
    requests_mock.get(f"{FOTA}/devices/{ACCOUNT}", json={"deviceList": [], "hasMoreData": False})
    list(hook.iter_fota_devices(account_name=ACCOUNT))
    clock.advance(3600 - 100)
    list(hook.iter_fota_devices(account_name=ACCOUNT))
    assert (token.call_count, login.call_count) == (2, 1)
    assert requests_mock.last_request.headers["Authorization"] == "Bearer access-token-2"


def test_401_renews_the_access_token_once(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    token, login = thingspace_logins
    fault = {"fault": {"code": "900901", "message": "Invalid Credentials"}}
    route = requests_mock.get(
        f"{FOTA}/devices/{ACCOUNT}",
        [{"status_code": 401, "json": fault}, {"json": {"deviceList": [], "hasMoreData": False}}],
    )
    list(hook.iter_fota_devices(account_name=ACCOUNT))
    assert (token.call_count, login.call_count, route.call_count) == (2, 1, 2)
    requests_mock.get(f"{FOTA}/devices/{ACCOUNT}", status_code=401, json=fault)
    with pytest.raises(IoTFleetAuthError, match="Invalid Credentials") as caught:
        list(hook.iter_fota_devices(account_name=ACCOUNT))
    assert caught.value.error_code == "900901"


def test_expired_session_logs_in_again_exactly_once(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    token, login = thingspace_logins
    route = requests_mock.get(
        f"{FOTA}/devices/{ACCOUNT}",
        [
            {"status_code": 400, "json": EXPIRED},
            {"json": {"deviceList": [_device(IMEI)], "hasMoreData": False}},
        ],
    )
    assert [d["device_id"] for d in hook.iter_fota_devices(account_name=ACCOUNT)] == [IMEI]
    assert (token.call_count, login.call_count, route.call_count) == (1, 2, 2)
    assert route.last_request.headers["VZ-M2M-Token"] == "session-token-2"


def test_session_still_expired_after_relogin_is_raised(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    _, login = thingspace_logins
    requests_mock.get(f"{FOTA}/devices/{ACCOUNT}", status_code=400, json=EXPIRED)
    with pytest.raises(IoTFleetVendorResponseError, match="Session token expired"):
        list(hook.iter_fota_devices(account_name=ACCOUNT))
    assert login.call_count == 2


def test_login_refused_by_the_gateway_is_not_remembered(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker
) -> None:
    token = requests_mock.post(
        TOKEN_URL, [{"json": {"access_token": f"access-token-{n}", "expires_in": 3600}} for n in (1, 2)]
    )
    login = requests_mock.post(
        LOGIN_URL,
        [
            {"status_code": 401, "json": {"fault": {"code": "900901", "message": "Invalid Credentials"}}},
            {"json": {"sessionToken": "s-1"}},
        ],
    )
    requests_mock.get(f"{FOTA}/devices/{ACCOUNT}", json={"deviceList": []})
    with pytest.raises(IoTFleetAuthError, match="Invalid Credentials"):
        list(hook.iter_fota_devices(account_name=ACCOUNT))
    assert (
        list(hook.iter_fota_devices(account_name=ACCOUNT)) == []
    )  # a fresh bearer token, and the login goes through
    assert (token.call_count, login.call_count) == (2, 2)
    assert login.last_request.headers["Authorization"] == "Bearer access-token-2"


@pytest.mark.parametrize("status", [400, 403, 500])
def test_refused_login_is_never_repeated(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, status: int
) -> None:
    requests_mock.post(TOKEN_URL, json={"access_token": "access-token-1", "expires_in": 3600})
    login = requests_mock.post(
        LOGIN_URL,
        status_code=status,
        json={"errorCode": "REQUEST_FAILED.UnexpectedError", "errorMessage": "Invalid username or password"},
    )
    api = requests_mock.get(f"{FOTA}/devices/{ACCOUNT}", json={"deviceList": []})
    with pytest.raises(IoTFleetVendorResponseError, match="Invalid username or password") as caught:
        list(hook.iter_fota_devices(account_name=ACCOUNT))
    assert login.call_count == 1  # not retried, whatever the status
    if status < 500:
        # The vendor's code is a generic REQUEST_FAILED.UnexpectedError: the message says what to check.
        assert caught.value.message.endswith(
            "Check the m2m_username and m2m_password extras of connection 'verizon_thingspace_default'"
        )
        with pytest.raises(IoTFleetAuthError, match="not logging in again"):
            list(hook.iter_fota_devices(account_name=ACCOUNT))
        assert login.call_count == 1
    assert api.call_count == 0


def _five_devices_in_three_pages(**last_device: Any) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Five IMEIs, and the account listing's pages by the ``lastSeenDeviceId`` each is asked with:
    two devices, two, then the last one (with ``last_device``'s fields) and no more data."""
    imeis = [luhn_complete(f"3500000000000{n}") for n in range(5)]
    pages = {
        "0": {
            "deviceList": [_device(imeis[0]), _device(imeis[1])],
            "hasMoreData": True,
            "lastSeenDeviceId": imeis[1],
        },
        imeis[1]: {
            "deviceList": [_device(imeis[2]), _device(imeis[3])],
            "hasMoreData": True,
            "lastSeenDeviceId": imeis[3],
        },
        imeis[3]: {"deviceList": [_device(imeis[4], **last_device)], "hasMoreData": False},
    }
    return imeis, pages


def test_pages_follow_last_seen_device_id_without_accumulating(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    imeis, pages = _five_devices_in_three_pages(fileList=[{"name": "fw.bin"}])
    route = requests_mock.get(
        f"{FOTA}/devices/{ACCOUNT}", json=lambda request, context: pages[request.qs["lastseendeviceid"][0]]
    )
    page_iter = hook.iter_fota_device_pages(account_name=ACCOUNT, protocol="lwm2m")
    first = next(page_iter)
    assert route.call_count == 1  # the next page is not fetched before it is wanted
    assert [d["device_id"] for d in first] == imeis[:2]
    rest = list(page_iter)
    assert route.call_count == 3
    assert [len(page) for page in rest] == [2, 1]
    assert [r.qs["lastseendeviceid"][0] for r in route.request_history] == ["0", imeis[1], imeis[3]]
    assert all(r.qs["protocol"] == ["lwm2m"] for r in route.request_history)  # requests-mock lower-cases
    device = first[0]
    assert device["create_time"] == "2020-11-10T15:35:00.122Z"
    assert device["last_connection_time"] is None
    assert device["fota_eligible"] is True
    assert rest[-1][0]["files"] == ["fw.bin"]


def test_prefetched_pages_are_the_same_pages_and_stop_at_the_last(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    imeis, pages = _five_devices_in_three_pages()
    route = requests_mock.get(
        f"{FOTA}/devices/{ACCOUNT}", json=lambda request, context: pages[request.qs["lastseendeviceid"][0]]
    )
    lazy = list(hook.iter_fota_device_pages(account_name=ACCOUNT))
    assert route.call_count == 3
    # read to its end, the look-ahead closes itself
    assert list(hook.iter_fota_device_pages(account_name=ACCOUNT, prefetch=True)) == lazy
    assert not [t for t in threading.enumerate() if t.name.startswith("thingspace-fota-pages")]
    assert route.call_count == 6  # the same three requests: none past the last page
    assert [r.qs["lastseendeviceid"][0] for r in route.request_history[3:]] == ["0", imeis[1], imeis[3]]


def test_subset_is_listed_with_post(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    route = requests_mock.post(
        f"{FOTA}/devices/{ACCOUNT}",
        json={"accountName": ACCOUNT, "deviceCount": 1, "deviceList": [_device(IMEI, filesList=["a.bin"])]},
    )
    devices = list(hook.iter_fota_devices([IMEI], account_name=ACCOUNT))
    assert route.last_request.json() == {"deviceList": [IMEI]}
    assert route.last_request.qs == {"lastseendeviceid": ["0"]}
    assert devices[0]["files"] == ["a.bin"]


def test_has_more_data_without_progress_is_an_error(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    requests_mock.get(
        f"{FOTA}/devices/{ACCOUNT}", json={"deviceList": [], "hasMoreData": True, "lastSeenDeviceId": "0"}
    )
    with pytest.raises(IoTFleetVendorResponseError, match="it had already sent: it would page forever"):
        list(hook.iter_fota_devices(account_name=ACCOUNT))


def test_sync_firmware_batches_by_100_and_reports_each_device(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    imeis = [luhn_complete(f"{35_000_000_000_000 + n:014d}") for n in range(250)]
    failing = {imeis[7]: "Reason", imeis[120]: "reason"}

    def answer(request: Any, context: Any) -> dict[str, Any]:
        batch = request.json()["deviceList"]
        items = []
        for imei in batch:
            if imei == imeis[249]:
                continue  # ThingSpace leaves one out
            if imei in failing:
                items.append(
                    {
                        "deviceId": imei,
                        "status": "FirmwareVersionUpdateFailed",
                        failing[imei]: "Device unreachable",
                    }
                )
            else:
                items.append(
                    {
                        "deviceId": imei,
                        "status": "FirmwareVersionUpdateSuccess",
                        "firmwareVersion": "SR1.2",
                        "firmwareVersionUpdateTime": "2022-02-04 06:10:01.441 +0000 UTC",
                    }
                )
        return {"accountName": ACCOUNT, "deviceFirmwarVersionList": items}

    route = requests_mock.put(f"{FOTA}/firmware/{ACCOUNT}/devices", json=answer)
    result = hook.sync_firmware(imeis, account_name=ACCOUNT)
    assert [len(r.json()["deviceList"]) for r in route.request_history] == [100, 100, 50]
    assert len(result.synced) == 247
    assert result.synced[0] == {
        "device_id": imeis[0],
        "firmware_version": "SR1.2",
        "version_update_time": "2022-02-04T06:10:01.441Z",
        "status": "FirmwareVersionUpdateSuccess",
    }
    unreachable = {
        "status": "FirmwareVersionUpdateFailed",
        "reason": "Device unreachable",
        "error_code": None,
    }
    assert result.failed == [
        {"device_id": imeis[7], **unreachable},
        {"device_id": imeis[120], **unreachable},
        {
            "device_id": imeis[249],
            "status": None,
            "reason": "missing from ThingSpace's answer",
            "error_code": None,
        },
    ]


def test_sync_keeps_earlier_batches_when_a_later_one_fails_and_ignores_unrequested_answers(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    imeis = [luhn_complete(f"{35_000_000_000_000 + n:014d}") for n in range(150)]
    ok = [
        {"deviceId": imei, "status": "FirmwareVersionUpdateSuccess", "firmwareVersion": "SR1.2"}
        for imei in imeis[:100]
    ]
    requests_mock.put(
        f"{FOTA}/firmware/{ACCOUNT}/devices",
        [
            {
                "json": {
                    "deviceFirmwarVersionList": [
                        *ok,
                        {"deviceId": IMEI, "status": "FirmwareVersionUpdateSuccess"},
                    ]
                }
            },
            {
                "status_code": 400,
                "json": {"errorCode": "FOTA.REQUEST_FAILED.InvalidBody", "errorMessage": "Bad."},
            },
        ],
    )
    result = hook.sync_firmware(imeis, account_name=ACCOUNT)
    assert [d["device_id"] for d in result.synced] == imeis[:100]  # IMEI was not asked for
    assert [d["device_id"] for d in result.failed] == imeis[100:]
    assert {(d["error_code"], d["status"]) for d in result.failed} == {
        ("FOTA.REQUEST_FAILED.InvalidBody", None)
    }


def test_bad_inputs_send_nothing(hook: VerizonThingSpaceHook, requests_mock: rm.Mocker) -> None:
    with pytest.raises(IoTFleetValidationError, match="1 of 2 IMEIs is invalid"):
        hook.sync_firmware([IMEI, "123"], account_name=ACCOUNT)
    with pytest.raises(IoTFleetValidationError, match="'SNMP' is not one of LWM2M, OMADM, HTTP"):
        hook.iter_fota_devices(
            account_name=ACCOUNT, protocol="SNMP"
        )  # refused when called, not when iterated
    assert requests_mock.call_count == 0


def test_sync_answer_without_the_list_is_a_clear_error(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    requests_mock.put(f"{FOTA}/firmware/{ACCOUNT}/devices", json={"accountName": ACCOUNT})
    (failure,) = hook.sync_firmware([IMEI_2], account_name=ACCOUNT).failed
    assert failure["device_id"] == IMEI_2
    assert "no 'deviceFirmwarVersionList' field" in failure["reason"]


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("2021-12-20 15:21:25.724 +0000 UTC", "2021-12-20T15:21:25.724Z"),
        ("2021-12-20 17:21:25 +0200", "2021-12-20T15:21:25.000Z"),
        ("2021-12-20T15:21:25Z", "2021-12-20T15:21:25.000Z"),
        ("N/A", None),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_timestamps_normalise_to_iso_utc(raw: str | None, iso: str | None) -> None:
    assert normalise_timestamp(raw) == iso


def test_test_connection(hook: VerizonThingSpaceHook, thingspace_logins: tuple[Any, Any]) -> None:
    assert hook.test_connection() == (
        True,
        f"Obtained a ThingSpace access token and M2M session for {M2M_USER}",
    )


def test_simulator_style_host_derives_every_endpoint(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "vz_local",
        "verizon_thingspace",
        host="http://127.0.0.1:8765/verizon",
        login=KEY,
        password=SECRET,
        extra={"m2m_username": M2M_USER, "m2m_password": M2M_PASSWORD},
    )
    requests_mock.post(
        "http://127.0.0.1:8765/verizon/api/ts/v1/oauth2/token",
        json={"access_token": "a-token-1", "expires_in": 3600},
    )
    requests_mock.post(
        "http://127.0.0.1:8765/verizon/api/m2m/v1/session/login", json={"sessionToken": "s-token-1"}
    )
    route = requests_mock.get(
        f"http://127.0.0.1:8765/verizon/api/fota/v3/devices/{ACCOUNT}", json={"deviceList": []}
    )
    assert list(VerizonThingSpaceHook("vz_local").iter_fota_devices(account_name=ACCOUNT)) == []
    assert route.call_count == 1


def _reference_normalise_timestamp(value: Any) -> str | None:
    """The strptime-only implementation the fast path replaced: results must not differ from it."""
    if not isinstance(value, str):
        return None
    text = value.strip().removesuffix(" UTC")
    if not text or text.upper() == "N/A":
        return None
    parsed = None
    for pattern in ("%Y-%m-%d %H:%M:%S.%f %z", "%Y-%m-%d %H:%M:%S %z"):
        try:
            parsed = datetime.strptime(text, pattern)
            break
        except ValueError:
            continue
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_fast_timestamp_parse_agrees_with_strptime_everywhere() -> None:
    rng = random.Random(20261129)
    pieces = {
        "date": [
            "2020-11-10",
            "2021-02-29",
            "2024-02-29",
            "2020-13-01",
            "2020-1-05",
            "0001-01-01",
            "9999-12-31",
        ],
        "time": ["15:35:00", "00:00:00", "23:59:59", "24:00:00", "7:05:09", "12:60:00"],
        "fraction": ["", ".1", ".12", ".122", ".999999", ".1234567", "."],
        "offset": [" +0000", " -0530", " +1400", " +2359", " +0060", " +00:00", " Z", "+0000", "", " +000"],
        "suffix": ["", " UTC", "  UTC", " utc"],
    }
    samples = {"".join(rng.choice(options) for options in pieces.values()) for _ in range(5000)} | {
        "2020-11-10 15:35:00.122 +0000 UTC",
        " 2020-11-10 15:35:00 +0000 ",
        "2020-11-10T15:35:00+00:00",
    }
    for sample in sorted(samples):
        assert normalise_timestamp(sample) == _reference_normalise_timestamp(sample), sample


def test_account_defaults_to_the_connection_and_a_blank_one_is_refused(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker
) -> None:
    assert hook.resolve_account() == ACCOUNT
    assert hook.resolve_account(" 0000999999-00001 ") == "0000999999-00001"
    with pytest.raises(IoTFleetValidationError, match="account_name is missing"):
        hook.iter_fota_devices(account_name="  ")  # would have listed GET .../devices/
    assert requests_mock.call_count == 0


def test_subset_listing_sends_at_most_1000_imeis_per_body(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    imeis = [luhn_complete(f"{35_000_000_000_000 + n:014d}") for n in range(2500)]
    route = requests_mock.post(
        f"{FOTA}/devices/{ACCOUNT}",
        json=lambda request, context: {
            "deviceList": [_device(imei) for imei in request.json()["deviceList"]],
            "hasMoreData": False,
        },
    )
    assert [d["device_id"] for d in hook.iter_fota_devices(imeis)] == imeis
    assert [len(r.json()["deviceList"]) for r in route.request_history] == [1000, 1000, 500]


def test_a_cursor_that_comes_back_is_an_error_not_an_endless_listing(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    a, b = sorted([IMEI, IMEI_2])
    pages = {
        "0": {"deviceList": [_device(a)], "hasMoreData": True, "lastSeenDeviceId": a},
        a: {"deviceList": [_device(b)], "hasMoreData": True, "lastSeenDeviceId": b},
        b: {"deviceList": [_device(a)], "hasMoreData": True, "lastSeenDeviceId": a},  # a cycle
    }
    route = requests_mock.get(
        f"{FOTA}/devices/{ACCOUNT}", json=lambda request, context: pages[request.qs["lastseendeviceid"][0]]
    )
    with pytest.raises(
        IoTFleetVendorResponseError,
        match=f"lastSeenDeviceId \\({a}\\) not past the lastSeenDeviceId \\({b}\\)",
    ):
        list(hook.iter_fota_devices(account_name=ACCOUNT))
    assert route.call_count == 3


def test_an_answer_without_the_device_list_is_not_an_empty_fleet(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    requests_mock.get(f"{FOTA}/devices/{ACCOUNT}", json={})
    with pytest.raises(IoTFleetVendorResponseError, match="no 'deviceList' field"):
        list(hook.iter_fota_devices(account_name=ACCOUNT))


def test_a_single_file_name_is_one_file() -> None:
    from airflow_provider_iotfleet.hooks.verizon import normalise_device

    assert normalise_device({"deviceId": IMEI, "filesList": "fw.bin"})["files"] == ["fw.bin"]
    assert normalise_device({"deviceId": IMEI, "fileList": [{"name": "a.bin"}, "b.bin"]})["files"] == [
        "a.bin",
        "b.bin",
    ]


@pytest.mark.parametrize(
    "value",
    [
        "2024-02-29 23:59:59.999 +0000 UTC",  # leap day
        "2023-02-29 10:00:00.000 +0000 UTC",  # no such day
        "2023-04-31 10:00:00.000 +0000 UTC",
        "0000-01-01 00:00:00.000 +0000 UTC",  # no year 0
        "2023-01-01 24:00:00.000 +0000 UTC",
        "2023-01-01 10:60:00.000 +0000 UTC",
        "2023-01-01 10:00:00.5 +0000 UTC",  # one digit of fraction
        "2023-01-01 10:00:00.123456 +0000 UTC",  # six
        "2023-01-01 10:00:00.123 +0200 UTC",  # not UTC after all
        "2023-01-0\u0663 10:00:00.123 +0000 UTC",  # a non-ASCII digit
        " 2023-01-01 10:00:00.123 +0000 UTC",
        "2023-01-01 10:00:00.123 +0000 UTC ",
    ],
)
def test_the_usual_timestamp_shortcut_answers_as_the_general_parse_does(value: str) -> None:
    from airflow_provider_iotfleet.hooks.verizon import answers

    assert normalise_timestamp(value) == answers._normalise_timestamp(value)


def _plain_normalise_device(item: dict[str, Any]) -> dict[str, Any]:
    """normalise_device as the contract reads, every timestamp through the general parse: what the
    fast one must answer for every input."""
    from airflow_provider_iotfleet.hooks.verizon.answers import _normalise_timestamp as stamp

    files = item.get("filesList", item.get("fileList")) or []
    if not isinstance(files, list):
        files = [files]
    software = item.get("softwareList") or []
    if not isinstance(software, list):
        software = [software]
    return {
        "device_id": item.get("deviceId"),
        "mdn": item.get("mdn"),
        "make": item.get("make"),
        "model": item.get("model"),
        "firmware": item.get("firmware"),
        "fota_eligible": item.get("fotaEligible"),
        "license_assigned": item.get("licenseAssigned"),
        "status": item.get("status"),
        "protocol": item.get("protocol"),
        "software": [
            {"name": s.get("name"), "version": s.get("version"), "upgrade_time": stamp(s.get("upgradeTime"))}
            for s in software
            if isinstance(s, dict)
        ],
        "files": [f.get("name") if isinstance(f, dict) else f for f in files],
        "create_time": stamp(item.get("createTime")),
        "upgrade_time": stamp(item.get("upgradeTime")),
        "status_time": stamp(item.get("statusTime")),
        "refresh_time": stamp(item.get("refreshTime")),
        "last_connection_time": stamp(item.get("lastConnectionTime")),
    }


def _fuzzed_timestamp(rng: random.Random) -> Any:
    if rng.random() < 0.1:
        return rng.choice([None, "", "N/A", "n/a", 5, 1.5, True, "2023-01-01T10:00:00Z", "  N/A  "])
    if rng.random() < 0.4:
        text = (
            f"{rng.randint(0, 9999):04d}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d} "
            f"{rng.randint(0, 25):02d}:{rng.randint(0, 61):02d}:{rng.randint(0, 61):02d}."
            f"{rng.randint(0, 999):03d} +0000 UTC"
        )
    else:
        text = "2020-11-10 15:35:00.122 +0000 UTC"
    chars = list(text)
    for _ in range(rng.randint(0, 3)):
        at = rng.randrange(len(chars))
        roll = rng.random()
        if roll < 0.6:
            chars[at] = rng.choice("0123456789 -:.+TZU C\u0663x")
        elif roll < 0.8:
            del chars[at]
        else:
            chars.insert(at, rng.choice("0123456789 -:.+Z\u0663"))
    return "".join(chars)


def test_normalise_device_answers_as_the_plain_reading_for_any_item() -> None:
    from airflow_provider_iotfleet.hooks.verizon import normalise_device

    rng = random.Random(17)
    lists: list[Any] = [None, [], "fw.bin", {"name": "a.bin"}, [{"name": "a"}, "b", 3, {}], 0, ""]
    for _ in range(20_000):
        shared = _fuzzed_timestamp(rng)
        item: dict[str, Any] = {"deviceId": rng.choice([IMEI, None, 5, ""]), "mdn": "5550000000"}
        for key in ("createTime", "upgradeTime", "statusTime", "refreshTime", "lastConnectionTime"):
            if rng.random() < 0.9:  # often the same text as another field, as ThingSpace sends
                item[key] = shared if rng.random() < 0.4 else _fuzzed_timestamp(rng)
        for key in ("filesList", "fileList"):
            if rng.random() < 0.5:
                item[key] = rng.choice(lists)
        if rng.random() < 0.5:
            item["softwareList"] = rng.choice(
                [
                    None,
                    [],
                    {"name": "x", "upgradeTime": _fuzzed_timestamp(rng)},
                    "x",
                    [1, {"version": "2"}],
                    [{"name": "y", "upgradeTime": _fuzzed_timestamp(rng)}],
                ]
            )
        assert normalise_device(item) == _plain_normalise_device(item), item


def _fuzzed_value(rng: random.Random) -> Any:
    """A field's value as an answer might hold it: mostly text, sometimes anything JSON decodes to."""
    return rng.choice(
        [
            "GM01Q",
            "SEQUANS COMMUNICATIONS",
            "",
            "a\nb",  # a line break, which the page's one encode must not take for a separator
            'quote " and \\ backslash',
            "caf\u00e9 \u2603",
            "\x00\x1f",
            None,
            True,
            False,
            0,
            -7,
            1.5,
            float("inf"),
            float("nan"),
            [],
            {},
            ["one"],  # a container of one item is written as it is, separator or not
            {"k": "v"},
            ["two", "items"],  # of more: the page is written device by device
            {"k": 1, "l": [2, 3]},
            [[{"device_id": "x"}]],
        ]
    )


def _fuzzed_device(rng: random.Random) -> dict[str, Any]:
    shared = _fuzzed_timestamp(rng)
    item: dict[str, Any] = {"deviceId": rng.choice([IMEI, IMEI_2, 5, ""])}
    for key in ("mdn", "make", "model", "firmware", "fotaEligible", "licenseAssigned", "status", "protocol"):
        if rng.random() < 0.9:
            item[key] = _fuzzed_value(rng) if rng.random() < 0.3 else "plain"
    for key in ("createTime", "upgradeTime", "statusTime", "refreshTime", "lastConnectionTime"):
        if rng.random() < 0.9:
            item[key] = shared if rng.random() < 0.4 else _fuzzed_timestamp(rng)
    for key in ("filesList", "fileList"):
        if rng.random() < 0.5:
            item[key] = rng.choice(
                [
                    None,
                    [],
                    "fw.bin",
                    {"name": "a.bin"},
                    [{"name": "a"}, "b", 3, {}],
                    0,
                    "",
                    [{"name": ["x", "y"]}],
                ]
            )
    if rng.random() < 0.5:
        item["softwareList"] = rng.choice(
            [
                None,
                [],
                {"name": "x", "upgradeTime": _fuzzed_timestamp(rng)},
                "x",
                [1, {"version": "2"}],
                [{"name": "y", "version": "a\nb", "upgradeTime": _fuzzed_timestamp(rng)}],
            ]
        )
    return item


#: How ThingSpace usually lists a device's software and files.
_USUAL_LISTS: list[dict[str, Any]] = [
    {},
    {"softwareList": [], "filesList": []},
    {
        "softwareList": [
            {"name": "app", "version": "1.0", "upgradeTime": "2022-02-04 06:10:01.441 +0000 UTC"}
        ],
        "fileList": [{"name": "fw.bin"}, {"name": "fw2.bin"}],
    },
]


@pytest.mark.parametrize("quirky", [0.0, 0.05, 1.0])
def test_json_lines_of_a_page_are_the_normalised_devices_encoded_one_by_one(quirky: float) -> None:
    from airflow_provider_iotfleet.hooks.verizon import device_json_lines, normalise_device

    rng = random.Random(24)
    for _ in range(300):
        page = [
            _fuzzed_device(rng) if rng.random() < quirky else _device(IMEI, **rng.choice(_USUAL_LISTS))
            for _ in range(rng.randint(0, 40))
        ]
        expected = "".join(json.dumps(normalise_device(item), separators=(",", ":")) + "\n" for item in page)
        assert device_json_lines(page) == expected, page


def _raw_listing(imeis: list[str]) -> dict[str, str]:
    """Three pages (two, two and one device) as raw bodies, keyed by the lastSeenDeviceId asking for each."""
    return {
        "0": json.dumps(
            {
                "deviceList": [_device(i) for i in imeis[0:2]],
                "hasMoreData": True,
                "lastSeenDeviceId": imeis[1],
            }
        ),
        imeis[1]: json.dumps(
            {
                "deviceList": [_device(i) for i in imeis[2:4]],
                "hasMoreData": True,
                "lastSeenDeviceId": imeis[3],
            }
        ),
        imeis[3]: json.dumps({"deviceList": [_device(imeis[4])], "hasMoreData": False}),
    }


def _ids(pages: Iterable[list[dict[str, Any]]]) -> list[list[str]]:
    return [[device["device_id"] for device in page] for page in pages]


def test_json_lines_listing_pages_as_the_device_listing_does(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    imeis = [luhn_complete(f"3500000000000{n}") for n in range(5)]
    bodies = _raw_listing(imeis)
    requests_mock.get(
        f"{FOTA}/devices/{ACCOUNT}", text=lambda request, _: bodies[request.qs["lastseendeviceid"][0]]
    )
    devices = list(hook.iter_fota_device_pages(account_name=ACCOUNT))
    lines = list(hook.iter_fota_device_json_lines(account_name=ACCOUNT))
    assert [page.device_ids for page in lines] == _ids(devices) == [imeis[0:2], imeis[2:4], imeis[4:5]]
    assert [[json.loads(line) for line in page.text.splitlines()] for page in lines] == devices
    assert not [t for t in threading.enumerate() if t.name.startswith("thingspace-fota-pages")]


@pytest.mark.parametrize("fooled", ["nested", "escaped", "plain", "garbled"])
def test_prefetch_follows_the_decoded_page_whatever_the_raw_scan_guessed(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any], fooled: str
) -> None:
    imeis = [luhn_complete(f"3500000000000{n}") for n in range(5)]
    bodies = _raw_listing(imeis)
    if fooled == "nested":
        # the last page's only hasMoreData and cursor are a device's own fields: the scan guesses a
        # next page that the decoded answer (no hasMoreData: the end) does not have
        bodies[imeis[3]] = json.dumps(
            {"deviceList": [_device(imeis[4], hasMoreData=True, lastSeenDeviceId=imeis[4])]}
        )
    elif fooled == "escaped":  # a cursor the scan cannot read plainly: the decoded one is followed
        bodies["0"] = bodies["0"].replace(
            f'"lastSeenDeviceId": "{imeis[1]}"', f'"lastSeenDeviceId": "\\u0033{imeis[1][1:]}"'
        )

    garbled = [fooled == "garbled"]

    def answer(request: Any, context: Any) -> str:
        asked = request.qs["lastseendeviceid"][0]
        if asked == imeis[1] and garbled[0]:  # once: asked again, it is fine
            garbled[0] = False
            return bodies[asked][:-5]
        if asked not in bodies:
            context.status_code = 404
            return json.dumps({"errorCode": "NotFound", "errorMessage": "no such page"})
        return bodies[asked]

    route = requests_mock.get(f"{FOTA}/devices/{ACCOUNT}", text=answer)
    ahead = _ids(hook.iter_fota_device_pages(account_name=ACCOUNT, prefetch=True))
    assert ahead == [imeis[0:2], imeis[2:4], imeis[4:5]]
    assert _ids(hook.iter_fota_device_pages(account_name=ACCOUNT)) == ahead
    assert not [t for t in threading.enumerate() if t.name.startswith("thingspace-fota-pages")]
    asked = [r.qs["lastseendeviceid"][0] for r in route.request_history]
    prefetched, lazy = asked[: len(asked) - 3], asked[-3:]
    assert lazy == ["0", imeis[1], imeis[3]]
    # only the guessed request past the last page is more (its answer dropped, unread)
    extra = {"nested": [imeis[4]], "garbled": [imeis[1]]}.get(fooled, [])
    assert sorted(prefetched) == sorted(lazy + extra)


def test_an_error_of_the_prefetched_page_surfaces_at_that_page(
    hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, thingspace_logins: tuple[Any, Any]
) -> None:
    imeis = [luhn_complete(f"3500000000000{n}") for n in range(5)]
    bodies = _raw_listing(imeis)

    def answer(request: Any, context: Any) -> str:
        asked = request.qs["lastseendeviceid"][0]
        if asked == imeis[1]:
            context.status_code = 400
            return json.dumps({"errorCode": "FOTA.BAD", "errorMessage": "page two refused"})
        return bodies[asked]

    route = requests_mock.get(f"{FOTA}/devices/{ACCOUNT}", text=answer)
    pages = hook.iter_fota_device_pages(account_name=ACCOUNT, prefetch=True)
    assert _ids([next(pages)]) == [imeis[0:2]]  # page two was asked for already, and failed
    with pytest.raises(IoTFleetVendorResponseError, match="page two refused"):
        next(pages)
    assert [r.qs["lastseendeviceid"][0] for r in route.request_history] == ["0", imeis[1]]
    assert not [t for t in threading.enumerate() if t.name.startswith("thingspace-fota-pages")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"deviceList": [], "hasMoreData": true, "lastSeenDeviceId": "350000000000001"}',
            "350000000000001",
        ),
        (b'{"hasMoreData":true,"lastSeenDeviceId":350000000000001,"deviceList":[]}', "350000000000001"),
        (b'{"deviceList": [], "hasMoreData": false}', None),
        (b'{"deviceList": [], "hasMoreData": false, "lastSeenDeviceId": "3"}', None),
        (b'{"deviceList": []}', UNKNOWN),
        (b'{"deviceList": [], "hasMoreData": "true", "lastSeenDeviceId": "3"}', UNKNOWN),
        (b'{"deviceList": [], "hasMoreData": true}', UNKNOWN),
        (b'{"deviceList": [{"hasMoreData": true}], "hasMoreData": true, "lastSeenDeviceId": "3"}', UNKNOWN),
        (
            b'{"deviceList": [{"lastSeenDeviceId": "2"}], "hasMoreData": true, "lastSeenDeviceId": "3"}',
            UNKNOWN,
        ),
        (b'{"hasMoreData": true, "lastSeenDeviceId": "3\\u0030"}', UNKNOWN),
        (b'{"hasMoreData": true, "lastSeenDeviceId": 1.5}', UNKNOWN),
        (b'{"hasMoreData": true, "lastSeenDeviceId": null}', UNKNOWN),
    ],
)
def test_the_raw_scan_reads_only_a_plain_cursor(body: bytes, expected: Any) -> None:
    assert scan_cursor(body, "lastSeenDeviceId") == expected
