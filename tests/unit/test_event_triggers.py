"""The event triggers of ``AssetWatcher`` s, driven with ``asyncio.run`` against the vendor fakes: their
serialisation, what they refuse, and that each fires one event per occurrence, after transient and
lasting failures alike, and not again after a restart when the asset's state store remembers.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from airflow.triggers.base import BaseEventTrigger

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.triggers import events
from airflow_provider_iotfleet.triggers.cisco import CiscoDeviceStatusEventTrigger
from airflow_provider_iotfleet.triggers.events import MAX_WATCHED_DEVICES, WatchEventTrigger
from airflow_provider_iotfleet.triggers.huawei import HuaweiRomaDeviceStatusEventTrigger
from airflow_provider_iotfleet.triggers.verizon import VerizonThingSpaceCampaignFinishedTrigger
from tests.connections import THINGSPACE, with_extra
from tests.connections import THINGSPACE_ACCOUNT as ACCOUNT
from tests.connections import THINGSPACE_ROOT as VZ_ROOT
from tests.fake_thingspace import FakeThingSpace, serve
from tests.fakes import Wire
from tests.log_capture import Logs
from tests.watch_fakes import CISCO, ROMA, Case, FakeVendor, define_connection

pytestmark = pytest.mark.timeout(30)

VZ_CONN_ID = "verizon_event_test"
CAMPAIGN_ID = "c0001"
#: A poll interval the tests may use: the floor is lifted by the ``fast_polls`` fixture.
TICK = 0.001
#: How long a test lets a watcher run to see that it does nothing more (not a speed assertion).
QUIET_SPELL = 0.3


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "MIN_POLL_INTERVAL", 0.0)


class FakeCampaign(FakeThingSpace):
    """One ThingSpace campaign and its device report; ``script`` is the campaign's status at each of
    its reads (the last repeated), and every device is Finished once the campaign has ended."""

    def __init__(self, script: list[str], devices: list[str]) -> None:
        super().__init__()
        self.script = list(script)
        self.devices = devices
        self.status = self.script[0]

    def read(self, wire: Wire) -> tuple[int, Any]:
        path = wire.path.removeprefix("/api/fota/v3")
        if path == f"/campaigns/{ACCOUNT}/{CAMPAIGN_ID}":
            self.status = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            return 200, {"id": CAMPAIGN_ID, "accountName": ACCOUNT, "status": self.status}
        if re.fullmatch(rf"/reports/{ACCOUNT}/campaigns/{CAMPAIGN_ID}/devices", path):
            status = "Finished" if self.status == "CampaignEnded" else "Downloading"
            listed = [{"deviceId": imei, "status": status} for imei in self.devices]
            return 200, {"hasMoreData": False, "lastSeenDeviceId": None, "deviceList": listed}
        raise AssertionError(f"unexpected request {wire.method} {wire.url}")

    def campaign_reads(self) -> int:
        return len([wire for wire in self.wires if wire.path.endswith(f"/{CAMPAIGN_ID}")])


class FakeStore:
    """The asset state store a triggerer gives a watcher (Airflow 3.3+), in memory."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


def campaign_trigger(**kwargs: Any) -> VerizonThingSpaceCampaignFinishedTrigger:
    arguments = {"verizon_thingspace_conn_id": VZ_CONN_ID, "poll_interval": TICK, **kwargs}
    return VerizonThingSpaceCampaignFinishedTrigger(campaign_id=CAMPAIGN_ID, **arguments)


def device_trigger(case: Case, **kwargs: Any) -> WatchEventTrigger:
    ids = list(case.ids[:3])
    if case is CISCO:
        return CiscoDeviceStatusEventTrigger(
            iccids=ids, target_status=case.target, cisco_control_center_conn_id=case.conn_id, **kwargs
        )
    return HuaweiRomaDeviceStatusEventTrigger(
        device_ids=ids, target_online_status=case.target, huawei_roma_conn_id=case.conn_id, **kwargs
    )


