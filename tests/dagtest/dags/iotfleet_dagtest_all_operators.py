"""Test DAG: every fleet operator fed from an upstream task's XCom, summed up by a downstream task.

Device groups are disjoint per vendor (Huawei's force-offline and Verizon's firmware sync both
depend on a device being online), so the operators' order does not matter. Index 999_999 is a
valid device outside the simulated fleet (the tests use a fleet of 200 devices).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator
from airflow_provider_iotfleet.operators.verizon import (
    VerizonThingSpaceFotaDevicesOperator,
    VerizonThingSpaceSyncFirmwareOperator,
)
from airflow_provider_iotfleet.outcome import pull_outcome
from airflow_provider_iotfleet.simulator.fleet import ROMA_ID_BASE, iccid_of, imei_of

DAG_ID = "iotfleet_dagtest_all_operators"
NOT_IN_FLEET = 999_999
APN = "iot.dagtest.example"
RATE_PLAN = "IOT-1GB"
SCHEDULED_STATUS = "DEACTIVATED"
FOTA_INVENTORY = Asset(name="iotfleet_dagtest_fota_inventory", uri="file:///iotfleet-dagtest/fota-inventory")

# Fleet indices per vendor (simulator seed 7: 6 and 7 are online, 11 offline; 17, 19 and 20 online;
# 3 and 5 are on IOT-10GB and 4 on IOT-100MB). The tests check these starting states.
PALOALTO = (0, 1, 2)
CISCO = (3, 4, 5)
#: Deactivated one day after the run's logical date (a scheduled edit, HTTP 202); both ACTIVATED.
CISCO_SCHEDULED = (21, 23)
HUAWEI = (6, 7, 11)
FOTA = (8, 9, 10)
SYNC = (17, 19, 20)
#: Forced offline by the task whose ids come from a Jinja template over params, not from XCom.
HUAWEI_FROM_PARAMS = (14, 16)

OPERATOR_TASKS = (
    "paloalto_update",
    "cisco_edit",
    "cisco_schedule",
    "huawei_offline",
    "huawei_offline_from_params",
    "verizon_fota",
    "verizon_fota_account",
    "verizon_sync",
)
#: The operators that return the one outcome shape (the FOTA listings only read).
WRITE_TASKS = tuple(task_id for task_id in OPERATOR_TASKS if not task_id.startswith("verizon_fota"))


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    params={
        "out_dir": "/nonexistent/set-out_dir-in-the-run-conf",
        "roma_ids": [ROMA_ID_BASE + i for i in HUAWEI_FROM_PARAMS],
    },
    tags=["iotfleet", "dagtest"],
)
def iotfleet_dagtest_all_operators() -> None:
    @task(multiple_outputs=True)
    def pick_devices() -> dict[str, list]:
        return {
            "paloalto_devices": [
                {"imei": imei_of(PALOALTO[0]), "apn": APN, "SessionEvtType": "start"},
                {"iccid": iccid_of(PALOALTO[1]), "apn": APN},
                {"msisdn": f"1555{PALOALTO[2]:07d}", "apn": APN},
                {"imei": imei_of(NOT_IN_FLEET), "apn": APN},
            ],
            # The first ICCID twice: sent once.
            "iccids": [iccid_of(i) for i in (*CISCO, CISCO[0])],
            "scheduled_iccids": [iccid_of(i) for i in CISCO_SCHEDULED],
            "roma_ids": [ROMA_ID_BASE + i for i in HUAWEI],
            "fota_imeis": [*(imei_of(i) for i in FOTA), imei_of(NOT_IN_FLEET)],
            "sync_imeis": [imei_of(i) for i in SYNC],
        }

    devices = pick_devices()

    paloalto = PaloAltoIoTBulkUpdateOperator(
        task_id="paloalto_update", devices=devices["paloalto_devices"], batch_size=2
    )
    cisco = CiscoControlCenterEditDevicesOperator(
        task_id="cisco_edit",
        iccids=devices["iccids"],
        changes={"ratePlan": RATE_PLAN, "operatorCustom1": "{{ run_id }}"},
    )
    # Rendered natively, the template gives a pendulum DateTime, not a string.
    cisco_schedule = CiscoControlCenterEditDevicesOperator(
        task_id="cisco_schedule",
        iccids=devices["scheduled_iccids"],
        changes={"status": SCHEDULED_STATUS},
        effective_date="{{ logical_date.add(days=1) }}",
    )
    huawei = HuaweiRomaForceOfflineOperator(
        task_id="huawei_offline", device_ids=devices["roma_ids"], batch_size=2, fail_on_error=False
    )
    huawei_from_params = HuaweiRomaForceOfflineOperator(
        task_id="huawei_offline_from_params", device_ids="{{ params.roma_ids }}"
    )
    fota = VerizonThingSpaceFotaDevicesOperator(
        task_id="verizon_fota",
        imeis=devices["fota_imeis"],
        output_path="{{ params.out_dir }}/fota/{{ ds }}/{{ run_id }}.jsonl",
        outlets=[FOTA_INVENTORY],
    )
    # The whole account, page by page, to an ObjectStoragePath URI.
    fota_account = VerizonThingSpaceFotaDevicesOperator(
        task_id="verizon_fota_account", output_path="file://{{ params.out_dir }}/account/{{ ds }}.jsonl"
    )
    sync = VerizonThingSpaceSyncFirmwareOperator(task_id="verizon_sync", imeis=devices["sync_imeis"])

    @task
    def summarize(**context) -> dict:
        ti = context["ti"]
        # Pushed once: the write operators' outcome is their return value, with nothing under "outcome".
        summary: dict = {
            "pushed_once": {
                task_id: ti.xcom_pull(task_ids=task_id, key="outcome") is None for task_id in OPERATOR_TASKS
            }
        }
        outcomes = {task_id: pull_outcome(ti, task_id) for task_id in WRITE_TASKS}
        summary["counts"] = {task_id: outcome.counts for task_id, outcome in outcomes.items()}
        summary["paloalto"] = {"updated": outcomes["paloalto_update"].details["updated"]}
        summary["go_on"] = {task_id: sorted(outcome.ids_to_go_on()) for task_id, outcome in outcomes.items()}
        fota = ti.xcom_pull(task_ids="verizon_fota")
        summary["fota"] = {key: fota[key] for key in ("device_count", "path", "missing", "requested")}
        account = ti.xcom_pull(task_ids="verizon_fota_account")
        summary["fota_account"] = {key: account[key] for key in ("device_count", "pages", "path")}
        return summary

    [paloalto, cisco, cisco_schedule, huawei, huawei_from_params, fota, fota_account, sync] >> summarize()


iotfleet_dagtest_all_operators()
