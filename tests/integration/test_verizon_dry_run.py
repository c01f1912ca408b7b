"""Dry runs of the Verizon firmware sync and upgrade against the simulator, over real sockets.

A dry run sends only reads (the simulator's request log shows no sync, no campaign schedule, add or
cancel), its plan is what the simulator then does when the same operator runs for real right
after, and bad input fails it as it fails the real run, before any request.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.operators.verizon import (
    VerizonThingSpaceFirmwareUpgradeOperator,
    VerizonThingSpaceSyncFirmwareOperator,
)
from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.campaigns import Firmware, upgrade_for
from airflow_provider_iotfleet.simulator.fleet import NEVER_CONNECTED, OFFLINE, ONLINE, imei_of
from tests.simulator_harness import SimulatorFactory, accounted_once, connection_variables, run_task

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def simulator(start_simulator: SimulatorFactory, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    started = start_simulator(
        devices=1500, campaign_devices_per_hour=600, session_idle_timeout=30 * 24 * 3600.0
    )
    for name, value in connection_variables(started, requests_per_second=1000).items():
        monkeypatch.setenv(name, value)
    return started


def _fota_requests(simulator: Simulator) -> list[tuple[str, str]]:
    """``(method, path)`` of every FOTA request so far (logins left out)."""
    return [
        (record["method"], record["path"])
        for record in simulator.state.request_log("verizon")
        if "/fota/" in record["path"]
    ]


def _assert_reads_only(requests: list[tuple[str, str]]) -> None:
    """Every request is a read: a GET, or the POST that lists the devices a body names."""
    assert requests, "the dry run read nothing"
    for method, path in requests:
        assert method == "GET" or (method == "POST" and "/fota/v3/devices/" in path), (method, path)


def _groups(outcome: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Each failed group as a user reads it: code, message, devices, whether they were sent."""
    return [(e["error_code"], e["message"], e["devices"], e["attempted"]) for e in outcome["errors"]]


def _failed(outcome: dict[str, Any]) -> dict[str, str]:
    return {device: error["error_code"] for error in outcome["errors"] for device in error["devices"]}


def test_sync_dry_run_reads_only_and_the_sync_then_does_what_it_planned(simulator: Simulator) -> None:
    fleet = simulator.state.fleet
    online = [i for i in range(200) if fleet.device(i)["online_status"] == ONLINE][:20]
    never = [i for i in range(200) if fleet.device(i)["online_status"] == NEVER_CONNECTED][:4]
    for i in online[::4]:  # upgraded outside ThingSpace: the sync brings the new version in
        fleet.update(i, {"reported_firmware": "SR2.0.0.0-20001"})
    unknown = [imei_of(simulator.config.devices + k) for k in range(2)]
    imeis = [imei_of(i) for i in sorted(online + never)] + unknown
    recorded = {imei_of(i): fleet.device(i)["firmware"] for i in online}
    before = {i: fleet.device(i) for i in range(200)}

    plan, succeeded = run_task(
        VerizonThingSpaceSyncFirmwareOperator(task_id="sync", imeis=imeis, batch_size=7, dry_run="True")
    )

    assert succeeded  # a dry run never fails for devices that would
    accounted_once(plan, operation="sync_firmware", requested=imeis)
    assert plan["dry_run"] is True
    assert plan["devices"]["succeeded"] == [imei for imei in imeis if imei in recorded]
    assert plan["firmware"] == {imei: recorded[imei] for imei in plan["devices"]["succeeded"]}
    assert plan["plan"] == {
        imei: {"firmware": {"from": recorded[imei], "to": None}} for imei in plan["devices"]["succeeded"]
    }
    assert _failed(plan) == {
        **dict.fromkeys((imei_of(i) for i in never), "never_connected"),
        **dict.fromkeys(unknown, "FirmwareVersionUpdateFailed"),
    }
    requests = _fota_requests(simulator)
    _assert_reads_only(requests)
    assert len(requests) == 1  # 26 IMEIs: one listing, whatever the sync's batch size
    assert {i: fleet.device(i) for i in range(200)} == before
    assert simulator.state.snapshot()["counters"].get("verizon.firmware_syncs", 0) == 0

    applied, _ = run_task(
        VerizonThingSpaceSyncFirmwareOperator(task_id="sync", imeis=imeis, batch_size=7, fail_on_error=False)
    )

    assert applied["devices"]["succeeded"] == plan["devices"]["succeeded"]
    assert set(_failed(applied)) == set(_failed(plan))
    for imei in plan["devices"]["succeeded"]:
        assert applied["firmware"][imei] == fleet.device(fleet.by_imei(imei))["reported_firmware"]


