"""ThingSpace FOTA v3 firmware campaigns in the simulator: scheduling, refusals, progress on the clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
import requests

from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig, SimulatorState
from airflow_provider_iotfleet.simulator.__main__ import parse_args
from airflow_provider_iotfleet.simulator.campaigns import FIRMWARE, Firmware
from airflow_provider_iotfleet.simulator.fleet import FIRMWARE_VERSIONS, MODELS, ONLINE, imei_of
from tests.simulator_harness import SimulatorFactory

pytestmark = pytest.mark.slow

UPGRADE = FIRMWARE["GM01Q-SR1.2.0.0-10657-to-SR1.2.1.0-10702"]
#: Long enough that neither the access token nor the session is the subject of these tests.
QUIET = {"session_idle_timeout": 365 * 24 * 3600.0}


class ThingSpace:
    """A raw ThingSpace client of the simulator: OAuth token and M2M session, then FOTA v3 calls.

    Moving the clock by hours expires the token and the session: calls log in again when refused.
    """

    def __init__(self, simulator: Simulator, prefix: str = "/verizon") -> None:
        self.simulator = simulator
        self.base = f"{simulator.url}{prefix}/api"
        self.account = simulator.config.credentials.verizon_account
        self.http = requests.Session()
        self.login()

    def login(self) -> None:
        credentials = self.simulator.config.credentials
        self.http.headers.pop("Authorization", None)
        token = self.http.post(
            f"{self.base}/ts/v1/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(credentials.verizon_key, credentials.verizon_secret),
            timeout=10,
        ).json()["access_token"]
        session = self.http.post(
            f"{self.base}/m2m/v1/session/login",
            json={"username": credentials.verizon_m2m_username, "password": credentials.verizon_m2m_password},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()["sessionToken"]
        self.http.headers.update({"Authorization": f"Bearer {token}", "VZ-M2M-Token": session})

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """``path`` under ``/api/fota/v3``, with ``{acc}`` for the account."""
        url = f"{self.base}/fota/v3{path.format(acc=self.account)}"
        response = self.http.request(method, url, timeout=30, **kwargs)
        if response.status_code == 401 or "SessionToken.Expired" in response.text:
            self.login()
            response = self.http.request(method, url, timeout=30, **kwargs)
        return response

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def refused(self, method: str, path: str, status: int = 400, **kwargs: Any) -> dict[str, Any]:
        """The vendor's error body of a refused call (exactly ``errorCode`` and ``errorMessage``)."""
        response = self.call(method, path, **kwargs)
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"errorCode", "errorMessage"}
        return dict(body)

    def schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.ok("POST", "/campaigns/firmware/{acc}", json=body))

    def campaign(self, campaign_id: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/campaigns/{{acc}}/{campaign_id}"))

    def report(self, campaign_id: str) -> dict[str, dict[str, Any]]:
        """Every device of the campaign's report, by IMEI (all pages)."""
        devices: dict[str, dict[str, Any]] = {}
        last_seen = "0"
        while True:
            page = self.ok(
                "GET",
                f"/reports/{{acc}}/campaigns/{campaign_id}/devices",
                params={"lastSeenDeviceId": last_seen},
            )
            devices.update({device["deviceId"]: device for device in page["deviceList"]})
            if not page["hasMoreData"]:
                return devices
            last_seen = page["lastSeenDeviceId"]


def eligible(
    state: SimulatorState,
    count: int,
    firmware: Firmware = UPGRADE,
    online: bool = False,
    protocol_http: bool = False,
) -> list[str]:
    """IMEIs of devices the firmware applies to (make, model, current firmware), in IMEI order:
    FOTA-eligible ones (not HTTP), or with ``protocol_http`` HTTP ones, which the listing shows as
    not FOTA-eligible and whose upgrade fails."""
    found = []
    for index in range(state.fleet.size):
        device = state.fleet.device(index)
        if (
            (device["make"], device["model"]) == (firmware.make, firmware.model)
            and device["firmware"] == firmware.source
            and (device["protocol"] == "HTTP") == protocol_http
            and (not online or device["online_status"] == ONLINE)
        ):
            found.append(imei_of(index))
            if len(found) == count:
                return found
    raise AssertionError(f"the fleet has fewer than {count} devices eligible for {firmware.name}")


def campaign_body(imeis: list[str], start: date, end: date, **changes: Any) -> dict[str, Any]:
    body = {
        "campaignName": "test campaign",
        "firmwareName": UPGRADE.name,
        "firmwareFrom": UPGRADE.source,
        "firmwareTo": UPGRADE.target,
        "protocol": "LWM2M",
        "startDate": start.isoformat(),
        "endDate": end.isoformat(),
        "deviceList": imeis,
        "autoAssignLicenseFlag": True,
        "autoAddDevicesFlag": False,
    }
    body.update(changes)
    return body


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), UTC)


