"""Event-driven: report on a ThingSpace firmware campaign as soon as it is over.

The ``iotfleet_thingspace_campaign_finished`` asset is watched in Airflow's triggerer by
``VerizonThingSpaceCampaignFinishedTrigger``: when the campaign ends (or is cancelled, aborted or
failed, or every device in it is Finished or failed) the trigger fires once, Airflow records an asset
event whose extra carries the trigger's payload, and this DAG runs. Its task reads the campaign's
per-device report and returns what a fleet operator needs next: the devices upgraded, those that
failed and why, and those never upgraded.

The campaign watched is ``IOTFLEET_WATCHED_CAMPAIGN_ID``, read every ``IOTFLEET_WATCH_POLL_SECONDS``
(default 300; both read when the file is parsed: a watcher's trigger is built then). A run without an asset event (started by hand, or ``airflow dags test``)
reports on the campaign its ``campaign_id`` param names.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import Asset, AssetWatcher, Param, dag, get_current_context, task

from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.triggers.verizon import VerizonThingSpaceCampaignFinishedTrigger

WATCHED_CAMPAIGN_ID = os.environ.get("IOTFLEET_WATCHED_CAMPAIGN_ID", "watched-campaign")
#: How often the watcher reads the campaign, s: a campaign runs for hours or days.
POLL_SECONDS = float(os.environ.get("IOTFLEET_WATCH_POLL_SECONDS", "300"))
#: How many failed devices the report names; the counts are always complete.
EXAMPLES = 20

CAMPAIGN_FINISHED = Asset(
    name="iotfleet_thingspace_campaign_finished",
    watchers=[
        AssetWatcher(
            name="thingspace_campaign_finished",
            trigger=VerizonThingSpaceCampaignFinishedTrigger(
                campaign_id=WATCHED_CAMPAIGN_ID, poll_interval=POLL_SECONDS
            ),
        )
    ],
)


@dag(
    schedule=[CAMPAIGN_FINISHED],
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["iotfleet", "example", "verizon", "event-driven"],
    default_args={"owner": "fleet-ops", "retries": 2, "retry_delay": pendulum.duration(minutes=1)},
    params={
        "campaign_id": Param(WATCHED_CAMPAIGN_ID, type="string", description="without an asset event"),
    },
    doc_md=__doc__,
)
def iotfleet_campaign_finished_event() -> None:
    @task
    def report_campaign() -> dict[str, Any]:
        """The campaign's outcome, from the asset event's payload and the campaign's device report."""
        context = get_current_context()
        try:
            events = context["triggering_asset_events"][CAMPAIGN_FINISHED]
        except KeyError:  # a run without an asset event
            events = []
        payloads = [event.extra["payload"] for event in events if event.extra.get("from_trigger")]
        campaign_id = payloads[-1]["campaign_id"] if payloads else context["params"]["campaign_id"]
        account_name = payloads[-1]["account_name"] if payloads else None

        progress = VerizonThingSpaceHook().campaign_progress(campaign_id, account_name=account_name)
        report = {
            "campaign_id": campaign_id,
            "from_event": bool(payloads),
            "status": progress.status,
            "devices": len(progress.devices),
            "finished": len(progress.finished),
            "failed": len(progress.failed),
            "pending": len(progress.pending),
            "failed_examples": progress.failed[:EXAMPLES],
        }
        print(
            f"campaign {campaign_id} ({progress.status}): {report['finished']} of {report['devices']} "
            f"devices upgraded, {report['failed']} failed, {report['pending']} never upgraded"
        )
        for device in report["failed_examples"]:
            print(f"  failed: {device['device_id']} ({device['reason'] or device['status']})")
        return report

    report_campaign()


iotfleet_campaign_finished_event()
