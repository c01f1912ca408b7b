"""Firmware upgrade campaigns end to end against the simulator, over real sockets.

The upgrade operator schedules a campaign for 300 devices, of which the simulator fails a tenth
(its seeded dice); the simulated clock then moves past the campaign's last device while the campaign
sensor's trigger (rebuilt from its serialised form, as the triggerer does) polls it. The sensor must
report exactly the devices the simulator upgraded and failed, a firmware sync must then return the
new versions, and the operator run again in the same DAG run must reuse its campaign. A campaign
whose devices cannot all be added is cancelled, never left to upgrade part of them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_iotfleet.exceptions import (
    IoTFleetCampaignDevicesError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.operators.verizon import (
    VerizonThingSpaceFirmwareUpgradeOperator,
    VerizonThingSpaceSyncFirmwareOperator,
)
from airflow_provider_iotfleet.sensors.verizon import VerizonThingSpaceCampaignSensor
from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.campaigns import Firmware, upgrade_for
from airflow_provider_iotfleet.simulator.fleet import ONLINE, imei_of
from airflow_provider_iotfleet.triggers.verizon import VerizonThingSpaceCampaignTrigger
from tests.fakes import OUTCOME_KEYS, operator_context
from tests.simulator_harness import (
    PollCounter,
    SimulatorFactory,
    accounted_once,
    connection_variables,
    fault_where,
    rebuilt,
    run_task,
    run_while,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CAMPAIGN_SIZE = 300
FAILURE_SHARE = 0.1


@pytest.fixture
def simulator(start_simulator: SimulatorFactory, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    """A fleet large enough for 300 online devices of one model and firmware, a tenth of whose
    upgrades fail, with connections that allow many requests a second."""
    started = start_simulator(
        devices=6000,
        campaign_failure_share=FAILURE_SHARE,
        campaign_devices_per_hour=600,
        session_idle_timeout=30 * 24 * 3600.0,
    )
    for name, value in connection_variables(started, requests_per_second=1000).items():
        monkeypatch.setenv(name, value)
    return started


def campaign_devices(simulator: Simulator) -> tuple[Firmware, list[str]]:
    """The most common upgrade among online FOTA-eligible devices (HTTP devices are not: an upgrade
    leaves them out), and 300 of its devices, in IMEI order."""
    fleet = simulator.state.fleet
    by_upgrade: dict[Firmware, list[str]] = {}
    for index in range(fleet.size):
        device = fleet.device(index)
        eligible = device["online_status"] == ONLINE and device["protocol"] != "HTTP"
        if eligible and (upgrade := upgrade_for(device)) is not None:
            by_upgrade.setdefault(upgrade, []).append(imei_of(index))
    upgrade, imeis = max(by_upgrade.items(), key=lambda item: len(item[1]))
    assert len(imeis) >= CAMPAIGN_SIZE
    return upgrade, sorted(imeis[:CAMPAIGN_SIZE])


def test_a_campaign_reports_exactly_what_the_simulator_upgraded_and_failed(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade, imeis = campaign_devices(simulator)
    # Tomorrow on the simulator's clock: no device upgrades before the clock is moved.
    tomorrow = (simulator.state.now() + timedelta(days=1)).date().isoformat()
    day_after = (simulator.state.now() + timedelta(days=2)).date().isoformat()
    operator = VerizonThingSpaceFirmwareUpgradeOperator(
        task_id="upgrade", imeis=imeis, firmware_name=upgrade.name, campaign_start_date=tomorrow
    )

    outcome, succeeded = run_task(operator)

    assert succeeded
    status = accounted_once(outcome, operation="upgrade_firmware", requested=imeis)
    assert outcome["devices"]["scheduled"] == imeis  # in the campaign, to upgrade within its dates
    assert set(status.values()) == {"scheduled"}
    campaign_id = outcome["campaign_id"]
    assert {key: value for key, value in outcome.items() if key not in OUTCOME_KEYS} == {
        "account_name": simulator.connections()["verizon_thingspace_default"]["extra"]["account_name"],
        "campaign_id": campaign_id,
        "campaign_name": "airflow test_dag.upgrade manual__2026-11-21T12:00:00+00:00",  # the try's own
        "campaign_status": "CampaignRequestPending",
        "firmware_name": upgrade.name,
        "firmware_from": upgrade.source,
        "firmware_to": upgrade.target,
        "start_date": tomorrow,
        "end_date": day_after,  # by default the day after the start: a whole day, however late
    }
    held = simulator.state.snapshot()["campaigns"][campaign_id]
    assert (held["campaignName"], held["startDate"], held["endDate"]) == (
        outcome["campaign_name"],
        tomorrow,
        day_after,
    )

    # Deferred: the trigger polls until the campaign is over, then the sensor reports it.
    sensor = VerizonThingSpaceCampaignSensor(
        task_id="wait",
        campaign_id=campaign_id,
        deferrable=True,
        poke_interval=0.05,
        timeout=60,
        fail_on_error=False,
    )
    sensor_context = operator_context("wait")
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(sensor_context)
    trigger = rebuilt(deferred.value.trigger)
    assert isinstance(trigger, VerizonThingSpaceCampaignTrigger)
    counter = PollCounter(monkeypatch, trigger.watch_class)

    async def move_the_clock_past_the_last_device() -> None:
        moved = await asyncio.to_thread(simulator.state.advance_past_pending)
        assert moved is not None and moved[1] == 1  # the one campaign at work

    payload, _ = run_while(trigger, counter, 2, move_the_clock_past_the_last_device)
    assert payload["status"] == "success"
    result = sensor.execute_complete(sensor_context, payload)

    # Exactly what the simulator did, device by device.
    held = simulator.state.snapshot()["campaigns"][campaign_id]
    assert sorted(held["devices"]) == imeis
    statuses = Counter(device["status"] for device in held["devices"].values())
    assert set(statuses) == {"Finished", "UpgradeFailed"}
    assert 0.03 * CAMPAIGN_SIZE <= statuses["UpgradeFailed"] <= 0.2 * CAMPAIGN_SIZE  # about a tenth
    assert result == {
        "campaign_id": campaign_id,
        "status": held["status"],
        "finished": [imei for imei in imeis if held["devices"][imei]["status"] == "Finished"],
        "failed": [
            {"device_id": imei, "status": "UpgradeFailed", "reason": held["devices"][imei]["resultReason"]}
            for imei in imeis
            if held["devices"][imei]["status"] == "UpgradeFailed"
        ],
        "pending": [],
    }
    assert "outcome" not in sensor_context["ti"].xcom  # type: ignore[attr-defined]  # succeeded: pushed once
    fleet = simulator.state.fleet
    for imei in imeis:
        expected = upgrade.target if imei in result["finished"] else upgrade.source
        assert fleet.device(fleet.by_imei(imei))["firmware"] == expected, imei

    # The same sensor in poke mode sees the campaign over at once, with the same report.
    poking = VerizonThingSpaceCampaignSensor(
        task_id="wait_poke", campaign_id=campaign_id, poke_interval=0.05, timeout=5, fail_on_error=False
    )
    assert poking.execute(operator_context("wait_poke")) == result

    # A firmware sync of the upgraded devices returns the new version for each.
    synced, succeeded = run_task(
        VerizonThingSpaceSyncFirmwareOperator(task_id="sync", imeis=result["finished"])
    )
    assert succeeded
    accounted_once(synced, operation="sync_firmware", requested=result["finished"])
    assert synced["devices"]["succeeded"] == result["finished"] and synced["errors"] == []
    assert synced["firmware"] == {imei: upgrade.target for imei in result["finished"]}

    # The operator again, in the same DAG run (a retry, or a cleared task): the same campaign.
    again, succeeded = run_task(
        VerizonThingSpaceFirmwareUpgradeOperator(
            task_id="upgrade", imeis=imeis, firmware_name=upgrade.name, campaign_start_date=tomorrow
        ),
        operator_context("upgrade", try_number=2),
    )
    assert succeeded
    assert again["campaign_id"] == campaign_id
    assert again["devices"]["unchanged"] == imeis  # in the campaign already: nothing sent
    assert list(simulator.state.snapshot()["campaigns"]) == [campaign_id]
    assert simulator.state.snapshot()["counters"]["verizon.campaigns"] == 1  # scheduled once


def large_fleet(
    start_simulator: SimulatorFactory, monkeypatch: pytest.MonkeyPatch, size: int
) -> tuple[Simulator, Firmware, list[str]]:
    """A simulator whose fleet has ``size`` devices one upgrade fits (an upgrade leaves the others
    out of its campaign), that upgrade, and those devices in IMEI order."""
    simulator = start_simulator(devices=18000, session_idle_timeout=30 * 24 * 3600.0)
    for name, value in connection_variables(simulator, requests_per_second=1000).items():
        monkeypatch.setenv(name, value)
    fleet = simulator.state.fleet
    by_upgrade: dict[Firmware, list[str]] = {}
    for index in range(fleet.size):
        device = fleet.device(index)
        if device["protocol"] != "HTTP" and (fits := upgrade_for(device)) is not None:
            by_upgrade.setdefault(fits, []).append(imei_of(index))
    upgrade, fitting = max(by_upgrade.items(), key=lambda item: len(item[1]))
    assert len(fitting) >= size
    return simulator, upgrade, sorted(fitting[:size])


def test_more_devices_than_one_request_need_a_campaign_that_starts_after_today(
    start_simulator: SimulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Devices past the first 1000 go in as adds, which ThingSpace takes only before the start date:
    a campaign starting today is refused before anything is scheduled, one starting tomorrow is not."""
    simulator, upgrade, imeis = large_fleet(start_simulator, monkeypatch, 1200)

    with pytest.raises(IoTFleetValidationError) as refused:
        VerizonThingSpaceFirmwareUpgradeOperator(
            task_id="upgrade", imeis=imeis, firmware_name=upgrade.name
        ).execute(operator_context("upgrade"))
    assert "a campaign of 1200 devices must start after today" in str(refused.value)
    assert simulator.state.snapshot()["counters"].get("verizon.campaigns", 0) == 0

    tomorrow = (simulator.state.now() + timedelta(days=1)).date().isoformat()
    outcome, succeeded = run_task(
        VerizonThingSpaceFirmwareUpgradeOperator(
            task_id="upgrade_later", imeis=imeis, firmware_name=upgrade.name, campaign_start_date=tomorrow
        )
    )
    assert succeeded
    assert accounted_once(outcome, operation="upgrade_firmware", requested=imeis) == dict.fromkeys(
        imeis, "scheduled"
    )
    assert sorted(simulator.state.snapshot()["campaigns"][outcome["campaign_id"]]["devices"]) == imeis


