"""A SIM status change a person signs off: plan, approve, apply, verify, and roll back if the check fails.

1. ``plan``: the edit as a dry run (``dry_run=True``): it reads each SIM once and changes nothing;
   its outcome's ``plan`` says, per SIM that would change, the status now and the status wanted.
2. ``summarise_plan``: what a person reads before approving: counts per status, the first SIMs with
   their from/to, and where the full plan is (the ``plan`` task's XCom).
3. ``approve``: Airflow's own approval step (``ApprovalOperator``, Airflow 3.1+), in the UI's
   Required Actions (or the HITL REST API), showing the summary. *Approve* goes on; *Reject*
   skips the apply, the verification and the rollback. Nobody answering within a day rejects.
4. ``apply``: the same edit for real. It reads each SIM first (``skip_unchanged``, the default), writes
   only the SIMs that differ, and records in its outcome's ``before`` what it replaced.
5. ``verify``: a deferrable sensor waits until Control Center reports every SIM the apply took at the
   new status.
6. ``rollback_edits`` and ``rollback``, only when the apply or the verification failed: the edits that
   put back what the apply replaced (``rollback_edits(outcome)``; SIMs that were already as asked
   are not written), applied by a second edit.
7. ``report``, whatever happened: approved or rejected, changed, verified or rolled back.

Trigger it from the UI with your own ICCIDs and status (the DAG's params); with no ICCIDs it takes
the first ``sim_count`` SIMs of the account, which suits the provider's simulator (``make airflow``).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, chain, dag, task

from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.outcome import FleetOutcome, pull_outcome
from airflow_provider_iotfleet.rollback import rollback_edits
from airflow_provider_iotfleet.sensors.cisco import CiscoControlCenterDeviceStatusSensor

#: How many planned SIMs the summary shows with their from/to.
SHOWN = 10
#: How long the verification waits for Control Center to report the new status, s.
VERIFY_TIMEOUT = 30 * 60
CHANGES = {"status": "{{ params.sim_status }}"}


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["iotfleet", "example", "cisco", "approval"],
    default_args={"owner": "fleet-ops", "retries": 1, "retry_delay": pendulum.duration(minutes=2)},
    params={
        "iccids": Param(
            [],
            type="array",
            items={"type": "string"},
            description="The SIMs to change; none: the first sim_count SIMs of the account.",
        ),
        "sim_count": Param(200, type="integer", minimum=1, maximum=10000),
        "sim_status": Param(
            "DEACTIVATED",
            enum=["ACTIVATED", "DEACTIVATED", "RETIRED"],
            description="The SIMs' status after the change.",
        ),
    },
    doc_md=__doc__,
)
def iotfleet_planned_sim_change() -> None:
    @task
    def sims_to_change(*, params: dict[str, Any]) -> list[str]:
        """The ``iccids`` param, or the first ``sim_count`` SIMs of the account."""
        if params["iccids"]:
            return list(params["iccids"])
        from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook

        iccids: list[str] = []
        with CiscoControlCenterHook() as hook:
            for sim in hook.search_devices("2000-01-01T00:00:00+00:00"):
                iccids.append(sim["iccid"])
                if len(iccids) == params["sim_count"]:
                    break
        return iccids

    sims = sims_to_change()
    # [START howto_operator_cisco_edit_devices_dry_run]
    plan = CiscoControlCenterEditDevicesOperator(task_id="plan", iccids=sims, changes=CHANGES, dry_run=True)
    # [END howto_operator_cisco_edit_devices_dry_run]

    @task(multiple_outputs=False)
    def summarise_plan(outcome: dict[str, Any], *, ti: Any, params: dict[str, Any]) -> dict[str, Any]:
        """What the approver reads: counts per status, the first SIMs' from/to, where the full plan is.

        :return: ``{"counts", "changes": [{"iccid", "from", "to"}], "errors", "text"}``, ``text`` the
            Markdown the approval shows.
        """
        planned = FleetOutcome.from_xcom(outcome)
        changes = [
            {"iccid": iccid, "from": fields["status"]["from"], "to": fields["status"]["to"]}
            for iccid, fields in list(planned.plan.items())[:SHOWN]
        ]
        counts = {status: count for status, count in planned.counts.items() if count}
        lines = [
            f"Set **{params['sim_status']}** on {planned.requested} SIMs. A dry run read each one: "
            + ", ".join(f"{count} {_MEANING.get(status, status)}" for status, count in counts.items())
            + ".",
            "",
            f"First {len(changes)} of the {counts.get('succeeded', 0)} SIMs that would change:",
            "",
            *(f"- `{c['iccid']}`: {c['from']} -> {c['to']}" for c in changes),
        ]
        errors = planned.failure_lines()
        if errors:
            lines += ["", "Control Center would refuse:", "", *(f"- {line}" for line in errors)]
        lines += [
            "",
            f"The full plan, per SIM: the XCom of task `plan` in run `{ti.run_id}` "
            f"(`plan` holds each SIM's from/to, `devices` the SIMs per status).",
        ]
        text = "\n".join(lines)
        print(text)
        return {"counts": counts, "changes": changes, "errors": errors, "text": text}

    summary = summarise_plan(plan.output)
    approve = ApprovalOperator(
        task_id="approve",
        subject="Set {{ params.sim_status }} on the SIMs of run {{ run_id }}?",
        body="{{ ti.xcom_pull(task_ids='summarise_plan')['text'] }}",
        # Nobody answering within a day is a no.
        response_timeout=pendulum.duration(days=1),
        defaults=[ApprovalOperator.REJECT],
    )
    apply = CiscoControlCenterEditDevicesOperator(task_id="apply", iccids=sims, changes=CHANGES)

    @task
    def sims_to_verify(outcome: dict[str, Any]) -> list[Any]:
        """The SIMs the apply took: changed, or already as asked."""
        return FleetOutcome.from_xcom(outcome).ids_to_go_on()

    verify = CiscoControlCenterDeviceStatusSensor(
        task_id="verify",
        iccids=sims_to_verify(apply.output),
        target_status="{{ params.sim_status }}",
        deferrable=True,
        poke_interval=10,
        timeout=VERIFY_TIMEOUT,
    )

    @task(task_id="rollback_edits", trigger_rule="one_failed")
    def edits_to_roll_back(*, ti: Any) -> list[dict[str, Any]]:
        """The edits that put back what the apply replaced (its outcome's ``before``), whether the
        apply or the verification failed; SIMs the apply did not write are not in them.

        :raises AirflowSkipException: when the apply changed no SIM (the rollback is skipped too).
        """
        from airflow.sdk.exceptions import AirflowSkipException

        outcome = pull_outcome(ti, "apply")
        edits = rollback_edits(outcome) if outcome is not None else []
        if not edits:
            raise AirflowSkipException("the apply changed no SIM: nothing to roll back")
        print(f"rolling back {len(edits)} SIMs the apply changed")
        return edits

    edits = edits_to_roll_back()
    rollback = CiscoControlCenterEditDevicesOperator(task_id="rollback", edits=edits)

    @task(trigger_rule="all_done", multiple_outputs=False)
    def report(*, ti: Any) -> dict[str, Any]:
        """What happened: approved or rejected, what the apply changed, verified or rolled back.

        :return: ``{"approved", "planned", "applied", "verified", "rolled_back", "failed_steps"}``: the approval
            (``False``: rejected, or not answered within a day), each step's counts (``None``: it did not run) and whether the
            verification saw every SIM at the new status, and the steps whose task failed.
        :raises RuntimeError: when an approved change did not hold (the apply or the verification
            failed), so that the run fails; the result is then in the XCom ``report``.
        """
        # Approve returns the answer; Reject (also the default after a day) skips the tasks after
        # it, which in Airflow 3 ends the approval task before it returns anything.
        answer = ti.xcom_pull(task_ids="approve") or {}
        approved = answer.get("chosen_options") == [ApprovalOperator.APPROVE]
        steps = {name: pull_outcome(ti, name) for name in ("plan", "apply", "rollback")}
        verified = ti.xcom_pull(task_ids="verify") is not None
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        failed_steps = sorted(
            step for step, state in states.items() if state in ("failed", "upstream_failed")
        )
        result = {
            "approved": approved,
            "planned": steps["plan"].counts if steps["plan"] else None,
            "applied": steps["apply"].counts if steps["apply"] else None,
            "verified": verified,
            "rolled_back": steps["rollback"].counts if steps["rollback"] else None,
            "failed_steps": failed_steps,
        }
        lines = [f"approval: {'approved' if approved else 'rejected'}"]
        for name, outcome in steps.items():
            lines.append(f"{name}: {outcome.summary() if outcome else 'did not run'}")
        lines.append(f"verify: {'every SIM at the new status' if verified else 'not verified'}")
        if failed_steps:
            lines.append(f"steps failed: {', '.join(failed_steps)}")
        print("\n".join(lines))
        if approved and not verified:
            ti.xcom_push(key="report", value=result)
            rolled_back = steps["rollback"].summary() if steps["rollback"] else "nothing rolled back"
            raise RuntimeError(
                f"the change did not hold (steps failed: {', '.join(failed_steps) or 'none'}); "
                f"rollback: {rolled_back}"
            )
        return result

    chain(sims, plan, summary, approve, apply)
    chain(verify, edits, rollback, report())


#: How the summary words each status of a dry run.
_MEANING = {
    "succeeded": "would change",
    "scheduled": "would be scheduled",
    "unchanged": "already as asked",
    "failed": "would be refused",
    "unknown": "unknown",
}

iotfleet_planned_sim_change()