@pytest.fixture
def thingspace(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {**with_extra(THINGSPACE, max_retries=0, requests_per_second=100000), "host": VZ_ROOT}
    monkeypatch.setenv(f"AIRFLOW_CONN_{VZ_CONN_ID.upper()}", json.dumps(connection))


async def next_events(trigger: BaseEventTrigger, count: int) -> tuple[list[dict[str, Any]], bool]:
    """The first ``count`` events, and whether the watcher then stayed quiet for :data:`QUIET_SPELL`
    (a watcher never ends on its own: it is cancelled, as the triggerer does)."""
    stream: AsyncIterator[Any] = trigger.run()
    payloads = [(await anext(stream)).payload for _ in range(count)]
    try:
        await asyncio.wait_for(anext(stream), QUIET_SPELL)
    except TimeoutError:
        quiet = True
    else:
        quiet = False
    await stream.aclose()  # type: ignore[attr-defined]
    for payload in payloads:
        json.dumps(payload)  # stored as the asset event's extra
    return payloads, quiet


# --- serialisation and what is refused at parse time --------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    [
        pytest.param(lambda: campaign_trigger(account_name=ACCOUNT), id="campaign"),
        pytest.param(lambda: device_trigger(CISCO, poll_interval=120.0), id="cisco"),
        pytest.param(lambda: device_trigger(ROMA), id="huawei"),
    ],
)
def test_event_triggers_serialize_to_small_json_that_rebuilds_the_same_trigger(trigger: Any) -> None:
    built = trigger()
    classpath, kwargs = built.serialize()
    module_name, _, class_name = classpath.rpartition(".")
    rebuilt_class = getattr(importlib.import_module(module_name), class_name)
    wire = json.loads(json.dumps(kwargs))

    rebuilt = rebuilt_class(**wire)

    assert isinstance(rebuilt, BaseEventTrigger) and rebuilt_class is type(built)
    assert rebuilt.serialize() == (classpath, kwargs) == (classpath, wire)
    assert rebuilt.memory_key() == built.memory_key()
    assert len(json.dumps(kwargs)) < 1024


def test_the_cisco_trigger_keeps_each_iccid_once_and_its_arguments() -> None:
    iccids = list(CISCO.ids[:2])
    trigger = CiscoDeviceStatusEventTrigger(iccids=[*iccids, iccids[0]], target_status="ACTIVATED")

    assert trigger.serialize()[1] == {
        "iccids": iccids,
        "target_status": "ACTIVATED",
        "cisco_control_center_conn_id": "cisco_control_center_default",
        "poll_interval": 60.0,
        "max_transient_errors": 5,
    }


def test_too_many_devices_no_device_or_a_short_poll_interval_are_refused_naming_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    many = [700_000 + n for n in range(MAX_WATCHED_DEVICES + 1)]
    with pytest.raises(ValueError, match=rf"device_ids holds {len(many)} devices, more than the 100"):
        HuaweiRomaDeviceStatusEventTrigger(device_ids=many, target_online_status="online")
    with pytest.raises(ValueError, match="iccids is empty"):
        CiscoDeviceStatusEventTrigger(iccids=[], target_status="ACTIVATED")
    monkeypatch.setattr(events, "MIN_POLL_INTERVAL", 10.0)
    with pytest.raises(ValueError, match=r"poll_interval=1 is below 10 s"):
        campaign_trigger(poll_interval=1)


def test_bad_ids_and_statuses_are_refused_as_the_sensors_refuse_them() -> None:
    with pytest.raises(IoTFleetValidationError, match="target_status is not a SIM status") as status:
        CiscoDeviceStatusEventTrigger(iccids=list(CISCO.ids[:1]), target_status="ACTIVE")
    assert "'ACTIVE': use one of" in str(status.value)
    with pytest.raises(IoTFleetValidationError, match="iccids"):
        CiscoDeviceStatusEventTrigger(iccids=["123"], target_status="ACTIVATED")
    with pytest.raises(IoTFleetValidationError, match="target_online_status is invalid"):
        HuaweiRomaDeviceStatusEventTrigger(device_ids=[700_001], target_online_status="sleeping")
    with pytest.raises(IoTFleetValidationError, match="campaign_id is invalid"):
        VerizonThingSpaceCampaignFinishedTrigger(campaign_id="a/b")


# --- campaign finished --------------------------------------------------------------------------


@pytest.mark.usefixtures("thingspace")
def test_the_campaign_trigger_fires_once_when_the_campaign_ends_then_polls_no_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeCampaign(["CampaignScheduled", "CampaignInProgress", "CampaignEnded"], ["356938035643809"])
    serve(monkeypatch, fake)

    (payload,), quiet = asyncio.run(next_events(campaign_trigger(account_name=ACCOUNT), 1))

    assert payload == {
        "status": "success",
        "campaign_id": CAMPAIGN_ID,
        "account_name": ACCOUNT,
        "campaign_status": "CampaignEnded",
        "finished": 1,
        "failed": 0,
        "pending": 0,
        "description": f"campaign {CAMPAIGN_ID} is over (CampaignEnded): 1 finished, 0 failed, 0 pending of 1 device",
    }
    assert quiet
    assert fake.campaign_reads() == 3  # nothing read after the event


