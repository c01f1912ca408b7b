"""A maintenance window across three platforms, each step waiting for the last to take effect.

1. Huawei ROMA Connect: force the devices offline, then wait (deferrable) until they are.
2. Verizon ThingSpace: schedule a firmware upgrade campaign for the devices (on the logical
   date's day, or today if it has passed), wait (deferrable) until each device's upgrade finished
   or failed, sync the firmware versions of those upgraded, then wait (deferrable) until each
   reports the new firmware.
3. Cisco IoT Control Center: schedule a SIM status change for later (``effective_date``), then
   wait (deferrable) until Control Center has applied it.
4. Report, whatever happened before (``all_done``): every operator's outcome and every sensor's
   result, the steps whose task failed, and what failed, one line per distinct error with the
   devices it hit.
5. Check: fail the run, once the report is written, when a step failed or any device did not go
   through, so that the run shows failed and its alerts fire.

Every operator returns the same outcome shape (``airflow_provider_iotfleet.outcome``), so the
report reads them all the same way, whichever vendor they come from.

Trigger it from the UI with your own device ids, status, delay and firmware upgrade (the DAG's
params; ``firmware_name`` is one of the account's available upgrades, for the devices' make and
model and their current firmware); the defaults are devices of the provider's simulator
(``make simulator``).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, chain, dag, task

from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.operators.verizon import (
    VerizonThingSpaceFirmwareUpgradeOperator,
    VerizonThingSpaceSyncFirmwareOperator,
)
from airflow_provider_iotfleet.outcome import FleetOutcome, pull_outcome
from airflow_provider_iotfleet.sensors.cisco import CiscoControlCenterDeviceStatusSensor
from airflow_provider_iotfleet.sensors.huawei import HuaweiRomaDeviceStatusSensor
from airflow_provider_iotfleet.sensors.verizon import (
    VerizonThingSpaceCampaignSensor,
    VerizonThingSpaceFirmwareSensor,
)

#: Task states that mean a step did not do its part.
FAILED_STATES = ("failed", "upstream_failed")
WAIT = {"deferrable": True, "poke_interval": 10, "timeout": 6 * 3600}


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["iotfleet", "example", "huawei", "cisco", "verizon"],
    default_args={"owner": "fleet-ops", "retries": 1, "retry_delay": pendulum.duration(minutes=2)},
    params={
        "roma_device_ids": Param([700002, 700003, 700004], type="array", items={"type": "integer"}),
        "iccids": Param(
            ["89012600000000000052", "89012600000000000060"], type="array", items={"type": "string"}
        ),
        "sim_status": Param(
            "DEACTIVATED",
            enum=["ACTIVATED", "DEACTIVATED", "RETIRED"],
            description="The SIMs' status after the window.",
        ),
        "effective_in_minutes": Param(30, type="integer", minimum=1, maximum=180 * 24 * 60),
        "imeis": Param(["356908000000335", "356908000000640"], type="array", items={"type": "string"}),
        "firmware_name": Param(
            "GM01Q-SR1.2.0.0-10657-to-SR1.2.1.0-10702",
            type="string",
            description="The upgrade, by its name in the account's firmware list.",
        ),
    },
    doc_md=__doc__,
)
def iotfleet_maintenance_window() -> None:
    # [START howto_operator_huawei_force_offline]
    force_offline = HuaweiRomaForceOfflineOperator(
        task_id="force_offline", device_ids="{{ params.roma_device_ids }}", fail_on_error=False
    )
    # [END howto_operator_huawei_force_offline]
    # [START howto_sensor_huawei_device_status]
    offline = HuaweiRomaDeviceStatusSensor(
        task_id="wait_offline",
        device_ids="{{ params.roma_device_ids }}",
        target_online_status="offline",
        **WAIT,
    )
    # [END howto_sensor_huawei_device_status]

    # [START howto_operator_verizon_firmware_upgrade]
    upgrade = VerizonThingSpaceFirmwareUpgradeOperator(
        task_id="upgrade_firmware",
        imeis="{{ params.imeis }}",
        firmware_name="{{ params.firmware_name }}",
        # Devices the firmware is not for are left out of the campaign and in the report; the
        # window goes on with the others.
        fail_on_error=False,
        # A failed task (or a killed one) leaves no campaign upgrading devices behind it.
        cancel_on_failure=True,
    )
    # [END howto_operator_verizon_firmware_upgrade]
    # [START howto_sensor_verizon_campaign]
    upgraded = VerizonThingSpaceCampaignSensor(
        task_id="wait_upgrade",
        campaign_id="{{ ti.xcom_pull(task_ids='upgrade_firmware')['campaign_id'] }}",
        # Devices whose upgrade failed are in the report; the window goes on with the others.
        fail_on_error=False,
        **{**WAIT, "timeout": 2 * 24 * 3600},
    )
    # [END howto_sensor_verizon_campaign]

    @task
    def devices_upgraded(campaign: dict[str, Any]) -> list[str]:
        """The devices whose upgrade finished: the ones to sync and to wait for."""
        return campaign["finished"]

    finished = devices_upgraded(upgraded.output)
    # [START howto_operator_verizon_sync_firmware]
    sync = VerizonThingSpaceSyncFirmwareOperator(task_id="sync_firmware", imeis=finished)
    # [END howto_operator_verizon_sync_firmware]
    # [START howto_sensor_verizon_firmware]
    firmware = VerizonThingSpaceFirmwareSensor(
        task_id="wait_firmware",
        imeis=finished,
        target_firmware="{{ ti.xcom_pull(task_ids='upgrade_firmware')['firmware_to'] }}",
        **WAIT,
    )
    # [END howto_sensor_verizon_firmware]

    @task
    def effective_date(*, params: dict[str, Any]) -> str:
        """When the SIM change takes effect: computed when the firmware is done, not at the start."""
        return pendulum.now("UTC").add(minutes=params["effective_in_minutes"]).isoformat()

    when = effective_date()
    # [START howto_operator_cisco_edit_devices_scheduled]
    schedule_sim_change = CiscoControlCenterEditDevicesOperator(
        task_id="schedule_sim_change",
        iccids="{{ params.iccids }}",
        changes={"status": "{{ params.sim_status }}"},
        effective_date=when,
        skip_unchanged=True,
        # Control Center shows no pending change, so a retry could not tell what an earlier try had
        # scheduled and would schedule it twice: SIMs it could not schedule do not fail the task
        # (Airflow would retry it); the report lists them, and the wait is for the others.
        fail_on_error=False,
    )
    # [END howto_operator_cisco_edit_devices_scheduled]

    @task
    def sims_to_wait_for(outcome: dict[str, Any]) -> list[Any]:
        """The SIMs whose change Control Center took (scheduled, applied, or already so)."""
        return FleetOutcome.from_xcom(outcome).ids_to_go_on()

    # [START howto_sensor_cisco_device_status]
    sims_changed = CiscoControlCenterDeviceStatusSensor(
        task_id="wait_sim_change",
        iccids=sims_to_wait_for(schedule_sim_change.output),
        target_status="{{ params.sim_status }}",
        **WAIT,
    )
    # [END howto_sensor_cisco_device_status]

    @task(trigger_rule="all_done")
    def report(*, ti: Any) -> dict[str, Any]:
        """Every step's result, and what failed in each, one line per distinct error."""
        operators = ("force_offline", "upgrade_firmware", "sync_firmware", "schedule_sim_change")
        outcomes = {task_id: pull_outcome(ti, task_id) for task_id in operators}
        waits = {
            # A sensor's result, under "outcome" had it failed the task (an unreachable device, a
            # campaign that left devices behind), else its return value.
            name: ti.xcom_pull(task_ids=name, key="outcome") or ti.xcom_pull(task_ids=name)
            for name in ("wait_offline", "wait_upgrade", "wait_firmware", "wait_sim_change")
        }
        failed = {task_id: outcome.failure_lines() for task_id, outcome in outcomes.items() if outcome}
        upgrade = waits["wait_upgrade"] or {}
        failed["wait_upgrade"] = [
            f"{f['device_id']}: {f['status']} {f['reason']}" for f in upgrade.get("failed", [])
        ] + [f"{imei}: not upgraded ({upgrade['status']})" for imei in upgrade.get("pending", [])]
        for name in ("wait_offline", "wait_firmware", "wait_sim_change"):
            unreachable = (waits[name] or {}).get("unreachable") or {}
            if unreachable:  # devices that could never reach the target, each with why
                failed[name] = [f"{device}: unreachable ({why})" for device, why in unreachable.items()]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        failed_steps = sorted(step for step, state in states.items() if state in FAILED_STATES)
        for task_id, outcome in outcomes.items():
            print(f"{task_id}: {outcome.summary() if outcome else 'no outcome (did not run)'}")
        if failed_steps:
            print(f"steps failed: {', '.join(failed_steps)}")
        return {
            "steps": {task_id: outcome.counts if outcome else None for task_id, outcome in outcomes.items()},
            "failed": failed,
            "waits_done": {name: value is not None for name, value in waits.items()},
            "failed_steps": failed_steps,
        }

    @task
    def check_window(report: dict[str, Any]) -> None:
        """Fail the run when a step failed or a device did not go through (the report is written)."""
        problems = []
        if report["failed_steps"]:
            problems.append(f"steps failed: {', '.join(report['failed_steps'])}")
        with_failures = [step for step, lines in report["failed"].items() if lines]
        if with_failures:
            problems.append(f"devices failed in: {', '.join(with_failures)}")
        if problems:
            raise RuntimeError(
                f"the maintenance window did not go through: {'; '.join(problems)} (see the report)"
            )

    written = report()
    chain(
        force_offline,
        offline,
        upgrade,
        upgraded,
        finished,
        sync,
        firmware,
        when,
        schedule_sim_change,
        sims_changed,
        written,
    )
    check_window(written)


iotfleet_maintenance_window()
