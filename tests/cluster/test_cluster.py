"""The example DAGs on a cluster as deployments run them: ``scripts/cluster.py``'s PostgreSQL, Redis,
CeleryExecutor with two ``airflow celery worker`` processes (2 tasks each), scheduler, triggerer,
dag-processor and api-server, against the simulator (``conftest.py``). ``make test-cluster``.

In file order, on one cluster:

1. Scale-out: ``example_dags/iotfleet_fleet_scale_out.py`` labels 20,000 SIMs in mapped batches on
   both workers under the account's rate limit; part-way, one worker is killed (SIGKILL to its
   process group and every process below it) while it runs a batch, and Airflow's retry, on the
   other worker, finishes that batch. The simulator must have applied exactly one label per SIM.
2. The maintenance window, its deferrable sensors resumed by the triggerer.
3. A deferrable sensor on 10,000 devices: its trigger row in PostgreSQL stays small.
4. Stopping the cluster leaves no process behind.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import OFFLINE, ONLINE, ROMA_ID_BASE, iccid_of
from tests.airflow_cluster import AirflowCluster
from tests.airflow_standalone import CISCO_VENDOR_LIMIT, FLEET_SIZE, POLL_INTERVAL
from tests.cluster.dags import iotfleet_cluster_many as many_dag
from tests.fakes import load_script
from tests.run_checks import busiest_second, request_time, since

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

STARTUP_TIMEOUT = 300.0
SCALE_OUT_DAG_ID = "iotfleet_fleet_scale_out"
SIMS_PER_BATCH = 1_000
#: The killed batch waits for the scheduler to find it without heartbeat (30 s on this cluster) and
#: for the DAG's retry_delay (1 minute) before the other worker runs it again.
SCALE_OUT_RUN_TIMEOUT = 600.0
MAINTENANCE_DAG_ID = "iotfleet_maintenance_window"
MAINTENANCE_SENSORS = ("wait_offline", "wait_upgrade", "wait_firmware", "wait_sim_change")
MAINTENANCE_RUN_TIMEOUT = 300.0
MANY = 10_000
MANY_RUN_TIMEOUT = 240.0
#: The bound on a trigger's kwargs as PostgreSQL holds them (encrypted: a third more than the JSON).
TRIGGER_KWARGS_LIMIT = 4096


def _wait_until_parsed(airflow: AirflowCluster, dag_id: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not (
        airflow.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", dag_id) and airflow.api_ready()
    ):
        airflow.check_alive()
        errors = airflow.query("SELECT filename, stacktrace FROM import_error")
        assert not errors, f"a DAG file does not import: {errors}"
        assert time.monotonic() < deadline, f"{dag_id} was not parsed within {STARTUP_TIMEOUT:g} s"
        time.sleep(POLL_INTERVAL)


def _trigger(airflow: AirflowCluster, dag_id: str, conf: dict[str, Any]) -> str:
    """Unpause and trigger ``dag_id`` through the REST API; return the run's id."""
    _wait_until_parsed(airflow, dag_id)
    run_id = f"cluster_{uuid.uuid4().hex[:12]}"
    airflow.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    airflow.api(
        "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf}
    )
    return run_id


def _run_state(airflow: AirflowCluster, dag_id: str, run_id: str) -> str | None:
    rows = airflow.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id)
    return rows[0][0] if rows else None


def _task_log(airflow: AirflowCluster, dag_id: str, run_id: str, task_id: str, trigger: bool = False) -> str:
    """The task's log (every try), or what its triggers logged in the triggerer."""
    return "\n".join(
        path.read_text(errors="replace")
        for path in airflow.task_log_files(dag_id, run_id)
        if path.parent.name == f"task_id={task_id}" and (".log.trigger." in path.name) == trigger
    )


def _defer_exit_taken_in(airflow: AirflowCluster, run_id: str, task_id: str) -> bool:
    """Whether the scheduler has taken in the executor's report that the task's process ended as
    it deferred (its first try)."""
    event = (
        "Received executor event with state success for task instance "
        f"TaskInstanceKey(dag_id='{MAINTENANCE_DAG_ID}', task_id='{task_id}', run_id='{run_id}', try_number=1"
    )
    return event in airflow.output_path.read_text(errors="replace")


