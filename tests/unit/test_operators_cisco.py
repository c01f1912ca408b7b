"""CiscoControlCenterEditDevicesOperator as a DAG author sees it: its XCom, its errors and its logs.

Requests go to requests-mock; the operator's hook is replaced by one on a fake clock (so rate-limit
waits and retries take no time, and effective dates are checked against a known "now"). The XCom is
the outcome every write operator returns (airflow_provider_iotfleet/outcome.py): devices per status,
errors grouped by error with the devices they hit.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests
import requests_mock as rm
from airflow.sdk import DAG
from urllib3.exceptions import MaxRetryError, NewConnectionError

from airflow_provider_iotfleet.exceptions import (
    MAX_LISTED_PROBLEMS,
    IoTFleetConfigurationError,
    IoTFleetValidationError,
)
from airflow_provider_iotfleet.hooks.base import RATE_HEADROOM
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.cisco import hook as cisco_hook
from airflow_provider_iotfleet.operators import cisco as cisco_operator
from airflow_provider_iotfleet.operators.base import IoTFleetOperationFailedError
from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.outcome import FleetOutcome
from airflow_provider_iotfleet.rollback import rollback_edits
from tests.fakes import (
    ICCID,
    ICCID_19,
    OUTCOME_KEYS,
    OUTCOME_STATUSES,
    FakeClock,
    FakeTaskInstance,
    FakeTaskStateStore,
    assert_outcome_shape,
    luhn_complete,
    operator_context,
)
from tests.log_capture import Events

HOST = "https://rws.example.com"
API = f"{HOST}/rws/api/v1"
CONN_ID = "cisco_fleet"
USER, API_KEY = "fleet-bot", "cc-api-key-5f2e9d1c-do-not-log"
VENDOR = "Cisco IoT Control Center"
#: The "now" of the ``clock`` fixture's FakeClock.
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

NOT_FOUND = {"errorCode": "20000001", "errorMessage": "Resource not found - Invalid ICCID."}
INVALID_RATE_PLAN = {"errorCode": "10000013", "errorMessage": "Invalid ratePlan."}
ALREADY_ACTIVATED = {
    "errorCode": "10030000",
    "errorMessage": "Cannot activate a SIM which is already activated.",
}
INVALID_CREDENTIALS = {"errorCode": "10000001", "errorMessage": "Invalid credentials."}

Operator = CiscoControlCenterEditDevicesOperator


def iccids(count: int) -> list[str]:
    """``count`` distinct, valid 20-digit ICCIDs."""
    return [luhn_complete(f"89011234567890{n:05d}") for n in range(count)]


def pushed(ctx: dict[str, Any]) -> dict[str, object]:
    """What the operator pushed to XCom itself (Airflow pushes the return value)."""
    ti: FakeTaskInstance = ctx["ti"]
    return ti.xcom


def counts(**nonzero: int) -> dict[str, int]:
    """An outcome's ``counts``: every status, 0 unless given."""
    return {status: nonzero.get(status, 0) for status in OUTCOME_STATUSES}


def done(**lists: list[str]) -> dict[str, list[str]]:
    """An outcome's ``devices``: the done statuses, empty unless given."""
    return {status: lists.get(status, []) for status in OUTCOME_STATUSES[:4]}


def groups(outcome: dict[str, Any]) -> list[tuple[str, str | None, int | None, list[str]]]:
    """Each error group as (status, error code, HTTP status, devices)."""
    return [(e["status"], e["error_code"], e["http_status"], e["devices"]) for e in outcome["errors"]]


def assert_edit_outcome(outcome: dict[str, Any], requested: list[str]) -> None:
    """The documented outcome shape, every distinct ICCID once, plus the edit's ``effective_date``."""
    assert_outcome_shape(outcome, operation="edit_devices", requested=list(dict.fromkeys(requested)))
    assert outcome.keys() == OUTCOME_KEYS | {"effective_date"}
    assert outcome["vendor"] == VENDOR


@pytest.fixture
def make_operator(set_connection: Callable[..., None], clock: FakeClock) -> Callable[..., Operator]:
    set_connection(CONN_ID, "cisco_control_center", host=HOST, login=USER, password=API_KEY)

    def make(**kwargs: Any) -> Operator:
        kwargs.setdefault("task_id", "edit_sims")
        # Most tests here are about the writes, their answers and the outcome: they write blind
        # (no GET to mock); the tests of reading first (the default) say skip_unchanged=True.
        kwargs.setdefault("skip_unchanged", False)
        kwargs.setdefault("cisco_control_center_conn_id", CONN_ID)
        op = Operator(**kwargs)
        op.__dict__["hook"] = CiscoControlCenterHook(CONN_ID, clock=clock)
        return op

    return make


def lines(events: Events, level: str | None = None) -> list[str]:
    return [str(e["event"]) for e in events if level is None or e["log_level"] == level]


def test_rate_limit_share_divides_the_connections_rate_not_its_concurrency(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "cisco_shared",
        "cisco_control_center",
        host=HOST,
        login=USER,
        password=API_KEY,
        extra={"requests_per_second": 40, "max_concurrency": 8},
    )
    devices = iccids(3)
    for iccid in devices:
        requests_mock.put(f"{API}/devices/{iccid}", json={"iccid": iccid})
    quarter = Operator(
        task_id="edit_sims",
        iccids=devices,
        changes={"status": "ACTIVATED"},
        cisco_control_center_conn_id="cisco_shared",
        rate_limit_share=0.25,
        skip_unchanged=False,
    )
    assert quarter.execute(operator_context())["devices"]["succeeded"] == devices
    assert quarter.hook.client.rate_limiter is not None
    # Calls in flight are per task: a pool's slots bound how many tasks run at once.
    assert (quarter.hook.client.rate_limiter.rate, quarter.hook.max_concurrency) == (10.0 * RATE_HEADROOM, 8)


# --- the two ways to say what to change ----------------------------------------------------------


def test_iccids_and_changes_send_one_put_each(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    devices = iccids(3)
    for iccid in devices:
        requests_mock.put(f"{API}/devices/{iccid}", json={"iccid": iccid})
    op = make_operator(iccids=devices, changes={"status": "ACTIVATED", "accountCustom1": "site-7"})
    ctx = operator_context()
    result = op.execute(ctx)
    assert result == {
        "operation": "edit_devices",
        "vendor": VENDOR,
        "requested": 3,
        "dry_run": False,
        "counts": counts(succeeded=3),
        "devices": done(succeeded=devices),
        "errors": [],
        "effective_date": None,
    }
    assert pushed(ctx) == {}  # the outcome is the return value, pushed by Airflow, once
    assert [(r.method, r.path) for r in requests_mock.request_history] == [
        ("PUT", f"/rws/api/v1/devices/{iccid}") for iccid in devices
    ]
    assert all(
        r.json() == {"status": "ACTIVATED", "accountCustom1": "site-7"} for r in requests_mock.request_history
    )
    expected_auth = "Basic " + base64.b64encode(f"{USER}:{API_KEY}".encode()).decode()
    assert requests_mock.request_history[-1].headers["Authorization"] == expected_auth


def test_edits_give_each_device_its_own_change(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    put_a = requests_mock.put(f"{API}/devices/{ICCID}", json={"iccid": ICCID})
    put_b = requests_mock.put(f"{API}/devices/{ICCID_19}", json={"iccid": ICCID_19})
    op = make_operator(
        edits=[
            {"iccid": ICCID, "ratePlan": "IOT-1GB"},
            {"iccid": int(ICCID_19), "status": "DEACTIVATED", "customerCustom2": "returned"},
        ]
    )
    result = op.execute(operator_context())
    # an int ICCID comes back as its digit string
    assert result["devices"] == done(succeeded=[ICCID, ICCID_19])
    assert put_a.request_history[-1].json() == {"ratePlan": "IOT-1GB"}
    assert put_b.request_history[-1].json() == {"status": "DEACTIVATED", "customerCustom2": "returned"}


def test_default_connection_id_and_a_lazily_built_hook(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "cisco_control_center_default", "cisco_control_center", host=HOST, login=USER, password=API_KEY
    )
    requests_mock.put(f"{API}/devices/{ICCID}", json={"iccid": ICCID})
    op = Operator(task_id="edit", iccids=[ICCID], changes={"ratePlan": "IOT-1GB"}, skip_unchanged=False)
    assert op.hook.conn_id == "cisco_control_center_default"
    assert op.execute(operator_context())["devices"]["succeeded"] == [ICCID]


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({}, id="nothing"),
        pytest.param({"iccids": [ICCID]}, id="iccids-without-changes"),
        pytest.param({"changes": {"status": "ACTIVATED"}}, id="changes-without-iccids"),
        pytest.param(
            {"edits": [{"iccid": ICCID, "status": "ACTIVATED"}], "iccids": [ICCID]}, id="edits-and-iccids"
        ),
        pytest.param(
            {"edits": [{"iccid": ICCID, "status": "ACTIVATED"}], "changes": {"status": "ACTIVATED"}},
            id="edits-and-changes",
        ),
        pytest.param(
            {
                "edits": [{"iccid": ICCID, "status": "ACTIVATED"}],
                "iccids": [ICCID],
                "changes": {"status": "ACTIVATED"},
            },
            id="all-three",
        ),
    ],
)
def test_invalid_argument_combinations_fail_at_construction(arguments: dict[str, Any]) -> None:
    with pytest.raises(IoTFleetValidationError) as caught:
        Operator(task_id="bad_args", **arguments)
    assert str(caught.value).startswith("bad_args: give either iccids and changes, or edits")


