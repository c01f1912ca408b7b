"""The simulator's knobs (rate limits, faults, token expiry) and its refusals, seen through the hooks."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetNotFoundError,
    IoTFleetOutcomeUnknownError,
    IoTFleetTransportError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.paloalto import PaloAltoIoTSecurityHook
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.simulator import Faults, Simulator
from airflow_provider_iotfleet.simulator.fleet import ROMA_ID_BASE, iccid_of, imei_of
from tests.fakes import ICCID, FakeClock
from tests.simulator_harness import SimulatorFactory

pytestmark = pytest.mark.slow

SetConnection = Callable[..., None]


def _reconnect(simulator: Simulator, set_connection: SetConnection, conn_id: str, **extra: Any) -> str:
    """Re-export a default connection with extra settings; returns its id."""
    conn = dict(simulator.connections()[conn_id])
    conn["extra"] = {**conn.get("extra", {}), **extra}
    set_connection(conn_id, **conn)
    return conn_id


def test_rate_limited_vendor_answers_429_and_the_hook_absorbs_it(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=500, rate_limits={"cisco": 4})
    # A client configured faster than the vendor allows: the vendor's 429 + Retry-After do the pacing.
    _reconnect(simulator, set_connection, "cisco_control_center_default", requests_per_second=1000)
    with CiscoControlCenterHook() as hook:
        statuses = [hook.get_device(iccid_of(i))["status"] for i in range(10)]
    assert len(statuses) == 10
    counters = simulator.state.snapshot()["counters"]
    assert counters["cisco.throttled"] >= 1
    assert counters["cisco.requests"] == 10 + counters["cisco.throttled"]


def test_huawei_throttling_body_is_recognised(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=100, rate_limits={"huawei": 2})
    with HuaweiRomaConnectHook() as hook:
        for i in range(4):
            hook.get_device(ROMA_ID_BASE + i)
    assert simulator.state.snapshot()["counters"]["huawei.throttled"] >= 1


@pytest.mark.parametrize("fault", ["server_error", "rate_limited", "dropped_connection", "malformed_json"])
def test_injected_faults_are_retried_on_reads_and_never_apply_a_write_twice(
    start_simulator: SimulatorFactory, set_connection: SetConnection, fault: str
) -> None:
    simulator = start_simulator(devices=500, seed=11, faults=Faults(**{fault: 0.3}))
    _reconnect(
        simulator, set_connection, "cisco_control_center_default", requests_per_second=1000, max_retries=8
    )
    unknown = set()
    with CiscoControlCenterHook(clock=FakeClock()) as hook:  # backoff sleeps are skipped, not waited
        for i in range(30):
            assert hook.get_device(iccid_of(i))["iccid"] == iccid_of(i)  # reads: retried until answered
            try:
                hook.edit_device(iccid_of(i), {"accountCustom2": f"v{i}"})
            except IoTFleetOutcomeUnknownError:
                unknown.add(i)  # said as it is: neither claimed done nor sent a third time
    state = simulator.state.snapshot()
    assert state["counters"][f"faults.{fault}"] >= 3
    applied = simulator.state.per_device_writes(vendor="cisco", applied_only=True)
    assert all(count == 1 for count in applied.values())  # no edit applied twice
    for i in range(30):
        if i not in unknown:
            assert state["changed"][str(i)]["custom"]["accountCustom2"] == f"v{i}"
    if fault == "rate_limited":
        assert not unknown  # a 429 says "not processed": always sent again, never in doubt


def test_expired_session_token_leads_to_exactly_one_relogin(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=200, verizon_page_size=100)
    with VerizonThingSpaceHook() as hook:
        assert sum(1 for _ in hook.iter_fota_devices()) == 200
        simulator.state.advance(21 * 60)  # idle longer than the 20-minute session lifetime
        assert sum(1 for _ in hook.iter_fota_devices()) == 200
    counters = simulator.state.snapshot()["counters"]
    assert counters["verizon.logins"] == 2
    assert counters["verizon.access_tokens"] == 1


def test_injected_token_expiry_is_renewed(start_simulator: SimulatorFactory) -> None:
    # Seed 8 expires a token on several requests but never on a request and its renewed retry in a
    # row: a second refusal in a row is raised by design (see the unit tests).
    simulator = start_simulator(devices=200, seed=8, verizon_page_size=20, faults=Faults(token_expiry=0.2))
    with VerizonThingSpaceHook(clock=FakeClock()) as hook:
        assert sum(1 for _ in hook.iter_fota_devices()) == 200
    counters = simulator.state.snapshot()["counters"]
    assert counters["faults.token_expiry"] >= 1
    assert counters["verizon.logins"] == 1 + counters["faults.token_expiry"]


# --- what the real vendors reject, the simulator rejects -----------------------------------


def test_bad_huawei_signature_is_rejected(simulator: Simulator, set_connection: SetConnection) -> None:
    conn = dict(simulator.connections()["huawei_roma_default"])
    set_connection("roma_wrong_sk", **{**conn, "password": "not-the-secret-key"})
    with pytest.raises(IoTFleetAuthError, match="verify aksk signature fail") as caught:
        HuaweiRomaConnectHook("roma_wrong_sk").get_device(ROMA_ID_BASE)
    assert caught.value.error_code == "APIGW.0301"


def test_huawei_signature_from_a_skewed_clock_is_compensated_from_the_gateways_date(
    simulator: Simulator,
) -> None:
    skewed = FakeClock(start=simulator.state.now() - timedelta(minutes=20))
    hook = HuaweiRomaConnectHook(clock=skewed)
    assert hook.get_device(ROMA_ID_BASE)["device_id"] == ROMA_ID_BASE  # refused once, then re-signed
    assert hook.get_device(ROMA_ID_BASE + 1)["device_id"] == ROMA_ID_BASE + 1  # signed right at once
    statuses = [record["status"] for record in simulator.state.request_log("huawei")]
    assert statuses == [401, 200, 200]


def test_unknown_roma_instance_is_rejected(simulator: Simulator, set_connection: SetConnection) -> None:
    conn = dict(simulator.connections()["huawei_roma_default"])
    set_connection("roma_other", **{**conn, "extra": {**conn["extra"], "instance_id": "no-such-instance"}})
    with pytest.raises(IoTFleetVendorResponseError, match="The instance does not exist") as caught:
        # After the 500 the force-offline is read back (the read fails the same way) rather than sent
        # again; a fake clock skips the backoff sleeps of the retried reads.
        HuaweiRomaConnectHook("roma_other", clock=FakeClock(start=simulator.state.now())).force_offline(
            [ROMA_ID_BASE]
        )
    assert (caught.value.http_status, caught.value.error_code) == (500, "ROMA.00110002")


@pytest.mark.parametrize(
    ("hook_class", "conn_id", "call", "error_code"),
    [
        (
            CiscoControlCenterHook,
            "cisco_control_center_default",
            lambda h: h.get_device(iccid_of(1)),
            "10000001",
        ),
        (
            PaloAltoIoTSecurityHook,
            "paloalto_iot_default",
            lambda h: h.bulk_update([{"imei": imei_of(1)}]),
            "403",
        ),
        (
            VerizonThingSpaceHook,
            "verizon_thingspace_default",
            lambda h: list(h.iter_fota_devices()),
            "900901",
        ),
    ],
)
def test_wrong_credentials_are_rejected(
    simulator: Simulator,
    set_connection: SetConnection,
    hook_class: Any,
    conn_id: str,
    call: Any,
    error_code: str,
) -> None:
    conn = dict(simulator.connections()[conn_id])
    set_connection(conn_id, **{**conn, "password": "wrong-password-123"})
    with pytest.raises(IoTFleetAuthError) as caught:
        call(hook_class())
    assert caught.value.error_code == error_code


def test_wrong_m2m_password_is_tried_once_and_never_locks_the_account(
    simulator: Simulator, set_connection: SetConnection
) -> None:
    _reconnect(simulator, set_connection, "verizon_thingspace_default", m2m_password="wrong-m2m-password")
    with VerizonThingSpaceHook() as hook:
        for _ in range(6):
            with pytest.raises(IoTFleetAuthError):
                list(hook.iter_fota_devices())
    assert simulator.state.snapshot()["login_failures"] == {
        simulator.config.credentials.verizon_m2m_username: 1
    }


def test_unknown_iccid_and_invalid_status_are_rejected(simulator: Simulator) -> None:
    with CiscoControlCenterHook() as hook:
        with pytest.raises(IoTFleetNotFoundError) as not_found:
            hook.edit_device(ICCID, {"status": "ACTIVATED"})  # Luhn-valid, not in the fleet
        with pytest.raises(IoTFleetValidationError, match="'SUSPENDED' is not a SIM status"):
            hook.edit_device(iccid_of(1), {"status": "SUSPENDED"})  # refused before sending
    assert not_found.value.error_code == "20000001"
    # What the vendor (and so the simulator) answers a client that sends it anyway.
    creds = simulator.config.credentials
    response = requests.put(
        f"{simulator.url}/cisco/rws/api/v1/devices/{iccid_of(1)}",
        json={"status": "SUSPENDED"},
        auth=(creds.cisco_username, creds.cisco_api_key),
        timeout=10,
    )
    assert (response.status_code, response.json()["errorCode"]) == (400, "10000005")
    assert simulator.state.snapshot()["changed"] == {}


def test_malformed_json_is_rejected_like_control_center(simulator: Simulator) -> None:
    creds = simulator.config.credentials
    auth = base64.b64encode(f"{creds.cisco_username}:{creds.cisco_api_key}".encode()).decode()
    response = requests.put(
        f"{simulator.url}/cisco/rws/api/v1/devices/{iccid_of(1)}",
        data=b'{"status": "ACTIVATED",}',
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert json.loads(response.text)["errorCode"] == "10000023"


def test_state_endpoint_is_read_only_json(simulator: Simulator) -> None:
    with CiscoControlCenterHook() as hook:
        hook.edit_device(iccid_of(2), {"accountCustom1": "seen"})
    state = requests.get(f"{simulator.url}/_sim/state", timeout=10).json()
    assert state["changed"]["2"]["custom"] == {"accountCustom1": "seen"}
    device = requests.get(f"{simulator.url}/_sim/devices/{imei_of(2)}", timeout=10).json()
    assert device["iccid"] == iccid_of(2)
    assert requests.put(f"{simulator.url}/_sim/state", timeout=10).status_code == 405
    before = simulator.state.now()
    requests.post(
        f"{simulator.url}/_sim/clock/advance", params={"seconds": 3600}, timeout=10
    ).raise_for_status()
    assert simulator.state.now() - before >= timedelta(hours=1)


def test_latency_knob_delays_answers(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    simulator = start_simulator(devices=10, latency=1.0)
    # A client that waits less than the added latency times out: the knob is in effect.
    _reconnect(simulator, set_connection, "cisco_control_center_default", timeout=0.2, max_retries=0)
    with pytest.raises(IoTFleetTransportError, match="ReadTimeout"):
        CiscoControlCenterHook().get_device(iccid_of(1))
    _reconnect(simulator, set_connection, "cisco_control_center_default", timeout=5)
    assert CiscoControlCenterHook().get_device(iccid_of(1))["iccid"] == iccid_of(1)
