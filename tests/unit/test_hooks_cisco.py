from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta

import pytest
import requests
import requests_mock as rm

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetError,
    IoTFleetNotFoundError,
    IoTFleetOutcomeUnknownError,
    IoTFleetTransportError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.base import RATE_HEADROOM
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from tests.connections import CISCO_API_KEY as API_KEY
from tests.connections import CISCO_HOST as HOST
from tests.connections import CISCO_USER as USER
from tests.fakes import ICCID, ICCID_19, FakeClock, luhn_complete

API = f"{HOST}/rws/api/v1"


@pytest.fixture
def hook(cisco_connection: None, clock: FakeClock) -> CiscoControlCenterHook:
    return CiscoControlCenterHook(clock=clock)


def test_edit_applied_now_sends_basic_auth_and_body(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker
) -> None:
    requests_mock.put(f"{API}/devices/{ICCID}", status_code=200, json={"iccid": ICCID})
    result = hook.edit_device(ICCID, {"status": "ACTIVATED", "accountCustom1": "site-7"})
    assert (result.iccid, result.scheduled, result.effective_date) == (ICCID, False, None)
    request = requests_mock.last_request
    assert (
        request.headers["Authorization"] == "Basic " + base64.b64encode(f"{USER}:{API_KEY}".encode()).decode()
    )
    assert request.json() == {"status": "ACTIVATED", "accountCustom1": "site-7"}


