"""ThingSpace firmware upgrade campaigns: the hook's calls, the upgrade operator and the campaign
sensor and trigger, against a small fake of the campaign endpoints.

The fake keeps campaigns and their devices and answers the FOTA v3 campaign calls from them, through
requests-mock (hook, operator, sensor) and an ``httpx.MockTransport`` (the trigger), so both worlds
read the very same campaign.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
import requests_mock as rm
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowTaskTimeout, TaskDeferred

from airflow_provider_iotfleet.exceptions import (
    OUTCOME_KEY,
    IoTFleetCampaignDevicesError,
    IoTFleetOperationFailedError,
    IoTFleetOutcomeUnknownError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.verizon import (
    CAMPAIGN_REUSABLE_STATUSES,
    MAX_CAMPAIGN_IMEIS,
    CampaignProgress,
    CampaignRequest,
    EnsuredCampaign,
    VerizonThingSpaceHook,
)
from airflow_provider_iotfleet.operators.verizon import (
    VerizonThingSpaceFirmwareUpgradeOperator,
    VerizonThingSpaceSyncFirmwareOperator,
    default_campaign_name,
)
from airflow_provider_iotfleet.sensors.verizon import VerizonThingSpaceCampaignSensor
from airflow_provider_iotfleet.triggers.verizon import VerizonThingSpaceCampaignTrigger
from tests.connections import THINGSPACE, with_extra
from tests.connections import THINGSPACE_ACCOUNT as ACCOUNT
from tests.connections import THINGSPACE_ROOT as ROOT
from tests.fake_thingspace import VZ_LOGIN_PATH, VZ_TOKEN_PATH, FakeThingSpace, serve
from tests.fakes import (
    OUTCOME_KEYS,
    FakeClock,
    FakeTaskInstance,
    Wire,
    assert_outcome_shape,
    luhn_complete,
    operator_context,
)

pytestmark = pytest.mark.timeout(60)

FOTA = "/api/fota/v3"
CONN_ID = "verizon_campaigns"
#: The same connection with retries (their backoff sleeps on the test's FakeClock).
RETRYING_CONN_ID = "verizon_campaigns_retrying"
CONNECTION = {**with_extra(THINGSPACE, max_retries=0, requests_per_second=100000), "host": ROOT}
#: The FakeClock's day: campaigns may not start before it.
TODAY = "2026-11-21"
#: The first day a campaign of more than MAX_CAMPAIGN_IMEIS devices may start (adds go in before it).
TOMORROW = "2026-11-22"
FIRMWARE = [
    {
        "firmwareName": "FOTA_Verizon_Upgrade_SR1.2_to_SR1.3",
        "firmwareFrom": "SR1.2.0.0-10657",
        "firmwareTo": "SR1.3.0.0-11020",
        "launchDate": "2026-06-01",
        "releaseNote": "",
        "make": "SEQUANS COMMUNICATIONS",
        "model": "GM01Q",
        "protocol": "LWM2M",
    },
    {
        "firmwareName": "FOTA_Verizon_Upgrade_SR1.3_to_SR1.4",
        "firmwareFrom": "SR1.3.0.0-11020",
        "firmwareTo": "SR1.4.0.0-11911",
        "launchDate": "2026-09-01",
        "releaseNote": "",
        "make": "SEQUANS COMMUNICATIONS",
        "model": "GM01Q",
        "protocol": "LWM2M",
    },
    {
        "firmwareName": "BG96_1.3_to_1.4",
        "firmwareFrom": "SR1.3.0.0-11020",
        "firmwareTo": "SR1.4.0.0-11911",
        "launchDate": "2026-09-01",
        "releaseNote": "",
        "make": "QUECTEL",
        "model": "BG96",
        "protocol": "LWM2M",
    },
]
UPGRADE = FIRMWARE[0]


def imeis(count: int, start: int = 0) -> list[str]:
    return [luhn_complete(f"35693803{n:06d}") for n in range(start, start + count)]


class FakeCampaigns(FakeThingSpace):
    """The FOTA v3 campaign endpoints of one account, answering from ``campaigns``.

    ``lose`` names requests ("POST campaigns", "PUT devices", "DELETE") whose next answer is a 500
    after the change was applied (ThingSpace did it; the answer is lost). ``refuse`` answers requests
    (``"METHOD path"`` prefixes) with a status and body, changing nothing. ``refuse_devices`` are
    IMEIs an add answers 200 for but refuses one by one (``status: Failure``), as ThingSpace does for
    a device not in the account.
    """

    def __init__(self, page_size: int = 1000) -> None:
        super().__init__()
        self.page_size = page_size
        self.campaigns: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, dict[str, dict[str, Any]]] = {}
        self.lose: list[str] = []
        self.refuse: dict[str, tuple[int, dict[str, str]]] = {}
        self.refuse_devices: dict[str, str] = {}
        #: the FOTA listing's device items by IMEI (``POST /devices/{acc}``, the upgrade's read); while
        #: none is added, every IMEI asked for is listed as one ``UPGRADE`` upgrades.
        self.fota: dict[str, dict[str, Any]] = {}

    def add_device(self, imei: str, firmware: str = UPGRADE["firmwareFrom"], **fields: Any) -> None:
        """A device of the account as the FOTA listing shows it: by default one ``UPGRADE`` upgrades."""
        self.fota[imei] = {
            "deviceId": imei,
            "make": UPGRADE["make"],
            "model": UPGRADE["model"],
            "firmware": firmware,
            "fotaEligible": True,
            "licenseAssigned": True,
            "protocol": "LWM2M",
            "lastConnectionTime": "2026-11-20 10:00:00.000 +0000 UTC",
            **fields,
        }

    def _upgradable(self, imei: str) -> dict[str, Any]:
        self.add_device(imei)
        device = self.fota.pop(imei)
        return device

    def add_campaign(self, name: str, status: str, members: list[str], **fields: Any) -> str:
        campaign_id = f"c{len(self.campaigns) + 1:04d}"
        self.campaigns[campaign_id] = {
            "id": campaign_id,
            "accountName": ACCOUNT,
            "campaignName": name,
            "firmwareName": UPGRADE["firmwareName"],
            "firmwareFrom": UPGRADE["firmwareFrom"],
            "firmwareTo": UPGRADE["firmwareTo"],
            "protocol": "LWM2M",
            "make": UPGRADE["make"],
            "model": UPGRADE["model"],
            "startDate": TODAY,
            "endDate": TODAY,
            "campaignTimeWindowList": [],
            "status": status,
            **fields,
        }
        self.devices[campaign_id] = {imei: {"deviceId": imei, "status": "RequestPending"} for imei in members}
        return campaign_id

    def set_devices(self, campaign_id: str, status: str, members: list[str], reason: str = "") -> None:
        for imei in members:
            self.devices[campaign_id][imei] = {"deviceId": imei, "status": status, "resultReason": reason}

    def requests(self, method: str, pattern: str = "") -> list[Wire]:
        return [w for w in self.reads if w.method == method and re.search(pattern, w.path)]

    def _lost(self, kind: str) -> bool:
        if kind in self.lose:
            self.lose.remove(kind)
            return True
        return False

    def read(self, wire: Wire) -> tuple[int, Any]:
        path = wire.path.removeprefix(FOTA)
        for kind, answer in list(self.refuse.items()):
            if f"{wire.method} {path}".startswith(kind):
                return answer
        if wire.method == "POST" and path == f"/devices/{ACCOUNT}":
            asked = sorted(wire.json()["deviceList"])
            if not self.fota:  # no device added: the account has every device asked for, all upgradable
                listed = [self._upgradable(imei) for imei in asked]
            else:
                listed = [self.fota[imei] for imei in asked if imei in self.fota]
            return 200, {"accountName": ACCOUNT, "hasMoreData": False, "deviceList": listed}
        if wire.method == "GET" and path == f"/firmware/{ACCOUNT}":
            return 200, [f for f in FIRMWARE if f["protocol"] == wire.query["protocol"][0]]
        if wire.method == "POST" and path == f"/campaigns/firmware/{ACCOUNT}":
            body = wire.json()
            campaign_id = self.add_campaign(
                body.get("campaignName"),
                "CampaignRequestPending",
                body["deviceList"],
                startDate=body["startDate"],
                endDate=body["endDate"],
                campaignTimeWindowList=body.get("campaignTimeWindowList", []),
            )
            if self._lost("POST campaigns"):
                return 500, {"errorCode": "FOTA.INTERNAL", "errorMessage": "internal error"}
            return 200, self.campaigns[campaign_id]
        if match := re.fullmatch(rf"/campaigns/firmware/{ACCOUNT}/(\w+)", path):
            body = wire.json()
            members = self.devices[match[1]]
            results = []
            for imei in body["deviceList"]:
                adding = body["Type"] == "append"
                reason = self.refuse_devices.get(imei, "") if adding else ""
                if adding and not reason:
                    members.setdefault(imei, {"deviceId": imei, "status": "RequestPending"})
                elif not adding:
                    members.pop(imei, None)
                results.append(
                    {"deviceId": imei, "status": "Failure" if reason else "Success", "Reason": reason}
                )
            if self._lost("PUT devices"):
                return 502, {"errorCode": "FOTA.BAD_GATEWAY", "errorMessage": "bad gateway"}
            return 200, {"accountName": ACCOUNT, "campaignId": match[1], "deviceList": results}
        if match := re.fullmatch(rf"/campaigns/firmware/{ACCOUNT}/(\w+)/dates", path):
            self.campaigns[match[1]].update(
                {key: value for key, value in wire.json().items() if key != "campaignTimeWindowList"},
                campaignTimeWindowList=wire.json().get("campaignTimeWindowList", []),
            )
            return 200, self.campaigns[match[1]]
        if match := re.fullmatch(rf"/campaigns/{ACCOUNT}/(\w+)", path):
            campaign = self.campaigns.get(match[1])
            if campaign is None:
                return 400, {"errorCode": "FOTA.REQUEST_FAILED.CampaignNotFound", "errorMessage": "not found"}
            if wire.method == "DELETE":
                campaign["status"] = "CampaignCancelled"
                if self._lost("DELETE"):
                    return 500, {"errorCode": "FOTA.INTERNAL", "errorMessage": "internal error"}
                return 200, {"success": True}
            return 200, campaign
        if match := re.fullmatch(rf"/reports/{ACCOUNT}/campaigns/(\w+)/devices", path):
            members = sorted(self.devices[match[1]].values(), key=lambda d: d["deviceId"])
            after = wire.query["lastSeenDeviceId"][0]
            rest = [d for d in members if after == "0" or d["deviceId"] > after]
            page = rest[: self.page_size]
            more = len(rest) > self.page_size
            return 200, {
                "hasMoreData": more,
                "lastSeenDeviceId": page[-1]["deviceId"] if more else None,
                "maxPageSize": self.page_size,
                "totalDevice": len(members),
                "deviceList": page,
            }
        if path == f"/reports/{ACCOUNT}/firmware/campaigns":
            status = wire.query["campaignStatus"][0]
            found = [c for c in self.campaigns.values() if c["status"] == status]
            return 200, {"hasMoreData": False, "lastSeenCampaignId": None, "campaignList": found}
        raise AssertionError(f"unexpected request {wire.method} {wire.url}")


@pytest.fixture(autouse=True)
def connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(CONNECTION))
    retrying = {**CONNECTION, "extra": {**CONNECTION["extra"], "max_retries": 2}}  # type: ignore[dict-item]
    monkeypatch.setenv(f"AIRFLOW_CONN_{RETRYING_CONN_ID.upper()}", json.dumps(retrying))


@pytest.fixture
def fake(requests_mock: rm.Mocker) -> FakeCampaigns:
    vendor = FakeCampaigns()
    vendor.mount(requests_mock)
    return vendor


@pytest.fixture
def hook(clock: FakeClock) -> VerizonThingSpaceHook:
    return VerizonThingSpaceHook(CONN_ID, clock=clock)


def schedule(hook: VerizonThingSpaceHook, devices: list[str], **kwargs: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "firmware_name": UPGRADE["firmwareName"],
        "firmware_from": UPGRADE["firmwareFrom"],
        "firmware_to": UPGRADE["firmwareTo"],
        "start_date": TODAY,
        "end_date": "2026-11-22",
        "campaign_name": "night-wave",
        **kwargs,
    }
    return hook.schedule_campaign(devices, **arguments)


# === hook ========================================================================================


def test_list_firmware_normalises_each_upgrade(hook: VerizonThingSpaceHook, fake: FakeCampaigns) -> None:
    firmware = hook.list_firmware(protocol="lwm2m")

    assert firmware[0] == {
        "firmware_name": UPGRADE["firmwareName"],
        "firmware_from": "SR1.2.0.0-10657",
        "firmware_to": "SR1.3.0.0-11020",
        "launch_date": "2026-06-01",
        "release_note": "",
        "make": "SEQUANS COMMUNICATIONS",
        "model": "GM01Q",
        "protocol": "LWM2M",
    }
    assert len(firmware) == 3
    (listing,) = fake.requests("GET", "/firmware/")
    assert listing.query == {"protocol": ["LWM2M"]}


def test_list_firmware_refuses_a_bad_protocol_and_an_answer_that_is_not_a_list(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    with pytest.raises(IoTFleetValidationError, match="protocol is invalid"):
        hook.list_firmware(protocol="COAP")
    assert fake.reads == []
    fake.refuse[f"GET /firmware/{ACCOUNT}"] = (200, {"firmwareList": []})  # type: ignore[dict-item]
    with pytest.raises(IoTFleetVendorResponseError, match="something other than a list of firmware"):
        hook.list_firmware()


def test_schedule_sends_the_documented_body_and_returns_the_campaign(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    devices = imeis(3)
    campaign = schedule(hook, devices, time_windows=[(0, 4), {"startTime": 22, "endTime": 24}])

    (post,) = fake.requests("POST", "/campaigns/firmware/")
    assert post.json() == {
        "campaignName": "night-wave",
        "firmwareName": UPGRADE["firmwareName"],
        "firmwareFrom": "SR1.2.0.0-10657",
        "firmwareTo": "SR1.3.0.0-11020",
        "protocol": "LWM2M",
        "startDate": TODAY,
        "endDate": "2026-11-22",
        "campaignTimeWindowList": [{"startTime": 0, "endTime": 4}, {"startTime": 22, "endTime": 24}],
        "deviceList": devices,
        "autoAssignLicenseFlag": True,
        "autoAddDevicesFlag": False,
    }
    assert campaign == {
        "campaign_id": "c0001",
        "account_name": ACCOUNT,
        "campaign_name": "night-wave",
        "firmware_name": UPGRADE["firmwareName"],
        "firmware_from": "SR1.2.0.0-10657",
        "firmware_to": "SR1.3.0.0-11020",
        "protocol": "LWM2M",
        "make": "SEQUANS COMMUNICATIONS",
        "model": "GM01Q",
        "start_date": TODAY,
        "end_date": "2026-11-22",
        "time_windows": [[0, 4], [22, 24]],
        "status": "CampaignRequestPending",
    }


def test_a_large_device_list_is_scheduled_then_added_in_batches(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    devices = imeis(2 * MAX_CAMPAIGN_IMEIS + 500)
    campaign = schedule(hook, devices, start_date=TOMORROW, end_date="2026-11-23")

    (post,) = fake.requests("POST", "/campaigns/firmware/")
    adds = fake.requests("PUT", r"/campaigns/firmware/[^/]+/\w+$")
    assert post.json()["deviceList"] == devices[:MAX_CAMPAIGN_IMEIS]
    assert [wire.json()["Type"] for wire in adds] == ["append", "append"]
    assert [wire.json()["deviceList"] for wire in adds] == [
        devices[MAX_CAMPAIGN_IMEIS : 2 * MAX_CAMPAIGN_IMEIS],
        devices[2 * MAX_CAMPAIGN_IMEIS :],
    ]
    assert sorted(fake.devices[campaign["campaign_id"]]) == sorted(devices)
    assert fake.requests("DELETE") == []
    assert fake.campaigns[campaign["campaign_id"]]["status"] == "CampaignRequestPending"


@pytest.mark.parametrize(
    ("devices", "start", "refused"),
    [
        (MAX_CAMPAIGN_IMEIS + 1, TODAY, True),  # the adds would come after the campaign started
        (MAX_CAMPAIGN_IMEIS + 1, "2026-11-20", True),
        (MAX_CAMPAIGN_IMEIS, TODAY, False),  # one request holds them all: nothing to add
        (MAX_CAMPAIGN_IMEIS + 1, TOMORROW, False),  # added today, before it starts
    ],
)
def test_check_campaign_size_refuses_more_than_one_request_of_devices_starting_today(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns, devices: int, start: str, refused: bool
) -> None:
    if not refused:
        hook.check_campaign_size(devices, start)
    else:
        with pytest.raises(IoTFleetValidationError) as raised:
            hook.check_campaign_size(devices, start)
        message = str(raised.value)
        assert f"a campaign of {devices} devices must start after today" in message
        assert (
            f"campaign_start_date {start}: devices beyond the first {MAX_CAMPAIGN_IMEIS} are added" in message
        )
        assert "start it tomorrow or later, or split the devices into campaigns of at most 1000" in message
    assert fake.wires == []


def test_schedule_campaign_and_the_operator_check_the_size_before_scheduling(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns, clock: FakeClock
) -> None:
    too_many = imeis(MAX_CAMPAIGN_IMEIS + 1)
    with pytest.raises(IoTFleetValidationError, match="a campaign of 1001 devices must start after today"):
        schedule(hook, too_many)
    assert fake.wires == []  # the hook alone: before any request
    with pytest.raises(IoTFleetValidationError, match="a campaign of 1001 devices must start after today"):
        upgrade_operator(clock, imeis=too_many).execute(run_context(None))
    # the operator looks for its campaign by name first (a retry reuses it), then refuses
    assert fake.requests("GET", f"/firmware/{ACCOUNT}$") == fake.requests("POST", "/campaigns/") == []


def test_every_bad_input_is_named_before_any_request(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    with pytest.raises(IoTFleetValidationError) as raised:
        schedule(
            hook,
            imeis(2),
            start_date="2026-11-20",
            end_date="2026-11-19",
            time_windows=[(4, 2), (0, 25), "night"],
        )
    text = str(raised.value)
    assert "end_date 2026-11-19 is before start_date 2026-11-20" in text
    assert "start_date 2026-11-20 is in the past (today is 2026-11-21, UTC)" in text
    assert "time_windows[0] starts at 4 h and ends at 2 h" in text
    assert "time_windows[1] end hour 25 is not a whole hour in 0..24" in text
    assert "time_windows[2] 'night' is not a (start hour, end hour) pair" in text

    with pytest.raises(IoTFleetValidationError, match="1 of 2 IMEIs is invalid"):
        schedule(hook, ["12345", imeis(1)[0]])
    with pytest.raises(IoTFleetValidationError, match="'26/11/2026' is not a yyyy-mm-dd date"):
        schedule(hook, imeis(1), start_date="26/11/2026")
    with pytest.raises(IoTFleetValidationError, match="firmware_from and firmware_to are both"):
        schedule(hook, imeis(1), firmware_to=UPGRADE["firmwareFrom"])
    with pytest.raises(IoTFleetValidationError, match="imeis is empty"):
        schedule(hook, [])
    with pytest.raises(IoTFleetValidationError, match="campaign_name contains control characters"):
        schedule(hook, imeis(1), campaign_name="wave\n2")
    assert fake.reads == []


def test_schedule_campaign_sends_a_repeated_imei_once(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    first, second = imeis(2)
    schedule(hook, [first, second, first])

    (post,) = fake.requests("POST", "/campaigns/firmware/")
    assert post.json()["deviceList"] == [first, second]

    # Past the first request too: a repeat in an add would be refused as already in the campaign,
    # which would cancel it.
    devices = imeis(MAX_CAMPAIGN_IMEIS + 1, start=100)
    schedule(
        hook,
        [*devices, devices[0], devices[-1]],
        start_date=TOMORROW,
        end_date="2026-11-23",
        campaign_name="large-wave",
    )

    assert (
        fake.requests("POST", "/campaigns/firmware/")[1].json()["deviceList"] == devices[:MAX_CAMPAIGN_IMEIS]
    )
    (add,) = fake.requests("PUT", "/campaigns/firmware/")
    assert add.json() == {"Type": "append", "deviceList": devices[MAX_CAMPAIGN_IMEIS:]}
    assert fake.requests("DELETE") == []


def test_a_lost_schedule_answer_finds_the_campaign_by_name_instead_of_sending_it_again(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns, events: list[Any]
) -> None:
    fake.lose.append("POST campaigns")
    campaign = schedule(hook, imeis(2))

    assert len(fake.requests("POST", "/campaigns/")) == 1
    assert campaign["campaign_id"] == "c0001"
    assert campaign["campaign_name"] == "night-wave"
    assert any("found campaign c0001 by its name" in str(event["event"]) for event in events)


def test_a_lost_schedule_answer_without_the_campaign_to_show_is_an_unknown_outcome(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    fake.lose.append("POST campaigns")
    fake.refuse[f"POST /campaigns/firmware/{ACCOUNT}"] = (
        503,
        {"errorCode": "FOTA.UNAVAILABLE", "errorMessage": "unavailable"},
    )
    # A 503 says "not processed": refused, not lost; nothing is looked up.
    with pytest.raises(IoTFleetVendorResponseError) as refused:
        schedule(hook, imeis(2))
    assert not isinstance(refused.value, IoTFleetOutcomeUnknownError)
    assert fake.requests("GET", "/reports/") == []

    fake.refuse.clear()
    fake.lose.append("POST campaigns")
    fake.campaigns.clear()

    def vanish(wire: Wire) -> tuple[int, Any]:  # the campaign is not (yet) in the history
        status, answer = FakeCampaigns.read(fake, wire)
        if wire.path.endswith(f"/reports/{ACCOUNT}/firmware/campaigns"):
            answer["campaignList"] = []
        return status, answer

    fake.read = vanish  # type: ignore[method-assign]
    with pytest.raises(IoTFleetOutcomeUnknownError, match="no campaign of that name can be found"):
        schedule(hook, imeis(2))
    assert len(fake.requests("POST", "/campaigns/")) == 2  # one per schedule, never repeated


def test_a_lost_schedule_answer_whose_lookup_fails_raises_the_lookups_error(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    """A failed lookup says nothing of the schedule: it is the error, not an unknown outcome."""
    fake.lose.append("POST campaigns")
    fake.refuse[f"GET /reports/{ACCOUNT}/firmware/campaigns"] = (
        400,
        {"errorCode": "FOTA.REQUEST_FAILED.UnexpectedError", "errorMessage": "lookup refused"},
    )
    with pytest.raises(IoTFleetVendorResponseError, match="lookup refused") as raised:
        schedule(hook, imeis(2))
    assert not isinstance(raised.value, IoTFleetOutcomeUnknownError)
    assert len(fake.requests("POST", "/campaigns/")) == 1


def test_a_lost_add_answer_is_read_back_and_only_the_missing_devices_sent_again(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    campaign_id = fake.add_campaign("wave", "CampaignScheduled", imeis(2))
    more = imeis(3, start=10)
    fake.lose.append("PUT devices")

    hook.add_campaign_devices(campaign_id, more)

    # applied the first time: the read-back finds nothing missing, so nothing is sent again
    assert len(fake.requests("PUT", "/campaigns/firmware/")) == 1
    assert len(fake.requests("GET", "/devices$")) == 1
    assert sorted(fake.devices[campaign_id]) == sorted(imeis(2) + more)


def test_an_add_whose_answers_are_lost_twice_is_an_unknown_outcome(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    campaign_id = fake.add_campaign("wave", "CampaignScheduled", imeis(1))

    def drop_then_lose(wire: Wire) -> tuple[int, Any]:
        if wire.method == "PUT":  # lost before it was applied: the read-back finds them missing
            return 504, {"errorCode": "FOTA.TIMEOUT", "errorMessage": "gateway timeout"}
        return FakeCampaigns.read(fake, wire)

    fake.read = drop_then_lose  # type: ignore[method-assign]
    with pytest.raises(IoTFleetOutcomeUnknownError, match="were lost twice"):
        hook.add_campaign_devices(campaign_id, imeis(2, start=5))
    assert len(fake.requests("PUT", "/campaigns/firmware/")) == 2
    assert fake.requests("DELETE") == []  # not asked to cancel: the campaign is the caller's to judge


def test_an_add_whose_answer_is_lost_and_whose_read_back_fails_is_an_unknown_outcome(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    """The add may have applied: not "not added", even when the campaign cannot be read back."""
    campaign_id = fake.add_campaign("wave", "CampaignScheduled", imeis(1))

    def lose_everything(wire: Wire) -> tuple[int, Any]:
        if wire.method in ("PUT", "GET"):
            return 500, {"errorCode": "FOTA.INTERNAL", "errorMessage": "internal error"}
        return FakeCampaigns.read(fake, wire)

    fake.read = lose_everything  # type: ignore[method-assign]
    with pytest.raises(IoTFleetOutcomeUnknownError, match="reading the campaign back failed too") as raised:
        hook.add_campaign_devices(campaign_id, imeis(2, start=5))
    assert raised.value.bare_message.startswith("the answer to 'append' was lost (internal error)")
    assert len(fake.requests("PUT", "/campaigns/firmware/")) == 1  # not sent again blindly


def test_remove_devices_and_change_dates(hook: VerizonThingSpaceHook, fake: FakeCampaigns) -> None:
    campaign_id = fake.add_campaign("wave", "CampaignScheduled", imeis(3))
    hook.remove_campaign_devices(campaign_id, imeis(1))
    assert sorted(fake.devices[campaign_id]) == sorted(imeis(2, start=1))

    campaign = hook.change_campaign_dates(
        campaign_id, start_date="2026-11-25", end_date="2026-11-26", time_windows=[[1, 5]]
    )
    (put,) = fake.requests("PUT", "/dates$")
    assert put.json() == {
        "startDate": "2026-11-25",
        "endDate": "2026-11-26",
        "campaignTimeWindowList": [{"startTime": 1, "endTime": 5}],
    }
    assert (campaign["start_date"], campaign["end_date"], campaign["time_windows"]) == (
        "2026-11-25",
        "2026-11-26",
        [[1, 5]],
    )
    with pytest.raises(IoTFleetValidationError, match="campaign_id is invalid"):
        hook.change_campaign_dates("../x", start_date=TODAY, end_date=TODAY)


def test_cancel_reads_the_status_back_also_when_the_answer_is_lost(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    first = fake.add_campaign("one", "CampaignScheduled", imeis(1))
    second = fake.add_campaign("two", "CampaignScheduled", imeis(1))
    assert hook.cancel_campaign(first)["status"] == "CampaignCancelled"

    fake.lose.append("DELETE")
    assert hook.cancel_campaign(second)["status"] == "CampaignCancelled"
    assert len(fake.requests("DELETE")) == 2  # one each: a lost answer is read back, not resent


def test_a_lost_cancel_whose_campaign_reads_back_not_cancelled_is_an_unknown_outcome(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    campaign_id = fake.add_campaign("wave", "CampaignScheduled", imeis(1))

    def lose_the_cancel(wire: Wire) -> tuple[int, Any]:  # lost before it was applied
        if wire.method == "DELETE":
            return 500, {"errorCode": "FOTA.INTERNAL", "errorMessage": "internal error"}
        return FakeCampaigns.read(fake, wire)

    fake.read = lose_the_cancel  # type: ignore[method-assign]
    with pytest.raises(IoTFleetOutcomeUnknownError) as raised:
        hook.cancel_campaign(campaign_id)
    message = raised.value.message
    assert message.startswith(
        f"Verizon ThingSpace: the answer to cancelling campaign {campaign_id} was lost ("
    )
    assert message.endswith(
        "internal error) and it is CampaignScheduled: ThingSpace may not have cancelled it"
    )
    assert (raised.value.http_status, raised.value.error_code) == (500, "FOTA.INTERNAL")
    assert len(fake.requests("DELETE")) == 1  # read back, never sent again


def test_iter_campaigns_and_find_campaign_by_name(hook: VerizonThingSpaceHook, fake: FakeCampaigns) -> None:
    fake.add_campaign("old", "CampaignCancelled", imeis(1))
    ended = fake.add_campaign("wave", "CampaignEnded", imeis(1))
    assert [c["campaign_id"] for c in hook.iter_campaigns("CampaignEnded")] == [ended]
    assert hook.find_campaign("wave")["campaign_id"] == ended  # type: ignore[index]
    assert hook.find_campaign("old") is None  # cancelled ones are not reused
    with pytest.raises(IoTFleetValidationError, match="'Running' is not one of"):
        hook.iter_campaigns("Running")


def test_the_campaign_history_is_paged_and_a_cursor_sent_again_is_an_error(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    first = fake.add_campaign("one", "CampaignEnded", imeis(1))
    second = fake.add_campaign("two", "CampaignEnded", imeis(1))
    # Campaign ids come in no documented order: a cursor is checked only not to come back again.
    cursors = {"0": (first, "c9"), "c9": (second, "c5"), "c5": (None, None)}

    def paged(wire: Wire) -> tuple[int, Any]:
        status, answer = FakeCampaigns.read(fake, wire)
        if wire.path.endswith("/firmware/campaigns"):
            shown, cursor = cursors[wire.query["lastSeenCampaignId"][0]]
            answer.update(
                campaignList=[c for c in answer["campaignList"] if c["id"] == shown],
                hasMoreData=cursor is not None,
                lastSeenCampaignId=cursor,
            )
        return status, answer

    fake.read = paged  # type: ignore[method-assign]
    assert [c["campaign_id"] for c in hook.iter_campaigns("CampaignEnded")] == [first, second]
    assert [w.query["lastSeenCampaignId"] for w in fake.requests("GET", "/firmware/campaigns$")] == [
        ["0"],
        ["c9"],
        ["c5"],
    ]
    assert [w.query["campaignStatus"] for w in fake.requests("GET", "/firmware/campaigns$")] == [
        ["CampaignEnded"]
    ] * 3

    cursors["c5"] = (None, "c9")  # back to a cursor it had sent: it would page for ever
    with pytest.raises(IoTFleetVendorResponseError, match=r"a lastSeenCampaignId \(c9\) it had already sent"):
        list(hook.iter_campaigns("CampaignEnded"))


def test_the_device_report_is_paged_and_a_cursor_that_does_not_move_is_an_error(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    fake.page_size = 2
    campaign_id = fake.add_campaign("wave", "CampaignScheduled", imeis(5))
    fake.set_devices(campaign_id, "Finished", imeis(2))
    fake.set_devices(campaign_id, "UpgradeFailed", imeis(1, start=2), reason="Device firmware mismatch")

    devices = list(hook.iter_campaign_devices(campaign_id))
    assert [d["device_id"] for d in devices] == imeis(5)
    assert [w.query["lastSeenDeviceId"] for w in fake.requests("GET", "/devices$")] == [
        ["0"],
        [imeis(5)[1]],
        [imeis(5)[3]],
    ]
    progress = hook.campaign_progress(campaign_id)
    assert isinstance(progress, CampaignProgress)
    assert (progress.finished, progress.pending) == (imeis(2), imeis(2, start=3))
    assert progress.failed == [
        {"device_id": imeis(1, start=2)[0], "status": "UpgradeFailed", "reason": "Device firmware mismatch"}
    ]
    assert progress.over is False

    def stuck(wire: Wire) -> tuple[int, Any]:
        status, answer = FakeCampaigns.read(fake, wire)
        if wire.path.endswith("/devices"):
            answer.update(hasMoreData=True, lastSeenDeviceId="0")
        return status, answer

    fake.read = stuck  # type: ignore[method-assign]
    with pytest.raises(IoTFleetVendorResponseError, match="it would page forever"):
        list(hook.iter_campaign_devices(campaign_id))


# === operator ====================================================================================


def upgrade_operator(clock: FakeClock, **kwargs: Any) -> VerizonThingSpaceFirmwareUpgradeOperator:
    arguments: dict[str, Any] = {
        "task_id": "upgrade",
        "imeis": imeis(3),
        "firmware_name": UPGRADE["firmwareName"],
        "verizon_thingspace_conn_id": CONN_ID,
        **kwargs,
    }
    operator = VerizonThingSpaceFirmwareUpgradeOperator(**arguments)
    operator.__dict__["hook"] = VerizonThingSpaceHook(arguments["verizon_thingspace_conn_id"], clock=clock)
    return operator


def run_context(
    logical_date: datetime | None = datetime(2026, 11, 23, 6, tzinfo=UTC), *, try_number: int = 1
) -> dict[str, Any]:
    context = operator_context("upgrade", try_number=try_number)
    context["logical_date"] = logical_date
    return context


def test_the_operator_schedules_a_named_campaign_on_the_logical_dates_day(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    context = run_context()
    outcome = upgrade_operator(clock, imeis=imeis(3) + imeis(1)).execute(context)

    name = "airflow test_dag.upgrade manual__2026-11-21T12:00:00+00:00"
    assert outcome == {
        "operation": "upgrade_firmware",
        "vendor": "Verizon ThingSpace",
        "requested": 3,  # the repeated IMEI counts once
        "dry_run": False,
        "counts": {"succeeded": 0, "unchanged": 0, "scheduled": 3, "accepted": 0, "failed": 0, "unknown": 0},
        "devices": {"succeeded": [], "unchanged": [], "scheduled": imeis(3), "accepted": []},
        "errors": [],
        "account_name": ACCOUNT,
        "campaign_id": "c0001",
        "campaign_name": name,
        "campaign_status": "CampaignRequestPending",
        "firmware_name": UPGRADE["firmwareName"],
        "firmware_from": "SR1.2.0.0-10657",
        "firmware_to": "SR1.3.0.0-11020",
        "start_date": "2026-11-23",
        "end_date": "2026-11-24",
    }
    assert context["ti"].xcom == {}  # returned, not pushed: Airflow pushes it as return_value
    (post,) = fake.requests("POST", "/campaigns/firmware/")
    assert post.json()["campaignName"] == name
    assert post.json()["deviceList"] == imeis(3)
    assert (post.json()["startDate"], post.json()["endDate"]) == ("2026-11-23", "2026-11-24")


@pytest.mark.parametrize(
    ("logical_date", "start", "end"),
    [
        # a late run or a backfill: today, not the past
        (datetime(2026, 11, 3, 6, tzinfo=UTC), TODAY, TOMORROW),
        (None, TODAY, TOMORROW),  # a manual run without a logical date
        (datetime(2026, 11, 25, 6, tzinfo=UTC), "2026-11-25", "2026-11-26"),  # a day ahead stays that day
    ],
)
def test_the_default_start_is_the_logical_day_or_today_when_that_has_passed(
    fake: FakeCampaigns, clock: FakeClock, logical_date: datetime | None, start: str, end: str
) -> None:
    outcome = upgrade_operator(clock).execute(run_context(logical_date))

    assert (outcome["start_date"], outcome["end_date"]) == (start, end)
    (post,) = fake.requests("POST", "/campaigns/firmware/")
    assert (post.json()["startDate"], post.json()["endDate"]) == (start, end)


#: What the upgrade outcome adds to the common shape.
CAMPAIGN_FIELDS = {
    "account_name",
    "campaign_id",
    "campaign_name",
    "campaign_status",
    "firmware_name",
    "firmware_from",
    "firmware_to",
    "start_date",
    "end_date",
}


@pytest.mark.parametrize("case", ["scheduled", "reused", "empty"])
def test_the_upgrade_outcome_matches_the_documented_shape(
    fake: FakeCampaigns, clock: FakeClock, case: str
) -> None:
    name = "airflow test_dag.upgrade manual__2026-11-21T12:00:00+00:00"
    devices = [] if case == "empty" else imeis(3)
    # reused: a retry finds the campaign an earlier try scheduled (not started yet), lacking a device
    if case == "reused":
        fake.add_campaign(name, "CampaignScheduled", devices[:2], startDate=TOMORROW, endDate="2026-11-25")

    context = run_context(try_number=2 if case == "reused" else 1)
    outcome = upgrade_operator(clock, imeis=[*devices, *devices[:1]]).execute(context)

    assert_outcome_shape(outcome, operation="upgrade_firmware", requested=devices)
    assert set(outcome) == OUTCOME_KEYS | CAMPAIGN_FIELDS  # the campaign's fields, and no others
    assert outcome["vendor"] == "Verizon ThingSpace"
    assert outcome["dry_run"] is False
    # a retry's devices already in its campaign are unchanged: it sends nothing for them
    held = devices[:2] if case == "reused" else []
    assert outcome["devices"]["scheduled"] == devices[len(held) :]
    assert outcome["devices"]["unchanged"] == held
    assert outcome["counts"]["scheduled"] == len(devices) - len(held)
    assert outcome["errors"] == []
    expected = {
        "account_name": ACCOUNT,
        "campaign_id": None if case == "empty" else "c0001",
        "campaign_name": name,
        "campaign_status": {
            "scheduled": "CampaignRequestPending",
            "reused": "CampaignScheduled",
            "empty": None,
        }[case],
        "firmware_name": UPGRADE["firmwareName"],
        "firmware_from": None if case == "empty" else UPGRADE["firmwareFrom"],  # only the name was given
        "firmware_to": None if case == "empty" else UPGRADE["firmwareTo"],
        # a reused campaign's own dates, not the ones this try would have asked for
        "start_date": TOMORROW if case == "reused" else "2026-11-23",
        "end_date": "2026-11-25" if case == "reused" else "2026-11-24",
    }
    assert {field: outcome[field] for field in CAMPAIGN_FIELDS} == expected
    assert context["ti"].xcom == {}


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 11, 21, 23, 50, tzinfo=UTC),
        datetime(2026, 11, 22, 1, 50, tzinfo=timezone(timedelta(hours=2))),
    ],
    ids=["utc", "utc+2"],
)
@pytest.mark.parametrize(
    "logical_date", [None, datetime(2026, 11, 21, tzinfo=UTC)], ids=["manual", "scheduled"]
)
def test_a_run_late_in_the_day_gets_a_window_of_today_and_tomorrow(
    fake: FakeCampaigns, now: datetime, logical_date: datetime | None
) -> None:
    outcome = upgrade_operator(FakeClock(now)).execute(run_context(logical_date))

    assert (outcome["start_date"], outcome["end_date"]) == (TODAY, TOMORROW)
    (post,) = fake.requests("POST", "/campaigns/firmware/")
    assert (post.json()["startDate"], post.json()["endDate"]) == (TODAY, TOMORROW)


#: The one read an upgrade makes before it refuses to schedule: is there a campaign of its name?
HISTORY = f"{FOTA}/reports/{ACCOUNT}/firmware/campaigns"


@pytest.mark.parametrize(
    ("start", "expected", "reads"),
    [
        # Well formed, but over: refused only once no campaign of the task's name is found (a retry
        # reuses its own campaign, ended or not), so only that look-up was sent.
        (
            "2026-11-18",
            "campaign_end_date 2026-11-20 is before today (2026-11-21): no device would upgrade",
            {("GET", HISTORY)},
        ),
        (None, "end_date 2026-11-20 is before start_date 2026-11-21", set()),  # the default start: today
    ],
    ids=["explicit-start", "default-start"],
)
def test_a_window_that_has_already_ended_is_refused_before_any_change(
    fake: FakeCampaigns, clock: FakeClock, start: str | None, expected: str, reads: set[tuple[str, str]]
) -> None:
    operator = upgrade_operator(clock, campaign_start_date=start, campaign_end_date="2026-11-20")
    with pytest.raises(IoTFleetValidationError) as raised:
        operator.execute(run_context(None))
    assert expected in str(raised.value)
    assert {(wire.method, wire.path) for wire in fake.reads} == reads
    assert fake.campaigns == {}


def test_the_firmware_is_found_by_from_and_to_or_the_error_lists_what_there_is(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    outcome = upgrade_operator(
        clock, firmware_name=None, firmware_from="SR1.2.0.0-10657", firmware_to="SR1.3.0.0-11020"
    ).execute(run_context())
    assert fake.campaigns[outcome["campaign_id"]]["firmwareName"] == UPGRADE["firmwareName"]

    ambiguous = upgrade_operator(
        clock,
        firmware_name=None,
        firmware_from="SR1.3.0.0-11020",
        firmware_to="SR1.4.0.0-11911",
        campaign_name="second",
    )
    with pytest.raises(IoTFleetValidationError) as raised:
        ambiguous.execute(run_context())
    assert "2 firmware upgrades match firmware_from 'SR1.3.0.0-11020', firmware_to 'SR1.4.0.0-11911'" in str(
        raised.value
    )
    assert "BG96_1.3_to_1.4 (SR1.3.0.0-11020 -> SR1.4.0.0-11911, QUECTEL BG96)" in str(raised.value)

    with pytest.raises(IoTFleetValidationError) as missing:
        upgrade_operator(clock, firmware_name="SR9", campaign_name="third").execute(run_context())
    assert f"no firmware upgrade available to account {ACCOUNT} (LWM2M) matches firmware_name 'SR9'" in str(
        missing.value
    )
    assert len(fake.requests("POST", "/campaigns/")) == 1


def test_a_retried_task_reuses_its_campaign_and_adds_what_it_lacks(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    name = "airflow test_dag.upgrade manual__2026-11-21T12:00:00+00:00"
    # Not started yet (ThingSpace takes added devices only before the start date).
    campaign_id = fake.add_campaign(name, "CampaignScheduled", imeis(2), startDate=TOMORROW, endDate=TOMORROW)

    outcome = upgrade_operator(clock, imeis=imeis(4)).execute(run_context(try_number=2))

    assert outcome["campaign_id"] == campaign_id
    assert outcome["devices"]["scheduled"] == imeis(2, start=2)  # added by this try
    assert outcome["devices"]["unchanged"] == imeis(2)  # in it already: nothing sent
    assert outcome["errors"] == []
    assert fake.requests("POST", "/campaigns/") == []
    (add,) = fake.requests("PUT", "/campaigns/firmware/")
    assert add.json() == {"Type": "append", "deviceList": imeis(2, start=2)}
    assert sorted(fake.devices[campaign_id]) == imeis(4)


def test_a_campaign_found_by_name_with_other_firmware_is_not_reused(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    fake.add_campaign("wave", "CampaignScheduled", imeis(3), firmwareName="FOTA_other", firmwareTo="SR1.9")
    with pytest.raises(IoTFleetValidationError) as raised:
        upgrade_operator(clock, campaign_name="wave").execute(run_context())
    assert "campaign 'wave' (c0001, CampaignScheduled) exists with other firmware" in str(raised.value)
    assert f"firmware_name 'FOTA_other', not {UPGRADE['firmwareName']!r}" in str(raised.value)
    assert fake.requests("POST", "/campaigns/") == fake.requests("PUT") == []


def test_a_retry_long_after_the_start_still_reuses_its_campaign(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    name = "airflow test_dag.upgrade manual__2026-11-21T12:00:00+00:00"
    campaign_id = fake.add_campaign(name, "CampaignEnded", imeis(3))
    outcome = upgrade_operator(clock).execute(run_context(datetime(2026, 11, 1, tzinfo=UTC)))
    assert (outcome["campaign_id"], outcome["campaign_status"]) == (campaign_id, "CampaignEnded")
    assert outcome["devices"]["unchanged"] == imeis(3)  # in it already: nothing sent
    assert fake.requests("POST", "/campaigns/") == fake.requests("PUT") == fake.requests("DELETE") == []


def time_out_while_adding(fake: FakeCampaigns) -> None:
    """The task's execution_timeout passes while devices are added: Airflow raises
    AirflowTaskTimeout wherever the task is, here in the middle of the add request."""

    def read(wire: Wire) -> tuple[int, Any]:
        if wire.method == "PUT":
            raise AirflowTaskTimeout("Timeout, PID: 4242")
        return FakeCampaigns.read(fake, wire)

    fake.read = read  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("cancel_on_failure", "status"), [(True, "CampaignCancelled"), (False, "CampaignRequestPending")]
)
def test_cancel_on_failure_cancels_the_campaign_when_the_task_fails_while_adding_devices(
    fake: FakeCampaigns, clock: FakeClock, cancel_on_failure: bool, status: str
) -> None:
    time_out_while_adding(fake)
    operator = upgrade_operator(
        clock,
        imeis=imeis(MAX_CAMPAIGN_IMEIS + 1),
        campaign_start_date=TOMORROW,
        cancel_on_failure=cancel_on_failure,
    )
    with pytest.raises(AirflowTaskTimeout):
        operator.execute(run_context())
    assert fake.campaigns["c0001"]["status"] == status  # left as it is by default (on_kill aside)


def test_a_task_timing_out_while_its_devices_are_added_cancels_its_campaign(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    time_out_while_adding(fake)
    operator = upgrade_operator(clock, imeis=imeis(MAX_CAMPAIGN_IMEIS + 1), campaign_start_date=TOMORROW)
    with pytest.raises(AirflowTaskTimeout):
        operator.execute(run_context())
    operator.on_kill()  # what Airflow does after a timeout
    assert fake.campaigns["c0001"]["status"] == "CampaignCancelled"


def test_a_task_killed_while_its_devices_are_added_cancels_its_campaign(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    operator = upgrade_operator(clock, imeis=imeis(MAX_CAMPAIGN_IMEIS + 1), campaign_start_date=TOMORROW)

    def killed_while_adding(wire: Wire) -> tuple[int, Any]:
        if wire.method == "PUT" and not fake.requests("DELETE"):
            operator.on_kill()  # Airflow's SIGTERM handler calls it in the middle of the add
        return FakeCampaigns.read(fake, wire)

    fake.read = killed_while_adding  # type: ignore[method-assign]
    operator.execute(run_context())  # until the supervisor stops the process
    assert fake.campaigns["c0001"]["status"] == "CampaignCancelled"


def test_on_kill_cancels_only_a_campaign_this_try_scheduled(fake: FakeCampaigns, clock: FakeClock) -> None:
    idle = upgrade_operator(clock)
    idle.on_kill()
    assert fake.requests("DELETE") == []

    operator = upgrade_operator(clock)
    operator.execute(run_context())
    operator.on_kill()
    assert fake.campaigns["c0001"]["status"] == "CampaignCancelled"


def test_an_empty_device_list_schedules_nothing(
    fake: FakeCampaigns, clock: FakeClock, events: list[Any]
) -> None:
    outcome = upgrade_operator(clock, imeis=[]).execute(run_context())
    assert (outcome["campaign_id"], outcome["requested"]) == (None, 0)
    assert fake.reads == []
    assert any("imeis is empty; nothing to do" in str(event["event"]) for event in events)


def test_bad_operator_input_fails_before_any_request(fake: FakeCampaigns, clock: FakeClock) -> None:
    with pytest.raises(IoTFleetValidationError, match="give firmware_name, or firmware_from and firmware_to"):
        upgrade_operator(clock, firmware_name=None, firmware_from="SR1").execute(run_context())
    with pytest.raises(IoTFleetValidationError, match="end_date 2026-11-22 is before start_date 2026-11-23"):
        upgrade_operator(clock, campaign_end_date="2026-11-22").execute(run_context())
    with pytest.raises(IoTFleetValidationError, match="start_date 2026-11-20 is in the past"):
        upgrade_operator(clock, campaign_start_date="2026-11-20").execute(run_context())
    assert fake.requests("POST", "/campaigns/") == []


def test_default_campaign_names_differ_per_task_instance_and_stay_short() -> None:
    mapped = FakeTaskInstance("upgrade", map_index=3)
    assert default_campaign_name({"ti": mapped}) == (  # type: ignore[arg-type]
        "airflow test_dag.upgrade[3] manual__2026-11-21T12:00:00+00:00"
    )
    long = FakeTaskInstance("u" * 200)
    name = default_campaign_name({"ti": long})  # type: ignore[arg-type]
    assert len(name) == 100
    assert name != default_campaign_name({"ti": FakeTaskInstance("u" * 201)})  # type: ignore[arg-type]


def test_the_operator_templates_its_inputs() -> None:
    assert set(VerizonThingSpaceFirmwareUpgradeOperator.template_fields) >= {
        "imeis",
        "firmware_name",
        "firmware_from",
        "firmware_to",
        "campaign_start_date",
        "campaign_end_date",
        "time_windows",
        "campaign_name",
        "account_name",
    }


# === campaigns whose devices cannot all go in =====================================================
#
# 1,500 devices: the schedule takes the first 1,000, one add the last 500. When that add fails, the
# campaign must not run with part of its devices: it is cancelled. Hook users (@task functions) get
# IoTFleetCampaignDevicesError naming every device left out; the operator returns an outcome where
# those failed with the add's error and the others failed as campaign_cancelled, pushed under
# ``outcome`` before the task fails.

LARGE = imeis(1500)
#: the devices that go in by the schedule request, and those that go in by the add.
SCHEDULED, ADDED = LARGE[:MAX_CAMPAIGN_IMEIS], LARGE[MAX_CAMPAIGN_IMEIS:]
ADD_PATH = rf"^{FOTA}/campaigns/firmware/{ACCOUNT}/\w+$"
CANCELLED = "campaign c0001 was cancelled (CampaignCancelled) so that it never runs with part of its devices"
INVALID_DEVICE_LIST = {
    "errorCode": "FOTA.REQUEST_FAILED.InvalidDeviceList",
    "errorMessage": "Invalid device list",
}
NOT_IN_ACCOUNT = "Device not found in account."
#: What an outcome says of devices an add answered 200 for but refused one by one.
REFUSED_NOT_IN_ACCOUNT = f"refused by ThingSpace: {NOT_IN_ACCOUNT}"
STILL_TO_CANCEL = (
    "cancelling campaign c0001 failed too (cancellation failed): cancel it before it starts, or it upgrades "
    "only part of the devices"
)
#: The adds fail so (status and body), are sent so many times, and the outcome says so
#: (error code, bare message, retryable).
ADD_FAILURES = [
    pytest.param(
        400,
        INVALID_DEVICE_LIST,
        1,
        INVALID_DEVICE_LIST["errorCode"],
        "Invalid device list",
        False,
        id="400",
    ),
    # lost: the campaign's report is read, the devices it lacks sent once more, lost again
    pytest.param(
        500,
        {"errorCode": "FOTA.INTERNAL", "errorMessage": "internal error"},
        2,
        "FOTA.INTERNAL",
        "the answers to 'append' were lost twice (internal error); some may be changed",
        True,
        id="500",
    ),
    # not processed: retried by the connection's max_retries (2), then given up
    pytest.param(
        503,
        {"errorCode": "FOTA.UNAVAILABLE", "errorMessage": "unavailable"},
        3,
        "FOTA.UNAVAILABLE",
        "unavailable",
        True,
        id="503",
    ),
]


def schedule_large(clock: FakeClock, devices: list[str] = LARGE) -> None:
    """Schedule ``devices`` to start tomorrow through the hook alone, on a connection that retries."""
    hook = VerizonThingSpaceHook(RETRYING_CONN_ID, clock=clock)
    schedule(hook, devices, start_date=TOMORROW, end_date="2026-11-23")


def large_upgrade(clock: FakeClock, devices: list[str] = LARGE, **kwargs: Any) -> Any:
    """The upgrade operator for ``devices``, starting tomorrow, on a connection that retries."""
    return upgrade_operator(
        clock,
        imeis=devices,
        campaign_start_date=TOMORROW,
        verizon_thingspace_conn_id=RETRYING_CONN_ID,
        **kwargs,
    )


def failed_upgrade(
    operator: VerizonThingSpaceFirmwareUpgradeOperator, requested: list[str], *, try_number: int = 1
) -> tuple[dict[str, Any], str]:
    """Run ``operator`` as a task with fail_on_error: it must fail after pushing its outcome under
    ``outcome``; return that outcome (checked against the documented shape) and the task's error."""
    context = run_context(try_number=try_number)
    with pytest.raises(IoTFleetOperationFailedError) as raised:
        operator.execute(context)
    outcome = raised.value.outcome
    assert context["ti"].xcom == {OUTCOME_KEY: outcome}
    assert_outcome_shape(outcome, operation="upgrade_firmware", requested=requested)
    assert set(outcome) == OUTCOME_KEYS | CAMPAIGN_FIELDS
    return outcome, str(raised.value)


