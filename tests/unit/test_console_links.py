"""Console links: the URL a write operator pushes, the button it becomes, and what a connection's
``console_url`` may hold. (The links of a real ``dag.test()`` run, as Airflow stores them for the UI,
are checked in ``tests/examples/test_example_dags.py``.)"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

import pytest
import requests_mock as rm

from airflow_provider_iotfleet import get_provider_info
from airflow_provider_iotfleet.exceptions import IoTFleetConfigurationError
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.operators.links import (
    CONSOLE_URL_KEY,
    ConsoleLink,
    RomaInstanceLink,
    render_console_url,
)
from tests.connections import ROMA, ROMA_AK, ROMA_HOST, ROMA_INSTANCE, ROMA_PROJECT, ROMA_SK, with_extra
from tests.fakes import FakeTaskInstance, operator_context
from tests.log_capture import Logs

FORCE_OFFLINE_URL = f"{ROMA_HOST}/v2/{ROMA_PROJECT}/link/instances/{ROMA_INSTANCE}/devices/force-offline"


def all_forced_offline(request: Any, context: Any) -> dict[str, Any]:
    return {"success": [{"id": i} for i in request.json()["device_ids"]], "failed": []}


def force_offline(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, **extra: Any
) -> FakeTaskInstance:
    """Force two devices offline over ``huawei_roma_default`` with ``extra``; return the task instance."""
    set_connection("huawei_roma_default", **with_extra(ROMA, **extra))
    requests_mock.post(FORCE_OFFLINE_URL, json=all_forced_offline)
    context = operator_context("force_offline")
    HuaweiRomaForceOfflineOperator(task_id="force_offline", device_ids=[700001, 700002]).execute(context)
    ti = context["ti"]
    assert isinstance(ti, FakeTaskInstance)
    return ti


def test_the_default_link_opens_roma_connect_in_the_connections_region(
    set_connection: Callable[..., None], requests_mock: rm.Mocker
) -> None:
    ti = force_offline(set_connection, requests_mock)
    assert ti.console_urls == ["https://console.huaweicloud.com/roma/?region=cn-north-4"]


def test_a_connection_template_puts_the_instance_in_the_link_and_the_button_shows_it(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = "https://console-intl.huaweicloud.com/roma/?region={region}#/instances/{instance_id}"
    ti = force_offline(set_connection, requests_mock, console_url=template)
    expected = f"https://console-intl.huaweicloud.com/roma/?region=cn-north-4#/instances/{ROMA_INSTANCE}"
    assert ti.console_urls == [expected]

    # What Airflow does when the task ends: ask the link for its URL, which it reads from XCom.
    from airflow.providers.common.compat.sdk import XCom

    pushed = {("force_offline", CONSOLE_URL_KEY): ti.console_urls[0]}
    monkeypatch.setattr(
        XCom, "get_value", classmethod(lambda cls, *, ti_key, key: pushed.get((ti_key.task_id, key)))
    )
    link = RomaInstanceLink()
    operator = HuaweiRomaForceOfflineOperator(task_id="force_offline", device_ids=[1])
    assert link.get_link(operator, ti_key=ti) == expected  # type: ignore[arg-type]
    assert link.name == "ROMA Connect instance"


def test_a_bad_template_warns_naming_it_and_the_task_still_succeeds(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, logs: Logs
) -> None:
    ti = force_offline(set_connection, requests_mock, console_url="https://console/{instance}/{zone}")
    assert ti.console_urls == []
    assert "unknown placeholders {instance}, {zone}" in logs.text()
    assert "{region}, {project_id}, {instance_id}" in logs.text()


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("https://ts.example/c/{campaign_id}", "https://ts.example/c/a%2Fb%20c"),
        ("https://ts.example/home", "https://ts.example/home"),
        ("https://ts.example/{{literal}}/{campaign_id}", "https://ts.example/{literal}/a%2Fb%20c"),
    ],
)
def test_placeholders_are_filled_url_quoted(template: str, expected: str) -> None:
    assert render_console_url(template, {"campaign_id": "a/b c"}, "console_url") == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "https://{tenant}.example/{device}",
            "unknown placeholders {device}, {tenant}; it can use {campaign_id}",
        ),
        ("https://example/{campaign_id", "is not a URL template"),
        ("console.example/{campaign_id}", "does not start with https://"),
        ("javascript:alert(1)", "does not start with https://"),
    ],
)
def test_a_template_that_cannot_make_a_link_is_refused_naming_why(template: str, message: str) -> None:
    with pytest.raises(IoTFleetConfigurationError) as caught:
        render_console_url(template, {"campaign_id": "c1"}, "console_url")
    assert message in str(caught.value)


def test_a_link_never_carries_credentials(
    set_connection: Callable[..., None], requests_mock: rm.Mocker, logs: Logs
) -> None:
    ti = force_offline(
        set_connection, requests_mock, console_url=f"https://{ROMA_AK}:{ROMA_SK}@console.example/"
    )
    assert ti.console_urls == []
    assert "must not carry credentials" in logs.text()
    assert ROMA_SK not in logs.text()


def test_provider_info_lists_each_operators_link() -> None:
    paths = get_provider_info()["extra-links"]
    links = []
    for path in paths:
        module, _, name = path.rpartition(".")
        links.append(getattr(import_module(module), name)())
    assert all(isinstance(link, ConsoleLink) for link in links)
    assert [link.name for link in links] == [
        "ThingSpace campaign",
        "Control Center",
        "ROMA Connect instance",
        "IoT Security inventory",
    ]
    operators = import_module("airflow_provider_iotfleet.operators.verizon")
    assert [
        type(link).__name__
        for link in operators.VerizonThingSpaceFirmwareUpgradeOperator.operator_extra_links
    ] == ["ThingSpaceCampaignLink"]


@pytest.mark.parametrize(
    ("conn_type", "default"),
    [
        ("verizon_thingspace", "https://thingspace.verizon.com"),
        ("cisco_control_center", None),
        ("huawei_roma", "https://console.huaweicloud.com/roma/?region={region}"),
        ("paloalto_iot", "https://{customer_id}.iot.paloaltonetworks.com"),
    ],
)
def test_each_connection_form_offers_a_console_url(conn_type: str, default: str | None) -> None:
    (entry,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type]
    field = entry["conn-fields"]["console_url"]
    assert field["schema"].get("default") == default
    assert "not public" in field["description"]
