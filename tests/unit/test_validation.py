from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_iotfleet.exceptions import MAX_LISTED_PROBLEMS, IoTFleetValidationError
from airflow_provider_iotfleet.hooks.cisco.rules import (
    validate_cisco_changes,
    validate_cisco_edits,
    validate_effective_date,
)
from airflow_provider_iotfleet.hooks.paloalto import validate_cellular_devices
from airflow_provider_iotfleet.validation import validate_iccids, validate_imeis, validate_roma_device_ids
from tests.fakes import ICCID, ICCID_19, IMEI, IMEI_2, luhn_complete

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_valid_imeis_come_back_as_strings() -> None:
    assert validate_imeis([IMEI, int(IMEI_2)]) == [IMEI, IMEI_2]


def test_one_error_names_every_bad_imei() -> None:
    bad_check_digit = IMEI[:-1] + str((int(IMEI[-1]) + 1) % 10)
    with pytest.raises(IoTFleetValidationError) as caught:
        validate_imeis([IMEI, "12345", bad_check_digit, "35693803564380X", None])
    message = str(caught.value)
    assert "4 of 5 IMEIs are invalid" in message
    assert "imeis[1] '12345' has 5 digits; an IMEI has 15" in message
    assert f"imeis[2] '{bad_check_digit}' fails the IMEI check digit" in message
    assert "imeis[3]" in message and "imeis[4] None" in message
    assert len(caught.value.problems) == 4


def test_iccids_of_19_and_20_digits_pass_and_others_are_named() -> None:
    assert validate_iccids([ICCID, ICCID_19]) == [ICCID, ICCID_19]
    with pytest.raises(IoTFleetValidationError, match=r"iccids\[0\] '8901410321111851' has 16 digits"):
        validate_iccids(["8901410321111851"])
    with pytest.raises(IoTFleetValidationError, match="fails the ICCID check digit"):
        validate_iccids([ICCID[:-1] + "1"])


def test_empty_or_non_list_input_is_rejected() -> None:
    with pytest.raises(IoTFleetValidationError, match="imeis is empty"):
        validate_imeis([])
    with pytest.raises(IoTFleetValidationError, match="imeis must be a list"):
        validate_imeis(IMEI)


def test_roma_device_ids_range() -> None:
    assert validate_roma_device_ids([1, "99999999999999999"]) == [1, 99_999_999_999_999_999]
    with pytest.raises(IoTFleetValidationError) as caught:
        validate_roma_device_ids([0, 100_000_000_000_000_000, "abc", True])
    assert len(caught.value.problems) == 4


@pytest.mark.parametrize(
    ("validate", "good", "normalised", "bad", "summary", "problem"),
    [
        (validate_imeis, f" {IMEI} ", IMEI, "12", "1 of 2 IMEIs is invalid", "imeis[1] '12' has 2 digits"),
        (
            validate_iccids,
            int(ICCID),
            ICCID,
            "89",
            "1 of 2 ICCIDs is invalid",
            "iccids[1] '89' has 2 digits",
        ),
        (
            validate_roma_device_ids,
            "7",
            7,
            "7a",
            "1 of 2 ROMA device ids is invalid",
            "device_ids[1] '7a' is not an integer",
        ),
    ],
)
def test_every_identifier_kind_is_validated_and_reported_alike(
    validate: Callable[[Any], list[Any]], good: Any, normalised: Any, bad: str, summary: str, problem: str
) -> None:
    assert validate([good]) == [normalised]
    with pytest.raises(IoTFleetValidationError) as caught:
        validate([good, bad])
    assert str(caught.value).splitlines()[0] == f"{summary}:"
    assert len(caught.value.problems) == 1 and caught.value.problems[0].startswith(problem)
    with pytest.raises(IoTFleetValidationError, match="is empty"):
        validate([])


