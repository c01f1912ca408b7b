"""Scale-out on Airflow's own executor: ``example_dags/iotfleet_fleet_scale_out.py`` under
``airflow standalone`` (LocalExecutor, four worker processes), labelling 20,000 SIMs.

The simulated Control Center account allows ``CISCO_VENDOR_LIMIT`` requests a second and answers
429 beyond; each call takes ``LATENCY``. The connection tells the client a little less than the
account's limit and ``CISCO_MAX_CONCURRENCY`` calls in flight per task, so one task alone could not
go faster than ``CISCO_MAX_CONCURRENCY / LATENCY`` a second. The DAG maps the edit over batches in a
pool of four slots with a quarter of the connection's rate each: the test checks that the batches
ran at the same time, every SIM was labelled exactly once, and the account's limit held (requests
per second as the simulator saw them, and its 429 count), and reports how much faster than one task
could be the run was. Speed itself is a benchmark's business, not this test's.

The simulator and the ``airflow standalone`` are the session's (``conftest.py``), shared with
``test_standalone_triggerer.py``: what is checked is what changed during this run.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, deque
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import iccid_of
from tests.standalone.conftest import (
    CISCO_MAX_CONCURRENCY,
    CISCO_VENDOR_LIMIT,
    FLEET_SIZE,
    LATENCY,
    POLL_INTERVAL,
    AirflowStandalone,
)

pytestmark = pytest.mark.slow

DAG_ID = "iotfleet_fleet_scale_out"
SIMS_PER_BATCH = 2_500
STARTUP_TIMEOUT = 300.0
RUN_TIMEOUT = 420.0


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans (start, end) open at the same moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def _busiest_second(times: list[datetime]) -> int:
    """The most requests in any one-second window."""
    window: deque[datetime] = deque()
    busiest = 0
    for when in sorted(times):
        window.append(when)
        while (when - window[0]).total_seconds() >= 1.0:
            window.popleft()
        busiest = max(busiest, len(window))
    return busiest


def _when(request: dict[str, Any]) -> datetime:
    """When the simulator saw a request, on its clock."""
    when = request["time"]
    return when if isinstance(when, datetime) else datetime.fromisoformat(when)


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.timeout(STARTUP_TIMEOUT + RUN_TIMEOUT + 60)
def test_mapped_batches_share_the_accounts_rate_limit_across_workers(
    airflow_standalone: AirflowStandalone, simulator: Simulator
) -> None:
    from example_dags.iotfleet_fleet_scale_out import PARALLEL_TASKS, POOL

    airflow, account = airflow_standalone, simulator
    run_id = f"scale_out_{uuid.uuid4().hex[:12]}"
    batches = FLEET_SIZE // SIMS_PER_BATCH
    writes_before = account.state.per_device_writes("cisco", applied_only=True)
    started = account.state.now()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not (
            airflow.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", DAG_ID) and airflow.api_ready()
        ):
            airflow.check_alive()
            assert not airflow.query("SELECT filename FROM import_error"), "the example does not import"
            assert time.monotonic() < deadline, f"{DAG_ID} was not parsed within {STARTUP_TIMEOUT:g} s"
            time.sleep(POLL_INTERVAL)
        airflow.api("POST", "/api/v2/pools", {"name": POOL, "slots": PARALLEL_TASKS})
        airflow.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        airflow.api(
            "POST",
            f"/api/v2/dags/{DAG_ID}/dagRuns",
            {
                "dag_run_id": run_id,
                "logical_date": None,
                "conf": {"sims_per_batch": SIMS_PER_BATCH, "label": "wave-42"},
            },
        )
        deadline = time.monotonic() + RUN_TIMEOUT
        while (state := airflow.query("SELECT state FROM dag_run WHERE run_id = ?", run_id)) != [
            ("success",)
        ]:
            airflow.check_alive()
            assert state != [("failed",)], "the run failed"
            assert time.monotonic() < deadline, f"the run did not end within {RUN_TIMEOUT:g} s ({state})"
            time.sleep(POLL_INTERVAL)

        # Every SIM labelled, each with exactly one PUT.
        report = airflow.xcoms(DAG_ID, run_id)[("report", "return_value")]
        assert report == {"batches": batches, "requested": FLEET_SIZE, "updated": FLEET_SIZE, "failed": 0}
        writes = account.state.per_device_writes("cisco", applied_only=True)
        writes.subtract(writes_before)
        assert +writes == Counter({iccid_of(i): 1 for i in range(FLEET_SIZE)})
        assert all(
            account.state.fleet.device(i)["custom"].get("accountCustom1") == "wave-42"
            for i in range(FLEET_SIZE)
        )

        # The batches ran on several workers at once, never more than the pool's slots.
        rows = airflow.query(
            "SELECT map_index, start_date, end_date, pool FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? AND task_id = 'label_batch'",
            DAG_ID,
            run_id,
        )
        assert sorted(row[0] for row in rows) == list(range(batches))
        assert {row[3] for row in rows} == {POOL}
        spans = [(_seconds(start), _seconds(end)) for _, start, end, _ in rows]
        at_once = _most_at_once(spans)
        assert 2 <= at_once <= PARALLEL_TASKS

        # The account's limit held: what the simulator saw, per second, and its 429s.
        during = [r for r in account.state.request_log("cisco") if _when(r) >= started]
        edits = [r for r in during if r["method"] == "PUT"]
        throttled = sum(1 for r in during if r["fault"] == "throttled")
        busiest = _busiest_second([_when(r) for r in edits])
        assert busiest <= CISCO_VENDOR_LIMIT
        assert throttled <= FLEET_SIZE // 100  # under 1%: a few may meet the window's edge

        mapped = max(end for _, end in spans) - min(start for start, _ in spans)
        one_task_at_best = FLEET_SIZE / (CISCO_MAX_CONCURRENCY / LATENCY)
        print(
            f"\n{FLEET_SIZE} SIMs in {batches} mapped batches: {mapped:.0f} s with up to {at_once} at once; "
            f"one task could not take under {one_task_at_best:.0f} s ({one_task_at_best / mapped:.1f}x); "
            f"busiest second {busiest} requests (account limit {CISCO_VENDOR_LIMIT}); {throttled} answered 429"
        )
    except BaseException as error:
        error.add_note(airflow.diagnostics(DAG_ID, run_id))
        raise
