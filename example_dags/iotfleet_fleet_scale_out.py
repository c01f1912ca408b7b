"""Tag a whole Control Center account, 20,000 SIMs and more, in mapped batches across workers.

One task editing 20,000 SIMs one ``PUT`` at a time is bound by its own calls in flight: at 8 at once
and 100 ms per call it cannot go faster than 80 a second. Mapped over batches, the same change runs
on several workers at once; what keeps them under the account's rate limit together is a pool of
``PARALLEL_TASKS`` slots, so that no more of them run at once, and ``rate_limit_share``, so that
each uses only its part of the connection's ``requests_per_second``.

Before the first run, create the pool (the UI's Admin > Pools, or the CLI)::

    airflow pools set iotfleet_cisco_tenant 4 "Cisco Control Center account: tasks at once"

Change ``PARALLEL_TASKS`` and the pool's slots together: the share is fixed when the DAG is parsed.
The same DAG runs unchanged on the Celery or Kubernetes executors: the pool and the shares hold
across every worker, whichever machine runs the task.

The change here is harmless on purpose: it writes a campaign label into ``accountCustom1``.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.outcome import FleetOutcome

#: The pool that bounds the tasks running at once against the account, and its slots.
POOL = "iotfleet_cisco_tenant"
PARALLEL_TASKS = 4


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["iotfleet", "example", "cisco", "scale-out"],
    default_args={"owner": "fleet-ops", "retries": 2, "retry_delay": pendulum.duration(minutes=1)},
    params={
        "label": Param(
            "maintenance-wave-1", type="string", minLength=1, description="Written to accountCustom1."
        ),
        "sims_per_batch": Param(1000, type="integer", minimum=1, maximum=10000),
    },
    doc_md=__doc__,
)
def iotfleet_fleet_scale_out() -> None:
    @task
    def sim_batches(*, params: dict[str, Any]) -> list[list[str]]:
        """Every SIM of the account, in batches: one mapped edit task each."""
        from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook

        with CiscoControlCenterHook() as hook:
            iccids = [sim["iccid"] for sim in hook.search_devices("2000-01-01T00:00:00+00:00")]
        size = params["sims_per_batch"]
        return [iccids[start : start + size] for start in range(0, len(iccids), size)]

    # [START howto_operator_cisco_edit_devices_mapped]
    label = CiscoControlCenterEditDevicesOperator.partial(
        task_id="label_batch",
        # What the grid shows for each mapped task: "batch 3: 1,000 SIMs" rather than [2].
        map_index_template="batch {{ ti.map_index + 1 }}: {{ '{:,}'.format(task.iccids | length) }} SIMs",
        changes={"accountCustom1": "{{ params.label }}"},
        pool=POOL,
        rate_limit_share=1 / PARALLEL_TASKS,
        # A failed SIM fails the report below, not its batch: a retry would send all 999 others again.
        fail_on_error=False,
    ).expand(iccids=sim_batches())
    # [END howto_operator_cisco_edit_devices_mapped]

    @task
    def report(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
        """How many SIMs each way, over every batch; fails naming the failures, if any."""
        outcome = FleetOutcome.combine(outcomes)
        print(f"{len(outcomes)} batches of {outcome.requested} SIMs: {outcome.summary()}")
        if outcome.not_done:
            lines = "; ".join(outcome.failure_lines())
            raise RuntimeError(f"{outcome.not_done} of {outcome.requested} SIMs were not labelled: {lines}")
        return {"batches": len(outcomes), **outcome.counts}

    report(label.output)


iotfleet_fleet_scale_out()