def test_effective_date_window() -> None:
    assert validate_effective_date("2026-12-01T00:00:00+00:00", NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    assert validate_effective_date(NOW + timedelta(days=180), NOW) == NOW + timedelta(days=180)
    with pytest.raises(IoTFleetValidationError, match="in the past"):
        validate_effective_date(NOW - timedelta(minutes=1), NOW)
    with pytest.raises(IoTFleetValidationError, match="too far ahead"):
        validate_effective_date(NOW + timedelta(days=181), NOW)
    with pytest.raises(IoTFleetValidationError, match="no time zone"):
        validate_effective_date("2026-12-01T00:00:00", NOW)
    with pytest.raises(IoTFleetValidationError, match="not ISO 8601"):
        validate_effective_date("next tuesday", NOW)


def test_cisco_changes_list_every_problem() -> None:
    with pytest.raises(IoTFleetValidationError) as caught:
        validate_cisco_changes(
            {
                "status": "activated",
                "accountCustom1": "x" * 2001,
                "ipv4Address": "10.0.0.300",
                "overageLimitOverride": "SOMETIMES",
                "colour": "blue",
                "effectiveDate": "2026-12-01T00:00:00+00:00",
            }
        )
    problems = "\n".join(caught.value.problems)
    assert "changes.status: 'activated' is not a SIM status; use one of ACTIVATED" in problems
    assert "changes.accountCustom1: 2001 characters; at most 2000" in problems
    assert "changes.ipv4Address: '10.0.0.300' is not an IPv4 address" in problems
    assert "changes.overageLimitOverride" in problems
    assert "no editable field 'colour'" in problems
    assert "pass the date as effective_date" in problems
    assert "an IP address change needs apn and pdpId" in problems


def test_cisco_changes_need_at_least_one_field_and_accept_custom_field_at_limit() -> None:
    with pytest.raises(IoTFleetValidationError, match="give at least one field"):
        validate_cisco_changes({})
    changes = {"accountCustom10": "y" * 2000, "ipv6Address": "2001:db8::1", "apn": "iot", "pdpId": "1"}
    assert validate_cisco_changes(changes) == changes


def test_unknown_sim_status_is_refused_before_sending() -> None:
    # "ACTIVE" used to pass with a warning and come back as the vendor's 10000005 "Invalid status."
    with pytest.raises(IoTFleetValidationError) as caught:
        validate_cisco_changes({"status": "ACTIVE"})
    assert caught.value.problems == [
        "changes.status: 'ACTIVE' is not a SIM status; use one of ACTIVATED, ACTIVATION_READY, "
        "DEACTIVATED, INVENTORY, PURGED, RETIRED, TEST_READY"
    ]


def test_summaries_count_in_good_grammar() -> None:
    with pytest.raises(IoTFleetValidationError, match=r"^1 problem in 2 edits:"):
        validate_cisco_edits([{"iccid": ICCID, "status": "ACTIVATED"}, {"iccid": ICCID, "status": "ACTIVE"}])
    with pytest.raises(IoTFleetValidationError, match=r"^1 of 1 IMEIs is invalid:"):
        validate_imeis(["123"])
    with pytest.raises(IoTFleetValidationError, match=r"^2 problems in 1 device:"):
        validate_cellular_devices([{"imsi": "1", "msisdn": "2"}])


def test_a_long_list_of_problems_is_capped_in_the_message_but_kept_whole() -> None:
    with pytest.raises(IoTFleetValidationError) as caught:
        validate_imeis([str(n) for n in range(25)])
    assert len(caught.value.problems) == 25
    lines = str(caught.value).splitlines()
    assert lines[0] == "25 of 25 IMEIs are invalid:"
    assert len(lines) == 1 + MAX_LISTED_PROBLEMS + 1
    assert lines[-1] == "  ... and 5 more"


def test_cisco_edits_name_position_and_field() -> None:
    with pytest.raises(IoTFleetValidationError) as caught:
        validate_cisco_edits([{"iccid": ICCID, "status": "ACTIVATED"}, {"iccid": "89", "ratePlan": 5}])
    assert caught.value.problems == [
        "edits[1].iccid '89' has 2 digits; an ICCID has 19 or 20",
        "edits[1].ratePlan: must be a string, got int",
    ]


def test_cellular_devices() -> None:
    devices = validate_cellular_devices(
        [{"imei": int(IMEI), "SessionEvtType": "Start"}, {"ipAddress": "10.1.2.3", "apn": "iot.apn"}]
    )
    assert devices == [{"imei": IMEI, "SessionEvtType": "Start"}, {"ipAddress": "10.1.2.3", "apn": "iot.apn"}]
    with pytest.raises(IoTFleetValidationError) as caught:
        validate_cellular_devices(
            [
                {"apn": "only-apn"},
                {"ipAddress": "2001:db8::1"},
                {"imei": luhn_complete("35693803564380")[:-1] + "0", "mac": "aa"},
                {"imsi": "12"},
            ]
        )
    problems = "\n".join(caught.value.problems)
    assert "devices[0]: needs at least one of" in problems
    assert "devices[1].ipAddress '2001:db8::1' is an IPv6 address; IPv4 expected" in problems
    assert "devices[2]: unknown field 'mac'" in problems
    assert "devices[2].imei" in problems
    assert "devices[3].imsi '12' is not 6-15 digits" in problems