def group(
    error_code: str | None,
    http_status: int | None,
    message: str,
    devices: list[str],
    *,
    retryable: bool = False,
    attempted: bool = True,
) -> dict[str, Any]:
    """One ``failed`` error group of an outcome, as XCom carries it (ThingSpace sends no request id)."""
    return {
        "status": "failed",
        "error_code": error_code,
        "http_status": http_status,
        "message": message,
        "request_id": None,
        "retryable": retryable,
        "attempted": attempted,
        "devices": devices,
    }


def cancelled(devices: list[str], left_out: int) -> dict[str, Any]:
    """The group of the devices that were in campaign c0001 when it was cancelled for ``left_out``
    others."""
    return group(
        "campaign_cancelled",
        None,
        f"campaign c0001 was cancelled (CampaignCancelled) because {left_out} of its devices could not "
        "be added: it never runs with part of its devices",
        devices,
    )


def nothing_done() -> dict[str, list[str]]:
    return {"succeeded": [], "unchanged": [], "scheduled": [], "accepted": []}


def assert_cancelled_and_nothing_else_left(fake: FakeCampaigns) -> None:
    (cancel,) = fake.requests("DELETE")
    assert cancel.path == f"{FOTA}/campaigns/{ACCOUNT}/c0001"
    assert [c["status"] for c in fake.campaigns.values()] == ["CampaignCancelled"]


