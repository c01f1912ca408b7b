"""The planned SIM change (``example_dags/iotfleet_planned_sim_change.py``) under ``dag.test()`` against
the simulator, along each of its branches, its approval answered through Airflow's own HITL API
route (``scripts/approval.py``), as a person in the UI would:

* approved (the session's run of every example DAG): the plan changes nothing, the apply changes
  exactly the SIMs the plan listed, the verification sees them all, nothing is rolled back;
* rejected: the apply, the verification and the rollback are skipped, and nothing is written;
* approved, and the verification fails (it waits for a status the change does not reach, briefly):
  the rollback puts every changed SIM back at its previous values and writes no other SIM.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import iccid_of
from tests.dag_runs import bundle_environment, read_dag_run
from tests.example_runs import (
    EXAMPLE_DAGS,
    FLEET_SIZE,
    PLANNED,
    PLANNED_SIMS,
    ExampleRun,
    ExampleRuns,
    load_dag,
    running_simulator,
)
from tests.fakes import assert_outcome_shape, load_script

#: The tasks after the approval, which a rejection skips.
AFTER_APPROVAL = ["apply", "sims_to_verify", "verify", "rollback_edits", "rollback"]
#: SIMs the rejected and rolled-back runs take.
SIMS = 60
#: How long the verification that cannot succeed waits, s.
SHORT_VERIFY = 3

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600, method="thread")]


def _status(sim: Simulator) -> dict[str, str]:
    fleet = sim.state.fleet
    return {iccid_of(i): fleet.device(i)["status"] for i in range(FLEET_SIZE)}


@dataclass
class PlannedRun:
    simulator: Simulator
    result: ExampleRun
    answered: list[Any]
    #: Each SIM's status before the run.
    before: dict[str, str]


def _run(option: str, *, failing_verify: bool = False) -> Iterator[PlannedRun]:
    """Run the DAG on ``SIMS`` SIMs of a simulator of its own, its approval answered ``option``;
    with ``failing_verify``, the verification waits ``SHORT_VERIFY`` s for ``RETIRED``, which the
    change (to ``DEACTIVATED``) does not reach."""
    approval = load_script("approval")
    with running_simulator() as sim, pytest.MonkeyPatch.context() as mp:
        bundle_environment(mp, EXAMPLE_DAGS)
        before = _status(sim)
        dag = load_dag(PLANNED)
        for task in dag.tasks:
            task.retry_delay = timedelta(0)
        if failing_verify:
            verify = dag.task_dict["verify"]
            verify.target_status, verify.timeout = "RETIRED", SHORT_VERIFY
        with approval.Answerer(PLANNED, option) as answerer:
            dag_run = dag.test(
                logical_date=datetime(2026, 11, 6, 6, 0, tzinfo=UTC),
                run_conf={"sim_count": SIMS, "sim_status": "DEACTIVATED"},
            )
        yield PlannedRun(sim, read_dag_run(dag_run), answerer.answered, before)


@pytest.fixture(scope="module")
def rejected(airflow_db: None) -> Iterator[PlannedRun]:
    yield from _run("Reject")


@pytest.fixture(scope="module")
def rolled_back(airflow_db: None) -> Iterator[PlannedRun]:
    yield from _run("Approve", failing_verify=True)


def _planned_changes(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {iccid: fields["status"] for iccid, fields in plan["plan"].items()}


def test_approved_the_apply_changes_exactly_what_the_plan_listed(example_runs: ExampleRuns) -> None:
    run = example_runs.runs[PLANNED]
    sim, result = run.simulator, run.result
    fleet = sim.state.fleet
    iccids = [iccid_of(i) for i in range(PLANNED_SIMS)]

    assert result.states == {
        "sims_to_change": "success",
        "plan": "success",
        "summarise_plan": "success",
        "approve": "success",
        "apply": "success",
        "sims_to_verify": "success",
        "verify": "success",
        "rollback_edits": "skipped",
        "rollback": "skipped",
        "report": "success",
    }
    assert result.state == "success"
    # Answered once, through the API route, showing the summary.
    [answered] = run.answered
    assert (answered.task_id, answered.option) == ("approve", "Approve")
    summary = result.xcom("summarise_plan")
    assert answered.body == summary["text"]
    assert answered.subject == f"Set DEACTIVATED on the SIMs of run {result.run_id}?"
    assert result.xcom("approve")["chosen_options"] == ["Approve"]

    plan = result.xcom("plan")
    assert_outcome_shape(plan, operation="edit_devices", requested=iccids)
    assert plan["dry_run"] is True
    planned = _planned_changes(plan)
    assert plan["devices"]["succeeded"] == list(planned)
    assert 0 < len(planned) < PLANNED_SIMS  # some SIMs were DEACTIVATED already
    assert all(
        change["to"] == "DEACTIVATED" and change["from"] != "DEACTIVATED" for change in planned.values()
    )
    assert summary["counts"] == {"succeeded": len(planned), "unchanged": PLANNED_SIMS - len(planned)}
    assert summary["changes"] == [
        {"iccid": iccid, "from": change["from"], "to": "DEACTIVATED"}
        for iccid, change in list(planned.items())[:10]
    ]
    assert f"The full plan, per SIM: the XCom of task `plan` in run `{result.run_id}`" in summary["text"]

    # The apply wrote exactly the SIMs the plan listed, once each, and recorded what it replaced.
    apply = result.xcom("apply")
    assert apply["dry_run"] is False
    assert apply["devices"]["succeeded"] == list(planned)
    assert apply["devices"]["unchanged"] == plan["devices"]["unchanged"]
    assert apply["before"] == {iccid: {"status": change["from"]} for iccid, change in planned.items()}
    assert sim.state.per_device_writes("cisco") == Counter(dict.fromkeys(planned, 1))
    assert [fleet.device(i)["status"] for i in range(PLANNED_SIMS)] == ["DEACTIVATED"] * PLANNED_SIMS
    assert sorted(result.xcom("verify")["matched"]) == iccids

    assert result.xcom("report") == {
        "approved": True,
        "planned": plan["counts"],
        "applied": apply["counts"],
        "verified": True,
        "rolled_back": None,
        "failed_steps": [],
    }


def test_rejected_nothing_after_the_approval_runs_and_nothing_is_written(rejected: PlannedRun) -> None:
    result = rejected.result

    assert result.states == {
        "sims_to_change": "success",
        "plan": "success",
        "summarise_plan": "success",
        "approve": "success",
        **dict.fromkeys(AFTER_APPROVAL, "skipped"),
        "report": "success",
    }
    assert result.state == "success"
    assert [(a.task_id, a.option) for a in rejected.answered] == [("approve", "Reject")]
    assert result.xcom("plan")["dry_run"] is True
    assert rejected.simulator.state.per_device_writes("cisco") == Counter()
    assert not any(request["write"] for request in rejected.simulator.state.request_log("cisco"))
    assert _status(rejected.simulator) == rejected.before
    report = result.xcom("report")
    assert report == {
        "approved": False,
        "planned": result.xcom("plan")["counts"],
        "applied": None,
        "verified": False,
        "rolled_back": None,
        "failed_steps": [],
    }


def test_a_failed_verification_rolls_every_changed_sim_back(rolled_back: PlannedRun) -> None:
    result, sim = rolled_back.result, rolled_back.simulator

    assert result.states == {
        "sims_to_change": "success",
        "plan": "success",
        "summarise_plan": "success",
        "approve": "success",
        "apply": "success",
        "sims_to_verify": "success",
        "verify": "failed",
        "rollback_edits": "success",
        "rollback": "success",
        "report": "failed",  # the run fails: the change did not hold
    }
    assert result.state == "failed"

    plan, apply = result.xcom("plan"), result.xcom("apply")
    changed = apply["devices"]["succeeded"]
    assert changed == plan["devices"]["succeeded"] and changed
    unchanged = apply["devices"]["unchanged"]
    assert unchanged
    # The rollback wrote each changed SIM once more, back to what it was, and no SIM already as asked.
    assert result.xcom("rollback_edits") == [
        {"iccid": iccid, "status": apply["before"][iccid]["status"]} for iccid in changed
    ]
    rollback = result.xcom("rollback")
    assert rollback["devices"]["succeeded"] == changed
    assert sim.state.per_device_writes("cisco") == Counter(dict.fromkeys(changed, 2))
    assert _status(sim) == rolled_back.before

    report = result.xcom("report", key="report")
    assert report == {
        "approved": True,
        "planned": plan["counts"],
        "applied": apply["counts"],
        "verified": False,
        "rolled_back": rollback["counts"],
        "failed_steps": ["verify"],
    }
