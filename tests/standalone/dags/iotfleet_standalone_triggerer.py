"""Test DAG for ``airflow standalone``: three deferrable sensors resumed by the real triggerer.

Every device id comes from the run's conf (the test picks them from the simulator's fleet), so the
DAG holds no assumption about the fleet's seed:

* Cisco: ``cisco_schedule_deactivation`` deactivates SIMs at ``cisco_effective_date`` (a little in
  the simulator's future: HTTP 202, scheduled), and ``cisco_wait_deactivated`` waits for exactly
  the SIMs the edit scheduled. It defers; the test moves the simulator clock past the date.
* Huawei: ``roma_force_offline`` forces online devices offline; ``roma_wait_offline`` waits for
  the devices the force-offline succeeded on (they are offline at once, so this sensor finishes
  on its first check, without deferring); ``roma_wait_online`` waits for them to reconnect. It
  defers; the test brings the devices back online in the simulator.
* Verizon: ``verizon_wait_firmware`` waits for IMEIs to report ``verizon_firmware``. The first
  IMEI already reports it (matched by the sensor's own first check, then carried into the
  trigger); the others do not until the test has them report it, after the sensor deferred.
* Many devices: ``roma_wait_many_online`` waits for more ROMA devices than travel in a trigger's
  kwargs to be online: the sensor pushes them to its own XCom and the trigger, in the real
  triggerer, reads them back through the Task SDK. The test brings them online once it deferred.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.sensors.cisco import CiscoControlCenterDeviceStatusSensor
from airflow_provider_iotfleet.sensors.huawei import HuaweiRomaDeviceStatusSensor
from airflow_provider_iotfleet.sensors.verizon import VerizonThingSpaceFirmwareSensor

DAG_ID = "iotfleet_standalone_triggerer"
CISCO_TARGET_STATUS = "DEACTIVATED"
#: Seconds between polls, in the sensors' first check and in their triggers.
POKE_INTERVAL = 1
#: Bounds each sensor's wait (the trigger ends it with a timeout event), well inside the test's.
SENSOR_TIMEOUT = 200

#: The sensors that must defer and be resumed by the triggerer.
DEFERRING_SENSORS = (
    "cisco_wait_deactivated",
    "roma_wait_online",
    "verizon_wait_firmware",
    "roma_wait_many_online",
)
#: The sensor that finds its devices matched on its first check and so never defers.
FIRST_CHECK_SENSOR = "roma_wait_offline"
TASKS = (
    "cisco_schedule_deactivation",
    "cisco_wait_deactivated",
    "roma_force_offline",
    "roma_wait_offline",
    "roma_wait_online",
    "verizon_wait_firmware",
    "roma_wait_many_online",
)

sensor_args = {"deferrable": True, "poke_interval": POKE_INTERVAL, "timeout": SENSOR_TIMEOUT}


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 0},
    params={
        "cisco_iccids": [],
        "cisco_effective_date": "set cisco_effective_date in the run conf",
        "roma_ids": [],
        "verizon_imeis": [],
        "verizon_firmware": "set verizon_firmware in the run conf",
        "roma_many_ids": [],
    },
    tags=["iotfleet", "standalone"],
)
def iotfleet_standalone_triggerer() -> None:
    cisco_schedule = CiscoControlCenterEditDevicesOperator(
        task_id="cisco_schedule_deactivation",
        iccids="{{ params.cisco_iccids }}",
        changes={"status": CISCO_TARGET_STATUS},
        effective_date="{{ params.cisco_effective_date }}",
    )
    cisco_wait = CiscoControlCenterDeviceStatusSensor(
        task_id="cisco_wait_deactivated",
        iccids="{{ ti.xcom_pull(task_ids='cisco_schedule_deactivation')['devices']['scheduled'] }}",
        target_status=CISCO_TARGET_STATUS,
        **sensor_args,
    )
    cisco_schedule >> cisco_wait

    force_offline = HuaweiRomaForceOfflineOperator(
        task_id="roma_force_offline", device_ids="{{ params.roma_ids }}"
    )
    forced = "{{ ti.xcom_pull(task_ids='roma_force_offline')['devices']['succeeded'] }}"
    wait_offline = HuaweiRomaDeviceStatusSensor(
        task_id="roma_wait_offline", device_ids=forced, target_online_status="offline", **sensor_args
    )
    wait_online = HuaweiRomaDeviceStatusSensor(
        task_id="roma_wait_online", device_ids=forced, target_online_status="online", **sensor_args
    )
    force_offline >> wait_offline >> wait_online

    VerizonThingSpaceFirmwareSensor(
        task_id="verizon_wait_firmware",
        imeis="{{ params.verizon_imeis }}",
        target_firmware="{{ params.verizon_firmware }}",
        **sensor_args,
    )

    HuaweiRomaDeviceStatusSensor(
        task_id="roma_wait_many_online",
        device_ids="{{ params.roma_many_ids }}",
        target_online_status="online",
        **sensor_args,
    )


iotfleet_standalone_triggerer()
