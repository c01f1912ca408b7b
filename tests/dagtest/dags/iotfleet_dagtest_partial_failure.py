"""Test DAG: a Cisco edit fails for one device; an ``all_done`` task reports exactly that device.

The ICCIDs are Luhn-valid, so validation passes; the middle one (fleet index 999_999) is not in the
simulated fleet (200 devices), so Control Center answers 404 for it. The operator tries every
device, pushes its ``outcome`` XCom, then fails the task (``fail_on_error`` is the default).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.outcome import pull_outcome
from airflow_provider_iotfleet.simulator.fleet import iccid_of

DAG_ID = "iotfleet_dagtest_partial_failure"
EDITED = (31, 33)  # both ACTIVATED at start (simulator seed 7)
NOT_IN_FLEET = 999_999
STATUS = "DEACTIVATED"


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["iotfleet", "dagtest"],
)
def iotfleet_dagtest_partial_failure() -> None:
    @task
    def pick_iccids() -> list[str]:
        return [iccid_of(EDITED[0]), iccid_of(NOT_IN_FLEET), iccid_of(EDITED[1])]

    edit = CiscoControlCenterEditDevicesOperator(
        task_id="deactivate", iccids=pick_iccids(), changes={"status": STATUS, "customerCustom2": "dagtest"}
    )

    @task(trigger_rule="all_done")
    def report_failures(**context) -> dict:
        ti = context["ti"]
        outcome = pull_outcome(ti, "deactivate")
        return {
            "requested": outcome.requested,
            "done": sorted(outcome.ids_to_go_on()),
            "failed": {
                device: {"http_status": error.http_status, "error_code": error.error_code}
                for error in outcome.errors
                for device in error.devices
            },
            "lines": outcome.failure_lines(),
            "deactivate_return_value": ti.xcom_pull(task_ids="deactivate"),
        }

    edit >> report_failures()


iotfleet_dagtest_partial_failure()