def test_devices_a_campaign_refuses_to_add_are_an_error_not_a_silent_loss(simulator: Simulator) -> None:
    upgrade, imeis = campaign_devices(simulator)
    unknown = imei_of(simulator.config.devices + 7)  # well formed, not in the account
    tomorrow = (simulator.state.now() + timedelta(days=1)).date().isoformat()
    with VerizonThingSpaceHook() as hook:
        campaign = hook.schedule_campaign(
            imeis[:2],
            firmware_name=upgrade.name,
            firmware_from=upgrade.source,
            firmware_to=upgrade.target,
            start_date=tomorrow,
            end_date=tomorrow,
        )
        with pytest.raises(IoTFleetVendorResponseError) as refused:
            hook.add_campaign_devices(campaign["campaign_id"], [imeis[2], unknown])

    assert f"1 of 2 devices could not be added to campaign {campaign['campaign_id']}: {unknown}" in str(
        refused.value
    )
    assert isinstance(refused.value, IoTFleetCampaignDevicesError)
    assert refused.value.devices == [unknown]
    assert refused.value.campaign_status is None  # not asked to cancel: the caller decides
    held = simulator.state.snapshot()["campaigns"][campaign["campaign_id"]]
    assert sorted(held["devices"]) == sorted(imeis[:3])  # the other one went in
    assert held["status"] not in ("CampaignCancelled", "CampaignAborted")