def test_changes_that_are_not_a_mapping_are_refused_before_any_request(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    op = make_operator(iccids=[ICCID], changes=["status", "ACTIVATED"])
    with pytest.raises(IoTFleetValidationError, match="changes must be a mapping") as caught:
        op.execute(operator_context())
    assert caught.value.problems[0].startswith("got list; pass a dict")
    assert requests_mock.call_count == 0


def test_changes_rendered_as_a_dict_string_are_read(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    # What Jinja gives for a dict without render_template_as_native_obj.
    put = requests_mock.put(f"{API}/devices/{ICCID}", json={"iccid": ICCID})
    op = make_operator(iccids=[ICCID], changes="{'ratePlan': 'IOT-1GB'}")
    assert op.execute(operator_context())["devices"]["succeeded"] == [ICCID]
    assert put.last_request.json() == {"ratePlan": "IOT-1GB"}


# --- validation before the first request ---------------------------------------------------------


def test_every_bad_iccid_and_field_is_named_in_one_error_and_nothing_is_sent(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    bad_check_digit = ICCID[:-1] + str((int(ICCID[-1]) + 1) % 10)
    op = make_operator(
        edits=[
            {"iccid": ICCID, "status": "ACTIVATED"},
            {"iccid": "12345", "status": "ACTIVATED"},
            {"iccid": bad_check_digit, "ratePlan": "IOT-1GB"},
            {"iccid": ICCID_19, "staus": "ACTIVATED"},
            {"iccid": luhn_complete("8901123456789000001"), "status": "SUSPENDED"},
            {"iccid": luhn_complete("8901123456789000002")},
            "not a mapping",
        ]
    )
    ctx = operator_context()
    with pytest.raises(IoTFleetValidationError) as caught:
        op.execute(ctx)
    message = str(caught.value)
    assert message.startswith("6 problems in 7 edits:")
    assert "edits[1].iccid '12345' has 5 digits; an ICCID has 19 or 20" in message
    assert f"edits[2].iccid '{bad_check_digit}' fails the ICCID check digit (Luhn)" in message
    assert "edits[3].staus: Control Center has no editable field 'staus'" in message
    assert "edits[4].status: 'SUSPENDED' is not a SIM status" in message
    assert "edits[5] is empty; give at least one field to change" in message
    assert "edits[6]: must be a mapping" in message
    assert len(caught.value.problems) == 6
    assert requests_mock.call_count == 0
    assert ctx["ti"].xcom == {}  # type: ignore[attr-defined]


def test_bad_iccids_given_with_changes_are_each_named(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    op = make_operator(iccids=[ICCID, "8901", None, ICCID_19], changes={"status": "ACTIVATED"})
    with pytest.raises(IoTFleetValidationError) as caught:
        op.execute(operator_context())
    assert "'8901' has 4 digits" in str(caught.value)
    assert "None is not a string of digits" in str(caught.value)
    assert len(caught.value.problems) == 2
    assert requests_mock.call_count == 0


def test_more_than_20_problems_are_capped_in_the_message_with_a_count(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    bad = [f"{n:05d}" for n in range(MAX_LISTED_PROBLEMS + 5)]
    op = make_operator(iccids=[ICCID, *bad], changes={"status": "ACTIVATED"})
    with pytest.raises(IoTFleetValidationError) as caught:
        op.execute(operator_context())
    message = str(caught.value)
    assert message.startswith(f"{MAX_LISTED_PROBLEMS + 5} problems in {MAX_LISTED_PROBLEMS + 6} ICCIDs:")
    assert message.count("\n  - ") == MAX_LISTED_PROBLEMS
    assert message.endswith("\n  ... and 5 more")
    assert f"'{bad[MAX_LISTED_PROBLEMS - 1]}'" in message and f"'{bad[MAX_LISTED_PROBLEMS]}'" not in message
    assert len(caught.value.problems) == MAX_LISTED_PROBLEMS + 5  # all kept on the error
    assert requests_mock.call_count == 0


def test_a_bad_field_in_changes_does_not_hide_a_bad_iccid(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    op = make_operator(iccids=[*iccids(30), "12345"], changes={"staus": "ACTIVATED"})
    with pytest.raises(IoTFleetValidationError) as caught:
        op.execute(operator_context())
    assert "'12345' has 5 digits" in str(caught.value)
    assert str(caught.value).count("'staus'") == 1
    assert requests_mock.call_count == 0


def test_duplicate_iccids_are_sent_once(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker, events: Events
) -> None:
    devices = iccids(3)
    puts = {iccid: requests_mock.put(f"{API}/devices/{iccid}", json={"iccid": iccid}) for iccid in devices}
    given = [devices[0], devices[1], devices[0], f" {devices[1]} ", int(devices[2]), devices[2]]
    op = make_operator(iccids=given, changes={"ratePlan": "IOT-1GB"})
    result = op.execute(operator_context())
    assert result["requested"] == 3
    assert result["devices"] == done(succeeded=devices)
    assert [put.call_count for put in puts.values()] == [1, 1, 1]
    assert_edit_outcome(result, devices)
    assert f"{VENDOR}: editing 3 devices (3 duplicates dropped), effective now" in lines(events, "info")[0]


def test_the_same_iccid_with_the_same_changes_in_edits_is_one_edit(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    put = requests_mock.put(f"{API}/devices/{ICCID}", json={"iccid": ICCID})
    op = make_operator(
        edits=[
            {"iccid": ICCID, "status": "ACTIVATED", "ratePlan": "IOT-1GB"},
            {"ratePlan": "IOT-1GB", "status": "ACTIVATED", "iccid": ICCID},
        ]
    )
    assert op.execute(operator_context())["requested"] == 1
    assert put.call_count == 1


def test_the_same_iccid_with_conflicting_changes_is_an_error(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    op = make_operator(
        edits=[
            {"iccid": ICCID, "ratePlan": "IOT-1GB"},
            {"iccid": ICCID_19, "ratePlan": "IOT-1GB"},
            {"iccid": ICCID, "ratePlan": "IOT-5GB"},
        ]
    )
    with pytest.raises(IoTFleetValidationError) as caught:
        op.execute(operator_context())
    assert str(caught.value) == f"1 problem in 3 edits:\n  - edits[0] and edits[2] change {ICCID} differently"
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        pytest.param({"iccids": [], "changes": {"status": "ACTIVATED"}}, "iccids", id="iccids"),
        pytest.param({"edits": []}, "edits", id="edits"),
        pytest.param({"edits": "[]"}, "edits", id="rendered-empty-list"),
        pytest.param(
            {"iccids": iter(list[str]()), "changes": {"status": "ACTIVATED"}}, "iccids", id="generator"
        ),
    ],
)
def test_an_empty_list_is_a_logged_no_op(
    make_operator: Callable[..., Operator],
    requests_mock: rm.Mocker,
    events: Events,
    arguments: dict[str, Any],
    name: str,
) -> None:
    ctx = operator_context()
    result = make_operator(**arguments).execute(ctx)
    assert result == {
        "operation": "edit_devices",
        "vendor": VENDOR,
        "requested": 0,
        "dry_run": False,
        "counts": counts(),
        "devices": done(),
        "errors": [],
        "effective_date": None,
    }
    assert pushed(ctx) == {}
    assert lines(events, "warning")[-1] == f"{VENDOR}: {name} is empty; nothing to do"
    assert requests_mock.call_count == 0


# --- effective_date ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effective_date", "sent"),
    [
        pytest.param("2026-12-01T13:00:00+01:00", "2026-12-01T12:00:00+00:00", id="string-with-offset"),
        pytest.param("2026-12-01T12:00:00Z", "2026-12-01T12:00:00+00:00", id="string-with-z"),
        pytest.param(
            datetime(2026, 12, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5))),
            "2026-12-01T12:00:00+00:00",
            id="aware-datetime",
        ),
        pytest.param(NOW + timedelta(days=180), "2027-05-20T12:00:00+00:00", id="180-days-ahead"),
    ],
)
def test_effective_date_is_sent_and_202_lands_in_scheduled(
    make_operator: Callable[..., Operator],
    requests_mock: rm.Mocker,
    events: Events,
    effective_date: datetime | str,
    sent: str,
) -> None:
    put = requests_mock.put(f"{API}/devices/{ICCID}", status_code=202, json={"iccid": ICCID})
    requests_mock.put(f"{API}/devices/{ICCID_19}", status_code=202, json={"iccid": ICCID_19})
    op = make_operator(
        iccids=[ICCID, ICCID_19], changes={"status": "DEACTIVATED"}, effective_date=effective_date
    )
    result = op.execute(operator_context())
    assert result["devices"] == done(scheduled=[ICCID, ICCID_19])
    assert (result["counts"], result["errors"]) == (counts(scheduled=2), [])
    assert result["effective_date"] == sent  # as sent: UTC, to the second
    assert put.request_history[-1].json() == {"status": "DEACTIVATED", "effectiveDate": sent}
    assert f"effective {sent}" in lines(events, "info")[0]


@pytest.mark.parametrize(
    ("effective_date", "summary"),
    [
        pytest.param(NOW - timedelta(minutes=1), "effective_date is in the past", id="past"),
        pytest.param("2026-11-20T12:00:00+00:00", "effective_date is in the past", id="past-string"),
        pytest.param(
            NOW + timedelta(days=180, seconds=1), "effective_date is too far ahead", id="over-180-days"
        ),
        pytest.param(datetime(2026, 12, 1, 12, 0), "effective_date has no time zone", id="naive-datetime"),
        pytest.param("2026-12-01T12:00:00", "effective_date has no time zone", id="naive-string"),
        pytest.param("next tuesday", "effective_date is not a date", id="not-a-date"),
    ],
)
def test_a_bad_effective_date_sends_nothing(
    make_operator: Callable[..., Operator],
    requests_mock: rm.Mocker,
    effective_date: datetime | str,
    summary: str,
) -> None:
    op = make_operator(iccids=[ICCID], changes={"status": "DEACTIVATED"}, effective_date=effective_date)
    ctx = operator_context()
    with pytest.raises(IoTFleetValidationError, match=summary):
        op.execute(ctx)
    assert requests_mock.call_count == 0
    assert ctx["ti"].xcom == {}  # type: ignore[attr-defined]


# --- outcomes ------------------------------------------------------------------------------------


def test_already_activated_is_unchanged_not_failed(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    requests_mock.put(f"{API}/devices/{ICCID}", status_code=400, json=ALREADY_ACTIVATED)
    requests_mock.put(f"{API}/devices/{ICCID_19}", json={"iccid": ICCID_19})
    ctx = operator_context()
    result = make_operator(iccids=[ICCID, ICCID_19], changes={"status": "ACTIVATED"}).execute(ctx)
    assert result["devices"] == done(succeeded=[ICCID_19], unchanged=[ICCID])
    assert (result["counts"], result["errors"]) == (counts(succeeded=1, unchanged=1), [])


def test_already_activated_for_another_change_is_a_failure(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    # 10030000 means "as asked" only for an activation.
    requests_mock.put(f"{API}/devices/{ICCID}", status_code=400, json=ALREADY_ACTIVATED)
    result = make_operator(iccids=[ICCID], changes={"ratePlan": "IOT-1GB"}, fail_on_error=False).execute(
        operator_context()
    )
    assert result["errors"] == [
        {
            "status": "failed",
            "error_code": "10030000",
            "http_status": 400,
            "message": "Cannot activate a SIM which is already activated.",
            "request_id": None,
            "retryable": False,
            "attempted": True,
            "devices": [ICCID],
        }
    ]
    assert result["devices"] == done()


def test_skip_unchanged_reads_first_and_skips_or_trims_the_put(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    as_asked, differs = ICCID, ICCID_19
    requests_mock.get(
        f"{API}/devices/{as_asked}", json={"iccid": as_asked, "status": "ACTIVATED", "ratePlan": "IOT-1GB"}
    )
    requests_mock.get(
        f"{API}/devices/{differs}", json={"iccid": differs, "status": "ACTIVATED", "ratePlan": "IOT-100MB"}
    )
    put_as_asked = requests_mock.put(f"{API}/devices/{as_asked}", json={"iccid": as_asked})
    put_differs = requests_mock.put(f"{API}/devices/{differs}", json={"iccid": differs})
    op = make_operator(
        iccids=[as_asked, differs],
        changes={"status": "ACTIVATED", "ratePlan": "IOT-1GB"},
        skip_unchanged=True,
    )
    result = op.execute(operator_context())
    assert result["devices"] == done(succeeded=[differs], unchanged=[as_asked])
    assert result["errors"] == []
    assert put_as_asked.call_count == 0
    assert put_differs.request_history[-1].json() == {"ratePlan": "IOT-1GB"}
    assert [r.method for r in requests_mock.request_history] == ["GET", "GET", "PUT"]


def test_skip_unchanged_false_writes_blind_and_records_no_before(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    get = requests_mock.get(rm.ANY, json={"iccid": ICCID, "status": "ACTIVATED"})
    requests_mock.put(f"{API}/devices/{ICCID}", json={"iccid": ICCID})
    result = make_operator(iccids=[ICCID], changes={"status": "ACTIVATED"}, skip_unchanged=False).execute(
        operator_context()
    )
    assert get.call_count == 0
    assert [r.method for r in requests_mock.request_history] == ["PUT"]
    assert "before" not in result
    with pytest.raises(ValueError, match="skip_unchanged=False"):
        rollback_edits(result)


def test_by_default_an_edit_reads_first_and_records_the_previous_values_it_changed(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    set_connection(CONN_ID, "cisco_control_center", host=HOST, login=USER, password=API_KEY)
    as_asked, differs = ICCID, ICCID_19
    requests_mock.get(
        f"{API}/devices/{as_asked}", json={"iccid": as_asked, "status": "ACTIVATED", "ratePlan": "IOT-1GB"}
    )
    requests_mock.get(
        f"{API}/devices/{differs}", json={"iccid": differs, "status": "ACTIVATED", "ratePlan": "IOT-100MB"}
    )
    requests_mock.put(f"{API}/devices/{differs}", json={"iccid": differs})
    op = Operator(
        task_id="edit_sims",
        cisco_control_center_conn_id=CONN_ID,
        iccids=[as_asked, differs],
        changes={"status": "ACTIVATED", "ratePlan": "IOT-1GB"},
    )
    op.__dict__["hook"] = CiscoControlCenterHook(CONN_ID, clock=clock)
    result = op.execute(operator_context())
    assert result["devices"] == done(succeeded=[differs], unchanged=[as_asked])
    # Only the field it changed, with the value it had: what a rollback writes back.
    assert result["before"] == {differs: {"ratePlan": "IOT-100MB"}}
    assert rollback_edits(result) == [{"iccid": differs, "ratePlan": "IOT-100MB"}]
    assert [r.method for r in requests_mock.request_history] == ["GET", "GET", "PUT"]


def test_a_scheduled_edit_records_before_values_and_an_edit_that_changed_nothing_an_empty_before(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    requests_mock.get(f"{API}/devices/{ICCID}", json={"iccid": ICCID, "status": "TEST_READY"})
    requests_mock.put(f"{API}/devices/{ICCID}", status_code=202, json={"iccid": ICCID})
    scheduled = make_operator(
        iccids=[ICCID],
        changes={"status": "ACTIVATED"},
        effective_date=NOW + timedelta(days=1),
        skip_unchanged=True,
    ).execute(operator_context())
    assert scheduled["devices"]["scheduled"] == [ICCID]
    assert scheduled["before"] == {ICCID: {"status": "TEST_READY"}}
    nothing = make_operator(iccids=[ICCID], changes={"status": "TEST_READY"}, skip_unchanged=True).execute(
        operator_context()
    )
    assert nothing["devices"]["unchanged"] == [ICCID]
    assert nothing["before"] == {}
    assert rollback_edits(nothing) == []


# --- fail_on_error: every device tried, the outcome pushed once ----------------------------------


@pytest.fixture
def mixed_answers(requests_mock: rm.Mocker) -> list[str]:
    """Five devices: two updated, two unknown to Control Center, one refused rate plan."""
    devices = iccids(5)
    ok, missing_1, bad_plan, missing_2, ok_2 = devices
    for iccid in (ok, ok_2):
        requests_mock.put(f"{API}/devices/{iccid}", json={"iccid": iccid})
    requests_mock.put(
        f"{API}/devices/{missing_1}", status_code=404, json=NOT_FOUND, headers={"X-Request-Id": "req-m1"}
    )
    requests_mock.put(
        f"{API}/devices/{missing_2}", status_code=404, json=NOT_FOUND, headers={"X-Request-Id": "req-m2"}
    )
    requests_mock.put(
        f"{API}/devices/{bad_plan}",
        status_code=404,
        json=INVALID_RATE_PLAN,
        headers={"X-Request-Id": "req-p"},
    )
    return devices


def test_fail_on_error_tries_every_device_pushes_outcome_then_raises(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker, mixed_answers: list[str]
) -> None:
    ok, missing_1, bad_plan, missing_2, ok_2 = mixed_answers
    ctx = operator_context()
    op = make_operator(iccids=mixed_answers, changes={"ratePlan": "IOT-1GB"})
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    assert requests_mock.call_count == 5  # every device was tried
    outcome = caught.value.outcome
    assert pushed(ctx) == {"outcome": outcome}  # once, under "outcome": the task has no return value
    assert_edit_outcome(outcome, mixed_answers)
    assert outcome["devices"] == done(succeeded=[ok, ok_2])
    assert outcome["counts"] == counts(succeeded=2, failed=3)
    # One group per distinct error, its devices in input order; the request id is the first one's.
    assert outcome["errors"] == [
        {
            "status": "failed",
            "error_code": "20000001",
            "http_status": 404,
            "message": "Resource not found - Invalid ICCID.",
            "request_id": "req-m1",
            "retryable": False,
            "attempted": True,
            "devices": [missing_1, missing_2],
        },
        {
            "status": "failed",
            "error_code": "10000013",
            "http_status": 404,
            "message": "Invalid ratePlan.",
            "request_id": "req-p",
            "retryable": False,
            "attempted": True,
            "devices": [bad_plan],
        },
    ]
    message = str(caught.value)
    assert message.startswith(
        "3 of 5 devices not done: 2 failed with 20000001 (HTTP 404): Resource not found - Invalid ICCID.; "
        "1 failed with 10000013 (HTTP 404): Invalid ratePlan."
    )
    assert "Every device was tried; the outcome is in XCom key 'outcome'" in message
    assert "fail_on_error=False" in message


def test_fail_on_error_false_returns_the_outcome_without_raising(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker, mixed_answers: list[str]
) -> None:
    ok, missing_1, bad_plan, missing_2, ok_2 = mixed_answers
    ctx = operator_context()
    result = make_operator(
        iccids=mixed_answers, changes={"ratePlan": "IOT-1GB"}, fail_on_error=False
    ).execute(ctx)
    assert pushed(ctx) == {}  # a task that succeeds has its outcome as return value only
    assert groups(result) == [
        ("failed", "20000001", 404, [missing_1, missing_2]),
        ("failed", "10000013", 404, [bad_plan]),
    ]
    assert result["devices"] == done(succeeded=[ok, ok_2])
    assert_edit_outcome(result, mixed_answers)
    assert requests_mock.call_count == 5


def test_failures_are_logged_once_per_error_with_the_first_request_id(
    make_operator: Callable[..., Operator], mixed_answers: list[str], events: Events
) -> None:
    _, missing_1, bad_plan, missing_2, _ = mixed_answers
    make_operator(iccids=mixed_answers, changes={"ratePlan": "IOT-1GB"}, fail_on_error=False).execute(
        operator_context()
    )
    assert lines(events, "error") == [
        f"{VENDOR}: failed: 2 devices, 20000001 (HTTP 404): Resource not found - Invalid ICCID. "
        f"(request id req-m1). e.g. {missing_1}, {missing_2}",
        f"{VENDOR}: failed: 1 device, 10000013 (HTTP 404): Invalid ratePlan. (request id req-p). e.g. {bad_plan}",
    ]


def test_a_large_failure_group_names_a_few_examples(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker, events: Events
) -> None:
    devices = iccids(5)
    requests_mock.put(rm.ANY, status_code=404, json=NOT_FOUND)
    make_operator(iccids=devices, changes={"ratePlan": "IOT-1GB"}, fail_on_error=False).execute(
        operator_context()
    )
    (line,) = lines(events, "error")
    assert line.startswith(f"{VENDOR}: failed: 5 devices, 20000001 (HTTP 404): Resource not found")
    assert line.endswith(f"e.g. {devices[0]}, {devices[1]}, {devices[2]} and 2 more")
    assert devices[3] not in line
    assert "request id" not in line  # none was sent


def test_a_server_error_is_retried_then_reported_as_retryable(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    put = requests_mock.put(f"{API}/devices/{ICCID}", status_code=503, text="Service Unavailable")
    result = make_operator(iccids=[ICCID], changes={"ratePlan": "IOT-1GB"}, fail_on_error=False).execute(
        operator_context()
    )
    assert put.call_count == 4  # the first attempt and three retries, on the fake clock
    assert result["errors"] == [
        {
            "status": "failed",
            "error_code": None,
            "http_status": 503,
            "message": "Service Unavailable",
            "request_id": None,
            "retryable": True,  # a later try may well pass
            "attempted": True,
            "devices": [ICCID],
        }
    ]


# --- the outcome contract ------------------------------------------------------------------------


LOST = {"errorCode": "30000001", "errorMessage": "Unknown server error."}


def test_the_cisco_outcome_matches_the_documented_shape(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    ok, active, missing, lost = iccids(4)
    requests_mock.put(f"{API}/devices/{ok}", json={"iccid": ok})
    requests_mock.put(f"{API}/devices/{active}", status_code=400, json=ALREADY_ACTIVATED)
    requests_mock.put(f"{API}/devices/{missing}", status_code=404, json=NOT_FOUND)
    # Every answer to this edit is lost, and each read back shows it not (yet) applied.
    requests_mock.put(f"{API}/devices/{lost}", status_code=500, json=LOST)
    requests_mock.get(f"{API}/devices/{lost}", json={"iccid": lost, "status": "DEACTIVATED"})
    result = make_operator(
        iccids=[ok, active, missing, lost], changes={"status": "ACTIVATED"}, fail_on_error=False
    ).execute(operator_context())
    assert_outcome_shape(result, operation="edit_devices", requested=[ok, active, missing, lost])
    assert result["counts"] == {
        "succeeded": 1,
        "unchanged": 1,
        "scheduled": 0,
        "accepted": 0,
        "failed": 1,
        "unknown": 1,
    }
    assert result["devices"] == done(succeeded=[ok], unchanged=[active])
    not_found, unknown = result["errors"]
    assert (not_found["status"], not_found["error_code"], not_found["devices"]) == (
        "failed",
        "20000001",
        [missing],
    )
    assert (unknown["status"], unknown["http_status"], unknown["devices"]) == ("unknown", 500, [lost])
    # It may have applied: not one to send again blindly, and the message says to check the device.
    assert (unknown["retryable"], unknown["attempted"]) == (False, True)
    assert unknown["message"] == (
        "the answers to the edit were lost again and again (last: Unknown server error.); "
        "Control Center may have applied it: check the device"
    )


def test_an_edit_whose_answer_and_read_back_are_both_lost_is_unknown_not_retryable(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    ok, lost = iccids(2)
    requests_mock.put(f"{API}/devices/{ok}", json={"iccid": ok})
    edit = requests_mock.put(
        f"{API}/devices/{lost}", status_code=500, json=LOST, headers={"X-Request-Id": "req-lost"}
    )
    read_back = requests_mock.get(f"{API}/devices/{lost}", status_code=500, json=LOST)
    ctx = operator_context()
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        make_operator(iccids=[ok, lost], changes={"status": "ACTIVATED"}).execute(ctx)
    outcome = caught.value.outcome
    assert pushed(ctx) == {"outcome": outcome}
    assert_edit_outcome(outcome, [ok, lost])
    assert outcome["devices"] == done(succeeded=[ok])
    says = (
        "the answer to the edit was lost (Unknown server error.) and reading the device back failed too "
        "(Unknown server error.); check the device"
    )
    assert outcome["errors"] == [
        {
            "status": "unknown",
            "error_code": "30000001",
            "http_status": 500,
            "message": says,
            "request_id": "req-lost",  # the edit's, not the read-back's
            "retryable": False,  # it may have applied: check the device rather than send it again
            "attempted": True,
            "devices": [lost],
        }
    ]
    assert FleetOutcome.from_xcom(outcome).ids_to_retry() == []
    assert str(caught.value).startswith(
        f"1 of 2 devices not done: 1 unknown with 30000001 (HTTP 500): {says}."
    )
    assert edit.call_count == 1  # never sent twice
    assert read_back.call_count == 4  # the read-back is retried as reads are


def test_300_devices_refused_the_same_way_are_one_error_group(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker, events: Events
) -> None:
    devices = iccids(300)
    request_ids = iter(range(1, 301))

    def not_found(request: Any, context: Any) -> dict[str, str]:
        context.status_code = 404
        context.headers["X-Request-Id"] = f"req-{next(request_ids)}"
        return NOT_FOUND

    requests_mock.put(rm.ANY, json=not_found)
    ctx = operator_context()
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        make_operator(iccids=devices, changes={"ratePlan": "IOT-1GB"}).execute(ctx)
    outcome = caught.value.outcome
    assert requests_mock.call_count == 300
    # One group: the request ids differ, the error does not; the message names no device.
    assert outcome["errors"] == [
        {
            "status": "failed",
            "error_code": "20000001",
            "http_status": 404,
            "message": "Resource not found - Invalid ICCID.",
            "request_id": "req-1",
            "retryable": False,
            "attempted": True,
            "devices": devices,
        }
    ]
    assert outcome["counts"] == counts(failed=300)
    assert str(caught.value).startswith("300 of 300 devices not done: 300 failed with 20000001 (HTTP 404): ")
    (line,) = lines(events, "error")
    assert line.startswith(f"{VENDOR}: failed: 300 devices, 20000001 (HTTP 404): ")
    assert line.endswith(f"e.g. {devices[0]}, {devices[1]}, {devices[2]} and 297 more")


def test_a_wrong_api_key_gives_the_refusal_and_the_devices_not_sent_as_two_groups(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker, events: Events
) -> None:
    devices = iccids(4)
    put = requests_mock.put(
        rm.ANY, status_code=401, json=INVALID_CREDENTIALS, headers={"X-Request-Id": "req-auth-1"}
    )
    ctx = operator_context()
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        make_operator(iccids=devices, changes={"status": "ACTIVATED"}).execute(ctx)
    assert put.call_count == 1  # refused credentials stop the run
    outcome = caught.value.outcome
    assert pushed(ctx) == {"outcome": outcome}
    assert_edit_outcome(outcome, devices)
    # Where to look is part of what a DAG author reads, in the XCom and in the task's error.
    check = f"Check the login (user name) and password (API key) of connection '{CONN_ID}'"
    refusal = {
        "status": "failed",
        "error_code": "10000001",
        "http_status": 401,
        "request_id": "req-auth-1",
        "retryable": False,
    }
    assert outcome["errors"] == [
        {**refusal, "message": f"Invalid credentials. {check}", "attempted": True, "devices": devices[:1]},
        {
            **refusal,
            "message": f"not attempted after an earlier error: Invalid credentials. {check}",
            "attempted": False,
            "devices": devices[1:],
        },
    ]
    message = str(caught.value)
    assert message.startswith(
        f"4 of 4 devices not done: 1 failed with 10000001 (HTTP 401): Invalid credentials. {check}; "
        "3 failed (not sent) with 10000001 (HTTP 401): not attempted after an earlier error: "
    )
    assert "Every device was tried" not in message  # three were not sent
    assert "1 of 4 devices tried, 3 not sent; " in message
    assert [line.split(": ")[1] for line in lines(events, "error")] == ["failed", "failed (not sent)"]


def test_only_errors_that_may_pass_later_are_retryable(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    unavailable, missing = ICCID, ICCID_19
    requests_mock.put(f"{API}/devices/{unavailable}", status_code=503, text="Service Unavailable")
    requests_mock.put(f"{API}/devices/{missing}", status_code=404, json=NOT_FOUND)
    result = make_operator(
        iccids=[unavailable, missing], changes={"ratePlan": "IOT-1GB"}, fail_on_error=False
    ).execute(operator_context())
    assert [(e["http_status"], e["retryable"], e["devices"]) for e in result["errors"]] == [
        (503, True, [unavailable]),
        (404, False, [missing]),
    ]


def test_a_task_that_succeeds_has_its_outcome_as_return_value_only(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    requests_mock.put(f"{API}/devices/{ICCID}", json={"iccid": ICCID})
    requests_mock.put(f"{API}/devices/{ICCID_19}", status_code=404, json=NOT_FOUND)
    ctx = operator_context()
    # Failures with fail_on_error=False: the task succeeds, and its failures are in the return value.
    result = make_operator(
        iccids=[ICCID, ICCID_19], changes={"ratePlan": "IOT-1GB"}, fail_on_error=False
    ).execute(ctx)
    assert pushed(ctx) == {}  # nothing under "outcome": Airflow pushes the return value
    assert result["counts"] == counts(succeeded=1, failed=1)


def test_a_task_that_fails_pushes_its_outcome_once_under_outcome(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    requests_mock.put(f"{API}/devices/{ICCID}", json={"iccid": ICCID})
    requests_mock.put(f"{API}/devices/{ICCID_19}", status_code=404, json=NOT_FOUND)
    ctx = operator_context()
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        make_operator(iccids=[ICCID, ICCID_19], changes={"ratePlan": "IOT-1GB"}).execute(ctx)
    assert pushed(ctx) == {"outcome": caught.value.outcome}
    assert caught.value.outcome["counts"] == counts(succeeded=1, failed=1)
    assert "Every device was tried" in str(caught.value)  # both were sent


# --- retries: a try after the first starts from what is true now ---------------------------------


class FakeControlCenter:
    """Control Center's device endpoints on requests-mock, with state: a PUT applies its fields (or,
    with an effective date, is scheduled and answered 202), a GET reads the device back, and a
    device in :attr:`refusing` answers that error instead."""

    def __init__(self, requests_mock: rm.Mocker, devices: dict[str, dict[str, str]]) -> None:
        self.devices = {iccid: {"iccid": iccid, **fields} for iccid, fields in devices.items()}
        self.scheduled: list[tuple[str, dict[str, str]]] = []
        self.refusing: dict[str, tuple[int, dict[str, str]]] = {}
        #: called with the ICCID of each PUT as it arrives
        self.on_put: Callable[[str], None] = lambda iccid: None
        self.history = requests_mock.request_history
        path = re.compile(rf"^{re.escape(API)}/devices/(\d+)$")
        requests_mock.get(path, json=self._get)
        requests_mock.put(path, json=self._put)

    def _get(self, request: Any, context: Any) -> dict[str, str]:
        return self.devices[request.path.rsplit("/", 1)[1]]

    def _put(self, request: Any, context: Any) -> dict[str, str]:
        iccid = request.path.rsplit("/", 1)[1]
        self.on_put(iccid)
        if iccid in self.refusing:
            context.status_code, body = self.refusing[iccid]
            return body
        changes = request.json()
        if "effectiveDate" in changes:
            self.scheduled.append((iccid, changes))
            context.status_code = 202
        else:
            self.devices[iccid].update(changes)
        return {"iccid": iccid}

    def calls(self, since: int = 0) -> list[tuple[str, str]]:
        """(method, ICCID) of each request from the ``since``-th on."""
        return [(r.method, r.path.rsplit("/", 1)[1]) for r in self.history[since:]]


UNAVAILABLE = (503, {"errorMessage": "Service temporarily unavailable."})
WHEN = "2026-12-01T00:00:00+00:00"


@pytest.fixture
def three_deactivated(requests_mock: rm.Mocker) -> tuple[FakeControlCenter, list[str]]:
    devices = iccids(3)
    return FakeControlCenter(requests_mock, {iccid: {"status": "DEACTIVATED"} for iccid in devices}), devices


def test_a_retry_reads_each_device_and_sends_only_what_is_still_different(
    make_operator: Callable[..., Operator],
    three_deactivated: tuple[FakeControlCenter, list[str]],
    events: Events,
) -> None:
    fleet, (first, second, third) = three_deactivated
    fleet.refusing[third] = UNAVAILABLE
    store = FakeTaskStateStore()
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        make_operator(iccids=[first, second, third], changes={"status": "ACTIVATED"}).execute(
            operator_context(state_store=store)
        )
    assert caught.value.outcome["devices"] == done(succeeded=[first, second])
    assert groups(caught.value.outcome) == [("failed", None, 503, [third])]
    assert caught.value.outcome["errors"][0]["retryable"]
    # Airflow retries the task once the outage is over: a fresh operator, the next try number.
    del fleet.refusing[third]
    before = len(fleet.history)
    ctx = operator_context(try_number=2, state_store=store)
    result = make_operator(iccids=[first, second, third], changes={"status": "ACTIVATED"}).execute(ctx)
    assert fleet.calls(before) == [("GET", first), ("GET", second), ("GET", third), ("PUT", third)]
    assert result["devices"] == done(succeeded=[third], unchanged=[first, second])
    assert result["counts"] == counts(succeeded=1, unchanged=2)
    assert pushed(ctx) == {}
    assert all(device["status"] == "ACTIVATED" for device in fleet.devices.values())
    first_start, retry_start = [line for line in lines(events, "info") if ": editing 3 devices" in line]
    assert "reading each device" not in first_start
    assert "effective now, try 2: reading each device first to skip what is done" in retry_start


def test_a_retry_does_not_schedule_again_what_an_earlier_try_scheduled(
    make_operator: Callable[..., Operator],
    three_deactivated: tuple[FakeControlCenter, list[str]],
    events: Events,
) -> None:
    fleet, (first, second, third) = three_deactivated
    fleet.refusing[third] = UNAVAILABLE
    store = FakeTaskStateStore()
    edit = {"iccids": [first, second, third], "changes": {"status": "ACTIVATED"}, "effective_date": WHEN}
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        make_operator(**edit).execute(operator_context(state_store=store))
    assert caught.value.outcome["devices"] == done(scheduled=[first, second])
    del fleet.refusing[third]
    before = len(fleet.history)
    result = make_operator(**edit).execute(operator_context(try_number=2, state_store=store))
    # Control Center shows no pending change; the task state store says what try 1 scheduled.
    assert fleet.calls(before) == [("GET", third), ("PUT", third)]
    assert result["devices"] == done(scheduled=[first, second, third])
    assert [iccid for iccid, _ in fleet.scheduled] == [first, second, third]  # each once
    retry_start = [line for line in lines(events, "info") if ": editing 3 devices" in line][1]
    assert (
        "try 2: reading each device first to skip what is done (2 scheduled by an earlier try, not sent again)"
        in retry_start
    )


def test_a_retry_after_a_kill_does_not_schedule_again_what_the_killed_try_scheduled(
    make_operator: Callable[..., Operator], three_deactivated: tuple[FakeControlCenter, list[str]]
) -> None:
    # A killed try (out of memory, a lost worker) runs no cleanup: its retry knows only what the
    # task state store held when the process died, here as the third edit was being sent.
    fleet, (first, second, third) = three_deactivated
    store, at_the_kill = FakeTaskStateStore(), FakeTaskStateStore()
    fleet.on_put = lambda iccid: at_the_kill.values.update(store.values) if iccid == third else None
    edit = {"iccids": [first, second, third], "changes": {"status": "ACTIVATED"}, "effective_date": WHEN}
    make_operator(**edit).execute(operator_context(state_store=store))
    before = len(fleet.history)
    result = make_operator(**edit).execute(operator_context(try_number=2, state_store=at_the_kill))
    assert fleet.calls(before) == [("GET", third), ("PUT", third)]
    assert result["devices"] == done(scheduled=[first, second, third])
    # The edit in flight when the process died is sent again: nothing could record its answer.
    assert [iccid for iccid, _ in fleet.scheduled] == [first, second, third, third]


def test_a_retry_sends_an_edit_that_differs_from_what_an_earlier_try_scheduled(
    make_operator: Callable[..., Operator], three_deactivated: tuple[FakeControlCenter, list[str]]
) -> None:
    fleet, (first, *_) = three_deactivated
    store = FakeTaskStateStore()
    make_operator(iccids=[first], changes={"status": "ACTIVATED"}, effective_date=WHEN).execute(
        operator_context(state_store=store)
    )
    before = len(fleet.history)
    later = "2026-12-02T00:00:00+00:00"
    result = make_operator(iccids=[first], changes={"status": "ACTIVATED"}, effective_date=later).execute(
        operator_context(try_number=2, state_store=store)
    )
    assert fleet.calls(before) == [("GET", first), ("PUT", first)]
    assert result["devices"] == done(scheduled=[first])
    assert [changes["effectiveDate"] for _, changes in fleet.scheduled] == [WHEN, later]


def test_without_a_task_state_store_a_retry_schedules_again(
    make_operator: Callable[..., Operator], three_deactivated: tuple[FakeControlCenter, list[str]]
) -> None:
    # Airflow 3.2 has no task state store: the documented limitation (give such tasks retries=0).
    fleet, (first, second, third) = three_deactivated
    fleet.refusing[third] = UNAVAILABLE
    edit = {"iccids": [first, second, third], "changes": {"status": "ACTIVATED"}, "effective_date": WHEN}
    with pytest.raises(IoTFleetOperationFailedError):
        make_operator(**edit).execute(operator_context())
    del fleet.refusing[third]
    before = len(fleet.history)
    result = make_operator(**edit).execute(operator_context(try_number=2))
    assert fleet.calls(before) == [
        ("GET", first),
        ("PUT", first),
        ("GET", second),
        ("PUT", second),
        ("GET", third),
        ("PUT", third),
    ]
    assert result["devices"] == done(scheduled=[first, second, third])
    assert [iccid for iccid, _ in fleet.scheduled] == [first, second, first, second, third]


# --- logs ----------------------------------------------------------------------------------------


def test_start_and_summary_lines(
    make_operator: Callable[..., Operator], mixed_answers: list[str], events: Events
) -> None:
    given = [*mixed_answers, mixed_answers[0]]
    make_operator(iccids=given, changes={"ratePlan": "IOT-1GB"}, fail_on_error=False).execute(
        operator_context()
    )
    info = lines(events, "info")
    assert info[0] == (
        f"{VENDOR}: editing 5 devices (1 duplicate dropped), effective now, at {API} (connection '{CONN_ID}')"
    )
    (summary,) = [line for line in info if " done in " in line]
    assert summary.startswith(f"{VENDOR}: done in ")
    assert summary.endswith(": 2 succeeded, 3 failed")


def test_start_line_says_when_devices_are_read_first(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker, events: Events
) -> None:
    requests_mock.get(f"{API}/devices/{ICCID}", json={"iccid": ICCID, "status": "ACTIVATED"})
    make_operator(iccids=[ICCID], changes={"status": "ACTIVATED"}, skip_unchanged=True).execute(
        operator_context()
    )
    assert "reading each device first to skip what is already as asked" in lines(events, "info")[0]
    assert lines(events, "info")[-1].endswith(": 1 unchanged")


def test_progress_lines_on_a_long_run(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker, events: Events
) -> None:
    devices = iccids(3)
    requests_mock.put(rm.ANY, status_code=404, json=NOT_FOUND)
    requests_mock.put(f"{API}/devices/{devices[0]}", json={"iccid": devices[0]})
    op = make_operator(
        iccids=devices, changes={"ratePlan": "IOT-1GB"}, progress_interval=0, fail_on_error=False
    )
    op.execute(operator_context())
    progress = [line for line in lines(events, "info") if "/3 devices" in line]
    # A line per device but the last, which the summary covers.
    assert [line.split(" (")[0] for line in progress] == [f"{VENDOR}: 1/3 devices", f"{VENDOR}: 2/3 devices"]
    assert progress[0].endswith("; 0 failed so far") and progress[1].endswith("; 1 failed so far")


def test_no_credential_in_any_log_line_error_or_xcom(
    make_operator: Callable[..., Operator],
    requests_mock: rm.Mocker,
    events: Events,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    devices = iccids(3)
    requests_mock.put(f"{API}/devices/{devices[0]}", json={"iccid": devices[0]})
    requests_mock.put(
        f"{API}/devices/{devices[1]}",
        [{"status_code": 500, "json": {}}, {"status_code": 404, "json": NOT_FOUND}],
    )
    requests_mock.put(f"{API}/devices/{devices[2]}", status_code=401, json=INVALID_CREDENTIALS)
    requests_mock.get(f"{API}/devices/{devices[0]}", json={"iccid": devices[0], "status": "DEACTIVATED"})
    requests_mock.get(f"{API}/devices/{devices[1]}", json={"iccid": devices[1], "status": "DEACTIVATED"})
    requests_mock.get(f"{API}/devices/{devices[2]}", json={"iccid": devices[2], "status": "DEACTIVATED"})
    ctx = operator_context()
    op = make_operator(iccids=devices, changes={"status": "ACTIVATED"}, skip_unchanged=True)
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    basic = base64.b64encode(f"{USER}:{API_KEY}".encode()).decode()
    captured = capsys.readouterr()
    haystacks = {
        "log events": "\n".join(repr(event) for event in events),
        "log records": "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records),
        "error": f"{caught.value!s} {caught.value!r}",
        "xcom": json.dumps(ctx["ti"].xcom),  # type: ignore[attr-defined]
        "stdout": captured.out,
        "stderr": captured.err,
    }
    assert any(line.startswith(f"{VENDOR}: failed: ") for line in lines(events, "error"))
    assert any(
        request.headers.get("Authorization") == f"Basic {basic}" for request in requests_mock.request_history
    )
    for secret in (API_KEY, basic):
        for where, text in haystacks.items():
            assert secret not in text, f"credential found in {where}"


# --- templated inputs ----------------------------------------------------------------------------


class XComTaskInstance(FakeTaskInstance):
    """A task instance whose upstream task ``find_sims`` returned a list of ICCIDs."""

    def __init__(self, pulled: list[str]) -> None:
        super().__init__("edit_sims")
        self.pulled = pulled

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> list[str]:
        assert (task_ids, key) == ("find_sims", "return_value")
        return self.pulled


def _templated(
    clock: FakeClock, native: bool, context_extra: dict[str, Any], **arguments: Any
) -> tuple[Operator, dict[str, Any]]:
    with DAG(
        dag_id=f"cisco_templates_{'native' if native else 'text'}",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        render_template_as_native_obj=native,
    ):
        op = Operator(
            task_id="edit_sims", cisco_control_center_conn_id=CONN_ID, skip_unchanged=False, **arguments
        )
    op.__dict__["hook"] = CiscoControlCenterHook(CONN_ID, clock=clock)
    context = {**operator_context("edit_sims"), **context_extra}
    op.render_template_fields(context)
    return op, context


@pytest.fixture
def two_devices(set_connection: Callable[..., None], requests_mock: rm.Mocker) -> list[str]:
    set_connection(CONN_ID, "cisco_control_center", host=HOST, login=USER, password=API_KEY)
    for iccid in (ICCID, ICCID_19):
        requests_mock.put(f"{API}/devices/{iccid}", json={"iccid": iccid})
    return [ICCID, ICCID_19]


@pytest.mark.parametrize("native", [True, False], ids=["native", "text"])
def test_iccids_from_params(
    two_devices: list[str], requests_mock: rm.Mocker, clock: FakeClock, native: bool
) -> None:
    op, context = _templated(
        clock,
        native,
        {"params": {"iccids": two_devices, "site": "site-7"}},
        iccids="{{ params.iccids }}",
        changes={"status": "ACTIVATED", "accountCustom1": "{{ params.site }}"},
    )
    if not native:
        assert isinstance(op.iccids, str)  # Jinja rendered the list as its literal
    result = op.execute(context)
    assert result["devices"]["succeeded"] == two_devices
    assert requests_mock.request_history[-1].json() == {"status": "ACTIVATED", "accountCustom1": "site-7"}


@pytest.mark.parametrize("native", [True, False], ids=["native", "text"])
def test_iccids_from_an_upstream_xcom(
    two_devices: list[str], requests_mock: rm.Mocker, clock: FakeClock, native: bool
) -> None:
    op, context = _templated(
        clock,
        native,
        {"ti": XComTaskInstance(two_devices), "params": {}},
        iccids="{{ ti.xcom_pull(task_ids='find_sims') }}",
        changes={"ratePlan": "IOT-1GB"},
    )
    result = op.execute(context)
    assert result["devices"]["succeeded"] == two_devices
    assert context["ti"].xcom == {}  # the outcome is the return value only
    assert requests_mock.call_count == 2


@pytest.mark.parametrize("native", [True, False], ids=["native", "text"])
def test_edits_and_effective_date_from_params(
    two_devices: list[str], requests_mock: rm.Mocker, clock: FakeClock, native: bool
) -> None:
    requests_mock.put(f"{API}/devices/{ICCID}", status_code=202, json={"iccid": ICCID})
    requests_mock.put(f"{API}/devices/{ICCID_19}", status_code=202, json={"iccid": ICCID_19})
    edits = [{"iccid": ICCID, "status": "DEACTIVATED"}, {"iccid": ICCID_19, "ratePlan": "IOT-1GB"}]
    op, context = _templated(
        clock,
        native,
        {"params": {"edits": edits, "when": "2026-12-01T00:00:00+00:00"}},
        edits="{{ params.edits }}",
        effective_date="{{ params.when }}",
    )
    result = op.execute(context)
    assert result["devices"]["scheduled"] == [ICCID, ICCID_19]
    assert result["effective_date"] == "2026-12-01T00:00:00+00:00"
    assert [r.json() for r in requests_mock.request_history] == [
        {"status": "DEACTIVATED", "effectiveDate": "2026-12-01T00:00:00+00:00"},
        {"ratePlan": "IOT-1GB", "effectiveDate": "2026-12-01T00:00:00+00:00"},
    ]


def test_a_template_rendering_a_plain_string_is_refused_with_advice(
    two_devices: list[str], requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    op, context = _templated(
        clock,
        False,
        {"params": {"iccid": ICCID}},
        iccids="{{ params.iccid }}",
        changes={"ratePlan": "IOT-1GB"},
    )
    with pytest.raises(IoTFleetValidationError) as caught:
        op.execute(context)
    assert str(caught.value).startswith("iccids must be a list:")
    assert "render_template_as_native_obj=True" in str(caught.value)
    assert requests_mock.call_count == 0


# --- more ways a run goes ------------------------------------------------------------------------


def test_concurrent_edits_keep_input_order_and_account_for_every_device(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    set_connection(
        CONN_ID,
        "cisco_control_center",
        host=HOST,
        login=USER,
        password=API_KEY,
        extra={"max_concurrency": 4, "requests_per_second": 1000},
    )
    devices = iccids(12)
    for n, iccid in enumerate(devices):
        if n % 3 == 2:
            requests_mock.put(f"{API}/devices/{iccid}", status_code=404, json=NOT_FOUND)
        else:
            requests_mock.put(f"{API}/devices/{iccid}", json={"iccid": iccid})
    op = Operator(
        task_id="edit_sims",
        iccids=devices,
        changes={"ratePlan": "IOT-1GB"},
        cisco_control_center_conn_id=CONN_ID,
        fail_on_error=False,
        skip_unchanged=False,
    )
    op.__dict__["hook"] = CiscoControlCenterHook(CONN_ID, clock=clock)
    result = op.execute(operator_context())
    assert result["devices"] == done(succeeded=[iccid for n, iccid in enumerate(devices) if n % 3 != 2])
    assert groups(result) == [
        ("failed", "20000001", 404, [iccid for n, iccid in enumerate(devices) if n % 3 == 2])
    ]
    assert_edit_outcome(result, devices)
    assert requests_mock.call_count == 12


def test_an_unreachable_host_stops_the_run_and_says_which_connection_to_check(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker, events: Events
) -> None:
    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    put = requests_mock.put(rm.ANY, exc=requests.ConnectionError(MaxRetryError(None, HOST, refused)))  # type: ignore[arg-type]
    ctx = operator_context()
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        make_operator(iccids=[ICCID, ICCID_19], changes={"ratePlan": "IOT-1GB"}).execute(ctx)
    assert put.call_count == 4  # the first device, retried; the second is not sent
    outcome = caught.value.outcome
    assert pushed(ctx) == {"outcome": outcome}
    assert groups(outcome) == [("failed", None, None, [ICCID]), ("failed", None, None, [ICCID_19])]
    sent, not_sent = outcome["errors"]
    assert (sent["attempted"], not_sent["attempted"]) == (True, False)
    assert sent["retryable"] and not_sent["retryable"]  # both may well pass once the host answers
    for error in outcome["errors"]:
        assert "Connection refused" in error["message"]
        assert error["message"].endswith(f"(host of connection '{CONN_ID}')")
        assert ICCID not in error["message"] and ICCID_19 not in error["message"]
    assert str(caught.value).startswith(
        "2 of 2 devices not done: 1 failed with error: could not be completed: "
    )
    assert "Every device was tried" not in str(caught.value)
    assert [line.split(", e")[0] for line in lines(events, "error")] == [
        f"{VENDOR}: failed: 1 device",
        f"{VENDOR}: failed (not sent): 1 device",
    ]


def test_a_connection_without_api_key_fails_before_any_request(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    set_connection("cisco_no_key", "cisco_control_center", host=HOST, login=USER)
    op = Operator(
        task_id="edit_sims",
        iccids=[ICCID],
        changes={"ratePlan": "IOT-1GB"},
        cisco_control_center_conn_id="cisco_no_key",
    )
    ctx = operator_context()
    with pytest.raises(IoTFleetConfigurationError, match="password is empty; set it to the API key"):
        op.execute(ctx)
    assert requests_mock.call_count == 0
    assert ctx["ti"].xcom == {}  # type: ignore[attr-defined]


def test_an_iccid_inside_changes_is_refused(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    other = luhn_complete("8901123456789099999")
    requests_mock.put(rm.ANY, json={"iccid": other})
    op = make_operator(iccids=[ICCID, ICCID_19], changes={"iccid": other, "ratePlan": "IOT-1GB"})
    with pytest.raises(IoTFleetValidationError):
        op.execute(operator_context())
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("retrying", [False, True], ids=["first-try", "retry-reads-first"])
def test_edits_and_date_are_validated_once_by_the_operator_not_again_by_the_hook(
    make_operator: Callable[..., Operator],
    requests_mock: rm.Mocker,
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
    retrying: bool,
) -> None:
    checks: list[str] = []

    def counted(name: str, check: Callable[..., Any]) -> Callable[..., Any]:
        def counting(*args: Any, **kwargs: Any) -> Any:
            checks.append(name)
            return check(*args, **kwargs)

        return counting

    for module in (cisco_operator, cisco_hook):
        for name in ("validate_cisco_edits", "validate_iccids", "validate_effective_date"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, counted(name, getattr(module, name)))
    devices = iccids(2)
    for iccid in devices:
        requests_mock.put(f"{API}/devices/{iccid}", status_code=202, json={"iccid": iccid})
        requests_mock.get(f"{API}/devices/{iccid}", json={"iccid": iccid, "ratePlan": "IOT-100MB"})
    op = make_operator(
        edits=[{"iccid": iccid, "ratePlan": "IOT-1GB"} for iccid in devices],
        effective_date=clock.now() + timedelta(days=1),
    )
    op.execute(operator_context(try_number=2 if retrying else 1))
    assert sorted(checks) == ["validate_cisco_edits", "validate_effective_date"]


# --- dry run: a plan from one read per device, no PUT ---------------------------------------------


def test_a_dry_run_reads_each_device_once_and_plans_from_and_to_without_writing(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker, events: Events
) -> None:
    as_asked, differs, missing = iccids(3)
    requests_mock.get(
        f"{API}/devices/{as_asked}", json={"iccid": as_asked, "status": "ACTIVATED", "ratePlan": "IOT-1GB"}
    )
    requests_mock.get(
        f"{API}/devices/{differs}", json={"iccid": differs, "status": "TEST_READY", "ratePlan": "IOT-1GB"}
    )
    requests_mock.get(f"{API}/devices/{missing}", status_code=404, json=NOT_FOUND)
    put = requests_mock.put(rm.ANY, json={})
    op = make_operator(
        iccids=[as_asked, differs, missing],
        changes={"status": "ACTIVATED", "ratePlan": "IOT-1GB"},
        dry_run=True,
    )
    ctx = operator_context()
    result = op.execute(ctx)
    assert_outcome_shape(result, operation="edit_devices", requested=[as_asked, differs, missing])
    assert result.keys() == OUTCOME_KEYS | {"effective_date", "plan"}  # the same shape, and the plan
    assert result["dry_run"] is True
    assert result["devices"] == done(succeeded=[differs], unchanged=[as_asked])
    assert result["plan"] == {differs: {"status": {"from": "TEST_READY", "to": "ACTIVATED"}}}
    assert groups(result) == [("failed", "20000001", 404, [missing])]
    assert put.call_count == 0
    assert [r.method for r in requests_mock.request_history] == ["GET", "GET", "GET"]
    assert pushed(ctx) == {}  # a plan does not fail the task for a device that would fail
    assert any("would be failed: 1 device, 20000001" in line for line in lines(events, "warning"))


def test_a_dry_run_with_an_effective_date_would_schedule_and_shows_unreadable_fields_as_from_none(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker
) -> None:
    requests_mock.get(f"{API}/devices/{ICCID}", json={"iccid": ICCID, "fixedIPAddress": "10.0.0.1"})
    when = NOW + timedelta(days=2)
    result = make_operator(
        edits=[{"iccid": ICCID, "ipv4Address": "10.0.0.9", "apn": "iot.apn", "pdpId": "1"}],
        effective_date=when,
        dry_run="True",  # as a template renders it
    ).execute(operator_context())
    assert result["devices"] == done(scheduled=[ICCID])
    assert result["effective_date"] == when.isoformat(timespec="seconds")
    assert result["plan"] == {
        ICCID: {
            "ipv4Address": {"from": "10.0.0.1", "to": "10.0.0.9"},
            "apn": {"from": None, "to": "iot.apn"},
            "pdpId": {"from": None, "to": "1"},
        }
    }
    assert [r.method for r in requests_mock.request_history] == ["GET"]


@pytest.mark.parametrize("dry_run", [True, False])
def test_bad_input_fails_a_dry_run_as_it_fails_the_edit_before_any_request(
    make_operator: Callable[..., Operator], requests_mock: rm.Mocker, dry_run: bool
) -> None:
    edits = [{"iccid": "123", "status": "ACTIVE"}, {"iccid": ICCID, "ratePlan": "IOT-1GB"}]
    with pytest.raises(IoTFleetValidationError) as caught:
        make_operator(edits=edits, dry_run=dry_run).execute(operator_context())
    assert "edits[0].iccid '123'" in str(caught.value)
    assert "edits[0].status: 'ACTIVE' is not a SIM status" in str(caught.value)
    assert requests_mock.call_count == 0


def test_dry_run_is_templated() -> None:
    assert "dry_run" in Operator.template_fields
