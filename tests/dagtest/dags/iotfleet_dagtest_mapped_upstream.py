"""Test DAG: operators take their device lists from a dynamically mapped upstream task.

The operators receive the mapped task's output as a lazy sequence of its map indices' XComs (not a
list), which they must read like any list.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.operators.verizon import VerizonThingSpaceSyncFirmwareOperator
from airflow_provider_iotfleet.simulator.fleet import ROMA_ID_BASE, imei_of

DAG_ID = "iotfleet_dagtest_mapped_upstream"
# All online at start (simulator seed 7).
HUAWEI = (44, 45)
SYNC = (46, 47)


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["iotfleet", "dagtest"],
)
def iotfleet_dagtest_mapped_upstream() -> None:
    @task
    def roma_id(index: int) -> int:
        return ROMA_ID_BASE + index

    @task
    def imei(index: int) -> str:
        return imei_of(index)

    HuaweiRomaForceOfflineOperator(task_id="huawei_offline", device_ids=roma_id.expand(index=list(HUAWEI)))
    VerizonThingSpaceSyncFirmwareOperator(task_id="verizon_sync", imeis=imei.expand(index=list(SYNC)))


iotfleet_dagtest_mapped_upstream()
