"""Test DAG for the cluster: one deferrable sensor waiting on many ROMA devices (10,000 in the test).

The device ids come from the run's conf. The sensor checks once, then defers: its trigger (in the
triggerer) reads the ids back from the sensor's own XCom, so the trigger row that PostgreSQL holds
stays small however many devices there are.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_provider_iotfleet.sensors.huawei import HuaweiRomaDeviceStatusSensor

DAG_ID = "iotfleet_cluster_many"
TASK_ID = "roma_wait_many_online"


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    params={"roma_ids": []},
)
def iotfleet_cluster_many() -> None:
    HuaweiRomaDeviceStatusSensor(
        task_id=TASK_ID,
        device_ids="{{ params.roma_ids }}",
        target_online_status="online",
        deferrable=True,
        poke_interval=2,
        timeout=300,
    )


iotfleet_cluster_many()