@pytest.mark.parametrize(("status", "body", "adds_sent", "code", "says", "retryable"), ADD_FAILURES)
def test_a_campaign_whose_add_fails_is_cancelled_naming_every_device_left_out(
    fake: FakeCampaigns,
    clock: FakeClock,
    status: int,
    body: dict[str, str],
    adds_sent: int,
    code: str,
    says: str,
    retryable: bool,
) -> None:
    fake.refuse[f"PUT /campaigns/firmware/{ACCOUNT}/"] = (status, body)

    with pytest.raises(IoTFleetCampaignDevicesError) as raised:
        schedule_large(clock)

    error = raised.value
    assert error.devices == ADDED
    assert error.campaign_status == "CampaignCancelled"
    assert (error.http_status, error.error_code) == (status, code)
    assert error.bare_message == says  # what groups these devices in an outcome: no vendor, path or id
    assert "500 of 500 devices could not be added to campaign c0001: " in str(error)
    assert CANCELLED in str(error)
    (post,) = fake.requests("POST", "/campaigns/firmware/")
    assert post.json()["deviceList"] == SCHEDULED
    assert [wire.json()["deviceList"] for wire in fake.requests("PUT", ADD_PATH)] == [ADDED] * adds_sent
    assert_cancelled_and_nothing_else_left(fake)