LARGE_CAMPAIGN = 1500


def _add_requests(record: dict[str, object]) -> bool:
    """A request that adds devices to (or removes them from) a campaign: ``PUT .../campaigns/firmware/{acc}/{id}``."""
    path = str(record["path"])
    return record["method"] == "PUT" and "/campaigns/firmware/" in path and not path.endswith("/dates")


@pytest.mark.parametrize("failure", ["refused-device", "answers-lost"])
def test_a_campaign_whose_devices_cannot_all_be_added_is_cancelled(
    start_simulator: SimulatorFactory, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """1,500 devices: the first 1,000 go in with the schedule, the other 500 as an add. When the
    add leaves devices out (ThingSpace refuses one, or its answers are lost twice), the campaign is
    cancelled before its start, so that it never upgrades part of the devices, and the task fails
    with an outcome that names every device left out, and why, and the others as cancelled."""
    simulator, upgrade, imeis = large_fleet(start_simulator, monkeypatch, LARGE_CAMPAIGN)
    if failure == "refused-device":
        # Listed when the upgrade read the devices, gone from the account by the add.
        unknown = imei_of(simulator.config.devices + 7)  # well formed, not in the account
        imeis[1200] = unknown
        read = VerizonThingSpaceHook.read_fota_devices

        def read_as_then(hook: VerizonThingSpaceHook, *args: Any, **kwargs: Any) -> dict[str, Any]:
            found = read(hook, *args, **kwargs)
            if imeis[0] in found:
                found[unknown] = {**found[imeis[0]], "device_id": unknown}
            return found

        monkeypatch.setattr(VerizonThingSpaceHook, "read_fota_devices", read_as_then)
        left_out = [unknown]
        faulted: list[dict[str, object]] = []
    else:
        left_out = imeis[1000:]
        faulted = fault_where(simulator, monkeypatch, "server_error", _add_requests)
    tomorrow = (simulator.state.now() + timedelta(days=1)).date().isoformat()
    operator = VerizonThingSpaceFirmwareUpgradeOperator(
        task_id="upgrade", imeis=imeis, firmware_name=upgrade.name, campaign_start_date=tomorrow
    )

    outcome, succeeded = run_task(operator)

    assert not succeeded
    (campaign_id,) = simulator.state.snapshot()["campaigns"]
    assert (outcome["campaign_id"], outcome["campaign_status"]) == (campaign_id, "CampaignCancelled")
    status = accounted_once(outcome, operation="upgrade_firmware", requested=imeis)
    assert set(status.values()) == {"failed"}  # none scheduled: the campaign will upgrade nobody
    left, cancelled = outcome["errors"]
    assert left["devices"] == left_out
    if failure == "refused-device":
        assert left["message"] == "refused by ThingSpace: Device not found in account."
    else:
        assert (left["http_status"], left["error_code"]) == (500, "FOTA.REQUEST_FAILED.InternalError")
        assert "were lost twice" in left["message"]
        # Lost, read back (the campaign held none of them), sent once more, lost again: no third try.
        assert [record["status"] for record in faulted] == [500, 500]
    assert cancelled["devices"] == [imei for imei in imeis if imei not in left_out]
    assert cancelled["error_code"] == "campaign_cancelled"
    assert cancelled["message"] == (
        f"campaign {campaign_id} was cancelled (CampaignCancelled) because {len(left_out)} of its "
        "devices could not be added: it never runs with part of its devices"
    )
    held = simulator.state.snapshot()["campaigns"][campaign_id]
    assert held["status"] == "CampaignCancelled"
    assert len(held["devices"]) == LARGE_CAMPAIGN - len(left_out)  # the ones added before it stopped
    # Cancelled, it upgrades nothing, however far its dates are passed.
    simulator.state.advance(5 * 24 * 3600)
    assert simulator.state.snapshot()["campaigns"][campaign_id]["status"] == "CampaignCancelled"
    fleet = simulator.state.fleet
    assert not any("firmware" in fleet.changed.get(fleet.by_imei(imei), {}) for imei in imeis)
