"""Test DAG: a deferrable sensor over more devices than travel in its trigger's kwargs.

``wait_online`` waits for the ROMA devices of the run's conf to be online. Its first check finds
them offline, so it defers: the devices are too many for the trigger's kwargs, so the sensor pushes
them to its own XCom ``iotfleet_watch`` and the trigger, which ``dag.test()`` runs in-process, reads
them back through the Task SDK. The test brings the devices online once the trigger polls. One id
is not in the fleet: it is reported unreachable, and (``fail_on_unreachable=False``) the task
succeeds with it in the XCom value.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_provider_iotfleet.sensors.huawei import HuaweiRomaDeviceStatusSensor

DAG_ID = "iotfleet_dagtest_deferred_sensors"


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 0},
    params={"roma_ids": []},
    tags=["iotfleet", "dagtest"],
)
def iotfleet_dagtest_deferred_sensors() -> None:
    HuaweiRomaDeviceStatusSensor(
        task_id="wait_online",
        device_ids="{{ params.roma_ids }}",
        target_online_status="online",
        fail_on_unreachable=False,
        deferrable=True,
        poke_interval=0.2,
        timeout=120,
    )


iotfleet_dagtest_deferred_sensors()