@pytest.mark.parametrize(("status", "body", "adds_sent", "code", "says", "retryable"), ADD_FAILURES)
def test_an_upgrade_whose_add_fails_fails_every_device_of_its_cancelled_campaign(
    fake: FakeCampaigns,
    clock: FakeClock,
    status: int,
    body: dict[str, str],
    adds_sent: int,
    code: str,
    says: str,
    retryable: bool,
) -> None:
    fake.refuse[f"PUT /campaigns/firmware/{ACCOUNT}/"] = (status, body)

    outcome, message = failed_upgrade(large_upgrade(clock), LARGE)

    # The devices left out failed for the add's error; the others were in the campaign, cancelled.
    assert outcome["devices"] == nothing_done()
    assert outcome["errors"] == [
        group(code, status, says, ADDED, retryable=retryable),
        cancelled(SCHEDULED, 500),
    ]
    assert (outcome["campaign_id"], outcome["campaign_status"]) == ("c0001", "CampaignCancelled")
    assert message.startswith(
        f"1500 of 1500 IMEIs not done: 500 failed with {code} (HTTP {status}): {says}; 1000 failed with "
        "campaign_cancelled: campaign c0001 was cancelled (CampaignCancelled) because 500 of its devices "
        "could not be added: it never runs with part of its devices. Every IMEI was tried"
    )
    assert [wire.json()["deviceList"] for wire in fake.requests("PUT", ADD_PATH)] == [ADDED] * adds_sent
    assert_cancelled_and_nothing_else_left(fake)