def test_sync_dry_run_of_an_offline_device_plans_a_sync_that_then_fails(simulator: Simulator) -> None:
    """What a read cannot tell, documented: whether a device that connected before answers now."""
    fleet = simulator.state.fleet
    offline = imei_of(next(i for i in range(200) if fleet.device(i)["online_status"] == OFFLINE))
    plan, _ = run_task(VerizonThingSpaceSyncFirmwareOperator(task_id="sync", imeis=[offline], dry_run=True))
    assert plan["devices"]["succeeded"] == [offline]


def _upgrade_devices(simulator: Simulator) -> tuple[Firmware, list[str], dict[str, str]]:
    """The most common upgrade among FOTA-eligible devices, 12 devices it upgrades, and devices it
    does not: of another make and model, on other firmware, or not FOTA-eligible (HTTP devices the
    upgrade otherwise fits) (expected error code each)."""
    fleet = simulator.state.fleet
    eligible = [i for i in range(fleet.size) if fleet.device(i)["protocol"] != "HTTP"]
    by_upgrade: dict[Firmware, list[int]] = {}
    for i in eligible:
        if (upgrade := upgrade_for(fleet.device(i))) is not None:
            by_upgrade.setdefault(upgrade, []).append(i)
    upgrade, matching = max(by_upgrade.items(), key=lambda item: len(item[1]))
    other_model = [i for i in eligible if fleet.device(i)["model"] != upgrade.model][:3]
    other_firmware = [
        i
        for i in eligible
        if fleet.device(i)["model"] == upgrade.model and fleet.device(i)["firmware"] != upgrade.source
    ][:3]
    refused = {imei_of(i): "wrong_make_model" for i in other_model}
    refused.update((imei_of(i), "other_firmware") for i in other_firmware)
    http = [
        i
        for i in range(fleet.size)
        if fleet.device(i)["protocol"] == "HTTP" and upgrade_for(fleet.device(i)) == upgrade
    ][:2]
    assert http, "the simulator's fleet has HTTP devices this upgrade would otherwise fit"
    refused.update((imei_of(i), "not_fota_eligible") for i in http)
    return upgrade, [imei_of(i) for i in matching[:12]], refused


def test_upgrade_dry_run_reads_only_and_the_campaign_then_does_what_it_planned(simulator: Simulator) -> None:
    upgrade, eligible, refused = _upgrade_devices(simulator)
    imeis = sorted([*eligible, *refused])
    tomorrow = (simulator.state.now() + timedelta(days=1)).date().isoformat()

    def operator(dry_run: bool) -> VerizonThingSpaceFirmwareUpgradeOperator:
        return VerizonThingSpaceFirmwareUpgradeOperator(
            task_id="upgrade",
            imeis=imeis,
            firmware_name=upgrade.name,
            campaign_start_date=tomorrow,
            time_windows=[[0, 24]],
            dry_run=dry_run,
        )

    plan, succeeded = run_task(operator(True))

    assert succeeded
    accounted_once(plan, operation="upgrade_firmware", requested=imeis)
    assert plan["dry_run"] is True
    assert plan["devices"]["scheduled"] == sorted(eligible)
    assert plan["plan"] == {
        imei: {"firmware": {"from": upgrade.source, "to": upgrade.target}} for imei in sorted(eligible)
    }
    assert _failed(plan) == refused
    messages = {error["error_code"]: error["message"] for error in plan["errors"]}
    assert upgrade.model in messages["wrong_make_model"]
    assert f"not {upgrade.source}" in messages["other_firmware"]
    assert (plan["campaign_id"], plan["campaign_reused"], plan["firmware_name"]) == (
        None,
        False,
        upgrade.name,
    )
    assert (plan["start_date"], plan["time_windows"]) == (tomorrow, [[0, 24]])
    _assert_reads_only(_fota_requests(simulator))
    assert simulator.state.snapshot()["campaigns"] == {}

    applied, succeeded = run_task(operator(False))

    assert not succeeded  # the devices that cannot upgrade fail the task, as the plan said
    assert (applied["start_date"], applied["end_date"]) == (plan["start_date"], plan["end_date"])
    # The apply says what the plan said: the same devices scheduled, the same failed groups.
    assert applied["devices"]["scheduled"] == plan["devices"]["scheduled"]
    assert _groups(applied) == _groups(plan)
    simulator.state.advance_past_pending()
    held = simulator.state.snapshot()["campaigns"][applied["campaign_id"]]["devices"]
    assert sorted(held) == plan["devices"]["scheduled"]  # the others were left out of the campaign
    finished = sorted(imei for imei, device in held.items() if device["status"] == "Finished")
    assert finished == plan["devices"]["scheduled"]  # exactly the devices the plan said would upgrade
    fleet = simulator.state.fleet
    assert all(fleet.device(fleet.by_imei(imei))["firmware"] == upgrade.target for imei in finished)


