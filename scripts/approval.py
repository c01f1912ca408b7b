"""Answer an Airflow approval step (``ApprovalOperator``, any ``HITLOperator``) without a person, the way
the UI does: through the HITL REST API's own route function on the same metadata DB.

The UI's Required Actions page answers with ``PATCH .../hitlDetails`` (``update_hitl_detail`` in
``airflow/api_fastapi/core_api/routes/public/hitl.py``): it records who answered, when, and the
chosen option; on Airflow 3.3+ it then resumes the task parked in ``awaiting_input``, on 3.2 the
task's ``HITLTrigger`` sees the answer at its next poll. This module calls that function, with a
session of the metadata DB and a user, for every approval of a DAG that waits for an answer.

Used by ``scripts/demo.py`` (``make demo``: a side process, ``python scripts/approval.py --dag-id ...
--answer Approve``, on the demo's AIRFLOW_HOME) and by the example DAG tests (loaded by path, as a
thread next to ``dag.test()`` in the test process).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

#: The user the answers are recorded as (``responded_by``).
ANSWERER = "iotfleet-demo"
#: How often the DB is looked at for a waiting approval, s.
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Answered:
    """An approval answered: which task instance, and the option chosen."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    option: str
    subject: str
    body: str | None


def waiting_for_input(dag_id: str, session: Any) -> list[Any]:
    """The task instances of ``dag_id`` that wait for a person's answer: parked (``awaiting_input``,
    Airflow 3.3+) or deferred to ``HITLTrigger`` (3.2), with a HITL request not answered yet."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    states = [TaskInstanceState.DEFERRED]
    if hasattr(TaskInstanceState, "AWAITING_INPUT"):
        states.append(TaskInstanceState.AWAITING_INPUT)
    query = (
        select(TaskInstance)
        .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
        .where(TaskInstance.dag_id == dag_id, TaskInstance.state.in_(states))
        .where(HITLDetail.responded_at.is_(None))
    )
    return list(session.scalars(query))


def answer(ti: Any, option: str, session: Any, user: str = ANSWERER) -> Answered:
    """Answer ``ti``'s approval with ``option`` (``"Approve"``, ``"Reject"``) as the UI's API does.

    :return: what was answered, with the subject and body the approver would have read.
    :raises fastapi.HTTPException: as the API answers: 409 when it was answered already, 400 for an
        option the task does not offer.
    """
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.hitl import HITLDetail

    detail = session.get(HITLDetail, ti.id)
    subject, body = detail.subject, detail.body
    update_hitl_detail(
        dag_id=ti.dag_id,
        dag_run_id=ti.run_id,
        task_id=ti.task_id,
        update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option]),
        user=SimpleAuthManagerUser(username=user, role="admin"),
        session=session,
        map_index=ti.map_index,
    )
    session.commit()
    return Answered(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, option, subject, body)


def answer_waiting(dag_id: str, option: str) -> list[Answered]:
    """Answer every approval of ``dag_id`` waiting now with ``option``; return those answered."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return [answer(ti, option, session) for ti in waiting_for_input(dag_id, session)]


@dataclass
class Answerer:
    """A thread that answers ``dag_id``'s approvals with ``option`` as they come, until stopped.

    Use it around ``dag.test()``: ``with Answerer("my_dag", "Approve") as answerer: dag.test()``;
    :attr:`answered` then lists each answer.
    """

    dag_id: str
    option: str
    poll_seconds: float = POLL_SECONDS
    answered: list[Answered] = field(default_factory=list)
    #: Each failed look or answer (SQLite's "database is locked" while a task writes, say); the
    #: thread logs it and tries again at the next poll.
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.answered.extend(answer_waiting(self.dag_id, self.option))
            except Exception as error:  # tried again at the next poll; kept in .errors
                print(f"answering {self.dag_id}'s approval failed, trying again: {error!r}", flush=True)
                self.errors.append(error)

    def __enter__(self) -> Answerer:
        self._thread = threading.Thread(target=self._run, name="iotfleet-approval-answerer", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def main() -> int:
    """Answer the first approval of ``--dag-id`` with ``--answer``, waiting up to ``--timeout`` s for it.

    :return: 0 once answered (printed), 1 if none came within the timeout.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--answer", default="Approve", help="the option to choose (Approve, Reject)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        answered = answer_waiting(args.dag_id, args.answer)
        for done in answered:
            print(f"answered {done.dag_id}.{done.task_id} ({done.run_id}): {done.option}", flush=True)
        if answered:
            return 0
        time.sleep(POLL_SECONDS)
    print(f"no approval of {args.dag_id} waited for an answer within {args.timeout:.0f} s", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