# --- 1. Scale-out on two workers, one of them killed part-way -----------------------------------------


@pytest.mark.timeout(STARTUP_TIMEOUT + SCALE_OUT_RUN_TIMEOUT + 120)
def test_scale_out_runs_on_both_workers_under_the_rate_limit_and_survives_a_killed_worker(
    airflow_cluster: AirflowCluster, simulator: Simulator
) -> None:
    airflow, account = airflow_cluster, simulator
    workers = airflow.cluster.workers
    victim, survivor = workers[-1], workers[0]
    writes_before = account.state.per_device_writes("cisco", applied_only=True)
    sent_before = account.state.per_device_writes("cisco")
    started = account.state.now()
    run_id = _trigger(airflow, SCALE_OUT_DAG_ID, {"sims_per_batch": SIMS_PER_BATCH, "label": "wave-c"})
    killed: dict[str, Any] = {}
    triggered = time.monotonic()
    try:
        deadline = time.monotonic() + SCALE_OUT_RUN_TIMEOUT
        while (state := _run_state(airflow, SCALE_OUT_DAG_ID, run_id)) != "success":
            assert state != "failed", "the run failed"
            assert time.monotonic() < deadline, (
                f"the run did not end within {SCALE_OUT_RUN_TIMEOUT:g} s ({state})"
            )
            rows = airflow.query(
                "SELECT map_index, state, hostname FROM task_instance "
                "WHERE dag_id = ? AND run_id = ? AND task_id = 'label_batch'",
                SCALE_OUT_DAG_ID,
                run_id,
            )
            if not killed:
                airflow.check_alive()
                done_by_victim = [i for i, s, host in rows if s == "success" and host == victim]
                running_on_victim = [i for i, s, host in rows if s == "running" and host == victim]
                done = sum(1 for _, s, _ in rows if s == "success")
                # Late enough that the one worker left has little else to do, and mid-batch: SIMs
                # of the running batch are being labelled now.
                if done_by_victim and running_on_victim and done >= len(rows) // 2:
                    airflow.cluster.kill(victim)
                    killed.update(batches=running_on_victim, at=time.monotonic())
            time.sleep(POLL_INTERVAL)
        took = time.monotonic() - triggered
        assert killed, "the run ended before a worker could be killed mid-batch"
        assert airflow.cluster.exited().keys() == {victim}

        # Every SIM labelled: the report counts them all, done by a try or found done by the retry.
        batches = FLEET_SIZE // SIMS_PER_BATCH
        report = airflow.xcoms(SCALE_OUT_DAG_ID, run_id)[("report", "return_value")]
        assert report["batches"] == batches
        assert report["succeeded"] + report["unchanged"] == FLEET_SIZE
        assert report["failed"] == report["unknown"] == 0
        # The simulator: exactly one applied label per SIM, the killed batch's included.
        applied = since(account.state.per_device_writes("cisco", applied_only=True), writes_before)
        assert applied == Counter({iccid_of(i): 1 for i in range(FLEET_SIZE)})
        assert all(
            account.state.fleet.device(i)["custom"].get("accountCustom1") == "wave-c"
            for i in range(FLEET_SIZE)
        )

        # Both workers ran batches (the hostname each records); the killed ones were retried and
        # finished by the other worker.
        rows = airflow.query(
            "SELECT map_index, state, hostname, try_number FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? AND task_id = 'label_batch'",
            SCALE_OUT_DAG_ID,
            run_id,
        )
        assert sorted(row[0] for row in rows) == list(range(batches))
        assert {row[1] for row in rows} == {"success"}
        by_worker = Counter(row[2] for row in rows)
        assert set(by_worker) == set(workers), by_worker
        earlier = airflow.query(
            "SELECT map_index, hostname, state FROM task_instance_history "
            "WHERE dag_id = ? AND run_id = ? AND task_id = 'label_batch'",
            SCALE_OUT_DAG_ID,
            run_id,
        )
        # Every batch seen running on the victim was interrupted, and so may be one it had just taken
        # when the DB was read (its row still queued): each interrupted try ran on the victim only.
        interrupted = sorted(i for i, _, _ in earlier)
        assert {host for _, host, _ in earlier} == {victim}, earlier
        assert len(interrupted) == len(set(interrupted)), earlier
        assert set(killed["batches"]) <= set(interrupted), earlier
        killed["batches"] = interrupted
        for map_index, _, hostname, try_number in rows:
            if map_index in interrupted:
                assert (hostname, try_number) == (survivor, 2)

        # The account's limit held: requests per second as the simulator saw them, and its 429s.
        during = [r for r in account.state.request_log("cisco") if request_time(r) >= started]
        edits = [r for r in during if r["method"] == "PUT"]
        throttled = sum(1 for r in during if r["fault"] == "throttled")
        busiest = busiest_second([request_time(r) for r in edits])
        span = (request_time(edits[-1]) - request_time(edits[0])).total_seconds()
        sent = since(account.state.per_device_writes("cisco"), sent_before)
        assert busiest <= CISCO_VENDOR_LIMIT
        assert throttled / len(during) < 0.01
        print(
            f"\nCeleryExecutor, PostgreSQL metadata DB, Redis broker, {len(workers)} workers "
            f"({by_worker[survivor]} batches on {survivor}, {by_worker[victim]} on {victim}); "
            f"{FLEET_SIZE} SIMs in {batches} batches in {took:.0f} s; {victim} killed running batches "
            f"{killed['batches']}, retried on {survivor}; {len(edits)} PUTs at {len(edits) / span:.0f} "
            f"requests/s on average, busiest second {busiest} (account limit {CISCO_VENDOR_LIMIT}/s); "
            f"429 share {throttled / len(during):.2%} of {len(during)} requests; "
            f"{sent.total() - FLEET_SIZE} labels sent again after a 429 or the kill, none applied twice"
        )
    except BaseException as error:
        error.add_note(f"killed: {killed}")
        error.add_note(airflow.diagnostics(SCALE_OUT_DAG_ID, run_id))
        raise