def test_upgrade_of_imeis_the_account_lacks_leaves_them_out_in_the_plan_and_the_apply(
    simulator: Simulator,
) -> None:
    upgrade, eligible, _ = _upgrade_devices(simulator)
    unknown = imei_of(simulator.config.devices + 1)
    imeis = [*eligible[:3], unknown]

    def operator(dry_run: bool) -> VerizonThingSpaceFirmwareUpgradeOperator:
        return VerizonThingSpaceFirmwareUpgradeOperator(
            task_id="upgrade", imeis=imeis, firmware_name=upgrade.name, dry_run=dry_run
        )

    plan, _ = run_task(operator(True))
    assert plan["devices"]["scheduled"] == eligible[:3]
    assert _failed(plan) == {unknown: "not_in_account"}
    applied, succeeded = run_task(operator(False))
    assert not succeeded
    assert applied["devices"]["scheduled"] == plan["devices"]["scheduled"]
    assert _groups(applied) == _groups(plan)
    held = simulator.state.snapshot()["campaigns"][applied["campaign_id"]]["devices"]
    assert sorted(held) == sorted(eligible[:3])  # scheduled without the IMEI ThingSpace would refuse


@pytest.mark.parametrize(
    "bad",
    [
        {"imeis": ["35000000000000"]},
        {"campaign_start_date": "2026-13-01"},
        {"firmware_name": None},
        {"campaign_end_date": "2020-01-01", "campaign_start_date": "2020-01-01"},
        {"firmware_name": "no-such-firmware"},
    ],
)
def test_bad_input_fails_the_upgrade_dry_run_as_it_fails_the_real_run(
    simulator: Simulator, bad: dict[str, Any]
) -> None:
    upgrade, eligible, _ = _upgrade_devices(simulator)
    arguments = {"imeis": eligible[:2], "firmware_name": upgrade.name, **bad}
    raised = []
    for dry_run in (True, False):
        with pytest.raises(IoTFleetValidationError) as error:
            run_task(
                VerizonThingSpaceFirmwareUpgradeOperator(task_id="upgrade", dry_run=dry_run, **arguments)
            )
        raised.append(str(error.value))
    assert raised[0] == raised[1]
    assert all(method == "GET" for method, _ in _fota_requests(simulator))
    assert simulator.state.snapshot()["campaigns"] == {}


def test_bad_input_fails_the_sync_dry_run_as_it_fails_the_real_run(simulator: Simulator) -> None:
    raised = []
    for dry_run in (True, False):
        with pytest.raises(IoTFleetValidationError) as error:
            run_task(
                VerizonThingSpaceSyncFirmwareOperator(
                    task_id="sync", imeis=[imei_of(1), "not-an-imei"], dry_run=dry_run
                )
            )
        raised.append(str(error.value))
    assert raised[0] == raised[1]
    assert _fota_requests(simulator) == []
