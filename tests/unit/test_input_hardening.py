"""Inputs that used to reach the wire, or to crash with a raw exception: dot segments in request
paths, deeply nested templates, unparseable connection URLs, and ThingSpace cursors that never end a
listing. Each is refused with a typed error that names what to fix, before any request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests_mock as rm

from airflow_provider_iotfleet.exceptions import (
    IoTFleetConfigurationError,
    IoTFleetValidationError,
)
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.paloalto import PaloAltoIoTSecurityHook
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.http import Call, ErrorMapping, VendorErrorBody, VendorHttpClient
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.validation import as_item_list, as_mapping
from tests.fakes import IMEI, FakeClock, luhn_complete, operator_context

#: Dot segments, plain and in the forms servers and proxies decode or strip before normalising.
DOT_SEGMENTS = [
    ".",
    "..",
    "a/../b",
    "%2e%2e",
    "%2E.",
    ".%2e",
    "a%2F..%2Fb",
    "%252e%252e",
    "..;",
    "..\\x",
]
CAMPAIGN = "c0001"


def imei(n: int) -> str:
    return luhn_complete(f"{35_000_000_000_000 + n:014d}")


# === dot segments: Verizon account_name and campaign_id ===========================================

ACCOUNT_CALLS: dict[str, Callable[[VerizonThingSpaceHook, str], Any]] = {
    "iter_fota_devices": lambda hook, account: list(hook.iter_fota_devices(account_name=account)),
    "iter_fota_devices(imeis)": lambda hook, account: list(
        hook.iter_fota_devices([IMEI], account_name=account)
    ),
    "sync_firmware": lambda hook, account: hook.sync_firmware([IMEI], account_name=account),
    "list_firmware": lambda hook, account: hook.list_firmware(account_name=account),
    "get_campaign": lambda hook, account: hook.get_campaign(CAMPAIGN, account_name=account),
    "iter_campaigns": lambda hook, account: list(hook.iter_campaigns("CampaignEnded", account_name=account)),
}


@pytest.mark.parametrize("call", list(ACCOUNT_CALLS), ids=list(ACCOUNT_CALLS))
@pytest.mark.parametrize("account", DOT_SEGMENTS)
def test_an_account_name_with_a_dot_segment_is_refused_before_any_request(
    thingspace_hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, call: str, account: str
) -> None:
    with pytest.raises(IoTFleetValidationError, match="account_name is invalid") as caught:
        ACCOUNT_CALLS[call](thingspace_hook, account)
    assert repr(account) in str(caught.value)
    assert requests_mock.call_count == 0  # not even the token: nothing went out


def test_an_account_name_extra_with_a_dot_segment_is_named_as_the_extra(
    set_connection: Callable[..., None], clock: FakeClock, requests_mock: rm.Mocker
) -> None:
    set_connection(
        "thingspace_dots",
        "verizon_thingspace",
        login="key",
        password="oauth-secret-xyz-123",
        extra={"m2m_username": "u", "m2m_password": "uws-password-987", "account_name": ".."},
    )
    with pytest.raises(IoTFleetValidationError, match="account_name is invalid") as caught:
        list(VerizonThingSpaceHook("thingspace_dots", clock=clock).iter_fota_devices())
    assert "'account_name' extra of Connection 'thingspace_dots'" in str(caught.value)
    assert requests_mock.call_count == 0


CAMPAIGN_CALLS: dict[str, Callable[[VerizonThingSpaceHook, str], Any]] = {
    "get_campaign": lambda hook, campaign: hook.get_campaign(campaign),
    "cancel_campaign": lambda hook, campaign: hook.cancel_campaign(campaign),
    "iter_campaign_devices": lambda hook, campaign: list(hook.iter_campaign_devices(campaign)),
    "campaign_progress": lambda hook, campaign: hook.campaign_progress(campaign),
    "add_campaign_devices": lambda hook, campaign: hook.add_campaign_devices(campaign, [IMEI]),
}


@pytest.mark.parametrize("call", list(CAMPAIGN_CALLS), ids=list(CAMPAIGN_CALLS))
@pytest.mark.parametrize("campaign_id", [".", "..", "..;", ".%2E", "a/../b"])
def test_a_campaign_id_with_a_dot_segment_is_refused_before_any_request(
    thingspace_hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, call: str, campaign_id: str
) -> None:
    with pytest.raises(IoTFleetValidationError, match="campaign_id is invalid") as caught:
        CAMPAIGN_CALLS[call](thingspace_hook, campaign_id)
    assert repr(campaign_id) in str(caught.value)
    assert requests_mock.call_count == 0


# === dot segments: ROMA Connect project_id and instance_id, from the connection ===================


@pytest.mark.parametrize("key", ["project_id", "instance_id"])
@pytest.mark.parametrize("value", ["..", ".", "a/../b", "%2e%2e", "p/q"])
def test_a_roma_project_or_instance_that_is_not_one_path_segment_is_refused(
    set_connection: Callable[..., None], clock: FakeClock, requests_mock: rm.Mocker, key: str, value: str
) -> None:
    extra = {"project_id": "397cd10b30544c588b2f4a56d83856c4", "instance_id": "f3bb386a-23ec"}
    set_connection(
        "roma_dots",
        "huawei_roma",
        host="https://roma.cn-north-4.myhuaweicloud.com",
        login="ak-123",
        password="sk-secret-456",
        extra={**extra, key: value},
    )
    hook = HuaweiRomaConnectHook("roma_dots", clock=clock)
    with pytest.raises(IoTFleetConfigurationError, match=f"Connection 'roma_dots'.*extra '{key}'") as caught:
        hook.get_device(7)
    assert repr(value) in str(caught.value)
    assert requests_mock.call_count == 0


# === dot segments: the last guard, in the transport core ==========================================


def _client(clock: FakeClock) -> VendorHttpClient:
    errors = ErrorMapping(vendor="Example", parse_body=lambda body: VendorErrorBody())
    return VendorHttpClient(base_url="https://api.example.test/v1", errors=errors, clock=clock)


@pytest.mark.parametrize("segment", DOT_SEGMENTS)
def test_the_core_refuses_to_send_a_path_with_a_dot_segment(
    clock: FakeClock, requests_mock: rm.Mocker, segment: str
) -> None:
    with pytest.raises(IoTFleetValidationError, match="refusing to send GET /v1/devices/") as caught:
        _client(clock).send(Call("GET", f"devices/{segment}/firmware"))
    assert "dot segment" in str(caught.value)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("path", ["pub/v4.0/device/bulkUpdate", "devices/...", "devices/a.b", "devices/.x"])
def test_the_core_sends_paths_with_dots_that_are_not_dot_segments(
    clock: FakeClock, requests_mock: rm.Mocker, path: str
) -> None:
    route = requests_mock.get(f"https://api.example.test/v1/{path}", json={})
    _client(clock).send(Call("GET", path))
    assert route.call_count == 1


# === deeply nested templates ======================================================================


def _nested_list(depth: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(depth):
        nested = [nested]
    return nested


@pytest.mark.parametrize(
    "value",
    [
        "[" * 100_000 + "]" * 100_000,  # json recurses per level: RecursionError
        "[" * 5_000 + "]" * 5_000,
        "[" * 40 + "]" * 40,  # parses, but nothing reads it safely (repr in a message recurses too)
        _nested_list(5_000),  # the same, rendered as a native object
    ],
    ids=["100000-deep-text", "5000-deep-text", "40-deep-text", "5000-deep-list"],
)
def test_a_deeply_nested_list_is_a_validation_error_naming_the_argument(value: Any) -> None:
    with pytest.raises(IoTFleetValidationError, match="imeis is nested too deeply"):
        as_item_list(value, "imeis")


def test_a_deeply_nested_mapping_template_is_a_validation_error_naming_the_argument() -> None:
    with pytest.raises(IoTFleetValidationError, match="changes is nested too deeply"):
        as_mapping('{"a": ' * 5_000 + "1" + "}" * 5_000, "changes")


def test_shallow_inputs_still_parse() -> None:
    edits = '[{"iccid": "89014103211118510720", "status": "ACTIVATED"}]'
    assert as_item_list(edits, "edits") == [{"iccid": "89014103211118510720", "status": "ACTIVATED"}]
    assert as_mapping("{'status': 'ACTIVATED'}", "changes") == {"status": "ACTIVATED"}


def test_an_operator_given_a_deeply_nested_template_fails_validation_before_any_request(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "huawei_roma_default",
        "huawei_roma",
        host="https://roma.cn-north-4.myhuaweicloud.com",
        login="ak-123",
        password="sk-secret-456",
        extra={"project_id": "p1", "instance_id": "i1"},
    )
    operator = HuaweiRomaForceOfflineOperator(task_id="t", device_ids="[" * 50_000 + "]" * 50_000)
    with pytest.raises(IoTFleetValidationError, match="device_ids is nested too deeply"):
        operator.execute(operator_context())  # type: ignore[arg-type]
    assert requests_mock.call_count == 0


# === connection URLs that do not parse ============================================================

HOOKS: dict[str, type[Any]] = {
    "verizon_thingspace": VerizonThingSpaceHook,
    "cisco_control_center": CiscoControlCenterHook,
    "paloalto_iot": PaloAltoIoTSecurityHook,
    "huawei_roma": HuaweiRomaConnectHook,
}
PASSWORD = "client-secret-never-shown-1"
VERIZON_EXTRA = {"m2m_username": "u", "m2m_password": "uws-password-987"}
ROMA_IAM_EXTRA = {
    "auth_type": "iam_token",
    "project_id": "p1",
    "instance_id": "i1",
    "domain_name": "d",
    "region": "cn-north-4",
}


@pytest.mark.parametrize(
    ("conn_type", "fields", "field"),
    [
        ("verizon_thingspace", {"host": "https://[::1", "extra": VERIZON_EXTRA}, "host"),
        ("cisco_control_center", {"host": "https://[::1:8443/rws"}, "host"),
        ("cisco_control_center", {"host": "https://[not-an-address]"}, "host"),
        ("cisco_control_center", {"host": "https://[::1]x"}, "host"),
        ("paloalto_iot", {"host": "https://tenant.iot.paloaltonetworks.com]"}, "host"),
        (
            "verizon_thingspace",
            {
                "host": "https://thingspace.verizon.com",
                "extra": {**VERIZON_EXTRA, "oauth_url": "https://[::1/t"},
            },
            "extra 'oauth_url'",
        ),
        (
            "verizon_thingspace",
            {
                "host": "https://thingspace.verizon.com",
                "extra": {**VERIZON_EXTRA, "m2m_login_url": "https://[fe80::1"},
            },
            "extra 'm2m_login_url'",
        ),
        (
            "paloalto_iot",
            {"extra": {"auth_type": "scm", "tsg_id": "1234", "auth_url": "https://[::1/oauth2"}},
            "extra 'auth_url'",
        ),
        (
            "huawei_roma",
            {"host": "https://roma.example.com", "extra": {**ROMA_IAM_EXTRA, "iam_endpoint": "https://[::1"}},
            "extra 'iam_endpoint'",
        ),
    ],
    ids=[
        "verizon-host",
        "cisco-host",
        "cisco-bracketed-name",
        "cisco-after-bracket",
        "paloalto-stray-bracket",
        "verizon-oauth_url",
        "verizon-m2m_login_url",
        "paloalto-auth_url",
        "huawei-iam_endpoint",
    ],
)
def test_a_url_that_does_not_parse_is_a_configuration_error_naming_connection_and_field(
    set_connection: Callable[..., None],
    requests_mock: rm.Mocker,
    conn_type: str,
    fields: dict[str, Any],
    field: str,
) -> None:
    set_connection("bad_url", conn_type, login="client", password=PASSWORD, **fields)
    with pytest.raises(IoTFleetConfigurationError) as caught:
        HOOKS[conn_type]("bad_url").client  # noqa: B018 - building the client reads every URL
    message = str(caught.value)
    assert message.startswith("Connection 'bad_url' (")
    assert f": {field} " in message
    ok, said = HOOKS[conn_type]("bad_url").test_connection()  # the UI's Test button: no raw ValueError
    assert not ok and field in said
    assert PASSWORD not in message + said
    assert requests_mock.call_count == 0


def test_a_password_pasted_into_the_host_is_not_quoted(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    set_connection(
        "bad_url",
        "cisco_control_center",
        host="https://fleet:hunter2-in-host@[::1",
        login="u",
        password=PASSWORD,
    )
    with pytest.raises(IoTFleetConfigurationError, match="is not a valid URL") as caught:
        CiscoControlCenterHook("bad_url").client  # noqa: B018 - building the client reads the host
    assert "hunter2-in-host" not in str(caught.value)
    assert "https://***@[::1" in str(caught.value)