# --- 2. The maintenance window: deferrable sensors resumed by the triggerer ------------------------


@pytest.mark.timeout(STARTUP_TIMEOUT + MAINTENANCE_RUN_TIMEOUT + 60)
def test_maintenance_window_sensors_are_resumed_by_the_triggerer(
    airflow_cluster: AirflowCluster, simulator: Simulator
) -> None:
    demo = load_script("demo")
    airflow, state_of_world = airflow_cluster, simulator.state
    run_id = _trigger(airflow, MAINTENANCE_DAG_ID, demo.pick_devices(simulator))
    moved: list[str] = []
    try:
        deadline = time.monotonic() + MAINTENANCE_RUN_TIMEOUT
        while (state := _run_state(airflow, MAINTENANCE_DAG_ID, run_id)) not in ("success", "failed"):
            airflow.check_alive()
            assert time.monotonic() < deadline, f"the run did not end within {MAINTENANCE_RUN_TIMEOUT:g} s"
            # The world moves (the campaign ends, the scheduled change comes due) only once a sensor
            # has deferred and the scheduler has taken in its process's end (see the standalone
            # tests, apache/airflow#72716): then only its trigger, in the triggerer, can see it.
            for task_id, task_state in airflow.task_states(MAINTENANCE_DAG_ID, run_id).items():
                if (
                    task_state == "deferred"
                    and _defer_exit_taken_in(airflow, run_id, task_id)
                    and state_of_world.advance_past_pending(keep_clock=True) is not None
                ):
                    moved.append(task_id)
            time.sleep(POLL_INTERVAL)
        assert state == "success"
        states = airflow.task_states(MAINTENANCE_DAG_ID, run_id)
        assert set(states.values()) == {"success"}, states
        report = airflow.xcoms(MAINTENANCE_DAG_ID, run_id)[("report", "return_value")]
        # The report names every step's failures: none, and every wait done.
        assert [step for step, failures in report["failed"].items() if failures] == [], report
        assert all(report["waits_done"].values()), report
        deferred = [
            task_id
            for task_id in MAINTENANCE_SENSORS
            if "Pausing task as DEFERRED" in _task_log(airflow, MAINTENANCE_DAG_ID, run_id, task_id)
        ]
        # The waits on the campaign and the scheduled change cannot end at their first check.
        assert {"wait_upgrade", "wait_sim_change"} <= set(deferred)
        for task_id in deferred:
            trigger_log = _task_log(airflow, MAINTENANCE_DAG_ID, run_id, task_id, trigger=True)
            assert "Trigger fired event" in trigger_log, f"{task_id}: {trigger_log[-2000:]}"
        print(
            f"\nmaintenance window on the cluster: {', '.join(deferred)} deferred and were resumed by the triggerer"
        )
    except BaseException as error:
        error.add_note(f"the world moved while these were deferred: {moved}")
        error.add_note(airflow.diagnostics(MAINTENANCE_DAG_ID, run_id))
        raise


