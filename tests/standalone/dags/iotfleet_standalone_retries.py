"""Test DAGs for ``airflow standalone``: write tasks that fail part-way and are retried by Airflow itself.

* ``iotfleet_standalone_retries``: ``roma_force_offline`` forces online ROMA devices offline, in
  batches of :data:`ROMA_BATCH_SIZE`, and ``cisco_deactivate`` deactivates ACTIVATED SIMs; the test
  has the simulator answer most of their writes with a 5xx for the first tries, so those tries fail
  part-way and Airflow retries them.
* ``iotfleet_standalone_retries_killed``: ``cisco_deactivate`` deactivates SIMs a few a second, one
  at a time, now or at the conf's ``effective_date``; the test kills the task's process part-way,
  and Airflow retries it.

Each write task has ``retries=3`` and a short ``retry_delay``; ``report`` runs whatever happened
(``all_done``) and returns each write task's outcome as ``pull_outcome`` finds it, the way a user's
report would. Every device id comes from the run's conf (the test picks them from the simulated
fleet). The connections (``conftest.py``) point at the session's simulator.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.outcome import pull_outcome

DAG_ID = "iotfleet_standalone_retries"
KILLED_DAG_ID = "iotfleet_standalone_retries_killed"
CISCO_TARGET_STATUS = "DEACTIVATED"
RETRIES = 3
RETRY_DELAY = timedelta(seconds=3)
#: Devices per force-offline request: many requests, so that faults hit some and spare others.
ROMA_BATCH_SIZE = 10
#: The connections of the faulted DAG: no transport retries, so a fault fails the try rather than
#: being absorbed by it (a lost edit is still read back and sent once more, as the hook does), and a
#: pace that keeps each try short.
ROMA_CONN_ID = "huawei_roma_retries"
CISCO_CONN_ID = "cisco_control_center_retries"
#: The killed DAG's connection: one PUT at a time, a few a second, so that the task can be killed
#: with part of its SIMs done.
CISCO_SLOW_CONN_ID = "cisco_control_center_slow"
#: What conftest.py adds to the default connections' extras for each of these connection ids.
CONNECTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    ROMA_CONN_ID: ("huawei_roma_default", {"max_retries": 0, "requests_per_second": 100}),
    CISCO_CONN_ID: (
        "cisco_control_center_default",
        {"max_retries": 0, "requests_per_second": 50, "max_concurrency": 2},
    ),
    CISCO_SLOW_CONN_ID: (
        "cisco_control_center_default",
        {"max_retries": 1, "requests_per_second": 4, "max_concurrency": 1},
    ),
}

TASKS = ("roma_force_offline", "cisco_deactivate", "report")
KILLED_TASKS = ("cisco_deactivate", "report")

write_args = {"retries": RETRIES, "retry_delay": RETRY_DELAY}
dag_args: dict[str, Any] = {
    "schedule": None,
    "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
    "catchup": False,
    "render_template_as_native_obj": True,
    "default_args": {"retries": 0},
    "tags": ["iotfleet", "standalone"],
}


def _report(write_tasks: tuple[str, ...]) -> Any:
    @task(task_id="report", trigger_rule="all_done")
    def report(*, ti: Any) -> dict[str, Any]:
        """Each write task's outcome, as its last try left it (``None``: it pushed none)."""
        outcomes = {task_id: pull_outcome(ti, task_id) for task_id in write_tasks}
        for task_id, outcome in outcomes.items():
            print(f"{task_id}: {outcome.summary() if outcome else 'no outcome'}")
        return {task_id: outcome.to_xcom() if outcome else None for task_id, outcome in outcomes.items()}

    return report()


@dag(dag_id=DAG_ID, params={"roma_ids": [], "cisco_iccids": []}, **dag_args)
def iotfleet_standalone_retries() -> None:
    force_offline = HuaweiRomaForceOfflineOperator(
        task_id="roma_force_offline",
        device_ids="{{ params.roma_ids }}",
        batch_size=ROMA_BATCH_SIZE,
        huawei_roma_conn_id=ROMA_CONN_ID,
        **write_args,
    )
    deactivate = CiscoControlCenterEditDevicesOperator(
        task_id="cisco_deactivate",
        iccids="{{ params.cisco_iccids }}",
        changes={"status": CISCO_TARGET_STATUS},
        cisco_control_center_conn_id=CISCO_CONN_ID,
        **write_args,
    )
    [force_offline, deactivate] >> _report(("roma_force_offline", "cisco_deactivate"))


@dag(dag_id=KILLED_DAG_ID, params={"cisco_iccids": [], "effective_date": None}, **dag_args)
def iotfleet_standalone_retries_killed() -> None:
    deactivate = CiscoControlCenterEditDevicesOperator(
        task_id="cisco_deactivate",
        iccids="{{ params.cisco_iccids }}",
        changes={"status": CISCO_TARGET_STATUS},
        effective_date="{{ params.effective_date }}",
        cisco_control_center_conn_id=CISCO_SLOW_CONN_ID,
        **write_args,
    )
    deactivate >> _report(("cisco_deactivate",))


iotfleet_standalone_retries()
iotfleet_standalone_retries_killed()
