"""Whatever a DAG hands them, validators and hook methods either accept it or raise the package's
validation error naming the bad items, and nothing invalid ever reaches the network."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests_mock as rm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_iotfleet.exceptions import IoTFleetError, IoTFleetValidationError
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.cisco.rules import (
    validate_cisco_changes,
    validate_cisco_edits,
    validate_effective_date,
)
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.paloalto import PaloAltoIoTSecurityHook, validate_cellular_devices
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.validation import (
    as_item_list,
    as_mapping,
    validate_iccids,
    validate_imeis,
    validate_roma_device_ids,
)
from tests.fakes import ICCID, IMEI, FakeClock

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

# Anything JSON-ish a template or an upstream task could produce, plus the odd Python value.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=10)
    | st.datetimes(timezones=st.none() | st.timezones())
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=15) | st.integers() | st.none(), children, max_size=5)
        | st.tuples(children, children)
    ),
    max_leaves=20,
)
# Strings that look almost like identifiers: digits with the separators int() tolerates.
digitish = st.text(alphabet="0123456789 +-_٣.\n", min_size=1, max_size=22)

VALIDATORS: list[Callable[[Any], Any]] = [
    validate_imeis,
    validate_iccids,
    validate_roma_device_ids,
    validate_cellular_devices,
    validate_cisco_edits,
    validate_cisco_changes,
    lambda value: validate_effective_date(value, NOW),
    lambda value: as_item_list(value, "items"),
    lambda value: as_mapping(value, "changes"),
]


@pytest.mark.parametrize("validate", VALIDATORS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_validators_accept_or_raise_only_the_validation_error(
    validate: Callable[[Any], Any], value: Any
) -> None:
    with contextlib.suppress(IoTFleetValidationError):  # any other exception fails the test
        validate(value)


@settings(max_examples=300, deadline=None)
@given(value=digitish | st.integers())
def test_roma_ids_are_plain_positive_integers_only(value: Any) -> None:
    try:
        (device_id,) = validate_roma_device_ids([value])
    except IoTFleetValidationError:
        return
    assert isinstance(device_id, int) and device_id >= 1
    assert isinstance(value, int) or (value.isascii() and value.isdigit())


@pytest.mark.parametrize("value", ["1_000", "+7", " 7", "٣", "7.0", True, 2.5])
def test_roma_ids_that_int_would_take_are_refused(value: Any) -> None:
    with pytest.raises(IoTFleetValidationError, match="is not an integer"):
        validate_roma_device_ids([value])


@settings(max_examples=200, deadline=None)
@given(
    when=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    offset_minutes=st.integers(min_value=-23 * 60, max_value=23 * 60),
)
def test_effective_dates_with_any_offset_never_crash(when: datetime, offset_minutes: int) -> None:
    aware = when.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    for value in (aware, aware.isoformat()):
        try:
            accepted = validate_effective_date(value, NOW)
        except IoTFleetValidationError:
            continue
        assert NOW <= accepted <= NOW + timedelta(days=180)


def test_far_future_date_with_a_negative_offset_is_a_validation_error() -> None:
    with pytest.raises(IoTFleetValidationError, match="too far ahead"):
        validate_effective_date("9999-12-31T23:00:00-05:00", NOW)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"accountCustom1": "site-7\r\nX-Injected: 1"}, "control characters"),
        ({"accountCustom1": "x" * 100_000}, "100000 characters; at most 2000"),
        ({"deviceID": "a" * 2001}, "2001 characters; at most 2000"),
        ({7: "ACTIVATED"}, "field names are strings"),
    ],
)
def test_cisco_values_that_would_break_a_request_are_refused(changes: dict[Any, str], problem: str) -> None:
    with pytest.raises(IoTFleetValidationError, match=problem):
        validate_cisco_changes(changes)


@pytest.mark.parametrize(
    ("device", "problem"),
    [
        ({"imei": IMEI, "apn": ["a", "b"]}, "apn: must be a string, got list"),
        ({"imei": IMEI, "apn": {"name": "a"}}, "apn: must be a string, got dict"),
        ({"imei": IMEI, "SessionEvtType": "Start\n"}, "control characters"),
        ({"imei": IMEI, 3: "x"}, "unknown field 3"),
        ({"imei": IMEI, "apn": "a" * 256}, "256 characters; at most 255"),
    ],
)
def test_palo_alto_values_must_be_plain_strings(device: dict[Any, Any], problem: str) -> None:
    with pytest.raises(IoTFleetValidationError, match=problem):
        validate_cellular_devices([device])


# --- hook methods: invalid input never reaches the network -----------------------------------------


@pytest.fixture
def hooks(set_connection: Callable[..., None]) -> dict[str, Any]:
    set_connection(
        "cc", "cisco_control_center", host="https://cc.example.com", login="u", password="secret-key-1"
    )
    set_connection(
        "roma",
        "huawei_roma",
        host="https://roma.example.com",
        login="AK00000000000000000001",
        password="secret-sk-1",
        extra={"project_id": "p1", "instance_id": "i1"},
    )
    set_connection(
        "pan",
        "paloalto_iot",
        host="https://acme.iot.paloaltonetworks.com",
        login="k",
        password="secret-access-1",
    )
    set_connection(
        "vz",
        "verizon_thingspace",
        login="key",
        password="secret-oauth-1",
        extra={"m2m_username": "u", "m2m_password": "secret-m2m-1", "account_name": "0000123456-00001"},
    )
    clock = FakeClock()
    return {
        "cisco": CiscoControlCenterHook("cc", clock=clock),
        "roma": HuaweiRomaConnectHook("roma", clock=clock),
        "pan": PaloAltoIoTSecurityHook("pan", clock=clock),
        "verizon": VerizonThingSpaceHook("vz", clock=clock),
    }


CALLS: dict[str, Callable[[dict[str, Any], Any], Any]] = {
    "cisco.edit_devices": lambda h, v: h["cisco"].edit_devices(v),
    "cisco.edit_device": lambda h, v: h["cisco"].edit_device(ICCID, v),
    "cisco.edit_devices.effective_date": lambda h, v: h["cisco"].edit_devices(
        [{"iccid": ICCID, "status": "ACTIVATED"}], effective_date=v
    ),
    "cisco.edit_devices.max_concurrency": lambda h, v: h["cisco"].edit_devices(
        [{"iccid": ICCID, "status": "ACTIVATED"}], max_concurrency=v
    ),
    "cisco.get_device": lambda h, v: h["cisco"].get_device(v),
    "cisco.search_devices": lambda h, v: h["cisco"].search_devices(v),
    "cisco.search_devices.page_size": lambda h, v: h["cisco"].search_devices(NOW, page_size=v),
    "roma.force_offline": lambda h, v: h["roma"].force_offline(v),
    "roma.get_device": lambda h, v: h["roma"].get_device(v),
    "roma.iter_devices.online_status": lambda h, v: h["roma"].iter_devices(online_status=v),
    "roma.iter_devices.page_size": lambda h, v: h["roma"].iter_devices(page_size=v),
    "pan.bulk_update": lambda h, v: h["pan"].bulk_update(v),
    "verizon.sync_firmware": lambda h, v: h["verizon"].sync_firmware(v),
    "verizon.iter_fota_devices.imeis": lambda h, v: h["verizon"].iter_fota_devices(v),
    "verizon.iter_fota_devices.protocol": lambda h, v: h["verizon"].iter_fota_devices(protocol=v),
    "verizon.iter_fota_devices.account_name": lambda h, v: h["verizon"].iter_fota_devices(account_name=v),
}


@pytest.mark.parametrize("name", sorted(CALLS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_hook_methods_refuse_bad_input_before_any_request(
    name: str, value: Any, hooks: dict[str, Any], requests_mock: rm.Mocker
) -> None:
    requests_mock.register_uri(rm.ANY, rm.ANY, status_code=599, json={})  # any request fails the test below
    before = requests_mock.call_count
    try:
        CALLS[name](hooks, value)
    except IoTFleetValidationError:
        assert requests_mock.call_count == before  # refused: nothing was sent
    except IoTFleetError:
        assert requests_mock.call_count > before  # accepted, then the (failing) fake vendor answered
    except Exception as error:
        pytest.fail(f"{name}({value!r}) raised {type(error).__name__}: {error}")


# --- fast paths: they accept exactly what the full checks accept --------------------------------

near_digits = st.text(alphabet="0123456789 +٣\n", min_size=0, max_size=21)
near_ipv4 = st.lists(
    st.sampled_from(["0", "00", "01", "7", "99", "199", "255", "256", "999", "1000", "", " 1", "٣", "a"]),
    min_size=3,
    max_size=5,
).map(".".join)
device_values = near_digits | near_ipv4 | st.integers(min_value=-5, max_value=10**20) | st.none() | scalars
device_keys = st.sampled_from(["imei", "iccid", "ipAddress", "ipv6Address", "imsi", "msisdn", "apn", "x"])


def _full_check(devices: list[Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """What validate_cellular_devices returns or raises with its fast path turned off."""
    from airflow_provider_iotfleet.hooks.paloalto import rules

    with monkeypatch.context() as patched:
        patched.setattr(rules, "_accepted_entry", lambda device: None)
        try:
            return validate_cellular_devices(devices)
        except IoTFleetValidationError as error:
            return str(error)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(device=st.dictionaries(device_keys, device_values, max_size=6))
def test_palo_alto_fast_path_agrees_with_the_full_check(
    device: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        fast: Any = validate_cellular_devices([device])
    except IoTFleetValidationError as error:
        fast = str(error)
    assert fast == _full_check([device], monkeypatch)


@given(digits=st.text(alphabet="0123456789٣", max_size=22))
def test_luhn_valid_agrees_with_the_check_digit(digits: str) -> None:
    from airflow_provider_iotfleet.validation import luhn_check_digit, luhn_valid

    assert luhn_valid(digits) == (len(digits) > 1 and luhn_check_digit(digits[:-1]) == digits[-1])


@given(text=near_ipv4 | st.text(max_size=16))
def test_dotted_quad_fast_path_agrees_with_ipaddress(text: str) -> None:
    import ipaddress

    from airflow_provider_iotfleet.validation import DOTTED_QUAD

    try:
        expected = ipaddress.ip_address(text).version == 4
    except ValueError:
        expected = False
    assert (DOTTED_QUAD.fullmatch(text) is not None) == expected
