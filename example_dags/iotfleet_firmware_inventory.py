"""Daily firmware inventory of a Verizon ThingSpace account.

Every FOTA device of the account is streamed to a JSON Lines file per day (one page in memory at a
time, written atomically), declared as the ``iotfleet_fota_inventory`` asset so that other DAGs can
be scheduled on it; then a task summarises the file: how many devices run which firmware per make
and model, and which devices cannot take a firmware update (not FOTA-eligible, or no license).

Set ``IOTFLEET_INVENTORY_ROOT`` to any ObjectStoragePath URI (``s3://aws_default@bucket/fota``) to
keep inventories elsewhere than ``/tmp``.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import Asset, dag, task

from airflow_provider_iotfleet.operators.verizon import VerizonThingSpaceFotaDevicesOperator

INVENTORY_ROOT = os.environ.get("IOTFLEET_INVENTORY_ROOT", "file:///tmp/iotfleet/inventory")
FOTA_INVENTORY = Asset(name="iotfleet_fota_inventory", uri=INVENTORY_ROOT)
#: How many device ids a summary names per list; the counts are always complete.
EXAMPLES = 20


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["iotfleet", "example", "verizon"],
    default_args={"owner": "fleet-ops", "retries": 2, "retry_delay": pendulum.duration(minutes=5)},
    doc_md=__doc__,
)
def iotfleet_firmware_inventory() -> None:
    # [START howto_operator_verizon_fota_devices]
    listing = VerizonThingSpaceFotaDevicesOperator(
        task_id="list_fota_devices",
        output_path=INVENTORY_ROOT + "/fota-{{ ds }}.jsonl",
        outlets=[FOTA_INVENTORY],
    )
    # [END howto_operator_verizon_fota_devices]

    @task
    def summarise(listing: dict[str, Any]) -> dict[str, Any]:
        """Count firmware versions per make/model and list the devices a campaign cannot reach."""
        import json
        from collections import Counter

        from airflow.sdk import ObjectStoragePath

        firmware: Counter[tuple[str, str, str]] = Counter()
        not_eligible: list[str] = []
        unlicensed: list[str] = []
        with ObjectStoragePath(listing["path"]).open("r") as lines:
            for line in lines:
                device = json.loads(line)
                firmware[(device["make"], device["model"], device["firmware"])] += 1
                if not device["fota_eligible"]:
                    not_eligible.append(device["device_id"])
                if not device["license_assigned"]:
                    unlicensed.append(device["device_id"])
        return {
            "devices": listing["device_count"],
            "path": listing["path"],
            "firmware": [
                {"make": make, "model": model, "firmware": version, "devices": count}
                for (make, model, version), count in sorted(firmware.items())
            ],
            "not_fota_eligible": {"count": len(not_eligible), "examples": not_eligible[:EXAMPLES]},
            "without_license": {"count": len(unlicensed), "examples": unlicensed[:EXAMPLES]},
        }

    summarise(listing.output)


iotfleet_firmware_inventory()