# --- 3. A deferrable sensor on 10,000 devices, its trigger in PostgreSQL ------------------------------


@pytest.mark.timeout(STARTUP_TIMEOUT + MANY_RUN_TIMEOUT + 60)
def test_a_sensor_on_10000_devices_keeps_its_trigger_row_small(
    airflow_cluster: AirflowCluster, simulator: Simulator
) -> None:
    airflow, fleet = airflow_cluster, simulator.state.fleet
    indices = fleet.indices_where("online_status", OFFLINE)[:MANY]
    indices += fleet.indices_where("online_status", ONLINE)[: MANY - len(indices)]
    assert len(indices) == MANY
    for index in indices[:100]:
        fleet.update(index, {"online_status": OFFLINE})
    ids = [ROMA_ID_BASE + i for i in indices]
    run_id = _trigger(airflow, many_dag.DAG_ID, {"roma_ids": ids})
    kwargs_lengths: list[int] = []
    try:
        deadline = time.monotonic() + MANY_RUN_TIMEOUT
        while (state := _run_state(airflow, many_dag.DAG_ID, run_id)) not in ("success", "failed"):
            airflow.check_alive()
            assert time.monotonic() < deadline, f"the run did not end within {MANY_RUN_TIMEOUT:g} s"
            rows = airflow.query(
                "SELECT length(t.kwargs) FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
                "WHERE ti.dag_id = ? AND ti.run_id = ?",
                many_dag.DAG_ID,
                run_id,
            )
            if rows and not kwargs_lengths:
                kwargs_lengths.append(rows[0][0])
                # Deferred: only the trigger, in the triggerer, can now see the devices come online.
                for index in indices:
                    fleet.update(index, {"online_status": ONLINE})
            time.sleep(POLL_INTERVAL)
        assert state == "success"
        assert kwargs_lengths, "the sensor never deferred"
        assert kwargs_lengths[0] < TRIGGER_KWARGS_LIMIT
        result = airflow.xcoms(many_dag.DAG_ID, run_id)[(many_dag.TASK_ID, "return_value")]
        assert sorted(result["matched"]) == sorted(ids)
        assert result["unreachable"] == {}
        print(
            f"\n{MANY} devices waited on by one deferrable sensor: its trigger row in PostgreSQL holds "
            f"{kwargs_lengths[0]} characters of kwargs"
        )
    except BaseException as error:
        error.add_note(airflow.diagnostics(many_dag.DAG_ID, run_id))
        raise


# --- 4. Stopping leaves nothing behind --------------------------------------------------------------


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _mentions(process: psutil.Process, paths: list[Path]) -> bool:
    """Whether ``process`` runs from, or with its environment in, one of ``paths``."""
    try:
        text = " ".join(process.cmdline()) + " " + " ".join(process.environ().values())
    except psutil.Error:
        return False
    return any(str(path) in text for path in paths)


def test_stopping_the_cluster_leaves_no_process_behind(airflow_cluster: AirflowCluster) -> None:
    cluster = airflow_cluster.cluster
    running = cluster.tree()
    assert len(running) > len(cluster.processes), "the cluster's parts have no processes below them"
    paths = [cluster.home, *([cluster.pg_data] if cluster.pg_data else [])]
    seen = cluster.stop()
    # Every process of the cluster, seen now or while it stopped, has ended.
    assert [p.pid for p in [*running, *seen] if _alive(p)] == []
    strays = [p.pid for p in psutil.process_iter() if _mentions(p, paths)]
    assert strays == []
    assert all(process.poll() is not None for process in cluster.processes.values())