def test_devices_of_adds_after_the_one_that_failed_are_reported_not_sent(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    # 2,500 devices: the schedule takes 1,000, the first add 1,000 (refused), the second add 500
    # would follow, but is never sent: the task's error counts them apart from those tried.
    devices = imeis(2 * MAX_CAMPAIGN_IMEIS + 500)
    first_add, never_sent = (
        devices[MAX_CAMPAIGN_IMEIS : 2 * MAX_CAMPAIGN_IMEIS],
        devices[2 * MAX_CAMPAIGN_IMEIS :],
    )
    fake.refuse[f"PUT /campaigns/firmware/{ACCOUNT}/"] = (400, INVALID_DEVICE_LIST)

    outcome, message = failed_upgrade(large_upgrade(clock, devices), devices)

    code = INVALID_DEVICE_LIST["errorCode"]
    assert outcome["errors"] == [
        group(code, 400, "Invalid device list", first_add),
        group(
            code,
            400,
            "not attempted after an earlier error: Invalid device list",
            never_sent,
            attempted=False,
        ),
        cancelled(devices[:MAX_CAMPAIGN_IMEIS], 1500),
    ]
    assert [wire.json()["deviceList"] for wire in fake.requests("PUT", ADD_PATH)] == [first_add]
    assert "Every IMEI was tried" not in message
    assert message.endswith(
        "2000 of 2500 IMEIs tried, 500 not sent; the outcome is in XCom key 'outcome' "
        "(set fail_on_error=False to succeed with failures)"
    )


def test_without_fail_on_error_a_cancelled_campaign_is_the_returned_outcome(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    fake.refuse[f"PUT /campaigns/firmware/{ACCOUNT}/"] = (400, INVALID_DEVICE_LIST)
    context = run_context()

    outcome = large_upgrade(clock, fail_on_error=False).execute(context)

    assert context["ti"].xcom == {}  # returned, not pushed: Airflow pushes it as return_value
    assert_outcome_shape(outcome, operation="upgrade_firmware", requested=LARGE)
    assert outcome["counts"]["failed"] == 1500
    assert outcome["errors"] == [
        group(INVALID_DEVICE_LIST["errorCode"], 400, "Invalid device list", ADDED),
        cancelled(SCHEDULED, 500),
    ]
    assert (outcome["campaign_id"], outcome["campaign_status"]) == ("c0001", "CampaignCancelled")
    assert_cancelled_and_nothing_else_left(fake)


def test_a_campaign_whose_add_refuses_some_devices_is_cancelled_naming_them(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    refused = [ADDED[0], ADDED[250], ADDED[-1]]
    fake.refuse_devices = dict.fromkeys(refused, NOT_IN_ACCOUNT)

    with pytest.raises(IoTFleetCampaignDevicesError) as raised:
        schedule_large(clock)

    assert raised.value.devices == refused
    assert raised.value.campaign_status == "CampaignCancelled"
    message = str(raised.value)
    assert (
        f"3 of 500 devices could not be added to campaign c0001: {refused[0]} ({NOT_IN_ACCOUNT})" in message
    )
    assert all(imei in message for imei in refused)
    assert CANCELLED in message
    assert_cancelled_and_nothing_else_left(fake)


def test_an_upgrade_whose_add_refuses_some_devices_fails_them_and_cancels_the_rest(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    refused = [ADDED[0], ADDED[250], ADDED[-1]]
    fake.refuse_devices = dict.fromkeys(refused, NOT_IN_ACCOUNT)

    outcome, message = failed_upgrade(large_upgrade(clock), LARGE)

    assert outcome["devices"] == nothing_done()
    assert outcome["errors"] == [
        group(None, None, REFUSED_NOT_IN_ACCOUNT, refused),
        cancelled([imei for imei in LARGE if imei not in refused], 3),
    ]
    assert (outcome["campaign_id"], outcome["campaign_status"]) == ("c0001", "CampaignCancelled")
    assert message.startswith(
        f"1500 of 1500 IMEIs not done: 3 failed with error: {REFUSED_NOT_IN_ACCOUNT}; 1497 failed with "
        "campaign_cancelled: campaign c0001 was cancelled (CampaignCancelled) because 3 of its devices"
    )
    assert_cancelled_and_nothing_else_left(fake)


def test_devices_refused_for_different_reasons_are_grouped_by_their_own_reason(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    in_another = "Device is in another campaign."
    fake.refuse_devices = {ADDED[0]: NOT_IN_ACCOUNT, ADDED[1]: in_another, ADDED[2]: NOT_IN_ACCOUNT}

    outcome, _ = failed_upgrade(large_upgrade(clock), LARGE)

    assert outcome["errors"][:2] == [
        group(None, None, REFUSED_NOT_IN_ACCOUNT, [ADDED[0], ADDED[2]]),
        group(None, None, f"refused by ThingSpace: {in_another}", [ADDED[1]]),
    ]
    assert outcome["errors"][2]["error_code"] == "campaign_cancelled"


def test_every_add_is_sent_after_one_refused_devices_so_the_error_names_them_all(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    devices = imeis(2500)
    refused = [devices[1001], devices[2499]]  # one in each add
    fake.refuse_devices = dict.fromkeys(refused, NOT_IN_ACCOUNT)

    with pytest.raises(IoTFleetCampaignDevicesError) as raised:
        schedule_large(clock, devices)

    adds = fake.requests("PUT", ADD_PATH)
    assert [wire.json()["deviceList"] for wire in adds] == [devices[1000:2000], devices[2000:]]
    assert raised.value.devices == refused
    assert_cancelled_and_nothing_else_left(fake)


def refuse_to_add_and_to_cancel(fake: FakeCampaigns) -> None:
    fake.refuse[f"PUT /campaigns/firmware/{ACCOUNT}/"] = (400, INVALID_DEVICE_LIST)
    fake.refuse[f"DELETE /campaigns/{ACCOUNT}/"] = (
        400,
        {"errorCode": "FOTA.REQUEST_FAILED.Backend", "errorMessage": "cancellation failed"},
    )


def test_when_cancelling_fails_too_the_error_says_the_campaign_is_still_to_cancel(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    refuse_to_add_and_to_cancel(fake)

    with pytest.raises(IoTFleetCampaignDevicesError) as raised:
        schedule_large(clock)

    assert raised.value.devices == ADDED
    assert raised.value.campaign_status is None
    message = str(raised.value)
    assert "cancelling campaign c0001 failed too (" in message
    assert "cancellation failed" in message
    assert "cancel it before it starts, or it upgrades only part of the devices" in message
    # What groups the devices in an outcome says it too: the campaign still runs with the others.
    assert raised.value.bare_message == f"Invalid device list; {STILL_TO_CANCEL}"
    assert len(fake.requests("DELETE")) == 1
    assert fake.campaigns["c0001"]["status"] == "CampaignRequestPending"  # what the message warns of


def test_when_cancelling_fails_too_the_upgrade_leaves_the_rest_scheduled_and_says_to_cancel_it(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    refuse_to_add_and_to_cancel(fake)

    outcome, message = failed_upgrade(large_upgrade(clock), LARGE)

    # Still in a campaign that will run: scheduled, truly; the devices left out say to cancel it.
    assert outcome["devices"] == {**nothing_done(), "scheduled": SCHEDULED}
    assert outcome["errors"] == [
        group(INVALID_DEVICE_LIST["errorCode"], 400, f"Invalid device list; {STILL_TO_CANCEL}", ADDED)
    ]
    assert (outcome["campaign_id"], outcome["campaign_status"]) == ("c0001", None)
    assert message.startswith(
        "500 of 1500 IMEIs not done: 500 failed with FOTA.REQUEST_FAILED.InvalidDeviceList (HTTP 400): "
        f"Invalid device list; {STILL_TO_CANCEL}. Every IMEI was tried"
    )
    assert len(fake.requests("DELETE")) == 1
    assert fake.campaigns["c0001"]["status"] == "CampaignRequestPending"


@pytest.mark.parametrize("failure", ["request", "devices"])
def test_a_retry_whose_campaign_lacks_devices_it_cannot_add_cancels_it_naming_them(
    fake: FakeCampaigns, clock: FakeClock, failure: str
) -> None:
    name = "airflow test_dag.upgrade manual__2026-11-21T12:00:00+00:00"
    fake.add_campaign(name, "CampaignScheduled", SCHEDULED, startDate=TOMORROW, endDate="2026-11-23")
    if failure == "request":
        fake.refuse[f"PUT /campaigns/firmware/{ACCOUNT}/"] = (400, INVALID_DEVICE_LIST)
        left_out = ADDED
        error = group(INVALID_DEVICE_LIST["errorCode"], 400, "Invalid device list", left_out)
    else:
        left_out = ADDED[:3]
        fake.refuse_devices = dict.fromkeys(left_out, NOT_IN_ACCOUNT)
        error = group(None, None, REFUSED_NOT_IN_ACCOUNT, left_out)

    outcome, _ = failed_upgrade(large_upgrade(clock), LARGE, try_number=2)

    assert outcome["devices"] == nothing_done()
    assert outcome["errors"] == [
        error,
        cancelled([imei for imei in LARGE if imei not in left_out], len(left_out)),
    ]
    assert (outcome["campaign_id"], outcome["campaign_status"]) == ("c0001", "CampaignCancelled")
    assert fake.requests("POST", "/campaigns/") == []  # reused, not scheduled again
    (add,) = fake.requests("PUT", ADD_PATH)
    assert add.json() == {"Type": "append", "deviceList": ADDED}
    assert_cancelled_and_nothing_else_left(fake)


# === retries that find their campaign ============================================================
#
# A retried task finds the campaign an earlier try scheduled by its name and reuses it. ThingSpace
# takes added devices only before the start date: once the campaign has started, the devices it
# lacks cannot join it, and it is not aborted for them (the others may be upgrading already).

RUN_CAMPAIGN = "airflow test_dag.upgrade manual__2026-11-21T12:00:00+00:00"


@pytest.mark.parametrize(
    ("status", "start", "end"),
    [("CampaignScheduled", TODAY, TOMORROW), ("CampaignEnded", "2026-11-18", "2026-11-20")],
    ids=["starts-today", "ended"],
)
def test_a_retry_whose_campaign_started_without_some_devices_fails_them_and_leaves_it_running(
    fake: FakeCampaigns, clock: FakeClock, status: str, start: str, end: str
) -> None:
    campaign_id = fake.add_campaign(RUN_CAMPAIGN, status, imeis(2), startDate=start, endDate=end)

    outcome, message = failed_upgrade(upgrade_operator(clock, imeis=imeis(4)), imeis(4), try_number=2)

    started = (
        f"campaign {campaign_id} started ({start}) before these devices could be added, and ThingSpace "
        "adds devices only before the start date; upgrade them in another campaign"
    )
    assert outcome["devices"] == {**nothing_done(), "unchanged": imeis(2)}  # in it already
    assert outcome["errors"] == [group("campaign_started", None, started, imeis(2, start=2), attempted=False)]
    assert (outcome["campaign_id"], outcome["campaign_status"]) == (campaign_id, status)
    assert (outcome["start_date"], outcome["end_date"]) == (start, end)
    assert message.startswith(f"2 of 4 IMEIs not done: 2 failed (not sent) with campaign_started: {started}.")
    # Nothing sent to change it: no add it would refuse, no cancel of the devices it does hold.
    assert fake.requests("POST", "/campaigns/") == fake.requests("PUT") == fake.requests("DELETE") == []
    assert fake.campaigns[campaign_id]["status"] == status
    assert sorted(fake.devices[campaign_id]) == imeis(2)


def test_a_retry_after_the_window_ended_reuses_its_campaign_where_a_new_one_is_refused(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    window = {"campaign_start_date": "2026-11-18", "campaign_end_date": "2026-11-20"}  # over: today is 11-21
    campaign_id = fake.add_campaign(
        RUN_CAMPAIGN, "CampaignEnded", imeis(3), startDate="2026-11-18", endDate="2026-11-20"
    )

    # The retry of the try that scheduled it in time: the campaign is what the task did, not refused.
    outcome = upgrade_operator(clock, **window).execute(run_context(try_number=2))

    assert outcome["devices"]["unchanged"] == imeis(3)  # in it already
    assert outcome["errors"] == []
    assert (outcome["campaign_id"], outcome["campaign_status"]) == (campaign_id, "CampaignEnded")
    assert (outcome["start_date"], outcome["end_date"]) == ("2026-11-18", "2026-11-20")
    assert fake.requests("POST", "/campaigns/") == fake.requests("PUT") == fake.requests("DELETE") == []

    # The same window for a campaign of another name: none to reuse, and a new one would never run.
    fake.wires.clear()
    with pytest.raises(IoTFleetValidationError) as raised:
        upgrade_operator(clock, campaign_name="another-wave", **window).execute(run_context())
    assert "campaign_end_date 2026-11-20 is before today (2026-11-21): no device would upgrade" in str(
        raised.value
    )
    assert {(wire.method, wire.path) for wire in fake.reads} == {("GET", HISTORY)}  # the look-up only
    assert list(fake.campaigns) == [campaign_id]


# === ensure_campaign: what a @task gets from the hook alone ======================================
#
# The upgrade operator's whole work, one hook call: find the campaign by name and reuse it, or
# schedule it (the first 1,000 devices, then adds), cancel it when it cannot take all its devices,
# and say where each device stands.


def wave(**fields: Any) -> CampaignRequest:
    """The campaign a @task asks for: named, the SR1.2 -> SR1.3 upgrade by name, starting tomorrow."""
    arguments: dict[str, Any] = {
        "name": "wave-7",
        "firmware_name": UPGRADE["firmwareName"],
        "start_date": TOMORROW,
        "end_date": "2026-11-23",
        **fields,
    }
    return CampaignRequest.checked(**arguments)


def ensure(
    clock: FakeClock, devices: list[str], request: CampaignRequest | None = None, **kwargs: Any
) -> Any:
    """ensure_campaign on a connection that retries, as a @task would call it."""
    with VerizonThingSpaceHook(RETRYING_CONN_ID, clock=clock) as hook:
        return hook.ensure_campaign(devices, request or wave(), **kwargs)


def test_ensure_campaign_schedules_a_new_campaign_with_the_first_devices_then_adds_the_rest(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    seen_when_scheduled: list[tuple[str, int]] = []

    def on_scheduled(campaign: dict[str, Any]) -> None:
        seen_when_scheduled.append((campaign["campaign_id"], len(fake.requests("PUT"))))

    ensured = ensure(clock, [*LARGE, LARGE[0]], on_scheduled=on_scheduled)

    assert isinstance(ensured, EnsuredCampaign)
    assert (ensured.campaign_id, ensured.reused, ensured.status) == ("c0001", False, "CampaignRequestPending")
    assert ensured.devices == ensured.scheduled == LARGE  # the repeat goes once
    assert (ensured.too_late, ensured.not_added, ensured.cancelled, ensured.left_out) == ([], None, False, {})
    assert ensured.campaign["campaign_name"] == "wave-7"
    assert seen_when_scheduled == [("c0001", 0)]  # told before any device was added
    # Looked for by name (in each status a campaign may be reused in), the firmware chosen from the
    # account's list, the devices read (1000 IMEIs a listing), scheduled, the rest added.
    assert [(w.method, w.path) for w in fake.reads] == [
        *[("GET", HISTORY)] * len(CAMPAIGN_REUSABLE_STATUSES),
        ("GET", f"{FOTA}/firmware/{ACCOUNT}"),
        *[("POST", f"{FOTA}/devices/{ACCOUNT}")] * 2,
        ("POST", f"{FOTA}/campaigns/firmware/{ACCOUNT}"),
        ("PUT", f"{FOTA}/campaigns/firmware/{ACCOUNT}/c0001"),
    ]
    (post,) = fake.requests("POST", "/campaigns/")
    assert post.json()["deviceList"] == SCHEDULED
    assert (
        post.json()["firmwareTo"] == UPGRADE["firmwareTo"]
    )  # from the list: the request named only the name
    (add,) = fake.requests("PUT")
    assert add.json() == {"Type": "append", "deviceList": ADDED}


def test_ensure_campaign_reuses_a_campaign_of_its_name_adding_only_what_it_lacks(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    campaign_id = fake.add_campaign("wave-7", "CampaignScheduled", imeis(2), startDate=TOMORROW)

    ensured = ensure(clock, imeis(4))

    assert (ensured.campaign_id, ensured.reused, ensured.status) == (campaign_id, True, "CampaignScheduled")
    assert ensured.scheduled == imeis(4)
    assert ensured.already == imeis(2)
    assert ensured.left_out == {}
    assert fake.requests("POST", "/campaigns/") == []
    (add,) = fake.requests("PUT")
    assert add.json() == {"Type": "append", "deviceList": imeis(2, start=2)}
    assert fake.requests("GET", f"/firmware/{ACCOUNT}$") == []  # a reused campaign's firmware is its own


def test_ensure_campaign_leaves_a_started_campaign_running_and_says_which_devices_it_lacks(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    campaign_id = fake.add_campaign("wave-7", "CampaignScheduled", imeis(2), startDate=TODAY)

    ensured = ensure(clock, imeis(4))

    started = (
        f"campaign {campaign_id} started ({TODAY}) before these devices could be added, and ThingSpace "
        "adds devices only before the start date; upgrade them in another campaign"
    )
    assert (ensured.reused, ensured.cancelled, ensured.status) == (True, False, "CampaignScheduled")
    assert ensured.too_late == imeis(2, start=2)
    assert ensured.scheduled == imeis(2)
    assert ensured.left_out == dict.fromkeys(imeis(2, start=2), started)
    assert fake.requests("POST", "/campaigns/") == fake.requests("PUT") == fake.requests("DELETE") == []


def test_ensure_campaign_cancels_a_campaign_whose_add_fails_and_says_why_each_device_is_out(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    fake.refuse[f"PUT /campaigns/firmware/{ACCOUNT}/"] = (400, INVALID_DEVICE_LIST)

    ensured = ensure(clock, LARGE)  # no exception: the result says what happened

    assert (ensured.campaign_id, ensured.reused) == ("c0001", False)
    assert (ensured.cancelled, ensured.status, ensured.scheduled) == (True, "CampaignCancelled", [])
    assert ensured.not_added is not None
    assert ensured.not_added.devices == ADDED
    assert ensured.not_added.error_code == INVALID_DEVICE_LIST["errorCode"]
    cancelled_because = (
        "campaign c0001 was cancelled (CampaignCancelled) because 500 of its devices could not be added: "
        "it never runs with part of its devices"
    )
    assert ensured.left_out == {
        **dict.fromkeys(SCHEDULED, cancelled_because),
        **dict.fromkeys(ADDED, "Invalid device list"),
    }
    assert list(ensured.left_out) == LARGE  # in the order asked
    assert_cancelled_and_nothing_else_left(fake)


def test_ensure_campaign_names_thingspaces_reason_for_each_device_it_refused(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    in_another = "Device is in another campaign."
    fake.refuse_devices = {ADDED[0]: NOT_IN_ACCOUNT, ADDED[7]: in_another}

    ensured = ensure(clock, LARGE)

    assert ensured.cancelled is True
    assert ensured.not_added is not None
    assert ensured.not_added.refused == {ADDED[0]: NOT_IN_ACCOUNT, ADDED[7]: in_another}
    assert ensured.left_out[ADDED[0]] == REFUSED_NOT_IN_ACCOUNT
    assert ensured.left_out[ADDED[7]] == f"refused by ThingSpace: {in_another}"
    assert ensured.left_out[ADDED[1]].startswith(
        "campaign c0001 was cancelled (CampaignCancelled) because 2 "
    )
    assert_cancelled_and_nothing_else_left(fake)


def test_ensure_campaign_whose_cancel_fails_too_keeps_the_others_scheduled_and_says_to_cancel_it(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    refuse_to_add_and_to_cancel(fake)

    ensured = ensure(clock, LARGE)

    assert (ensured.cancelled, ensured.status) == (False, "CampaignRequestPending")
    assert ensured.scheduled == SCHEDULED
    assert ensured.left_out == dict.fromkeys(ADDED, f"Invalid device list; {STILL_TO_CANCEL}")
    assert fake.campaigns["c0001"]["status"] == "CampaignRequestPending"


@pytest.mark.parametrize(
    ("existing", "request_fields", "says", "reads"),
    [
        # No campaign of that name to reuse, and a new one would never run.
        (
            None,
            {"start_date": "2026-11-18", "end_date": "2026-11-20"},
            "campaign_end_date 2026-11-20 is before today",
            1,
        ),
        (
            None,
            {"end_date": "2026-11-25", "start_date": TODAY},
            "a campaign of 1500 devices must start after today",
            1,
        ),
        (None, {"firmware_name": "SR9"}, "no firmware upgrade available to account", 2),
        ("FOTA_other", {}, "campaign 'wave-7' (c0001, CampaignScheduled) exists with other firmware", 1),
    ],
    ids=["window-ended", "too-large-for-today", "no-such-firmware", "other-firmware"],
)
def test_ensure_campaign_refuses_what_it_cannot_do_before_any_change(
    fake: FakeCampaigns,
    clock: FakeClock,
    existing: str | None,
    request_fields: dict[str, Any],
    says: str,
    reads: int,
) -> None:
    if existing is not None:
        fake.add_campaign("wave-7", "CampaignScheduled", imeis(1), firmwareName=existing)

    with pytest.raises(IoTFleetValidationError, match=re.escape(says)):
        ensure(clock, LARGE, wave(**request_fields))

    assert len({(w.method, w.path) for w in fake.reads}) == reads  # the look-up (and the firmware list)
    assert fake.requests("POST", "/campaigns/") == fake.requests("PUT") == fake.requests("DELETE") == []


def test_a_campaign_request_names_every_problem_before_any_request(fake: FakeCampaigns) -> None:
    with pytest.raises(IoTFleetValidationError, match="give firmware_name, or firmware_from and firmware_to"):
        CampaignRequest.checked(name="wave", firmware_from="SR1", start_date=TODAY, end_date=TODAY)
    with pytest.raises(IoTFleetValidationError) as raised:
        CampaignRequest.checked(
            name="wave",
            firmware_name="x",
            start_date="2026-11-23",
            end_date="2026-11-22",
            time_windows=[(4, 2)],
        )
    assert "end_date 2026-11-22 is before start_date 2026-11-23" in str(raised.value)
    assert "time_windows[0] starts at 4 h and ends at 2 h" in str(raised.value)
    with pytest.raises(IoTFleetValidationError, match="campaign_name contains control characters"):
        CampaignRequest.checked(name="wave\n2", firmware_name="x", start_date=TODAY, end_date=TODAY)
    # Past dates are the hook's to judge: a retry may reuse its campaign after it ended.
    past = CampaignRequest.checked(
        name=" wave ",
        firmware_name=" x ",
        start_date=date(2026, 11, 1),
        end_date="2026-11-02",
        time_windows=[[0, 4]],
    )
    assert past == CampaignRequest(
        "wave", "x", None, None, "2026-11-01", "2026-11-02", [{"startTime": 0, "endTime": 4}]
    )
    assert fake.reads == []


# === sensor and trigger ==========================================================================


def campaign_sensor(
    clock: FakeClock, campaign_id: str = "c0001", **kwargs: Any
) -> VerizonThingSpaceCampaignSensor:
    arguments: dict[str, Any] = {
        "task_id": "wait_campaign",
        "campaign_id": campaign_id,
        "verizon_thingspace_conn_id": CONN_ID,
        "poke_interval": 0,
        "timeout": 600,
        "deferrable": False,
        **kwargs,
    }
    sensor = VerizonThingSpaceCampaignSensor(**arguments)
    sensor.__dict__["hook"] = VerizonThingSpaceHook(CONN_ID, clock=clock)
    return sensor


def test_poke_waits_until_every_device_is_done_with_the_designed_xcom(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    devices = imeis(3)
    campaign_id = fake.add_campaign("wave", "CampaignScheduled", devices)
    sensor = campaign_sensor(clock, campaign_id)

    assert sensor.poke(operator_context()).is_done is False
    fake.set_devices(campaign_id, "Finished", devices[:2])
    assert sensor.poke(operator_context()).is_done is False
    fake.set_devices(campaign_id, "Finished", devices[2:])
    done = sensor.poke(operator_context())

    assert done.is_done is True
    assert done.xcom_value == {
        "campaign_id": campaign_id,
        "status": "CampaignScheduled",
        "finished": devices,
        "failed": [],
        "pending": [],
    }


def test_execute_fails_on_failed_devices_after_pushing_the_outcome(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    devices = imeis(3)
    campaign_id = fake.add_campaign("wave", "CampaignEnded", devices)
    fake.set_devices(campaign_id, "Finished", devices[:1])
    fake.set_devices(campaign_id, "UpgradeFailed", devices[1:2], reason="Device firmware is not firmwareFrom")
    context = operator_context()

    with pytest.raises(IoTFleetOperationFailedError) as raised:
        campaign_sensor(clock, campaign_id).execute(context)

    message = str(raised.value)
    assert f"campaign {campaign_id}: 1 device upgraded" in message
    assert f"1 device failed, e.g. {devices[1]} (Device firmware is not firmwareFrom)" in message
    assert "1 device never upgraded" in message
    assert context["ti"].xcom[OUTCOME_KEY] == raised.value.outcome
    assert raised.value.outcome["pending"] == devices[2:]

    lenient = campaign_sensor(clock, campaign_id, fail_on_error=False).execute(operator_context())
    assert lenient["failed"][0]["reason"] == "Device firmware is not firmwareFrom"


def test_a_cancelled_campaign_is_over_and_fails_the_wait(fake: FakeCampaigns, clock: FakeClock) -> None:
    campaign_id = fake.add_campaign("wave", "CampaignCancelled", imeis(2))
    context = operator_context()
    with pytest.raises(IoTFleetOperationFailedError, match="the campaign is CampaignCancelled") as failed:
        campaign_sensor(clock, campaign_id).execute(context)
    # Pushed once, under "outcome", before failing.
    assert context["ti"].xcom == {OUTCOME_KEY: failed.value.outcome}  # type: ignore[attr-defined]
    assert failed.value.outcome["status"] == "CampaignCancelled"


def test_poke_mode_timeout_says_where_the_campaign_stands(fake: FakeCampaigns, clock: FakeClock) -> None:
    campaign_id = fake.add_campaign("wave", "CampaignScheduled", imeis(2))
    # timeout=0: one poke, then the timeout, without waiting on the wall clock
    with pytest.raises(
        AirflowSensorTimeout,
        match=rf"campaign {campaign_id} is CampaignScheduled: 0 finished, 0 failed, 2 pending",
    ):
        campaign_sensor(clock, campaign_id, timeout=0).execute(operator_context())


def test_deferrable_checks_once_then_defers_to_a_trigger_that_round_trips(
    fake: FakeCampaigns, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices = imeis(2)
    campaign_id = fake.add_campaign("wave", "CampaignScheduled", devices)
    sensor = campaign_sensor(clock, campaign_id, deferrable=True)  # poke_interval 0: no waiting

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(operator_context())

    trigger = deferred.value.trigger
    assert isinstance(trigger, VerizonThingSpaceCampaignTrigger)
    classpath, kwargs = trigger.serialize()
    module_name, _, class_name = classpath.rpartition(".")
    assert getattr(importlib.import_module(module_name), class_name) is VerizonThingSpaceCampaignTrigger
    wire = json.loads(json.dumps(kwargs))
    assert wire == kwargs
    assert (wire["ids"], wire["options"], wire["seen"]) == ([campaign_id], {"account_name": ACCOUNT}, [])

    # The triggerer: the same fake behind an async transport; the devices finish once the trigger
    # has read the report twice, so its third poll sees them done.
    serve(monkeypatch, fake)
    rebuilt = VerizonThingSpaceCampaignTrigger(**wire)
    report = f"/reports/{ACCOUNT}/campaigns/{campaign_id}/devices$"
    polled_before = len(fake.requests("GET", report))

    def finish_after_two_polls(request: Wire) -> tuple[int, Any]:
        answer = FakeCampaigns.read(fake, request)
        if len(fake.requests("GET", report)) == polled_before + 2 and request.path.endswith("/devices"):
            fake.set_devices(campaign_id, "Finished", devices)
        return answer

    fake.read = finish_after_two_polls  # type: ignore[method-assign]

    async def drain() -> list[dict[str, Any]]:
        return [event.payload async for event in rebuilt.run()]

    (payload,) = asyncio.run(drain())
    assert len(fake.requests("GET", report)) == polled_before + 3
    assert payload["status"] == "success"
    assert (
        payload["description"]
        == f"campaign {campaign_id} is over (CampaignScheduled): 2 finished, 0 failed, 0 pending of 2 devices"
    )
    context = operator_context()
    result = sensor.execute_complete(context, json.loads(json.dumps(payload)))
    assert result == {
        "campaign_id": campaign_id,
        "status": "CampaignScheduled",
        "finished": devices,
        "failed": [],
        "pending": [],
    }
    assert OUTCOME_KEY not in context["ti"].xcom  # succeeded: its return value only, pushed once


def test_execute_complete_of_a_timeout_event_raises_the_sensor_timeout(clock: FakeClock) -> None:
    sensor = campaign_sensor(clock, deferrable=True)
    event = {
        "status": "timeout",
        "message": "the sensor's timeout passed",
        "xcom": {
            "campaign_id": "c0001",
            "status": "CampaignScheduled",
            "finished": [],
            "failed": [],
            "pending": ["1"],
        },
        "description": "campaign c0001 is CampaignScheduled: 0 finished, 0 failed, 1 pending of 1 device",
    }
    context = operator_context()
    with pytest.raises(AirflowSensorTimeout, match="0 finished, 0 failed, 1 pending of 1 device"):
        sensor.execute_complete(context, event)
    assert context["ti"].xcom["last_seen"] == event["xcom"]


def test_the_sensor_refuses_a_campaign_id_that_is_not_one(fake: FakeCampaigns, clock: FakeClock) -> None:
    with pytest.raises(IoTFleetValidationError, match="campaign_id is invalid"):
        campaign_sensor(clock, "a/b").execute(operator_context())
    assert fake.reads == []


def test_connection_paths_are_the_ones_thingspace_documents(
    hook: VerizonThingSpaceHook, fake: FakeCampaigns
) -> None:
    """Login once, then the FOTA v3 paths under the ThingSpace root."""
    campaign_id = fake.add_campaign("wave", "CampaignScheduled", imeis(1))
    hook.campaign_progress(campaign_id)
    hook.list_firmware()
    paths = [w.path for w in fake.wires]
    assert paths == [
        VZ_TOKEN_PATH,
        VZ_LOGIN_PATH,
        f"{FOTA}/campaigns/{ACCOUNT}/{campaign_id}",
        f"{FOTA}/reports/{ACCOUNT}/campaigns/{campaign_id}/devices",
        f"{FOTA}/firmware/{ACCOUNT}",
    ]


def test_the_operator_and_the_sensor_serialize_with_their_dag() -> None:
    """The DAG processor stores every DAG serialised: the campaign's dates must not be mistaken for
    the task's own ``start_date``/``end_date``, which Airflow forbids templating."""
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("campaign_dag", schedule=None, start_date=datetime(2026, 11, 1, tzinfo=UTC)) as dag:
        VerizonThingSpaceFirmwareUpgradeOperator(
            task_id="upgrade",
            imeis="{{ params.imeis }}",
            firmware_name="{{ params.firmware }}",
            campaign_start_date="{{ ds }}",
            campaign_end_date="{{ macros.ds_add(ds, 1) }}",
            time_windows=[[0, 4]],
        )
        VerizonThingSpaceCampaignSensor(
            task_id="wait",
            campaign_id="{{ ti.xcom_pull(task_ids='upgrade')['campaign_id'] }}",
            deferrable=True,
        )

    tasks = DagSerialization.from_dict(DagSerialization.to_dict(dag)).task_dict
    upgrade, wait = tasks["upgrade"], tasks["wait"]
    assert upgrade.start_date == datetime(2026, 11, 1, tzinfo=UTC)  # the task's, untouched
    assert (upgrade.campaign_start_date, upgrade.campaign_end_date) == (
        "{{ ds }}",
        "{{ macros.ds_add(ds, 1) }}",
    )
    assert wait.campaign_id == "{{ ti.xcom_pull(task_ids='upgrade')['campaign_id'] }}"


# === dry runs ====================================================================================


def _writes(fake: FakeCampaigns) -> list[str]:
    """Every FOTA request but a GET (the device listing's POST, a read, among them)."""
    return [
        f"{wire.method} {wire.path}"
        for wire in fake.reads
        if wire.path.startswith(FOTA) and wire.method != "GET"
    ]


def test_an_upgrade_dry_run_says_which_devices_would_upgrade_and_why_the_others_would_not(
    fake: FakeCampaigns, clock: FakeClock, events: list[Any]
) -> None:
    devices = imeis(5)
    fake.add_device(devices[0])
    fake.add_device(devices[1], licenseAssigned=False)  # campaigns assign licenses themselves
    fake.add_device(devices[2], make="QUECTEL", model="BG96")
    fake.add_device(devices[3], firmware="SR1.3.0.0-11020")
    fake.add_device(devices[4], fotaEligible=False)
    operator = upgrade_operator(
        clock, imeis=devices, time_windows=[[0, 4]], campaign_start_date=TOMORROW, dry_run="True"
    )
    outcome = operator.execute(run_context())

    assert outcome["dry_run"] is True
    assert outcome["devices"]["scheduled"] == devices[:2]
    assert outcome["plan"] == {
        imei: {"firmware": {"from": "SR1.2.0.0-10657", "to": "SR1.3.0.0-11020"}} for imei in devices[:2]
    }
    assert [(e["error_code"], e["devices"], e["attempted"]) for e in outcome["errors"]] == [
        ("wrong_make_model", [devices[2]], False),  # left out of the campaign: nothing sent for them
        ("other_firmware", [devices[3]], False),
        ("not_fota_eligible", [devices[4]], False),
    ]
    messages = [e["message"] for e in outcome["errors"]]
    assert messages[0] == f"a QUECTEL BG96: {UPGRADE['firmwareName']} is for SEQUANS COMMUNICATIONS GM01Q"
    assert messages[1].startswith("runs SR1.3.0.0-11020, not SR1.2.0.0-10657")
    assert {key: outcome[key] for key in outcome if key not in OUTCOME_KEYS and key != "plan"} == {
        "account_name": ACCOUNT,
        "campaign_id": None,
        "campaign_name": "airflow test_dag.upgrade manual__2026-11-21T12:00:00+00:00",
        "campaign_status": None,
        "campaign_reused": False,
        "firmware_name": UPGRADE["firmwareName"],
        "firmware_from": UPGRADE["firmwareFrom"],
        "firmware_to": UPGRADE["firmwareTo"],
        "start_date": TOMORROW,
        "end_date": "2026-11-23",
        "time_windows": [[0, 4]],
    }
    assert _writes(fake) == [f"POST {FOTA}/devices/{ACCOUNT}"]  # the one device listing: no campaign
    assert not fake.campaigns
    warnings = [str(event["event"]) for event in events if event["log_level"] == "warning"]
    assert any("would be failed (not sent): 1 device, wrong_make_model" in line for line in warnings)


def test_an_upgrade_dry_run_reuses_the_campaign_of_its_name_and_lists_what_it_lacks(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    devices = imeis(2)
    for imei in devices:
        fake.add_device(imei)
    name = "night-wave"
    campaign_id = fake.add_campaign(
        name, "CampaignScheduled", devices[:1], startDate=TOMORROW, endDate=TOMORROW
    )
    outcome = upgrade_operator(clock, imeis=devices, campaign_name=name, dry_run=True).execute(run_context())

    assert (outcome["campaign_id"], outcome["campaign_reused"], outcome["campaign_status"]) == (
        campaign_id,
        True,
        "CampaignScheduled",
    )
    assert outcome["devices"]["unchanged"] == devices[:1]  # already in it: nothing would be sent
    assert outcome["devices"]["scheduled"] == devices[1:]
    assert list(outcome["plan"]) == devices[1:]
    assert not fake.requests("PUT") and not fake.requests("DELETE")


def test_an_upgrade_dry_run_of_a_started_campaign_lists_the_devices_it_can_no_longer_take(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    devices = imeis(2)
    for imei in devices:
        fake.add_device(imei)
    fake.add_campaign("night-wave", "CampaignScheduled", devices[:1])  # started today
    outcome = upgrade_operator(clock, imeis=devices, campaign_name="night-wave", dry_run=True).execute(
        run_context()
    )
    (error,) = outcome["errors"]
    assert (error["error_code"], error["devices"], error["attempted"]) == (
        "campaign_started",
        devices[1:],
        False,
    )
    assert outcome["devices"]["unchanged"] == devices[:1]


def test_an_upgrade_dry_run_with_an_imei_the_account_lacks_leaves_it_out_and_schedules_the_rest(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    devices = imeis(3)
    fake.add_device(devices[0])
    fake.add_device(devices[2])
    outcome = upgrade_operator(clock, imeis=devices, dry_run=True).execute(run_context())
    assert outcome["devices"]["scheduled"] == [devices[0], devices[2]]
    assert [(e["error_code"], e["devices"], e["attempted"]) for e in outcome["errors"]] == [
        ("not_in_account", [devices[1]], False),
    ]


def _mixed_fleet(fake: FakeCampaigns) -> list[str]:
    """Six devices: two that upgrade, one of each reason not to, and one the account lacks."""
    devices = imeis(6)
    fake.add_device(devices[0])
    fake.add_device(devices[1], licenseAssigned=False)
    fake.add_device(devices[2], make="QUECTEL", model="BG96")
    fake.add_device(devices[3], firmware="SR1.3.0.0-11020")
    fake.add_device(devices[4], fotaEligible=False, protocol="HTTP")
    return devices  # devices[5]: not in the account


def _agreement(outcome: dict[str, Any]) -> tuple[Any, ...]:
    errors = [(e["error_code"], e["message"], e["devices"], e["attempted"]) for e in outcome["errors"]]
    return outcome["devices"]["scheduled"], outcome["devices"]["unchanged"], errors


def test_an_upgrade_applied_right_after_its_plan_schedules_exactly_what_the_plan_listed(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    devices = _mixed_fleet(fake)
    arguments = {"imeis": devices, "campaign_start_date": TOMORROW, "fail_on_error": False}
    plan = upgrade_operator(clock, dry_run=True, **arguments).execute(run_context())
    assert not fake.campaigns
    apply = upgrade_operator(clock, **arguments).execute(run_context())

    assert plan["devices"]["scheduled"] == devices[:2]
    assert _agreement(apply) == _agreement(plan)
    assert [e["error_code"] for e in apply["errors"]] == [
        "wrong_make_model",
        "other_firmware",
        "not_fota_eligible",
        "not_in_account",
    ]
    (post,) = fake.requests("POST", "/campaigns/")
    assert post.json()["deviceList"] == plan["devices"]["scheduled"]  # only those: none would fail
    assert apply["campaign_id"] == "c0001"

    # Planned again (a retry would find the same): the campaign holds the devices, nothing to send.
    again = upgrade_operator(clock, dry_run=True, **arguments).execute(run_context())
    retried = upgrade_operator(clock, **arguments).execute(run_context(try_number=2))
    assert again["devices"]["unchanged"] == retried["devices"]["unchanged"] == devices[:2]
    assert _agreement(retried) == _agreement(again)
    assert len(fake.requests("PUT")) == 0  # nothing added


def test_an_upgrade_none_of_whose_devices_can_upgrade_schedules_no_campaign(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    devices = imeis(2)
    fake.add_device(devices[0], firmware="SR1.3.0.0-11020")
    fake.add_device(devices[1], fotaEligible=False)
    outcome = upgrade_operator(
        clock, imeis=devices, campaign_start_date=TOMORROW, fail_on_error=False
    ).execute(run_context())
    assert (outcome["campaign_id"], outcome["campaign_status"]) == (None, None)
    assert outcome["devices"]["scheduled"] == []
    assert [(e["error_code"], e["attempted"]) for e in outcome["errors"]] == [
        ("other_firmware", False),
        ("not_fota_eligible", False),
    ]
    assert fake.requests("POST", "/campaigns/") == [] and not fake.campaigns


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"firmware_name": "nope"}, "no firmware upgrade available"),
        ({"campaign_start_date": "2026-11-01", "campaign_end_date": "2026-11-02"}, "already ended"),
        ({"campaign_start_date": "2026-11-20", "campaign_end_date": "2026-11-22"}, "in the past"),
        ({"imeis": imeis(1001), "campaign_start_date": TODAY}, "must start after today"),
    ],
)
def test_an_upgrade_dry_run_fails_as_the_real_run_does_on_bad_input(
    fake: FakeCampaigns, clock: FakeClock, arguments: dict[str, Any], says: str
) -> None:
    raised = []
    for dry_run in (True, False):
        with pytest.raises(IoTFleetValidationError, match=says) as error:
            upgrade_operator(clock, dry_run=dry_run, **arguments).execute(run_context())
        raised.append(str(error.value))
    assert raised[0] == raised[1]
    assert _writes(fake) == [] and not fake.campaigns


def test_a_sync_dry_run_lists_each_devices_firmware_on_record_and_those_the_sync_would_fail(
    fake: FakeCampaigns, clock: FakeClock
) -> None:
    devices = imeis(3)
    fake.add_device(devices[0], firmware="SR1.3.0.0-11020")
    fake.add_device(devices[1], lastConnectionTime="N/A")
    operator = VerizonThingSpaceSyncFirmwareOperator(
        task_id="sync", imeis=devices, verizon_thingspace_conn_id=CONN_ID, dry_run=True
    )
    outcome = operator.execute(operator_context("sync"))

    assert outcome["dry_run"] is True
    assert outcome["devices"]["succeeded"] == devices[:1]
    assert outcome["firmware"] == {devices[0]: "SR1.3.0.0-11020"}
    assert outcome["plan"] == {devices[0]: {"firmware": {"from": "SR1.3.0.0-11020", "to": None}}}
    assert [(e["error_code"], e["devices"]) for e in outcome["errors"]] == [
        ("never_connected", [devices[1]]),
        ("FirmwareVersionUpdateFailed", [devices[2]]),
    ]
    assert _writes(fake) == [f"POST {FOTA}/devices/{ACCOUNT}"]


def test_dry_run_is_a_template_field_of_both_write_operators() -> None:
    assert "dry_run" in VerizonThingSpaceSyncFirmwareOperator.template_fields
    assert "dry_run" in VerizonThingSpaceFirmwareUpgradeOperator.template_fields