@pytest.mark.usefixtures("thingspace")
def test_a_campaign_already_reported_before_a_restart_is_not_reported_or_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeCampaign(["CampaignEnded"], ["356938035643809"])
    serve(monkeypatch, fake)
    store = FakeStore()
    first = campaign_trigger()
    first.asset_state_store = store  # type: ignore[assignment]

    (payload,), _ = asyncio.run(next_events(first, 1))
    restarted = campaign_trigger()
    restarted.asset_state_store = store  # type: ignore[assignment]
    reads = fake.campaign_reads()
    none, quiet = asyncio.run(next_events(restarted, 0))

    assert payload["campaign_status"] == "CampaignEnded"
    assert store.values == {first.memory_key(): True}
    assert none == [] and quiet
    assert fake.campaign_reads() == reads


@pytest.mark.usefixtures("thingspace")
def test_failed_polls_do_not_end_the_campaign_watcher(monkeypatch: pytest.MonkeyPatch, logs: Logs) -> None:
    fake = FakeCampaign(["CampaignInProgress", "CampaignEnded"], ["356938035643809"])
    answer = fake.read
    refusals = [(503, {"errorCode": "FOTA.UNAVAILABLE", "errorMessage": "busy"})] * 2 + [
        (400, {"errorCode": "FOTA.REQUEST_FAILED.UnexpectedError", "errorMessage": "refused"})
    ]

    def flaky(wire: Wire) -> tuple[int, Any]:
        return refusals.pop(0) if refusals else answer(wire)

    fake.read = flaky  # type: ignore[method-assign]
    serve(monkeypatch, fake)

    (payload,), _ = asyncio.run(next_events(campaign_trigger(max_transient_errors=1), 1))

    assert payload["campaign_status"] == "CampaignEnded"
    # The second 503 in a row is one more than max_transient_errors allows; a 400 is not transient.
    assert [
        len([line for line in logs.lines(level) if "failed in a row" in line])
        for level in ("warning", "error")
    ] == [1, 2]


# --- devices reached a status -------------------------------------------------------------------


@pytest.fixture(params=[CISCO, ROMA], ids=["cisco", "huawei"])
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Case:
    chosen: Case = request.param
    define_connection(monkeypatch, chosen)
    return chosen


def test_devices_reaching_the_status_fire_once_per_occurrence(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = list(case.ids[:3])
    fake: FakeVendor = case.fake({ids[0]: case.target, ids[1]: case.other, ids[2]: case.target})
    fake.after_reads(2, {ids[1]: case.target})  # the first occurrence
    fake.after_reads(12, {ids[2]: case.other})  # it no longer holds...
    fake.after_reads(16, {ids[2]: case.target})  # ...and holds again: the second occurrence
    serve(monkeypatch, fake)

    (first, second), quiet = asyncio.run(next_events(device_trigger(case, poll_interval=TICK), 2))

    assert first["matched"] == second["matched"] == ids
    assert first["statuses"] == {str(i): case.target for i in ids}
    assert first["status"] == "success" and first["unreachable"] == {}
    assert len(fake.reads) >= 16  # the polls while it still held fired nothing
    assert quiet  # and it holds still: nothing more


def test_a_device_trigger_restarted_while_the_reported_occurrence_holds_does_not_fire_again(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = list(case.ids[:3])
    fake = case.fake(dict.fromkeys(ids, case.target))
    serve(monkeypatch, fake)
    store = FakeStore()
    first = device_trigger(case, poll_interval=TICK)
    first.asset_state_store = store  # type: ignore[assignment]
    asyncio.run(next_events(first, 1))

    restarted = device_trigger(case, poll_interval=TICK)
    restarted.asset_state_store = store  # type: ignore[assignment]
    none, quiet = asyncio.run(next_events(restarted, 0))
    fake.after_reads(len(fake.reads) + 2, {ids[0]: case.other})
    fake.after_reads(len(fake.reads) + 6, {ids[0]: case.target})
    (again,), _ = asyncio.run(next_events(restarted, 1))

    assert none == [] and quiet
    assert again["matched"] == ids
    assert store.values == {first.memory_key(): True}
