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
    IoTFleetVendorResponseError,
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


def test_a_literal_with_an_unhashable_key_is_a_validation_error_not_a_type_error() -> None:
    with pytest.raises(IoTFleetValidationError, match="devices must be a list"):
        as_item_list("[{[1]: 2}]", "devices")


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


def test_a_password_in_a_valid_host_url_is_refused_and_never_logged(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, caplog: pytest.LogCaptureFixture
) -> None:
    """A host that parses but carries ``user:password@`` would go to the vendor and into every
    operator's start line (it names the base URL): refused, pointing at the login and password."""
    set_connection(
        "bad_url",
        "cisco_control_center",
        host="https://fleet:hunter2-in-host@rws.example.com",
        login="u",
        password=PASSWORD,
    )
    with pytest.raises(
        IoTFleetConfigurationError, match="put them in the connection's login and password"
    ) as caught:
        CiscoControlCenterHook("bad_url").client  # noqa: B018 - building the client reads the host
    assert "hunter2-in-host" not in str(caught.value)
    assert "hunter2-in-host" not in caplog.text
    assert requests_mock.call_count == 0


# === ThingSpace listings whose cursor does not move forward =======================================

LISTINGS: dict[str, Callable[[VerizonThingSpaceHook], Any]] = {
    "iter_fota_devices": lambda hook: list(hook.iter_fota_devices()),
    "iter_fota_devices(imeis)": lambda hook: list(hook.iter_fota_devices([imei(1), imei(2)])),
    "firmware_versions": lambda hook: hook.firmware_versions([imei(1), imei(2)]),
    "iter_campaign_devices": lambda hook: list(hook.iter_campaign_devices(CAMPAIGN)),
    "campaign_progress": lambda hook: hook.campaign_progress(CAMPAIGN),
}
#: More pages than any of these listings may ask for: past it, the fake ends the listing, so that a
#: listing that would run for ever ends the test (failing it) instead of hanging it.
PAGE_LIMIT = 50


class Pages:
    """Answers a ThingSpace device listing page by page from ``answer(last_seen, number)``, which
    returns ``(device ids, next lastSeenDeviceId or None)``; each answer carries a request id."""

    def __init__(self, answer: Callable[[str, int], tuple[list[str], str | None]]) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def __call__(self, request: Any, context: Any) -> dict[str, Any]:
        last_seen = request.qs["lastseendeviceid"][0]
        self.asked.append(last_seen)
        context.headers["X-Request-Id"] = f"req-{len(self.asked)}"
        ids, cursor = self.answer(last_seen, len(self.asked))
        more = cursor is not None and len(self.asked) < PAGE_LIMIT
        return {
            "hasMoreData": more,
            "lastSeenDeviceId": cursor if more else None,
            "deviceList": [
                {"deviceId": device_id, "status": "Queued", "firmware": "1.0"} for device_id in ids
            ],
        }


def serve(requests_mock: rm.Mocker, hook: VerizonThingSpaceHook, pages: Pages) -> None:
    """Answer every device listing of the connection's account, and campaign ``c0001``, with ``pages``."""
    account = hook.resolve_account()
    fota = hook.client.url("")
    requests_mock.get(f"{fota}devices/{account}", json=pages)
    requests_mock.post(f"{fota}devices/{account}", json=pages)
    requests_mock.get(f"{fota}reports/{account}/campaigns/{CAMPAIGN}/devices", json=pages)
    requests_mock.get(
        f"{fota}campaigns/{account}/{CAMPAIGN}", json={"id": CAMPAIGN, "status": "CampaignScheduled"}
    )


@pytest.mark.parametrize("listing", list(LISTINGS), ids=list(LISTINGS))
def test_a_cursor_moving_back_over_the_same_devices_stops_at_the_second_page(
    thingspace_hook: VerizonThingSpaceHook, requests_mock: rm.Mocker, listing: str
) -> None:
    first, second = imei(1), imei(2)

    def backwards(last_seen: str, number: int) -> tuple[list[str], str | None]:
        # Never the same cursor twice, so a listing that only remembered its cursors paged on.
        return [first, second], second if last_seen == "0" else str(int(last_seen) - 1)

    pages = Pages(backwards)
    serve(requests_mock, thingspace_hook, pages)
    with pytest.raises(IoTFleetVendorResponseError, match="the listing does not move forward") as caught:
        LISTINGS[listing](thingspace_hook)
    assert pages.asked == ["0", second]
    assert caught.value.request_id == "req-2"


def test_a_cursor_moving_back_over_new_devices_is_an_error(
    thingspace_hook: VerizonThingSpaceHook, requests_mock: rm.Mocker
) -> None:
    def backwards(last_seen: str, number: int) -> tuple[list[str], str | None]:
        return [imei(number)], imei(100 - number)

    pages = Pages(backwards)
    serve(requests_mock, thingspace_hook, pages)
    with pytest.raises(
        IoTFleetVendorResponseError,
        match=f"lastSeenDeviceId \\({imei(98)}\\) not past the lastSeenDeviceId \\({imei(99)}\\)",
    ) as caught:
        list(thingspace_hook.iter_fota_devices())
    assert len(pages.asked) == 2
    assert caught.value.request_id == "req-2"


def test_a_page_repeating_a_device_of_the_page_before_is_an_error(
    thingspace_hook: VerizonThingSpaceHook, requests_mock: rm.Mocker
) -> None:
    def overlapping(last_seen: str, number: int) -> tuple[list[str], str | None]:
        return [imei(number), imei(number + 1)], imei(number + 1)  # the cursor moves, the pages overlap

    pages = Pages(overlapping)
    serve(requests_mock, thingspace_hook, pages)
    with pytest.raises(IoTFleetVendorResponseError, match=f"again \\(e.g. {imei(2)}\\)") as caught:
        list(thingspace_hook.iter_fota_device_pages())
    assert len(pages.asked) == 2
    assert caught.value.request_id == "req-2"


def test_cursors_are_compared_as_numbers_when_both_are_digits(
    thingspace_hook: VerizonThingSpaceHook, requests_mock: rm.Mocker
) -> None:
    script = {"0": (["98", "99"], "99"), "99": (["100"], "100"), "100": (["101"], None)}
    pages = Pages(lambda last_seen, number: script[last_seen])
    serve(requests_mock, thingspace_hook, pages)
    assert [device["device_id"] for device in thingspace_hook.iter_fota_devices()] == [
        "98",
        "99",
        "100",
        "101",
    ]
    assert pages.asked == ["0", "99", "100"]  # "100" < "99" as text: a text comparison stopped here
