"""Every vendor API at its real path at the simulator's root, with the knobs; discovery; no docs page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.simulator import Faults, Simulator
from airflow_provider_iotfleet.simulator.__main__ import devices_to_try
from airflow_provider_iotfleet.simulator.fleet import (
    FIRMWARE_VERSIONS,
    NEVER_CONNECTED,
    OFFLINE,
    ONLINE,
    ROMA_ID_BASE,
    iccid_of,
    imei_of,
)
from tests.simulator_harness import SimulatorFactory

pytestmark = pytest.mark.slow

SetConnection = Callable[..., None]


def _iam_token(simulator: Simulator) -> str:
    credentials = simulator.config.credentials
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": credentials.huawei_iam_user,
                        "password": credentials.huawei_iam_password,
                        "domain": {"name": credentials.huawei_domain},
                    }
                },
            },
            "scope": {"project": {"id": credentials.huawei_project_id}},
        }
    }
    response = requests.post(f"{simulator.url}/v3/auth/tokens", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


def _roma_devices_url(simulator: Simulator) -> str:
    credentials = simulator.config.credentials
    return (
        f"{simulator.url}/v2/{credentials.huawei_project_id}/link/instances/"
        f"{credentials.huawei_instance_id}/devices"
    )


def _verizon_headers(simulator: Simulator) -> dict[str, str]:
    credentials = simulator.config.credentials
    token = requests.post(
        f"{simulator.url}/api/ts/v1/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(credentials.verizon_key, credentials.verizon_secret),
        timeout=10,
    ).json()["access_token"]
    session = requests.post(
        f"{simulator.url}/api/m2m/v1/session/login",
        json={"username": credentials.verizon_m2m_username, "password": credentials.verizon_m2m_password},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()["sessionToken"]
    return {"Authorization": f"Bearer {token}", "VZ-M2M-Token": session}


def test_every_vendor_answers_at_its_real_path(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=200)
    credentials = simulator.config.credentials
    url = simulator.url

    bulk = requests.put(
        f"{url}/pub/v4.0/device/bulkUpdate",
        params={"customerid": credentials.paloalto_customer_id, "updateSource": "cellular"},
        headers={"X-Key-Id": credentials.paloalto_key_id, "X-Access-Key": credentials.paloalto_access_key},
        json={"devicelist": [{"imei": imei_of(3), "apn": "iot.example"}]},
        timeout=10,
    )
    assert bulk.json()["updatedDeviceNum"] == 1
    assert simulator.state.fleet.device(3)["paloalto"]["apn"] == "iot.example"

    cisco_auth = (credentials.cisco_username, credentials.cisco_api_key)
    edit = requests.put(
        f"{url}/rws/api/v1/devices/{iccid_of(4)}", json={"status": "RETIRED"}, auth=cisco_auth, timeout=10
    )
    assert edit.json() == {"iccid": iccid_of(4)}
    assert requests.get(f"{url}/rws/api/v1/devices/{iccid_of(4)}", auth=cisco_auth, timeout=10).json()[
        "status"
    ] == ("RETIRED")

    roma = requests.get(
        f"{_roma_devices_url(simulator)}/{ROMA_ID_BASE + 5}",
        headers={"X-Auth-Token": _iam_token(simulator)},
        timeout=10,
    )
    assert roma.json()["node_id"] == imei_of(5)

    listing = requests.get(
        f"{url}/api/fota/v3/devices/{credentials.verizon_account}",
        headers=_verizon_headers(simulator),
        timeout=10,
    )
    assert listing.json()["deviceList"][0]["deviceId"] == imei_of(0)

    # The request log and the per-device write counts see them as each vendor's own requests.
    log = {(r["vendor"], r["method"], r["path"]) for r in simulator.state.request_log()}
    assert ("cisco", "PUT", f"/rws/api/v1/devices/{iccid_of(4)}") in log
    assert ("paloalto", "PUT", "/pub/v4.0/device/bulkUpdate") in log
    assert ("huawei", "POST", "/v3/auth/tokens") in log
    assert ("verizon", "GET", f"/api/fota/v3/devices/{credentials.verizon_account}") in log
    assert simulator.state.per_device_writes("cisco", applied_only=True)[iccid_of(4)] == 1
    assert simulator.state.per_device_writes("paloalto")[imei_of(3)] == 1
    counters = simulator.state.snapshot()["counters"]
    assert {counters[f"{vendor}.requests"] for vendor in ("paloalto", "cisco")} == {1, 2}


def test_signed_huawei_requests_verify_at_the_root(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=50)
    connection = dict(simulator.connections()["huawei_roma_default"])
    set_connection("huawei_roma_default", **{**connection, "host": simulator.url})  # no /huawei prefix
    with HuaweiRomaConnectHook() as hook:
        assert hook.get_device(ROMA_ID_BASE + 7)["device_id"] == ROMA_ID_BASE + 7
    assert simulator.state.request_log("huawei")[-1]["path"].startswith("/v2/")


def test_faults_apply_at_the_root_and_spare_logins(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=50, faults=Faults(server_error=1.0))
    credentials = simulator.config.credentials
    headers = _verizon_headers(simulator)  # logins are never faulted
    listing = requests.get(
        f"{simulator.url}/api/fota/v3/devices/{credentials.verizon_account}", headers=headers, timeout=10
    )
    assert listing.status_code == 500
    assert listing.json() == {
        "errorCode": "FOTA.REQUEST_FAILED.InternalError",
        "errorMessage": "Internal server error.",
    }
    cisco = requests.get(
        f"{simulator.url}/rws/api/v1/devices/{iccid_of(1)}",
        auth=(credentials.cisco_username, credentials.cisco_api_key),
        timeout=10,
    )
    assert (cisco.status_code, cisco.json()["errorCode"]) == (500, "30000001")
    assert simulator.state.snapshot()["counters"]["faults.server_error"] == 2
    assert [r["fault"] for r in simulator.state.request_log("verizon")] == [None, None, "server_error"]


def test_rate_limits_apply_at_the_root_and_under_the_prefix_alike(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=50, rate_limits={"cisco": 2}, retry_after_seconds=7)
    auth = (simulator.config.credentials.cisco_username, simulator.config.credentials.cisco_api_key)
    answers = [
        requests.get(f"{simulator.url}{prefix}/rws/api/v1/devices/{iccid_of(1)}", auth=auth, timeout=10)
        for prefix in ("", "/cisco", "", "/cisco", "")
    ]
    throttled = [answer for answer in answers if answer.status_code == 429]
    assert throttled, [answer.status_code for answer in answers]
    assert throttled[0].headers["Retry-After"] == "7"
    assert throttled[0].json() == {"errorMessage": "Too many requests. Rate limit exceeded."}
    assert simulator.state.snapshot()["counters"]["cisco.throttled"] == len(throttled)


def test_roma_listing_takes_comma_separated_online_statuses(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=300)
    headers = {"X-Auth-Token": _iam_token(simulator)}
    fleet = simulator.state.fleet
    counts = {
        code: len(fleet.indices_where("online_status", code)) for code in (NEVER_CONNECTED, ONLINE, OFFLINE)
    }

    def listing(**params: Any) -> requests.Response:
        return requests.get(_roma_devices_url(simulator), params=params, headers=headers, timeout=10)

    both = listing(online_status="1,2", limit=999).json()
    assert both["total"] == counts[ONLINE] + counts[OFFLINE]
    assert {item["online_status"] for item in both["items"]} == {ONLINE, OFFLINE}
    assert [item["device_id"] for item in both["items"]] == sorted(
        item["device_id"] for item in both["items"]
    )
    assert listing(online_status="1").json()["total"] == counts[ONLINE]
    assert listing(online_status="0,1,2", limit=5).json()["total"] == 300
    for refused in ("ONLINE,OFFLINE", "1,7", "1,"):
        answer = listing(online_status=refused)
        assert (answer.status_code, answer.json()["error_code"]) == (400, "SCB.00000000"), refused


def test_sim_devices_lists_identifiers_to_try_per_vendor_and_state(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=300)

    def discover(**params: Any) -> requests.Response:
        return requests.get(f"{simulator.url}/_sim/devices", params=params, timeout=10)

    everything = discover().json()
    assert set(everything) == {"paloalto", "cisco", "huawei", "verizon"}
    assert all(len(devices) == 10 for devices in everything.values())
    assert everything["cisco"][0] == {
        "iccid": iccid_of(0),
        "status": simulator.state.fleet.device(0)["status"],
    }
    assert set(everything["verizon"][0]) == {"imei", "firmware", "make", "model", "protocol"}

    activated = discover(vendor="cisco", status="ACTIVATED", limit=5).json()
    assert list(activated) == ["cisco"]
    assert [d["status"] for d in activated["cisco"]] == ["ACTIVATED"] * 5
    online = discover(vendor="huawei", status="online", limit=3).json()["huawei"]
    assert {(d["online_status"], d["online_status_name"]) for d in online} == {(ONLINE, "online")}
    assert discover(vendor="huawei", status="2").json()["huawei"][0]["online_status"] == OFFLINE
    firmware = discover(vendor="verizon", status=FIRMWARE_VERSIONS[2], limit=4).json()["verizon"]
    assert {d["firmware"] for d in firmware} == {FIRMWARE_VERSIONS[2]}
    for params in (
        {"status": "ACTIVATED"},
        {"vendor": "nokia"},
        {"vendor": "cisco", "status": "SLEEPING"},
        {"vendor": "huawei", "status": "away"},
        {"vendor": "verizon", "status": "v9"},
        {"vendor": "paloalto", "status": "x"},
        {"limit": "0"},
        {"limit": "many"},
    ):
        assert discover(**params).status_code == 400, params


def test_banner_names_devices_to_try(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=100)
    banner = "\n".join(devices_to_try(simulator))
    assert iccid_of(0) in banner
    assert imei_of(0) in banner
    online = [
        ROMA_ID_BASE + i for i in range(10) if simulator.state.fleet.device(i)["online_status"] == ONLINE
    ]
    assert f"{online[0]} (online)" in banner
    assert "/_sim/devices" in banner


def test_docs_pages_are_off_and_the_openapi_schema_lists_each_route_once(
    start_simulator: SimulatorFactory,
) -> None:
    simulator = start_simulator(devices=10)
    for page in ("/docs", "/redoc", "/_sim/docs", "/docs/oauth2-redirect"):
        assert requests.get(f"{simulator.url}{page}", timeout=10).status_code == 404, page
    schema = requests.get(f"{simulator.url}/_sim/openapi.json", timeout=10).json()
    paths = set(schema["paths"])
    assert "/verizon/api/fota/v3/campaigns/firmware/{account}" in paths
    assert "/cisco/rws/api/{api_version}/devices/{iccid}" in paths
    assert not any(path.startswith(("/api/", "/rws/", "/v2/", "/pub/")) for path in paths)
