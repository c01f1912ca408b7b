"""Enrich Palo Alto Networks IoT Security with the carrier's view of each cellular device.

Runs whenever a new FOTA inventory lands (the ``iotfleet_fota_inventory`` asset). It lists the
SIMs known to Cisco IoT Control Center, reads each SIM's details (IMEI, IMSI, MSISDN, fixed IP,
status, rate plan) in mapped batches that spread over workers, keeps the devices in the inventory,
and pushes them into IoT Security as bulk updates (imei, iccid, imsi, msisdn, ip, apn), one mapped
operator per batch.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, task

from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator

# The asset iotfleet_firmware_inventory writes, named here too rather than imported: importing that
# DAG file would define its DAG a second time, in this file.
FOTA_INVENTORY = Asset(
    name="iotfleet_fota_inventory",
    uri=os.environ.get("IOTFLEET_INVENTORY_ROOT", "file:///tmp/iotfleet/inventory"),
)


@dag(
    schedule=[FOTA_INVENTORY],
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["iotfleet", "example", "cisco", "paloalto"],
    default_args={"owner": "fleet-ops", "retries": 2, "retry_delay": pendulum.duration(minutes=5)},
    params={
        "apn": Param("iot.fleet.apn", type="string", description="The APN the fleet's SIMs use."),
        "sims_per_batch": Param(100, type="integer", minimum=1, maximum=1000),
    },
    doc_md=__doc__,
)
def iotfleet_cellular_enrichment() -> None:
    @task(inlets=[FOTA_INVENTORY])
    def inventory_path(*, inlet_events: Any) -> str:
        """The newest inventory file: the asset event that triggered the run, or the latest one."""
        events = inlet_events[FOTA_INVENTORY]
        if not len(events):
            raise ValueError("no FOTA inventory has been written yet: run iotfleet_firmware_inventory first")
        return str(events[-1].extra["path"])

    @task
    def sim_batches(*, params: dict[str, Any]) -> list[list[str]]:
        """Every SIM Control Center knows, in batches for the mapped lookups."""
        from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook

        with CiscoControlCenterHook() as hook:
            iccids = [sim["iccid"] for sim in hook.search_devices("2000-01-01T00:00:00+00:00")]
        size = params["sims_per_batch"]
        return [iccids[start : start + size] for start in range(0, len(iccids), size)]

    # What the grid shows for each mapped task: "batch 3: 100 SIMs" rather than [2].
    @task(
        map_index_template="batch {{ ti.map_index + 1 }}: {{ '{:,}'.format(task.op_kwargs['iccids'] | length) }} SIMs"
    )
    def carrier_records(iccids: list[str], path: str, *, params: dict[str, Any]) -> list[dict[str, str]]:
        """The IoT Security records of the SIMs in this batch whose device is in the inventory."""
        import json

        from airflow.sdk import ObjectStoragePath

        from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook

        with ObjectStoragePath(path).open("r") as lines:
            in_inventory = {json.loads(line)["device_id"] for line in lines}
        records = []
        with CiscoControlCenterHook() as hook:
            for iccid in iccids:
                sim = hook.get_device(iccid)
                if sim.get("imei") not in in_inventory:
                    continue
                record = {
                    "imei": sim["imei"],
                    "iccid": sim["iccid"],
                    "imsi": sim.get("imsi"),
                    "msisdn": sim.get("msisdn"),
                    "ipAddress": sim.get("fixedIPAddress"),
                    "apn": params["apn"],
                }
                records.append({key: value for key, value in record.items() if value})
        return records

    path = inventory_path()
    records = carrier_records.partial(path=path).expand(iccids=sim_batches())
    # [START howto_operator_paloalto_bulk_update]
    PaloAltoIoTBulkUpdateOperator.partial(
        task_id="push_to_iot_security",
        map_index_template="batch {{ ti.map_index + 1 }}: {{ '{:,}'.format(task.devices | length) }} devices",
    ).expand(devices=records)
    # [END howto_operator_paloalto_bulk_update]


iotfleet_cellular_enrichment()
