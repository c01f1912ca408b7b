"""Verizon's official SDK (sdksio-verizon-apis-sdk, APIMatic) against the simulator's ThingSpace.

The SDK builds its URLs from a fixed table of environments and servers; the tests point the
production one at the simulator's root (``/api/ts/v1``, ``/api/m2m``, ``/api/fota/v3``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

import pytest
from verizon.configuration import Configuration, Environment
from verizon.exceptions.fota_v3_result_exception import FotaV3ResultException
from verizon.http.auth.thingspace_oauth import ThingspaceOauthCredentials
from verizon.http.auth.vz_m2m_token import VZM2mTokenCredentials
from verizon.models.campaign_firmware_upgrade import CampaignFirmwareUpgrade
from verizon.models.firmware_imei import FirmwareIMEI
from verizon.models.log_in_request import LogInRequest
from verizon.models.v3_add_or_remove_device_request import V3AddOrRemoveDeviceRequest
from verizon.models.v3_change_campaign_dates_request import V3ChangeCampaignDatesRequest
from verizon.models.v3_time_window import V3TimeWindow
from verizon.verizon_client import VerizonClient

from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.campaigns import FIRMWARE
from airflow_provider_iotfleet.simulator.fleet import ONLINE, imei_of
from tests.simulator_harness import SimulatorFactory

PRODUCTION_HOST = "https://thingspace.verizon.com"
UPGRADE = FIRMWARE["GM01Q-SR1.2.0.0-10657-to-SR1.2.1.0-10702"]

ClientFactory = Callable[[Simulator], VerizonClient]


@pytest.fixture
def thingspace(monkeypatch: pytest.MonkeyPatch) -> ClientFactory:
    """Log in to a simulator with the SDK (OAuth client credentials, then an M2M session)."""

    def connect(simulator: Simulator) -> VerizonClient:
        servers = {
            server: url.replace(PRODUCTION_HOST, simulator.url)
            for server, url in Configuration.environments[Environment.PRODUCTION].items()
        }
        monkeypatch.setitem(Configuration.environments, Environment.PRODUCTION, servers)
        credentials = simulator.config.credentials
        oauth = ThingspaceOauthCredentials(credentials.verizon_key, credentials.verizon_secret)
        login = VerizonClient(thingspace_oauth_credentials=oauth).session_management
        session = login.start_connectivity_management_session(
            LogInRequest(credentials.verizon_m2m_username, credentials.verizon_m2m_password)
        )
        assert session.status_code == 200
        return VerizonClient(
            thingspace_oauth_credentials=oauth,
            vz_m2m_token_credentials=VZM2mTokenCredentials(session.body.session_token),
        )

    return connect


def _eligible(simulator: Simulator, count: int, online: bool = False) -> list[str]:
    fleet = simulator.state.fleet
    found = []
    for index in range(fleet.size):
        device = fleet.device(index)
        if (
            device["model"] == UPGRADE.model
            and device["firmware"] == UPGRADE.source
            and device["protocol"] != "HTTP"  # listed not FOTA-eligible: its upgrade fails
            and (not online or device["online_status"] == ONLINE)
        ):
            found.append(imei_of(index))
    return found[:count]


def test_sdk_logs_in_lists_devices_and_syncs_firmware(
    start_simulator: SimulatorFactory, thingspace: ClientFactory
) -> None:
    simulator = start_simulator(devices=120, verizon_page_size=50)
    client = thingspace(simulator)
    account = simulator.config.credentials.verizon_account
    counters = simulator.state.snapshot()["counters"]
    assert (counters["verizon.access_tokens"], counters["verizon.logins"]) == (1, 1)

    # The whole-account listing keeps ThingSpace's "... +0000 UTC" timestamps as strings; the SDK's
    # subset listing (POST) parses lastConnectionTime and fails on that format, so it is left out.
    first = client.account_devices.get_account_device_information(account, "0", protocol="LWM2M")
    assert first.status_code == 200
    assert first.body.has_more_data is True
    assert len(first.body.device_list) == 50
    assert {device.protocol for device in first.body.device_list} == {"LWM2M"}
    assert first.body.device_list[0].create_time.endswith("+0000 UTC")
    second = client.account_devices.get_account_device_information(
        account, first.body.last_seen_device_id, protocol="LWM2M"
    )
    assert int(second.body.device_list[0].device_id) > int(first.body.last_seen_device_id)

    online = [imei_of(i) for i in range(20) if simulator.state.fleet.device(i)["online_status"] == ONLINE][:3]
    synced = client.firmware_v3.synchronize_device_firmware(account, FirmwareIMEI(device_list=online))
    assert [item.device_id for item in synced.body.device_firmwar_version_list] == online
    assert [item.status for item in synced.body.device_firmwar_version_list] == [
        "FirmwareVersionUpdateSuccess"
    ] * 3
    assert [item.firmware_version for item in synced.body.device_firmwar_version_list] == [
        simulator.state.fleet.device(simulator.state.fleet.by_imei(imei))["firmware"] for imei in online
    ]


def test_sdk_runs_a_firmware_campaign(start_simulator: SimulatorFactory, thingspace: ClientFactory) -> None:
    simulator = start_simulator(
        devices=1500, campaign_page_size=3, session_idle_timeout=30 * 24 * 3600.0, campaign_failure_share=0.0
    )
    state = simulator.state
    client = thingspace(simulator)
    account = simulator.config.credentials.verizon_account

    packages = client.firmware_v3.list_available_firmware(account, "LWM2M").body
    package = next(p for p in packages if p.firmware_name == UPGRADE.name)
    assert (package.firmware_from, package.firmware_to, package.make) == (
        UPGRADE.source,
        UPGRADE.target,
        UPGRADE.make,
    )

    devices = _eligible(simulator, 8, online=True)
    day = state.now().date() + timedelta(days=1)
    scheduled = client.campaigns_v3.schedule_campaign_firmware_upgrade(
        account,
        CampaignFirmwareUpgrade(
            firmware_name=package.firmware_name,
            firmware_from=package.firmware_from,
            firmware_to=package.firmware_to,
            protocol="LWM2M",
            start_date=day,
            end_date=day,
            device_list=devices[:7],
            auto_assign_license_flag=True,
            auto_add_devices_flag=False,
            campaign_name="sdk campaign",
            campaign_time_window_list=[V3TimeWindow(start_time=1, end_time=3)],
        ),
    ).body
    assert scheduled.status == "CampaignRequestPending"
    assert (scheduled.start_date, scheduled.end_date) == (day, day)
    campaign = client.campaigns_v3.get_campaign_information(account, scheduled.id).body
    assert (campaign.status, campaign.campaign_name, campaign.make) == (
        "CampaignScheduled",
        "sdk campaign",
        UPGRADE.make,
    )

    changed = client.campaigns_v3.update_campaign_firmware_devices(
        account, scheduled.id, V3AddOrRemoveDeviceRequest(mtype="append", device_list=[devices[7]])
    ).body
    assert [(item.device_id, item.status) for item in changed.device_list] == [(devices[7], "Success")]
    with pytest.raises(FotaV3ResultException) as refused:
        client.campaigns_v3.update_campaign_firmware_devices(
            account, scheduled.id, V3AddOrRemoveDeviceRequest(mtype="add", device_list=[devices[0]])
        )
    assert refused.value.error_code == "FOTA.REQUEST_FAILED.InvalidParameter"
    moved = client.campaigns_v3.update_campaign_dates(
        account,
        scheduled.id,
        V3ChangeCampaignDatesRequest(
            start_date=day, end_date=day + timedelta(days=1), campaign_time_window_list=[V3TimeWindow(1, 2)]
        ),
    ).body
    assert moved.end_date == day + timedelta(days=1)

    state.advance((datetime.combine(day, time(1, 30), UTC) - state.now()).total_seconds())
    client = thingspace(simulator)  # the access token lives an hour: log in again
    reports = client.software_management_reports_v3
    pages, last_seen = [], "0"
    while True:
        page = reports.get_campaign_device_status(account, scheduled.id, last_seen).body
        assert (page.total_device, page.max_page_size) == (8, 3)
        pages.append(page.device_list)
        if not page.has_more_data:
            break
        last_seen = page.last_seen_device_id
    assert [len(page) for page in pages] == [3, 3, 2]
    report = [device for page in pages for device in page]
    assert [device.device_id for device in report] == sorted(devices)
    assert {device.status for device in report} == {"Finished"}  # 8 minutes' work in a 30-minute window
    assert report[0].updated_time.datetime == datetime.combine(day, time(1, 1), UTC)  # RFC 3339, parsed
    assert state.fleet.device(state.fleet.by_imei(devices[0]))["firmware"] == UPGRADE.target

    history = reports.get_campaign_history_by_status(account, "CampaignScheduled").body
    assert [item.id for item in history.campaign_list] == [scheduled.id]
    assert client.campaigns_v3.cancel_campaign(account, scheduled.id).body.success is True
    assert (
        client.campaigns_v3.get_campaign_information(account, scheduled.id).body.status == "CampaignAborted"
    )
    with pytest.raises(FotaV3ResultException) as again:
        client.campaigns_v3.cancel_campaign(account, scheduled.id)
    assert again.value.error_code == "FOTA.REQUEST_FAILED.CampaignNotModifiable"