def advance_to(state: SimulatorState, moment: datetime) -> None:
    """Move the simulator clock to ``moment`` (which must lie ahead)."""
    seconds = (moment - state.now()).total_seconds()
    assert seconds > 0, f"{moment} has passed already"
    state.advance(seconds)


def statuses(report: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for device in report.values():
        counts[device["status"]] = counts.get(device["status"], 0) + 1
    return counts


def tomorrow(state: SimulatorState) -> date:
    return state.now().date() + timedelta(days=1)


# --- the firmware on offer and scheduling -----------------------------------------------------


def test_firmware_on_offer_is_one_package_per_model_and_version_step(
    start_simulator: SimulatorFactory,
) -> None:
    thingspace = ThingSpace(start_simulator(devices=100))
    packages = thingspace.ok("GET", "/firmware/{acc}")
    assert len(packages) == len(MODELS) * (len(FIRMWARE_VERSIONS) - 1)
    assert set(packages[0]) == {
        "firmwareName",
        "firmwareFrom",
        "firmwareTo",
        "launchDate",
        "releaseNote",
        "make",
        "model",
        "protocol",
    }
    steps = {(p["make"], p["model"], p["firmwareFrom"], p["firmwareTo"]) for p in packages}
    assert (UPGRADE.make, UPGRADE.model, FIRMWARE_VERSIONS[0], FIRMWARE_VERSIONS[1]) in steps
    assert UPGRADE.name in {p["firmwareName"] for p in packages}
    assert thingspace.ok("GET", "/firmware/{acc}", params={"protocol": "LWM2M"}) == packages
    assert thingspace.ok("GET", "/firmware/{acc}", params={"protocol": "OMADM"}) == []
    assert thingspace.refused("GET", "/firmware/{acc}", params={"protocol": "SNMP"})["errorCode"].endswith(
        "InvalidParameter"
    )


def test_a_campaign_is_pending_when_scheduled_then_scheduled(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=600, **QUIET)
    state = simulator.state
    thingspace = ThingSpace(simulator)
    imeis = eligible(state, 5)
    day = tomorrow(state)
    windows = [{"startTime": 2, "endTime": 4}]
    created = thingspace.schedule(campaign_body(imeis, day, day, campaignTimeWindowList=windows))
    assert created == {
        "id": created["id"],
        "accountName": thingspace.account,
        "campaignName": "test campaign",
        "firmwareName": UPGRADE.name,
        "firmwareFrom": UPGRADE.source,
        "firmwareTo": UPGRADE.target,
        "protocol": "LWM2M",
        "make": UPGRADE.make,
        "model": UPGRADE.model,
        "startDate": day.isoformat(),
        "endDate": day.isoformat(),
        "campaignTimeWindowList": windows,
        "status": "CampaignRequestPending",
        "autoAssignLicenseFlag": True,
        "autoAddDevicesFlag": False,
    }
    assert thingspace.campaign(created["id"]) == {**created, "status": "CampaignScheduled"}
    # Scheduling names its devices as a write in the request log.
    assert all(state.per_device_writes("verizon")[imei] == 1 for imei in imeis)
    # Ids are unique, and repeat per seed.
    second = thingspace.schedule(campaign_body(eligible(state, 6)[5:], day, day))
    assert second["id"] != created["id"]
    again = SimulatorState(SimulatorConfig(devices=600))
    assert again.campaigns.schedule(thingspace.account, campaign_body(imeis, day, day)).id == created["id"]
    assert state.snapshot()["campaigns"][created["id"]]["devices"] == {
        imei: {"status": "RequestPending", "resultReason": ""} for imei in imeis
    }
    assert thingspace.refused("GET", "/campaigns/{acc}/no-such-campaign", status=404)["errorCode"].endswith(
        "CampaignNotFound"
    )


def test_campaigns_are_refused_with_thingspace_errors(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=600, **QUIET)
    thingspace = ThingSpace(simulator)
    imeis = eligible(simulator.state, 3)
    today = simulator.state.now().date()
    day = today + timedelta(days=1)
    cases = [
        ({"firmwareName": "GM01Q-nothing"}, "FirmwareNotFound"),
        ({"firmwareFrom": FIRMWARE_VERSIONS[1]}, "InvalidFirmware"),
        ({"firmwareTo": FIRMWARE_VERSIONS[2]}, "InvalidFirmware"),
        ({"protocol": "OMADM"}, "InvalidFirmware"),
        ({"startDate": "tomorrow"}, "InvalidDate"),
        ({"endDate": "2026-02-30"}, "InvalidDate"),
        ({"startDate": day.strftime("%Y%m%d")}, "InvalidDate"),
        ({"startDate": (day + timedelta(days=2)).isoformat()}, "InvalidDate"),  # after the end date
        ({"startDate": (today - timedelta(days=1)).isoformat()}, "InvalidDate"),  # before today
        ({"campaignTimeWindowList": [{"startTime": 22, "endTime": 25}]}, "InvalidTimeWindow"),
        ({"campaignTimeWindowList": [{"startTime": 5, "endTime": 5}]}, "InvalidTimeWindow"),
        ({"campaignTimeWindowList": [{"startTime": -1, "endTime": 3}]}, "InvalidTimeWindow"),
        ({"campaignTimeWindowList": [{"startTime": "2", "endTime": 3}]}, "InvalidTimeWindow"),
        ({"deviceList": [*imeis, "356908999999997"]}, "DeviceNotFound"),
        ({"deviceList": []}, "EmptyDeviceList"),
        ({"autoAssignLicenseFlag": "yes"}, "InvalidBody"),
    ]
    for changes, code in cases:
        error = thingspace.refused(
            "POST", "/campaigns/firmware/{acc}", json=campaign_body(imeis, day, day, **changes)
        )
        assert error["errorCode"] == f"FOTA.REQUEST_FAILED.{code}", changes
    assert thingspace.refused("POST", "/campaigns/firmware/{acc}", data=b"[1, 2")["errorCode"].endswith(
        "InvalidBody"
    )
    # An unknown account, and a missing session, are refused like every FOTA call.
    assert (
        thingspace.call("POST", "/campaigns/firmware/0000999999-00001", json={})
        .json()["errorCode"]
        .endswith("AccountNotFound")
    )
    bare = requests.get(f"{thingspace.base}/fota/v3/campaigns/{thingspace.account}/x", timeout=10)
    assert bare.status_code == 401
    assert len(simulator.state.campaigns) == 0


# --- progress on the simulator clock ------------------------------------------------------------


def test_devices_upgrade_only_inside_the_dates_and_windows(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=1500, campaign_devices_per_hour=6, **QUIET)
    state = simulator.state
    thingspace = ThingSpace(simulator)
    devices = eligible(state, 14)
    first, later = devices[:10], devices[10:]
    day = tomorrow(state)
    windowed = thingspace.schedule(
        campaign_body(first, day, day, campaignTimeWindowList=[{"startTime": 2, "endTime": 3}])
    )["id"]
    next_day = thingspace.schedule(campaign_body(later, day + timedelta(days=1), day + timedelta(days=1)))[
        "id"
    ]

    report = thingspace.report(windowed)
    assert statuses(report) == {"RequestPending": 10}
    assert {device["nextAttemptTime"] for device in report.values()} == {f"{day}T02:00:00.000Z"}

    advance_to(state, at(day, 1))  # started, but outside its window
    assert statuses(thingspace.report(windowed)) == {"Queued": 10}
    assert thingspace.campaign(windowed)["status"] == "CampaignScheduled"

    advance_to(state, at(day, 2, 25))  # 10 minutes a device: two done, the third under way
    report = thingspace.report(windowed)
    assert statuses(report) == {"Finished": 2, "InProgress": 1, "Queued": 7}
    assert [report[imei]["status"] for imei in first[:3]] == ["Finished", "Finished", "InProgress"]
    assert report[first[0]]["updatedTime"] == f"{day}T02:10:00.000Z"
    assert report[first[0]]["recentAttemptTime"] == f"{day}T02:00:00.000Z"
    assert report[first[0]]["resultReason"] == "Download and install succeeded."
    assert report[first[2]]["recentAttemptTime"] == f"{day}T02:20:00.000Z"

    advance_to(state, at(day, 23))  # the window closed at 03:00 after six devices
    assert statuses(thingspace.report(windowed)) == {"Finished": 6, "Queued": 4}
    assert statuses(thingspace.report(next_day)) == {"RequestPending": 4}  # its dates have not come
    assert thingspace.campaign(windowed)["status"] == "CampaignScheduled"

    advance_to(state, at(day + timedelta(days=1), 0, 0, 30))  # its end date has passed
    assert thingspace.campaign(windowed)["status"] == "CampaignEnded"
    report = thingspace.report(windowed)
    assert statuses(report) == {"Finished": 6, "RequestFailed": 4}
    assert report[first[9]]["resultReason"] == "Campaign ended before the device was upgraded."
    assert [state.fleet.device(state.fleet.by_imei(i))["firmware"] for i in first] == [UPGRADE.target] * 6 + [
        UPGRADE.source
    ] * 4
    # The other campaign runs all day from midnight: 40 minutes for its four devices.
    advance_to(state, at(day + timedelta(days=1), 0, 45))
    assert statuses(thingspace.report(next_day)) == {"Finished": 4}
    history = thingspace.ok(
        "GET", "/reports/{acc}/firmware/campaigns", params={"campaignStatus": "CampaignEnded"}
    )
    assert [c["id"] for c in history["campaignList"]] == [windowed]


def test_done_by_is_when_the_last_device_of_the_running_campaigns_has_had_its_turn(
    start_simulator: SimulatorFactory,
) -> None:
    simulator = start_simulator(devices=1500, campaign_devices_per_hour=6, **QUIET)
    state = simulator.state
    thingspace = ThingSpace(simulator)
    assert state.campaigns.done_by() is None  # no campaign

    devices = eligible(state, 9)
    day = tomorrow(state)
    # 10 minutes a device, from 02:00 to 03:00 only: six on the first day, three on the next.
    windowed = thingspace.schedule(
        campaign_body(
            devices[:9], day, day + timedelta(days=1), campaignTimeWindowList=[{"startTime": 2, "endTime": 3}]
        )
    )["id"]
    assert state.campaigns.done_by() == at(day + timedelta(days=1), 2, 30)

    advance_to(state, at(day + timedelta(days=1), 2, 29))
    assert statuses(thingspace.report(windowed)) == {"Finished": 8, "InProgress": 1}
    assert state.campaigns.done_by() == at(day + timedelta(days=1), 2, 30)  # the same, from midway too
    advance_to(state, at(day + timedelta(days=1), 2, 30))
    assert statuses(thingspace.report(windowed)) == {"Finished": 9}
    assert state.campaigns.done_by() is None

    # Dates that run out first: the end of the last day.
    short = thingspace.schedule(
        campaign_body(
            eligible(state, 20)[9:],
            day + timedelta(days=2),
            day + timedelta(days=2),
            campaignTimeWindowList=[{"startTime": 23, "endTime": 24}],
        )
    )["id"]
    assert state.campaigns.done_by() == at(day + timedelta(days=3), 0)
    thingspace.ok("DELETE", f"/campaigns/{{acc}}/{short}")
    assert state.campaigns.done_by() is None  # a cancelled campaign has no more turns


def test_advance_past_pending_moves_the_clock_past_scheduled_changes_and_campaigns(
    start_simulator: SimulatorFactory,
) -> None:
    simulator = start_simulator(devices=1500, campaign_devices_per_hour=6, **QUIET)
    state = simulator.state
    assert state.advance_past_pending() is None  # nothing pending: the clock stays

    thingspace = ThingSpace(simulator)
    devices = eligible(state, 3)
    day = tomorrow(state)
    campaign = thingspace.schedule(campaign_body(devices, day, day))["id"]
    state.fleet.schedule(at(day, 5), 0, {"status": "DEACTIVATED"})
    # Fewer scheduled changes than asked for: only the campaign counts (done at 00:30).
    until_done = (at(day, 0, 30) - state.now()).total_seconds()
    assert state.advance_past_pending(min_scheduled=2, margin=0) == (0, 1, pytest.approx(until_done, abs=1))
    assert statuses(thingspace.report(campaign)) == {"Finished": 3}
    assert state.fleet.device(0)["status"] != "DEACTIVATED"

    moved = state.advance_past_pending()
    assert moved is not None and moved[:2] == (1, 0)
    assert state.now() == pytest.approx(at(day, 5, 1), abs=timedelta(seconds=1))
    assert state.fleet.device(0)["status"] == "DEACTIVATED"
    assert state.advance_past_pending() is None


def test_advance_past_pending_can_apply_what_is_pending_and_keep_the_clock(
    start_simulator: SimulatorFactory,
) -> None:
    simulator = start_simulator(devices=1500, campaign_devices_per_hour=6, **QUIET)
    state = simulator.state
    thingspace = ThingSpace(simulator)
    devices = eligible(state, 3)
    day = tomorrow(state)
    campaign = thingspace.schedule(campaign_body(devices, day, day))["id"]
    state.fleet.schedule(at(day, 5), 0, {"status": "DEACTIVATED"})

    moved = state.advance_past_pending(keep_clock=True)

    assert moved is not None and moved[:2] == (1, 1)
    assert state.now() == pytest.approx(datetime.now(UTC), abs=timedelta(seconds=5))
    assert statuses(thingspace.report(campaign)) == {"Finished": 3}
    assert state.fleet.device(0)["status"] == "DEACTIVATED"
    assert state.advance_past_pending(keep_clock=True) is None
    # A change asked for in 90 minutes after that is 90 minutes away, not already due.
    state.fleet.schedule(state.now() + timedelta(minutes=90), 1, {"status": "DEACTIVATED"})
    assert state.fleet.device(1)["status"] != "DEACTIVATED"
    assert state.fleet.pending[0]["iccid"] == state.fleet.device(1)["iccid"]


def test_mismatched_devices_fail_and_upgrades_show_in_listing_and_sync(
    start_simulator: SimulatorFactory,
) -> None:
    simulator = start_simulator(devices=1500, **QUIET)
    state = simulator.state
    thingspace = ThingSpace(simulator)
    good = eligible(state, 3, online=True)
    newer = eligible(state, 1, FIRMWARE["GM01Q-SR1.2.1.0-10702-to-SR1.3.0.0-11020"])  # GM01Q, already 1.2.1
    other_model = eligible(state, 1, FIRMWARE["BG96-SR1.2.0.0-10657-to-SR1.2.1.0-10702"])
    http = eligible(state, 1, protocol_http=True)  # listed fotaEligible false: cannot upgrade over the air
    day = tomorrow(state)
    campaign = thingspace.schedule(campaign_body(good + newer + other_model + http, day, day))["id"]
    advance_to(state, at(day, 1))
    report = thingspace.report(campaign)
    assert [report[imei]["status"] for imei in good] == ["Finished"] * 3
    assert report[newer[0]]["status"] == "UpgradeFailed"
    assert report[newer[0]]["resultReason"] == (
        f"Current device firmware {UPGRADE.target} is not the campaign's firmwareFrom {UPGRADE.source}."
    )
    assert report[other_model[0]]["status"] == "UpgradeFailed"
    assert "make/model" in report[other_model[0]]["resultReason"]
    assert report[http[0]]["status"] == "UpgradeFailed"
    assert report[http[0]]["resultReason"] == (
        "Device is not FOTA eligible: its software cannot be upgraded over the air."
    )
    assert state.fleet.device(state.fleet.by_imei(http[0]))["firmware"] == UPGRADE.source
    assert state.fleet.device(state.fleet.by_imei(newer[0]))["firmware"] == UPGRADE.target  # untouched
    assert state.fleet.device(state.fleet.by_imei(other_model[0]))["firmware"] == UPGRADE.source

    listed = thingspace.ok("POST", "/devices/{acc}", json={"deviceList": good + other_model})["deviceList"]
    assert {d["deviceId"]: d["firmware"] for d in listed} == {
        **dict.fromkeys(good, UPGRADE.target),
        other_model[0]: UPGRADE.source,
    }
    synced = thingspace.ok("PUT", "/firmware/{acc}/devices", json={"deviceList": good})[
        "deviceFirmwarVersionList"
    ]
    assert [(d["status"], d["firmwareVersion"]) for d in synced] == [
        ("FirmwareVersionUpdateSuccess", UPGRADE.target)
    ] * 3
    assert simulator.state.snapshot()["campaigns"][campaign]["devices"][good[0]]["status"] == "Finished"


def _failures(seed: int, share: float) -> tuple[str, set[str]]:
    state = SimulatorState(
        SimulatorConfig(devices=4000, seed=seed, campaign_failure_share=share, campaign_devices_per_hour=1000)
    )
    imeis = eligible(state, 300)
    day = tomorrow(state)
    campaign = state.campaigns.schedule(
        state.config.credentials.verizon_account, campaign_body(imeis, day, day)
    )
    advance_to(state, at(day + timedelta(days=1), 0, 1))
    devices = state.snapshot()["campaigns"][campaign.id]["devices"]
    assert {d["status"] for d in devices.values()} <= {"Finished", "UpgradeFailed"}
    return campaign.id, {imei for imei, d in devices.items() if d["status"] == "UpgradeFailed"}


def test_failures_repeat_per_seed_and_come_close_to_the_share() -> None:
    campaign, failed = _failures(seed=7, share=0.3)
    assert _failures(seed=7, share=0.3) == (campaign, failed)
    assert 60 <= len(failed) <= 120  # 90 expected of 300
    _, elsewhere = _failures(seed=8, share=0.3)
    assert elsewhere != failed
    assert _failures(seed=7, share=0.0)[1] == set()
    assert len(_failures(seed=7, share=1.0)[1]) == 300


def test_failed_upgrades_keep_their_firmware_and_say_why() -> None:
    state = SimulatorState(SimulatorConfig(devices=1500, campaign_failure_share=0.5))
    imeis = eligible(state, 20)
    day = tomorrow(state)
    campaign = state.campaigns.schedule(
        state.config.credentials.verizon_account, campaign_body(imeis, day, day)
    )
    advance_to(state, at(day, 12))
    devices = state.snapshot()["campaigns"][campaign.id]["devices"]
    for imei, device in devices.items():
        firmware = state.fleet.device(state.fleet.by_imei(imei))["firmware"]
        if device["status"] == "UpgradeFailed":
            assert device["resultReason"].startswith("RovaClient")
            assert firmware == UPGRADE.source
        else:
            assert firmware == UPGRADE.target


# --- changing and cancelling ------------------------------------------------------------------


def test_cancel_before_the_start_abort_after_and_refuse_once_over(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=1500, **QUIET)
    state = simulator.state
    thingspace = ThingSpace(simulator)
    devices = eligible(state, 24)
    today = state.now().date()
    day = today + timedelta(days=1)
    future = thingspace.schedule(campaign_body(devices[:4], day, day))["id"]
    running = thingspace.schedule(campaign_body(devices[4:14], today, day))["id"]
    ending = thingspace.schedule(campaign_body(devices[14:], day, day))["id"]

    assert thingspace.ok("DELETE", f"/campaigns/{{acc}}/{future}") == {"success": True}
    assert thingspace.campaign(future)["status"] == "CampaignCancelled"
    error = thingspace.refused("DELETE", f"/campaigns/{{acc}}/{future}")
    assert error["errorCode"] == "FOTA.REQUEST_FAILED.CampaignNotModifiable"

    state.advance(3.5 * 60)  # one device a minute since it was scheduled: three done
    assert thingspace.ok("DELETE", f"/campaigns/{{acc}}/{running}") == {"success": True}
    assert thingspace.campaign(running)["status"] == "CampaignAborted"

    advance_to(state, at(day + timedelta(days=1), 0, 1))
    assert thingspace.campaign(ending)["status"] == "CampaignEnded"
    assert thingspace.refused("DELETE", f"/campaigns/{{acc}}/{ending}")["errorCode"].endswith(
        "CampaignNotModifiable"
    )
    assert statuses(thingspace.report(ending)) == {"Finished": 10}
    assert statuses(thingspace.report(future)) == {"RequestFailed": 4}
    assert {d["resultReason"] for d in thingspace.report(future).values()} == {"Campaign cancelled by user."}
    aborted = thingspace.report(running)
    assert statuses(aborted) == {"Finished": 3, "RequestFailed": 7}  # nothing more after the abort
    assert aborted[devices[13]]["resultReason"] == "Campaign aborted by user."
    assert [state.fleet.device(state.fleet.by_imei(i))["firmware"] for i in devices[:4]] == [
        UPGRADE.source
    ] * 4
    for status, expected in (("CampaignCancelled", [future]), ("CampaignAborted", [running])):
        listed = thingspace.ok("GET", "/reports/{acc}/campaigns", params={"campaignStatus": status})
        assert [c["id"] for c in listed["campaignList"]] == expected


def test_devices_are_added_and_removed_only_before_the_start(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=1500, **QUIET)
    state = simulator.state
    thingspace = ThingSpace(simulator)
    devices = eligible(state, 5)
    day = tomorrow(state)
    campaign = thingspace.schedule(campaign_body(devices[:3], day, day))["id"]
    path = f"/campaigns/firmware/{{acc}}/{campaign}"

    added = thingspace.ok(
        "PUT", path, json={"Type": "append", "deviceList": [devices[3], devices[0], "356908999999997"]}
    )
    assert added == {
        "accountName": thingspace.account,
        "campaignId": campaign,
        "deviceList": [
            {"deviceId": devices[3], "status": "Success", "Reason": ""},
            {"deviceId": devices[0], "status": "Failure", "Reason": "Device is already in the campaign."},
            {"deviceId": "356908999999997", "status": "Failure", "Reason": "Device not found in account."},
        ],
    }
    removed = thingspace.ok("PUT", path, json={"type": "remove", "deviceList": [devices[1], devices[4]]})
    assert [d["status"] for d in removed["deviceList"]] == ["Success", "Failure"]
    assert sorted(thingspace.report(campaign)) == sorted([devices[0], devices[2], devices[3]])
    # The vendor notes' "add" is not a value the API takes: the SDK and the v3 docs send "append".
    assert thingspace.refused("PUT", path, json={"Type": "add", "deviceList": devices[4:]})[
        "errorCode"
    ].endswith("InvalidParameter")
    assert thingspace.refused("PUT", path, json={"Type": "append", "deviceList": []})["errorCode"].endswith(
        "EmptyDeviceList"
    )
    assert "campaign" in simulator.state.request_log("verizon", limit=1)[0]["path"]
    assert state.per_device_writes("verizon")[devices[3]] == 1

    advance_to(state, at(day, 0, 0, 10))
    error = thingspace.refused("PUT", path, json={"Type": "append", "deviceList": devices[4:]})
    assert error["errorCode"] == "FOTA.REQUEST_FAILED.CampaignNotModifiable"


def test_dates_and_windows_move_with_the_same_rules(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=1500, **QUIET)
    state = simulator.state
    thingspace = ThingSpace(simulator)
    day = tomorrow(state)
    campaign = thingspace.schedule(campaign_body(eligible(state, 2), day, day))["id"]
    path = f"/campaigns/firmware/{{acc}}/{campaign}/dates"
    later, last = day + timedelta(days=1), day + timedelta(days=3)
    windows = [{"startTime": 0, "endTime": 6}, {"startTime": 20, "endTime": 24}]
    moved = thingspace.ok(
        "PUT",
        path,
        json={"startDate": later.isoformat(), "endDate": last.isoformat(), "campaignTimeWindowList": windows},
    )
    assert (moved["startDate"], moved["endDate"], moved["campaignTimeWindowList"]) == (
        later.isoformat(),
        last.isoformat(),
        windows,
    )
    assert thingspace.campaign(campaign) == moved
    for body, code in (
        ({"startDate": last.isoformat(), "endDate": later.isoformat()}, "InvalidDate"),
        ({"startDate": (day - timedelta(days=2)).isoformat(), "endDate": last.isoformat()}, "InvalidDate"),
        (
            {
                "startDate": later.isoformat(),
                "endDate": last.isoformat(),
                "campaignTimeWindowList": [{"startTime": 7}],
            },
            "InvalidTimeWindow",
        ),
    ):
        assert thingspace.refused("PUT", path, json=body)["errorCode"] == f"FOTA.REQUEST_FAILED.{code}"

    advance_to(state, at(later, 1))  # started: the start date stays, the end date can move
    extended = thingspace.ok(
        "PUT", path, json={"startDate": later.isoformat(), "endDate": (last + timedelta(days=1)).isoformat()}
    )
    assert extended["endDate"] == (last + timedelta(days=1)).isoformat()
    assert extended["campaignTimeWindowList"] == []
    error = thingspace.refused("PUT", path, json={"startDate": last.isoformat(), "endDate": last.isoformat()})
    assert error["errorCode"] == "FOTA.REQUEST_FAILED.InvalidDate"


# --- reports --------------------------------------------------------------------------------


def test_device_report_and_history_page(start_simulator: SimulatorFactory) -> None:
    simulator = start_simulator(devices=1500, campaign_page_size=4, **QUIET)
    state = simulator.state
    thingspace = ThingSpace(simulator)
    devices = eligible(state, 15)
    day = tomorrow(state)
    campaign = thingspace.schedule(campaign_body(list(reversed(devices[:10])), day, day))["id"]
    path = f"/reports/{{acc}}/campaigns/{campaign}/devices"
    pages, last_seen = [], "0"
    while True:
        page = thingspace.ok("GET", path, params={"lastSeenDeviceId": last_seen})
        assert (page["maxPageSize"], page["totalDevice"]) == (4, 10)
        assert set(page["deviceList"][0]) == {
            "deviceId",
            "status",
            "resultReason",
            "updatedTime",
            "recentAttemptTime",
            "nextAttemptTime",
        }
        pages.append([device["deviceId"] for device in page["deviceList"]])
        assert page["lastSeenDeviceId"] == pages[-1][-1]
        if not page["hasMoreData"]:
            break
        last_seen = page["lastSeenDeviceId"]
    assert pages == [devices[0:4], devices[4:8], devices[8:10]]  # IMEI order
    assert thingspace.refused("GET", path, params={"lastSeenDeviceId": "abc"})["errorCode"].endswith(
        "InvalidParameter"
    )

    others = [thingspace.schedule(campaign_body([imei], day, day))["id"] for imei in devices[10:]]
    thingspace.ok("DELETE", f"/campaigns/{{acc}}/{others[0]}")
    scheduled = sorted([campaign, *others[1:]])
    for history_path in ("/reports/{acc}/firmware/campaigns", "/reports/{acc}/campaigns"):
        first = thingspace.ok("GET", history_path, params={"campaignStatus": "CampaignScheduled"})
        assert first["hasMoreData"] is True
        assert [c["id"] for c in first["campaignList"]] == scheduled[:4]
        assert first["lastSeenCampaignId"] == scheduled[3]
        assert first["campaignList"][0] == thingspace.campaign(scheduled[0])
        second = thingspace.ok(
            "GET",
            history_path,
            params={"campaignStatus": "CampaignScheduled", "lastSeenCampaignId": first["lastSeenCampaignId"]},
        )
        assert (second["hasMoreData"], [c["id"] for c in second["campaignList"]]) == (False, scheduled[4:])
        cancelled = thingspace.ok("GET", history_path, params={"campaignStatus": "CampaignCancelled"})
        assert [c["id"] for c in cancelled["campaignList"]] == [others[0]]
        assert thingspace.refused("GET", history_path)["errorCode"].endswith("InvalidParameter")
        assert thingspace.refused("GET", history_path, params={"campaignStatus": "Over"})[
            "errorCode"
        ].endswith("InvalidParameter")


# --- knobs ----------------------------------------------------------------------------------


def test_campaign_knobs_are_cli_flags_and_validated() -> None:
    _, config = parse_args(
        [
            "--campaign-devices-per-hour",
            "120",
            "--campaign-failure-share",
            "0.25",
            "--campaign-page-size",
            "50",
        ]
    )
    assert (config.campaign_devices_per_hour, config.campaign_failure_share, config.campaign_page_size) == (
        120.0,
        0.25,
        50,
    )
    defaults = SimulatorConfig()
    assert (
        defaults.campaign_devices_per_hour,
        defaults.campaign_failure_share,
        defaults.campaign_page_size,
    ) == (
        60.0,
        0.0,
        1000,
    )
    for flags in (
        ["--campaign-failure-share", "1.5"],
        ["--campaign-devices-per-hour", "0"],
        ["--campaign-page-size", "0"],
    ):
        with pytest.raises(SystemExit):
            parse_args(flags)
    with pytest.raises(ValueError, match="campaign_failure_share"):
        SimulatorConfig(campaign_failure_share=-0.1)