def test_edit_with_future_date_is_scheduled(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    requests_mock.put(f"{API}/devices/{ICCID_19}", status_code=202, json={"iccid": ICCID_19})
    when = clock.now() + timedelta(days=10)
    result = hook.edit_device(ICCID_19, {"ratePlan": "IOT-1GB"}, effective_date=when)
    assert result.scheduled is True
    assert result.effective_date == "2026-12-01T12:00:00+00:00"
    assert requests_mock.last_request.json() == {
        "ratePlan": "IOT-1GB",
        "effectiveDate": "2026-12-01T12:00:00+00:00",
    }


def test_invalid_input_sends_nothing(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    with pytest.raises(IoTFleetValidationError):
        hook.edit_device("123", {"status": "ACTIVATED"})
    with pytest.raises(IoTFleetValidationError, match="too far ahead"):
        hook.edit_device(ICCID, {"status": "ACTIVATED"}, effective_date=clock.now() + timedelta(days=200))
    with pytest.raises(IoTFleetValidationError) as caught:
        hook.edit_devices([{"iccid": ICCID, "status": "bad status"}, {"iccid": "1", "status": "ACTIVATED"}])
    assert len(caught.value.problems) == 2
    assert requests_mock.call_count == 0


# The vendor's documented error table: code, HTTP status, message, and the class we raise.
CISCO_ERROR_TABLE = [
    ("10000001", 401, "Invalid credentials.", IoTFleetAuthError),
    ("10000005", 400, "Invalid status.", IoTFleetVendorResponseError),
    (
        "10000008",
        400,
        "Your role does not have access to operator and customer custom fields.",
        IoTFleetVendorResponseError,
    ),
    (
        "10000009",
        400,
        "Your role does not have access to account custom fields.",
        IoTFleetVendorResponseError,
    ),
    (
        "10000010",
        400,
        "Your role does not have access to customer custom field.",
        IoTFleetVendorResponseError,
    ),
    ("10000011", 400, "One or more required fields are missing.", IoTFleetVendorResponseError),
    ("10000012", 400, "Invalid date format.", IoTFleetVendorResponseError),
    ("10000013", 404, "Invalid ratePlan.", IoTFleetVendorResponseError),
    ("10000014", 400, "Invalid communicationPlan.", IoTFleetVendorResponseError),
    ("10000015", 400, "Invalid customer.", IoTFleetVendorResponseError),
    ("10000016", 400, "Invalid overageLimitOverride.", IoTFleetVendorResponseError),
    ("10000023", 400, "The JSON in the request is not well formed.", IoTFleetVendorResponseError),
    ("10000024", 400, "Invalid apiVersion.", IoTFleetVendorResponseError),
    ("10000025", 400, "Invalid deviceID.", IoTFleetVendorResponseError),
    ("10000026", 400, "Invalid modemID.", IoTFleetVendorResponseError),
    ("10000028", 400, "Invalid request.", IoTFleetVendorResponseError),
    (
        "10000029",
        400,
        "This SIM may not be moved back to a Pre Activation status.",
        IoTFleetVendorResponseError,
    ),
    ("10000030", 400, "Your role does not have access to this API function.", IoTFleetVendorResponseError),
    ("10000031", 400, "Invalid Zone.", IoTFleetVendorResponseError),
    (
        "10000517",
        400,
        "The ipv4Address/ipv6Address is already in use, please assign a different one.",
        IoTFleetVendorResponseError,
    ),
    ("10030000", 400, "Cannot activate a SIM which is already activated.", IoTFleetVendorResponseError),
    ("20000001", 404, "Resource not found - Invalid ICCID.", IoTFleetNotFoundError),
]


@pytest.mark.parametrize(("code", "status", "message", "error_class"), CISCO_ERROR_TABLE)
def test_documented_errors_map_to_typed_exceptions(
    hook: CiscoControlCenterHook,
    requests_mock: rm.Mocker,
    code: str,
    status: int,
    message: str,
    error_class: type[IoTFleetError],
) -> None:
    requests_mock.put(
        f"{API}/devices/{ICCID}", status_code=status, json={"errorCode": code, "errorMessage": message}
    )
    with pytest.raises(error_class) as caught:
        # Not an activation: an "already activated" answer to one is an outcome, tested below.
        hook.edit_device(ICCID, {"ratePlan": "IOT-1GB"})
    assert type(caught.value) is error_class
    assert (caught.value.http_status, caught.value.error_code) == (status, code)
    assert message in str(caught.value)
    assert requests_mock.call_count == 1


def test_an_unknown_server_error_to_an_edit_is_read_back_before_each_new_send(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    # "Unknown server error" says nothing of what was done: read back, not sent blindly four times.
    put = requests_mock.put(
        f"{API}/devices/{ICCID}",
        status_code=500,
        json={"errorCode": "30000001", "errorMessage": "Unknown server error."},
    )
    read = requests_mock.get(f"{API}/devices/{ICCID}", json={"iccid": ICCID, "status": "DEACTIVATED"})
    with pytest.raises(IoTFleetOutcomeUnknownError, match="were lost again and again") as caught:
        hook.edit_device(ICCID, {"status": "ACTIVATED"})
    assert "Unknown server error." in str(caught.value)
    # Each send follows a read that shows the edit not applied; after the connection's three retries
    # the outcome is said to be unknown.
    assert (put.call_count, read.call_count) == (5, 4)
    assert all(
        pause <= 0.2 / RATE_HEADROOM + 1e-9 for pause in clock.sleeps
    )  # the rate limit's spacing; no backoff


def test_a_lost_answer_to_an_edit_is_read_back_not_sent_again(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    put = requests_mock.put(f"{API}/devices/{ICCID}", exc=requests.exceptions.ReadTimeout("read timed out"))
    read = requests_mock.get(f"{API}/devices/{ICCID}", json={"iccid": ICCID, "status": "ACTIVATED"})
    result = hook.edit_device(ICCID, {"status": "ACTIVATED"})
    assert (result.outcome, put.call_count, read.call_count) == ("updated", 1, 1)


def test_a_lost_answer_to_an_edit_that_did_not_apply_is_sent_once_more(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker
) -> None:
    put = requests_mock.put(
        f"{API}/devices/{ICCID}",
        [{"status_code": 502, "text": "<html>Bad Gateway</html>"}, {"json": {"iccid": ICCID}}],
    )
    requests_mock.get(f"{API}/devices/{ICCID}", json={"iccid": ICCID, "ratePlan": "IOT-100MB"})
    result = hook.edit_device(ICCID, {"ratePlan": "IOT-1GB"})
    assert (result.outcome, put.call_count) == ("updated", 2)


def test_a_lost_answer_to_a_scheduled_edit_is_reported_unknown(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    put = requests_mock.put(f"{API}/devices/{ICCID}", exc=requests.exceptions.ChunkedEncodingError("cut"))
    with pytest.raises(IoTFleetOutcomeUnknownError, match="may have applied it; check the device"):
        hook.edit_device(ICCID, {"ratePlan": "IOT-1GB"}, effective_date=clock.now() + timedelta(days=1))
    assert put.call_count == 1  # a scheduled change is never scheduled twice


#: What a read-back of a device says when its connection is reset on every try.
READ_BACK_RESET = (
    "could not be completed: ConnectionError: Connection reset by peer "
    "(host of connection 'cisco_control_center_default')"
)


@pytest.mark.parametrize(
    ("answer", "http_status", "error_code", "request_id", "lost"),
    [
        pytest.param(
            {
                "status_code": 500,
                "json": {"errorCode": "30000001", "errorMessage": "Unknown server error."},
                "headers": {"X-Request-Id": "cc-rid-500"},
            },
            500,
            "30000001",
            "cc-rid-500",
            "Unknown server error.",
            id="5xx",
        ),
        pytest.param(
            {"exc": requests.exceptions.ReadTimeout("read timed out")},
            None,
            None,
            None,
            "could not be completed: ReadTimeout: read timed out "
            "(host of connection 'cisco_control_center_default')",
            id="dropped",
        ),
        pytest.param(
            {"status_code": 200, "text": "{not json", "headers": {"X-Request-Id": "cc-rid-200"}},
            200,
            None,
            "cc-rid-200",
            "an answer with a body that is not JSON",
            id="garbled-2xx",
        ),
    ],
)
def test_a_lost_answer_whose_read_back_fails_too_is_unknown_and_not_sent_again(
    hook: CiscoControlCenterHook,
    requests_mock: rm.Mocker,
    answer: dict[str, object],
    http_status: int | None,
    error_code: str | None,
    request_id: str | None,
    lost: str,
) -> None:
    put = requests_mock.put(f"{API}/devices/{ICCID}", **answer)
    read = requests_mock.get(
        f"{API}/devices/{ICCID}", exc=requests.exceptions.ConnectionError("Connection reset by peer")
    )
    with pytest.raises(IoTFleetOutcomeUnknownError) as caught:
        hook.edit_device(ICCID, {"status": "ACTIVATED"})
    error = caught.value
    # The edit's own status, code and request id: what to quote to Control Center's support desk.
    assert (error.http_status, error.error_code, error.request_id) == (http_status, error_code, request_id)
    assert error.bare_message == (
        f"the answer to the edit was lost ({lost}) and reading the device back failed too "
        f"({READ_BACK_RESET}); check the device"
    )
    assert f"the answer to the edit of {ICCID} was lost" in error.message
    assert isinstance(error.__cause__, IoTFleetTransportError)  # the read-back's failure
    assert put.call_count == 1  # it may have applied: never sent twice
    assert read.call_count == 4  # the read-back, retried as reads are (max_retries 3)


def test_unauthenticated_401_has_message_without_code(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker
) -> None:
    requests_mock.get(
        f"{API}/devices/{ICCID}", status_code=401, json={"errorMessage": "Authentication required"}
    )
    with pytest.raises(IoTFleetAuthError, match="Authentication required") as caught:
        hook.get_device(ICCID)
    assert caught.value.error_code is None
    # Says what to fix, and where.
    assert caught.value.message.endswith(
        "Authentication required. Check the login (user name) and password (API key) of "
        "connection 'cisco_control_center_default'"
    )


def test_configuration_and_transport_errors_name_the_connection_and_vendor(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection("cisco_no_key", "cisco_control_center", host=HOST, login=USER)
    with pytest.raises(IoTFleetError) as caught:
        CiscoControlCenterHook("cisco_no_key").get_device(ICCID)
    assert str(caught.value) == (
        "Connection 'cisco_no_key' (Cisco IoT Control Center): password is empty; set it to the API key"
    )
    set_connection(
        "cisco_down",
        "cisco_control_center",
        host=HOST,
        login=USER,
        password=API_KEY,
        extra={"max_retries": 0},
    )
    requests_mock.get(f"{API}/devices/{ICCID}", exc=requests.ConnectionError("Connection refused"))
    with pytest.raises(IoTFleetTransportError) as caught:
        CiscoControlCenterHook("cisco_down").get_device(ICCID)
    assert caught.value.message.endswith("Connection refused (host of connection 'cisco_down')")


def test_edit_devices_reports_each_outcome(hook: CiscoControlCenterHook, requests_mock: rm.Mocker) -> None:
    requests_mock.put(f"{API}/devices/{ICCID}", json={"iccid": ICCID})
    requests_mock.put(
        f"{API}/devices/{ICCID_19}",
        status_code=404,
        json={"errorCode": "20000001", "errorMessage": "Resource not found - Invalid ICCID."},
    )
    outcomes = hook.edit_devices(
        [{"iccid": ICCID, "status": "ACTIVATED"}, {"iccid": ICCID_19, "status": "ACTIVATED"}]
    )
    assert outcomes[0].ok and outcomes[0].item == ICCID
    assert isinstance(outcomes[1].error, IoTFleetNotFoundError) and outcomes[1].item == ICCID_19
    assert outcomes[1].error.to_dict() == {
        "http_status": 404,
        "error_code": "20000001",
        "message": "Cisco IoT Control Center rejected PUT /rws/api/v1/devices/8944500102198304826: "
        "Resource not found - Invalid ICCID.",
        "request_id": None,
    }


def test_get_device_returns_vendor_fields(hook: CiscoControlCenterHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(
        f"{API}/devices/{ICCID}", json={"iccid": ICCID, "status": "ACTIVATED", "ratePlan": "IOT-1GB"}
    )
    assert hook.get_device(ICCID)["ratePlan"] == "IOT-1GB"


def test_test_connection(hook: CiscoControlCenterHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{API}/devices", json={"devices": [], "pageNumber": 1, "lastPage": True})
    assert hook.test_connection() == (True, f"Authenticated to Cisco IoT Control Center at {HOST} as {USER}")
    assert requests_mock.last_request.qs["pagesize"] == ["1"]
    requests_mock.get(
        f"{API}/devices",
        status_code=401,
        json={"errorCode": "10000001", "errorMessage": "Invalid credentials."},
    )
    ok, message = hook.test_connection()
    assert not ok and "Invalid credentials." in message and "HTTP 401" in message


def test_connection_errors_are_reported_by_test_connection(set_connection: Callable[..., None]) -> None:
    set_connection(
        "cisco_plain_http",
        "cisco_control_center",
        host="http://rws.example.com",
        login=USER,
        password=API_KEY,
    )
    ok, message = CiscoControlCenterHook("cisco_plain_http").test_connection()
    assert not ok and "must use https" in message
    set_connection("cisco_no_key", "cisco_control_center", host=HOST, login=USER)
    ok, message = CiscoControlCenterHook("cisco_no_key").test_connection()
    # The form's Test runs under a temporary connection id: the message names the field, not the id.
    assert (ok, message) == (False, "password is empty; set it to the API key")


def test_test_connection_names_the_fields_not_the_temporary_id(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "tmp-3f2a", "cisco_control_center", host=HOST, login=USER, password=API_KEY, extra={"max_retries": 0}
    )
    requests_mock.get(
        f"{API}/devices",
        status_code=401,
        json={"errorCode": "10000001", "errorMessage": "Invalid credentials."},
    )
    ok, message = CiscoControlCenterHook("tmp-3f2a").test_connection()
    assert not ok
    assert "tmp-3f2a" not in message
    assert "Check the login (user name) and password (API key) of this connection" in message


def test_empty_form_fields_stored_as_null_count_as_absent(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    # The form's "Extra Fields JSON" stores null for every custom field left empty.
    set_connection(
        "cisco_from_form",
        "cisco_control_center",
        host=HOST,
        login=USER,
        password=API_KEY,
        extra={
            "api_version": None,
            "requests_per_second": None,
            "max_concurrency": None,
            "timeout": None,
            "max_retries": None,
        },
    )
    requests_mock.get(f"{API}/devices/{ICCID}", json={"iccid": ICCID, "status": "ACTIVATED"})
    hook = CiscoControlCenterHook("cisco_from_form")
    assert hook.get_device(ICCID)["status"] == "ACTIVATED"
    assert (hook.max_concurrency, hook.client.timeout, hook.client.retry.max_retries) == (1, 30.0, 3)
    assert hook.client.rate_limiter is not None and hook.client.rate_limiter.rate == 5.0 * RATE_HEADROOM


def test_connection_is_read_once(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests_mock.get(f"{API}/devices/{ICCID}", json={"iccid": ICCID})
    calls = 0
    original = CiscoControlCenterHook.get_connection

    def counting(conn_id: str):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return original(conn_id)

    monkeypatch.setattr(CiscoControlCenterHook, "get_connection", staticmethod(counting))
    for _ in range(3):
        hook.get_device(ICCID)
    assert calls == 1


def test_hook_is_found_through_the_connection_type(set_connection: Callable[..., None]) -> None:
    from airflow.sdk import BaseHook

    set_connection("cisco_lookup", "cisco_control_center", host=HOST, login=USER, password=API_KEY)
    hook = BaseHook.get_hook("cisco_lookup")
    assert isinstance(hook, CiscoControlCenterHook) and hook.conn_id == "cisco_lookup"


ALREADY_ACTIVATED = {
    "errorCode": "10030000",
    "errorMessage": "Cannot activate a SIM which is already activated.",
}


def test_activating_an_active_sim_is_unchanged_not_failed(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker
) -> None:
    put = requests_mock.put(f"{API}/devices/{ICCID}", status_code=400, json=ALREADY_ACTIVATED)
    result = hook.edit_device(ICCID, {"status": "ACTIVATED"})
    assert (result.outcome, result.sent) == ("unchanged", ())
    assert put.call_count == 1


def test_an_activation_refused_as_redundant_still_sends_the_other_fields(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker
) -> None:
    put = requests_mock.put(
        f"{API}/devices/{ICCID}",
        [{"status_code": 400, "json": ALREADY_ACTIVATED}, {"status_code": 200, "json": {"iccid": ICCID}}],
    )
    result = hook.edit_device(ICCID, {"status": "ACTIVATED", "ratePlan": "IOT-1GB"})
    assert (result.outcome, result.sent) == ("updated", ("ratePlan",))
    assert [r.json() for r in put.request_history] == [
        {"status": "ACTIVATED", "ratePlan": "IOT-1GB"},
        {"ratePlan": "IOT-1GB"},
    ]


def test_an_answer_for_another_iccid_is_not_taken_as_success(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker
) -> None:
    requests_mock.put(f"{API}/devices/{ICCID}", json={"iccid": ICCID_19})
    with pytest.raises(IoTFleetVendorResponseError, match=f"the ICCID '{ICCID_19}' instead of '{ICCID}'"):
        hook.edit_device(ICCID, {"ratePlan": "IOT-1GB"})


def test_skip_unchanged_reads_first_and_sends_only_what_differs(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker
) -> None:
    current = {
        "iccid": ICCID,
        "status": "ACTIVATED",
        "ratePlan": "IOT-100MB",
        "fixedIPAddress": "10.0.0.7",
        "accountCustom1": "site-7",
    }
    requests_mock.get(f"{API}/devices/{ICCID}", json=current)
    requests_mock.get(f"{API}/devices/{ICCID_19}", json={**current, "iccid": ICCID_19})
    put = requests_mock.put(f"{API}/devices/{ICCID_19}", json={"iccid": ICCID_19})
    unchanged_edit = {
        "status": "ACTIVATED",
        "accountCustom1": "site-7",
        "ipv4Address": "10.0.0.7",
        "apn": "a",
        "pdpId": "1",
    }
    outcomes = hook.edit_devices(
        [
            {"iccid": ICCID, **unchanged_edit},
            {"iccid": ICCID_19, "status": "ACTIVATED", "ratePlan": "IOT-1GB", "accountCustom1": "site-7"},
        ],
        skip_unchanged=True,
    )
    assert [o.result.outcome for o in outcomes if o.result] == ["unchanged", "updated"]
    assert put.call_count == 1  # nothing sent for the device already as asked
    assert put.last_request.json() == {"ratePlan": "IOT-1GB"}


def test_skip_unchanged_keeps_apn_and_pdp_id_with_an_ip_change(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker
) -> None:
    requests_mock.get(f"{API}/devices/{ICCID}", json={"iccid": ICCID, "fixedIPAddress": "10.0.0.7"})
    put = requests_mock.put(f"{API}/devices/{ICCID}", json={"iccid": ICCID})
    (outcome,) = hook.edit_devices(
        [{"iccid": ICCID, "ipv4Address": "10.0.0.8", "apn": "iot.apn", "pdpId": "1"}], skip_unchanged=True
    )
    assert outcome.result and outcome.result.outcome == "updated"
    assert put.last_request.json() == {"ipv4Address": "10.0.0.8", "apn": "iot.apn", "pdpId": "1"}
    # The previous address (a read shows it) and the APN and PDP id sent with the new one (a read
    # does not): they name the address's PDP context, which the rollback's edit must send again.
    assert outcome.result.before == {"ipv4Address": "10.0.0.7", "apn": "iot.apn", "pdpId": "1"}


def test_an_edit_that_reads_first_keeps_the_previous_values_of_what_it_sent_only(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker
) -> None:
    requests_mock.get(f"{API}/devices/{ICCID}", json={"iccid": ICCID, "status": "ACTIVATED", "ratePlan": "A"})
    requests_mock.put(f"{API}/devices/{ICCID}", json={"iccid": ICCID})
    (read_first,) = hook.edit_devices(
        [{"iccid": ICCID, "status": "ACTIVATED", "ratePlan": "B"}], skip_unchanged=True
    )
    assert read_first.result and read_first.result.before == {"ratePlan": "A"}
    (blind,) = hook.edit_devices([{"iccid": ICCID, "ratePlan": "B"}])
    assert blind.result and blind.result.before is None


def test_plan_edits_reads_each_device_once_and_sends_nothing(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker
) -> None:
    reads = requests_mock.get(f"{API}/devices/{ICCID}", json={"iccid": ICCID, "status": "TEST_READY"})
    requests_mock.get(
        f"{API}/devices/{ICCID_19}",
        status_code=404,
        json={"errorCode": "20000001", "errorMessage": "Resource not found - Invalid ICCID."},
    )
    planned, missing = hook.plan_edits(
        [
            {"iccid": ICCID, "status": "ACTIVATED", "accountCustom1": "x"},
            {"iccid": ICCID_19, "status": "ACTIVATED"},
        ]
    )
    assert planned.result is not None
    assert planned.result.changes == {
        "status": {"from": "TEST_READY", "to": "ACTIVATED"},
        "accountCustom1": {"from": None, "to": "x"},
    }
    assert isinstance(missing.error, IoTFleetNotFoundError)
    assert reads.call_count == 1
    assert [r.method for r in requests_mock.request_history] == ["GET", "GET"]


def test_refused_credentials_stop_a_batch_and_the_rest_is_not_attempted(
    hook: CiscoControlCenterHook, requests_mock: rm.Mocker
) -> None:
    put = requests_mock.put(
        rm.ANY, status_code=401, json={"errorCode": "10000001", "errorMessage": "Invalid credentials."}
    )
    iccids = [luhn_complete(f"89011234567890{n:05d}") for n in range(5)]
    seen: list[str] = []
    outcomes = hook.edit_devices(
        [{"iccid": i, "ratePlan": "IOT-1GB"} for i in iccids], on_outcome=lambda o: seen.append(o.item)
    )
    assert put.call_count == 1
    assert [type(o.error).__name__ for o in outcomes] == ["IoTFleetAuthError"] + [
        "IoTFleetNotAttemptedError"
    ] * 4
    assert {o.error.error_code for o in outcomes if o.error} == {"10000001"}
    assert seen == iccids
