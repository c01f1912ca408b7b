"""Huawei's official ROMA Connect SDK (huaweicloudsdkroma) against the simulator, and its AK/SK check.

The SDK keeps only the scheme and host of its endpoint, so it reaches the simulator's root paths;
``with_endpoints(["http://127.0.0.1:<port>"])`` keeps it on plain http (an endpoint that starts with
``http`` is used as is; only a bare host gets ``https://``), no region object needed.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkroma.v2 import (
    BatchFreezeDevicesRequest,
    BatchFreezeDevicesRequestBody,
    ListDevicesRequest,
    RomaClient,
)

from airflow_provider_iotfleet.hooks.huawei.auth import canonical_request as hook_canonical_request
from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import OFFLINE, ONLINE, ROMA_ID_BASE
from airflow_provider_iotfleet.simulator.huawei import canonical_request, signature, string_to_sign
from tests.simulator_harness import SimulatorFactory


def _client(simulator: Simulator) -> RomaClient:
    credentials = simulator.config.credentials
    return (
        RomaClient.new_builder()
        .with_credentials(
            BasicCredentials(
                credentials.huawei_access_key, credentials.huawei_secret_key, credentials.huawei_project_id
            )
        )
        .with_endpoints([simulator.url])
        .build()
    )


def test_roma_sdk_lists_devices_and_forces_them_offline(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=300)
    fleet = simulator.state.fleet
    instance = simulator.config.credentials.huawei_instance_id
    client = _client(simulator)

    page = client.list_devices(ListDevicesRequest(instance_id=instance, limit=5, offset=10))
    assert (page.total, page.size) == (300, 5)
    assert [item.device_id for item in page.items] == [ROMA_ID_BASE + i for i in range(10, 15)]
    assert page.items[0].node_id == fleet.device(10)["imei"]
    assert isinstance(page.items[0].created_datetime, int)

    online_ids = [ROMA_ID_BASE + i for i in fleet.indices_where("online_status", ONLINE)]
    filtered = client.list_devices(ListDevicesRequest(instance_id=instance, limit=999, online_status="1,2"))
    assert filtered.total == len(online_ids) + len(fleet.indices_where("online_status", OFFLINE))
    assert {item.online_status for item in filtered.items} == {ONLINE, OFFLINE}

    targets, offline = online_ids[:3], ROMA_ID_BASE + fleet.indices_where("online_status", OFFLINE)[0]
    answer = client.batch_freeze_devices(
        BatchFreezeDevicesRequest(
            instance_id=instance, body=BatchFreezeDevicesRequestBody(device_ids=[*targets, offline])
        )
    )
    assert [item.id for item in answer.success] == targets
    assert [item.id for item in answer.failed] == [offline]
    assert [fleet.device(i - ROMA_ID_BASE)["online_status"] for i in targets] == [OFFLINE] * 3
    still_online = client.list_devices(ListDevicesRequest(instance_id=instance, limit=999, online_status="1"))
    assert still_online.total == len(online_ids) - 3
    assert simulator.state.per_device_writes("huawei", applied_only=True)[str(targets[0])] == 1


def _signed(simulator: Simulator, path: str, query: list[tuple[str, Any]]) -> SdkRequest:
    """A GET signed by the SDK's own signer, as the SDK would send it."""
    credentials = simulator.config.credentials
    request = SdkRequest(
        method="GET",
        schema="http",
        host=simulator.url.removeprefix("http://"),
        resource_path=path,
        uri=path,
        query_params=query,
        header_params={"Content-Type": "application/json", "X-Project-Id": credentials.huawei_project_id},
        body="",
    )
    return Signer(BasicCredentials(credentials.huawei_access_key, credentials.huawei_secret_key)).sign(
        request
    )


def _send(simulator: Simulator, request: SdkRequest, **header_changes: str) -> requests.Response:
    return requests.get(
        f"{simulator.url}{request.uri}", headers={**request.header_params, **header_changes}, timeout=10
    )


def test_a_tampered_signature_is_refused_with_huaweis_error(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=50)
    credentials = simulator.config.credentials
    path = f"/v2/{credentials.huawei_project_id}/link/instances/{credentials.huawei_instance_id}/devices"
    signed = _signed(simulator, path, [("limit", 3), ("online_status", "1,2")])
    assert _send(simulator, signed).status_code == 200

    authorization = signed.header_params["Authorization"]
    last = authorization[-1]
    tampered = authorization[:-1] + ("0" if last != "0" else "1")
    for changes in (
        {"Authorization": tampered},  # one hex digit of the signature changed
        {"X-Project-Id": "0" * 32},  # a signed header altered after signing
    ):
        answer = _send(simulator, signed, **changes)
        assert answer.status_code == 401, changes
        body = answer.json()
        assert body["error_code"] == "APIGW.0301"
        assert body["error_msg"] == "Incorrect IAM authentication information: verify aksk signature fail"
        assert set(body) in (
            {"error_code", "error_msg", "request_id"},
            {"error_code", "error_msg", "requestId"},
        )
    # A changed query is refused the same way: the signature covers it.
    moved = requests.get(
        f"{simulator.url}{path}?limit=4&online_status=1%2C2", headers=signed.header_params, timeout=10
    )
    assert moved.status_code == 401


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v2/p/link/instances/i/devices", [("offset", 0), ("limit", 10), ("online_status", "0,1")]),
        ("/v2/p/link/instances/i/devices/700001", []),
        ("/v2/p%20q/link/instances/i~x/devices", [("name", "a b"), ("name", "a+b"), ("tag", "")]),
    ],
)
def test_the_simulators_signature_is_the_sdks_and_the_hooks(path: str, query: list[tuple[str, Any]]) -> None:
    request = SdkRequest(
        method="GET",
        schema="http",
        host="127.0.0.1:8765",
        resource_path=path,
        uri=path,
        query_params=query,
        header_params={"Content-Type": "application/json", "X-Project-Id": "p"},
        body="",
    )
    sdk = Signer(BasicCredentials("AK", "SK")).sign(request)
    sdk_date = sdk.header_params["X-Sdk-Date"]
    headers = {name: value for name, value in sdk.header_params.items() if name != "Authorization"}
    query_string = sdk.uri.partition("?")[2]
    canonical = canonical_request("GET", path, query_string, headers, b"")
    assert sdk.header_params["Authorization"].endswith(
        f"Signature={signature('SK', string_to_sign(canonical, sdk_date))}"
    )
    hook, _ = hook_canonical_request("GET", f"http://127.0.0.1:8765{sdk.uri}", headers, b"")
    assert hook == canonical


def test_the_simulators_signature_reproduces_huaweis_published_vector() -> None:
    text = (
        "SDK-HMAC-SHA256\n20191115T033655Z\nb25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
    )
    assert signature("MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc", text) == (
        "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
    )
    canonical = canonical_request("POST", "/v1/x", "", {"Host": "h", "X-Sdk-Date": "20191115T033655Z"}, b"{}")
    assert canonical.splitlines() == [
        "POST",
        "/v1/x/",
        "",
        "host:h",
        "x-sdk-date:20191115T033655Z",
        "",
        "host;x-sdk-date",
        hashlib.sha256(b"{}").hexdigest(),
    ]
    assert string_to_sign(canonical, "20191115T033655Z").splitlines()[:2] == [
        "SDK-HMAC-SHA256",
        "20191115T033655Z",
    ]
