"""A real Airflow: ``airflow standalone`` (scheduler with the LocalExecutor, triggerer, dag-processor,
api-server, SQLite) against the simulator, booted once for all the tests here (``conftest.py``).

Deferrable sensors handed to and resumed by the real triggerer: ``dags/iotfleet_standalone_triggerer.py``
runs, and the test plays the outside world: once a sensor is ``deferred`` it makes that sensor's devices
reach their target (the Cisco scheduled edit comes due when the simulator clock is advanced; the ROMA
devices reconnect; the ThingSpace devices report the new firmware), so each of those sensors can only
succeed through its trigger, polled in the triggerer.

Scale-out: ``example_dags/iotfleet_fleet_scale_out.py`` labels 20,000 SIMs in mapped batches on four
worker processes, under the simulated account's rate limit (see its section below).

Retries: ``dags/iotfleet_standalone_retries.py``, write tasks failed part-way by 5xx answers or
killed, and retried by Airflow itself, write each device once (see its section below).

All share one simulator: each checks what changed during its own run.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple

import httpx
import pytest

from airflow_provider_iotfleet.simulator import Faults, Simulator
from airflow_provider_iotfleet.simulator.fleet import (
    FIRMWARE_VERSIONS,
    OFFLINE,
    ONLINE,
    ROMA_ID_BASE,
    iccid_of,
    imei_of,
)
from tests.airflow_standalone import (
    CISCO_MAX_CONCURRENCY,
    CISCO_VENDOR_LIMIT,
    FLEET_SIZE,
    LATENCY,
    POLL_INTERVAL,
    AirflowStandalone,
)
from tests.run_checks import busiest_second, most_at_once, request_time, since, timestamp
from tests.standalone.dags import iotfleet_standalone_retries as retries_dags
from tests.standalone.dags import iotfleet_standalone_triggerer as test_dag

pytestmark = pytest.mark.slow

DAG_ID = test_dag.DAG_ID
#: Bounds: the components' start-up (with the first parse of the DAG file), and the DAG run. Both
#: are backstops sized for a busy machine (start-up takes 30 to 60 s on an idle one, and over
#: 150 s on two cores shared with other test runs); the run takes 30 to 50 s.
STARTUP_TIMEOUT = 300.0
RUN_TIMEOUT = 240.0
#: How long a log line may take to reach the log file after the run ended.
LOG_TIMEOUT = 20.0
#: The Cisco edit takes effect this long after the simulator's now; the clock then jumps past it.
CISCO_DELAY = timedelta(minutes=5)
CLOCK_ADVANCE = timedelta(minutes=10)
TARGET_FIRMWARE = FIRMWARE_VERSIONS[-1]
TRIGGERS = {
    "cisco_wait_deactivated": "airflow_provider_iotfleet.triggers.cisco.CiscoDeviceStatusTrigger",
    "roma_wait_online": "airflow_provider_iotfleet.triggers.huawei.HuaweiRomaDeviceStatusTrigger",
    "verizon_wait_firmware": "airflow_provider_iotfleet.triggers.verizon.VerizonThingSpaceFirmwareTrigger",
    "roma_wait_many_online": "airflow_provider_iotfleet.triggers.huawei.HuaweiRomaDeviceStatusTrigger",
}
#: Devices ``roma_wait_many_online`` waits on: more than travel in a trigger's kwargs.
MANY = 150
assert set(TRIGGERS) == set(test_dag.DEFERRING_SENSORS)


def _pick(sim: Simulator, count: int, taken: set[int], **wanted: Any) -> list[int]:
    """The first ``count`` fleet indices not yet taken whose start-up attributes match ``wanted``."""
    fleet = sim.state.fleet
    found = [
        index
        for index in range(fleet.size)
        if index not in taken and all(fleet.base(index)[key] == value for key, value in wanted.items())
    ][:count]
    assert len(found) == count, f"the fleet has fewer than {count} devices with {wanted}"
    taken.update(found)
    return found


class RunWatcher:
    """Follows the run in the metadata DB: every state each task was seen in, and its triggers."""

    def __init__(self, airflow: AirflowStandalone, run_id: str) -> None:
        self.airflow = airflow
        self.run_id = run_id
        #: task id -> the states it was seen in, in order
        self.seen: dict[str, list[str | None]] = {}
        #: task id -> the classpaths of the triggers it was seen deferred to
        self.triggers: dict[str, set[str]] = {}
        #: the sensors whose devices the test moved to the target, in order
        self.acted: list[str] = []
        #: task id -> the length of its trigger's (encrypted) kwargs in the trigger table
        self.kwargs_length: dict[str, int] = {}

    def look(self) -> str | None:
        """Record the task states and triggers now; return the run's state."""
        for task_id, state in self.airflow.task_states(DAG_ID, self.run_id).items():
            states = self.seen.setdefault(task_id, [])
            if not states or states[-1] != state:
                states.append(state)
        for task_id, classpath, kwargs in self.airflow.query(
            "SELECT ti.task_id, t.classpath, t.kwargs FROM task_instance ti "
            "JOIN trigger t ON t.id = ti.trigger_id WHERE ti.dag_id = ? AND ti.run_id = ?",
            DAG_ID,
            self.run_id,
        ):
            self.triggers.setdefault(task_id, set()).add(classpath)
            self.kwargs_length[task_id] = len(kwargs)
        rows = self.airflow.query(
            "SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", DAG_ID, self.run_id
        )
        return rows[0][0] if rows else None

    def deferred(self, task_id: str) -> bool:
        return "deferred" in self.seen.get(task_id, [])


def _wait_until_ready(airflow: AirflowStandalone, dag_id: str = DAG_ID) -> None:
    """Until the dag-processor has put the DAG into the metadata DB and the api-server answers."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not (
        airflow.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", dag_id) and airflow.api_ready()
    ):
        airflow.check_alive()
        errors = airflow.query("SELECT filename, stacktrace FROM import_error")
        assert not errors, f"the DAG file does not import: {errors}"
        assert time.monotonic() < deadline, (
            f"within {STARTUP_TIMEOUT:g} s, {dag_id} was not parsed or the api-server did not answer"
        )
        time.sleep(POLL_INTERVAL)


def _defer_exit_taken_in(airflow: AirflowStandalone, run_id: str, task_id: str) -> bool:
    """Whether the scheduler has taken in the executor's report that the task's process ended as it
    deferred. The world must not move before: a trigger firing first gets the task resumed and
    running by the time that late "success" is taken in, and Airflow 3.3 then fails the task as a
    "state mismatch" (apache/airflow#72716, seen here on a busy machine)."""
    event = (
        "Received executor event with state success for task instance "
        f"TaskInstanceKey(dag_id='{DAG_ID}', task_id='{task_id}', run_id='{run_id}', try_number=1"
    )
    return event in airflow.output_path.read_text(errors="replace")


def _task_log(airflow: AirflowStandalone, run_id: str, task_id: str, trigger: bool = False) -> str:
    """The task's log (``trigger=False``) or the log its trigger wrote in the triggerer."""
    return "\n".join(
        path.read_text(errors="replace")
        for path in airflow.task_log_files(DAG_ID, run_id)
        if path.parent.name == f"task_id={task_id}" and (".log.trigger." in path.name) == trigger
    )


def _deferred_then_resumed(task_log: str) -> bool:
    """Whether the sensor's log says it deferred, and later that every device matched."""
    deferred = task_log.find("Pausing task as DEFERRED")
    return deferred >= 0 and task_log.find("every device reports", deferred) > deferred


def _outcome(operation: str, vendor: str, **done: Any) -> dict[str, Any]:
    """A write operator's outcome (DESIGN.md, "Outcome contract") where every device is done:
    ``done`` gives the devices per status (``succeeded=[...]``), then any operation-specific field."""
    statuses = ("succeeded", "unchanged", "scheduled", "accepted")
    devices = {status: done.pop(status, []) for status in statuses}
    return {
        "operation": operation,
        "vendor": vendor,
        "requested": sum(map(len, devices.values())),
        "dry_run": False,
        "counts": {**{status: len(ids) for status, ids in devices.items()}, "failed": 0, "unknown": 0},
        "devices": devices,
        "errors": [],
        **done,
    }


def _eventually(read: Callable[[], str], check: Callable[[str], bool], what: str) -> None:
    """Until ``check(read())`` holds (bounded): a log line may reach its file after the run ends."""
    deadline = time.monotonic() + LOG_TIMEOUT
    while not check(text := read()):
        assert time.monotonic() < deadline, f"{what}; it is:\n{text[-5000:]}"
        time.sleep(POLL_INTERVAL)


# The backstop in pyproject.toml (300 s) is shorter than the two bounds together.
@pytest.mark.timeout(STARTUP_TIMEOUT + RUN_TIMEOUT + 60)
def test_deferrable_sensors_are_resumed_by_the_real_triggerer(
    airflow_standalone: AirflowStandalone, simulator: Simulator
) -> None:
    airflow = airflow_standalone
    fleet = simulator.state.fleet
    taken: set[int] = set()
    cisco = _pick(simulator, 3, taken, status="ACTIVATED")
    roma = _pick(simulator, 3, taken, online_status=ONLINE)
    # One IMEI already reports the target firmware (the sensor's own first check matches it, and
    # the trigger must carry that match over); two do not until the test has them report it.
    verizon_done = _pick(simulator, 1, taken, firmware=TARGET_FIRMWARE)
    verizon_later = [
        *_pick(simulator, 1, taken, firmware=FIRMWARE_VERSIONS[0]),
        *_pick(simulator, 1, taken, firmware=FIRMWARE_VERSIONS[1]),
    ]
    verizon = verizon_done + verizon_later
    many = _pick(simulator, MANY, taken, online_status=OFFLINE)
    many_ids = [ROMA_ID_BASE + i for i in many]
    iccids = [iccid_of(i) for i in cisco]
    roma_ids = [ROMA_ID_BASE + i for i in roma]
    imeis = [imei_of(i) for i in verizon]
    run_id = f"standalone_{uuid.uuid4().hex[:12]}"

    def advance_clock() -> None:
        with httpx.Client(base_url=simulator.url, trust_env=False, timeout=10) as client:
            client.post(
                "/_sim/clock/advance", params={"seconds": CLOCK_ADVANCE.total_seconds()}
            ).raise_for_status()

    def reconnect() -> None:
        for index in roma:
            fleet.update(index, {"online_status": ONLINE})

    def report_firmware() -> None:
        for index in verizon_later:
            fleet.update(index, {"firmware": TARGET_FIRMWARE, "reported_firmware": TARGET_FIRMWARE})

    def reconnect_many() -> None:
        for index in many:
            fleet.update(index, {"online_status": ONLINE})

    # The outside world moves only once the sensor waiting for it has deferred: from then on only
    # its trigger, polling in the triggerer, can see the devices reach the target.
    world: dict[str, Callable[[], None]] = {
        "cisco_wait_deactivated": advance_clock,
        "roma_wait_online": reconnect,
        "verizon_wait_firmware": report_firmware,
        "roma_wait_many_online": reconnect_many,
    }
    # The simulator is the session's: what this run changed is what differs from now.
    before = simulator.state.snapshot()
    watcher = RunWatcher(airflow, run_id)
    started = time.monotonic()
    try:
        _wait_until_ready(airflow)
        ready = time.monotonic()
        conf = {
            "cisco_iccids": iccids,
            # A little in the simulator's future: Control Center accepts the edit with a 202.
            "cisco_effective_date": (simulator.state.now() + CISCO_DELAY).isoformat(timespec="seconds"),
            "roma_ids": roma_ids,
            "verizon_imeis": imeis,
            "verizon_firmware": TARGET_FIRMWARE,
            "roma_many_ids": many_ids,
        }
        airflow.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        airflow.api(
            "POST",
            f"/api/v2/dags/{DAG_ID}/dagRuns",
            {"dag_run_id": run_id, "logical_date": None, "conf": conf},
        )
        deadline = time.monotonic() + RUN_TIMEOUT
        state = watcher.look()
        while state not in ("success", "failed"):
            airflow.check_alive()
            assert time.monotonic() < deadline, f"the run did not end within {RUN_TIMEOUT:g} s ({state})"
            for task_id, act in world.items():
                if (
                    task_id not in watcher.acted
                    and watcher.deferred(task_id)
                    and _defer_exit_taken_in(airflow, run_id, task_id)
                ):
                    act()
                    watcher.acted.append(task_id)
            time.sleep(POLL_INTERVAL)
            state = watcher.look()
        ended = time.monotonic()
        print(
            f"\nairflow standalone ready (DAG parsed, api-server up) after {ready - started:.0f} s; "
            f"the run took {ended - ready:.0f} s"
        )

        assert state == "success"
        assert airflow.task_states(DAG_ID, run_id) == dict.fromkeys(test_dag.TASKS, "success")
        # Resumed, not retried: every task instance is on its first try.
        tries = dict(
            airflow.query(
                "SELECT task_id, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?",
                DAG_ID,
                run_id,
            )
        )
        assert tries == dict.fromkeys(test_dag.TASKS, 1)

        # Each of these sensors deferred to its vendor's trigger, which ran in the triggerer (it wrote
        # the trigger's log and its success event), and the sensor resumed from that event.
        assert sorted(watcher.acted) == sorted(TRIGGERS)
        for task_id, classpath in TRIGGERS.items():
            assert watcher.deferred(task_id)
            assert watcher.triggers[task_id] == {classpath}
            _eventually(
                lambda task_id=task_id: _task_log(airflow, run_id, task_id, trigger=True),
                lambda log: "Trigger fired event" in log and "'status': 'success'" in log,
                f"{task_id}: the triggerer's log of its trigger shows its success event",
            )
            _eventually(
                lambda task_id=task_id: _task_log(airflow, run_id, task_id),
                _deferred_then_resumed,
                f"{task_id}: its task log shows it deferred, then resumed with every device matched",
            )
        # The sensor after the (synchronous) force-offline matched at its first check: no deferral.
        first_check = test_dag.FIRST_CHECK_SENSOR
        assert not watcher.deferred(first_check)
        assert first_check not in watcher.triggers
        _eventually(
            lambda: _task_log(airflow, run_id, first_check),
            lambda log: "every device reports" in log and "Pausing task as DEFERRED" not in log,
            f"{first_check}: its task log shows it matched without deferring",
        )
        assert _task_log(airflow, run_id, first_check, trigger=True) == ""

        # The XCom return values, with exactly the devices asked for (DESIGN.md's shapes).
        xcoms = airflow.xcoms(DAG_ID, run_id)
        scheduled = dict(xcoms[("cisco_schedule_deactivation", "return_value")])
        # Read first (skip_unchanged, the default): what each SIM had, for a rollback.
        replaced = scheduled.pop("before")
        assert list(replaced) == iccids
        assert all(set(values) == {"status"} for values in replaced.values())
        assert all(values["status"] != test_dag.CISCO_TARGET_STATUS for values in replaced.values())
        assert scheduled == _outcome(
            "edit_devices",
            "Cisco IoT Control Center",
            scheduled=iccids,
            effective_date=conf["cisco_effective_date"],
        )
        assert xcoms[("cisco_wait_deactivated", "return_value")] == {
            "matched": iccids,
            "statuses": dict.fromkeys(iccids, test_dag.CISCO_TARGET_STATUS),
            "unreachable": {},
        }
        assert xcoms[("roma_force_offline", "return_value")] == _outcome(
            "force_offline", "Huawei Cloud ROMA Connect", succeeded=roma_ids
        )
        assert xcoms[("roma_wait_offline", "return_value")] == {
            "matched": roma_ids,
            "statuses": dict.fromkeys(map(str, roma_ids), "offline"),
            "unreachable": {},
        }
        assert xcoms[("roma_wait_online", "return_value")] == {
            "matched": roma_ids,
            "statuses": dict.fromkeys(map(str, roma_ids), "online"),
            "unreachable": {},
        }
        assert xcoms[("verizon_wait_firmware", "return_value")] == {
            "matched": imeis,
            "firmware": dict.fromkeys(imeis, TARGET_FIRMWARE),
            "unreachable": {},
        }
        # Many devices: handed to the trigger through the sensor's own XCom, its kwargs small (the
        # trigger table holds them encrypted: a third more), and the trigger in the real triggerer
        # read them back and waited on exactly them.
        assert xcoms[("roma_wait_many_online", "iotfleet_watch")] == {
            "ids": many_ids,
            "seen": [],
            "unreachable": [],
        }
        assert watcher.kwargs_length["roma_wait_many_online"] < 4096
        assert xcoms[("roma_wait_many_online", "return_value")] == {
            "matched": many_ids,
            "statuses": dict.fromkeys(map(str, many_ids), "online"),
            "unreachable": {},
        }
        # A sensor pushes "last_seen" only when its wait fails.
        assert [key for key in xcoms if key[1] == "last_seen"] == []

        # The simulator agrees: exactly these devices changed, and are as the sensors reported.
        snapshot = simulator.state.snapshot()
        changed = {int(index): device for index, device in snapshot["changed"].items()}
        newly_changed = {
            index for index, device in changed.items() if device != before["changed"].get(str(index))
        }
        assert sorted(newly_changed) == sorted(cisco + roma + verizon_later + many)
        assert snapshot["scheduled"] == []
        assert all(changed[i]["status"] == test_dag.CISCO_TARGET_STATUS for i in cisco)
        assert all(changed[i]["online_status"] == ONLINE for i in roma)
        assert all(fleet.device(i)["firmware"] == TARGET_FIRMWARE for i in verizon)
        counters, counted_before = snapshot["counters"], before["counters"]
        assert counters["cisco.edits"] - counted_before.get("cisco.edits", 0) == 3
        assert counters["huawei.force_offline"] - counted_before.get("huawei.force_offline", 0) == 1
    except BaseException as error:
        error.add_note(f"task states seen: {watcher.seen}\ntriggers seen: {watcher.triggers}")
        error.add_note(airflow.diagnostics(DAG_ID, run_id))
        raise


# --- Scale-out: mapped tasks on several workers share one account's rate limit ---------------------
#
# Scale-out on Airflow's own executor: ``example_dags/iotfleet_fleet_scale_out.py`` under
# ``airflow standalone`` (LocalExecutor, four worker processes), labelling 20,000 SIMs.
#
# The simulated Control Center account allows ``CISCO_VENDOR_LIMIT`` requests a second and answers
# 429 beyond; each call takes ``LATENCY``. The connection tells the client a little less than the
# account's limit and ``CISCO_MAX_CONCURRENCY`` calls in flight per task, so one task alone could not
# go faster than ``CISCO_MAX_CONCURRENCY / LATENCY`` a second. The DAG maps the edit over batches in a
# pool of four slots with a quarter of the connection's rate each: the test checks that the batches
# ran at the same time, every SIM was labelled exactly once, and the account's limit held (requests
# per second as the simulator saw them, and its 429 count), and reports how much faster than one task
# could be the run was. Speed itself is a benchmark's business, not this test's.
#
# The simulator and the ``airflow standalone`` are the session's (``conftest.py``), shared with
# ``test_standalone_triggerer.py``: what is checked is what changed during this run.

SCALE_OUT_DAG_ID = "iotfleet_fleet_scale_out"
SIMS_PER_BATCH = 2_500
SCALE_OUT_RUN_TIMEOUT = 420.0


@pytest.mark.timeout(STARTUP_TIMEOUT + SCALE_OUT_RUN_TIMEOUT + 60)
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
            airflow.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", SCALE_OUT_DAG_ID)
            and airflow.api_ready()
        ):
            airflow.check_alive()
            assert not airflow.query("SELECT filename FROM import_error"), "the example does not import"
            assert time.monotonic() < deadline, (
                f"{SCALE_OUT_DAG_ID} was not parsed within {STARTUP_TIMEOUT:g} s"
            )
            time.sleep(POLL_INTERVAL)
        airflow.api("POST", "/api/v2/pools", {"name": POOL, "slots": PARALLEL_TASKS})
        airflow.api("PATCH", f"/api/v2/dags/{SCALE_OUT_DAG_ID}", {"is_paused": False})
        airflow.api(
            "POST",
            f"/api/v2/dags/{SCALE_OUT_DAG_ID}/dagRuns",
            {
                "dag_run_id": run_id,
                "logical_date": None,
                "conf": {"sims_per_batch": SIMS_PER_BATCH, "label": "wave-42"},
            },
        )
        deadline = time.monotonic() + SCALE_OUT_RUN_TIMEOUT
        while (state := airflow.query("SELECT state FROM dag_run WHERE run_id = ?", run_id)) != [
            ("success",)
        ]:
            airflow.check_alive()
            assert state != [("failed",)], "the run failed"
            assert time.monotonic() < deadline, (
                f"the run did not end within {SCALE_OUT_RUN_TIMEOUT:g} s ({state})"
            )
            time.sleep(POLL_INTERVAL)

        # Every SIM labelled, each with exactly one PUT.
        report = airflow.xcoms(SCALE_OUT_DAG_ID, run_id)[("report", "return_value")]
        assert report == {
            "batches": batches,
            "succeeded": FLEET_SIZE,
            "unchanged": 0,
            "scheduled": 0,
            "accepted": 0,
            "failed": 0,
            "unknown": 0,
        }
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
            SCALE_OUT_DAG_ID,
            run_id,
        )
        assert sorted(row[0] for row in rows) == list(range(batches))
        assert {row[3] for row in rows} == {POOL}
        spans = [(timestamp(start), timestamp(end)) for _, start, end, _ in rows]
        at_once = most_at_once(spans)
        assert 2 <= at_once <= PARALLEL_TASKS

        # The account's limit held: what the simulator saw, per second, and its 429s.
        during = [r for r in account.state.request_log("cisco") if request_time(r) >= started]
        edits = [r for r in during if r["method"] == "PUT"]
        throttled = sum(1 for r in during if r["fault"] == "throttled")
        busiest = busiest_second([request_time(r) for r in edits])
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
        error.add_note(airflow.diagnostics(SCALE_OUT_DAG_ID, run_id))
        raise


# --- Retries: a write task failed part-way, or killed, and retried by Airflow itself ---------------
#
# ``dags/iotfleet_standalone_retries.py`` under the real scheduler. A write task's try ends part-way,
# failed by the vendor's 5xx answers or killed (SIGKILL, as an out-of-memory kill or a lost worker
# would end it), and Airflow retries it after ``retry_delay``. What a user must see: the task succeeds
# on a later try, every device is at its target, the last outcome names each device once (done by
# that try, ``succeeded``, or by an earlier one, ``unchanged``), and the vendor was never asked twice
# for a change it made: the simulator applied exactly one write per device (a write answered 5xx was
# not applied, and does not count).
#
# The faults are the simulator's, switched on for this test only, on the writes of the two vendors
# the DAG uses: 60% of them answer HTTP 500 during each task's first FAULTY_TRIES tries, none after,
# so that the run can end. Left on for all four tries, both tasks would succeed in 4% of runs at best,
# on any code: a ROMA batch gets one request per try (no transport retries on its connection), so one
# of the 20 batches fails all four tries 94% of the time (1 - (1 - 0.6**4)**20); a SIM gets two PUTs
# per try (a lost edit is read back and sent once more), so one of 30 fails all four 40% of the time.
#
# Killed: a Cisco edit of 30 SIMs, paced at four a second, is killed once some have landed. Effective
# now, the retry reads each SIM and sends only what is left; scheduled (Control Center shows no
# pending change), it skips what the killed try recorded in the task's state.
#
# The simulator and the ``airflow standalone`` are the session's, shared with the tests above: the
# devices are picked among those in the wanted state now, and what is checked is what changed since.

RETRIES_RUN_TIMEOUT = 300.0
FAULT_SHARE = 0.6
FAULTY_TRIES = 2
ROMA_DEVICES = 200
CISCO_SIMS = 30
#: The task is killed once this many of its SIMs' PUTs have landed (it sends about four a second).
KILL_AFTER = 8
#: The vendor each write task writes to, as the simulator's request log names it.
VENDOR_OF = {"roma_force_offline": "huawei", "cisco_deactivate": "cisco"}


class TaskRow(NamedTuple):
    state: str | None
    try_number: int
    pid: int | None


class TriesWatcher:
    """Follows a run's task instances in the metadata DB: each one's state, try and process."""

    def __init__(self, airflow: AirflowStandalone, dag_id: str, run_id: str) -> None:
        self.airflow = airflow
        self.dag_id = dag_id
        self.run_id = run_id
        #: task id -> its row at the last look
        self.rows: dict[str, TaskRow] = {}
        #: task id -> every (try number, state) it was seen in, in order
        self.seen: dict[str, list[tuple[int, str | None]]] = {}

    def look(self) -> str | None:
        """Record the task instances now; return the run's state."""
        for task_id, state, try_number, pid in self.airflow.query(
            "SELECT task_id, state, try_number, pid FROM task_instance WHERE dag_id = ? AND run_id = ?",
            self.dag_id,
            self.run_id,
        ):
            self.rows[task_id] = TaskRow(state, try_number, pid)
            seen = self.seen.setdefault(task_id, [])
            if not seen or seen[-1] != (try_number, state):
                seen.append((try_number, state))
        rows = self.airflow.query(
            "SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", self.dag_id, self.run_id
        )
        return rows[0][0] if rows else None

    def failed_tries(self, task_id: str) -> int:
        """How many of the task's tries have failed so far (Airflow counts a try up as it queues it)."""
        row = self.rows.get(task_id)
        if row is None:
            return 0
        return row.try_number if row.state == "up_for_retry" else max(row.try_number - 1, 0)

    def earlier_tries(self) -> dict[str, list[tuple[int, str]]]:
        """The tries before the last, per task, as Airflow keeps them (what the UI lists per try)."""
        tries: dict[str, list[tuple[int, str]]] = {}
        for task_id, try_number, state in self.airflow.query(
            "SELECT task_id, try_number, state FROM task_instance_history "
            "WHERE dag_id = ? AND run_id = ? ORDER BY task_id, try_number",
            self.dag_id,
            self.run_id,
        ):
            tries.setdefault(task_id, []).append((try_number, state))
        return tries

    def run(self, timeout: float, each_look: Callable[[], None] = lambda: None) -> str | None:
        """Look until the run ends (bounded by ``timeout``), calling ``each_look`` after every look;
        return the run's last state."""
        deadline = time.monotonic() + timeout
        state = self.look()
        while state not in ("success", "failed"):
            self.airflow.check_alive()
            assert time.monotonic() < deadline, f"the run did not end within {timeout:g} s ({state})"
            each_look()
            time.sleep(POLL_INTERVAL)
            state = self.look()
        return state


def _pick_now(simulator: Simulator, count: int, key: str, value: Any) -> list[int]:
    """The last ``count`` fleet indices whose ``key`` is ``value`` now: from the fleet's end, away from
    the devices the tests above pick, and never one an earlier test has changed away from ``value``."""
    found = simulator.state.fleet.indices_where(key, value)[-count:]
    assert len(found) == count, f"the fleet has fewer than {count} devices with {key} {value!r}"
    return found


def _trigger(airflow: AirflowStandalone, dag_id: str, run_id: str, conf: dict[str, Any]) -> None:
    airflow.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    airflow.api(
        "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf}
    )


def _each_device_once(outcome: dict[str, Any], devices: list[Any]) -> dict[str, list[Any]]:
    """Check that the outcome accounts for every device exactly once, as done (no error); return
    the devices in each status that has any."""
    assert outcome["errors"] == []
    assert outcome["requested"] == len(devices)
    done = {status: ids for status, ids in outcome["devices"].items() if ids}
    assert outcome["counts"] == {
        **{status: len(ids) for status, ids in outcome["devices"].items()},
        "failed": 0,
        "unknown": 0,
    }
    assert sorted(device for ids in done.values() for device in ids) == sorted(devices)
    return done


@pytest.mark.timeout(STARTUP_TIMEOUT + RETRIES_RUN_TIMEOUT + 60)
def test_write_tasks_failed_part_way_by_5xx_are_retried_without_writing_twice(
    airflow_standalone: AirflowStandalone, simulator: Simulator
) -> None:
    airflow, state = airflow_standalone, simulator.state
    dag_id = retries_dags.DAG_ID
    roma = _pick_now(simulator, ROMA_DEVICES, "online_status", ONLINE)
    cisco = _pick_now(simulator, CISCO_SIMS, "status", "ACTIVATED")
    devices: dict[str, list[Any]] = {
        "roma_force_offline": [ROMA_ID_BASE + i for i in roma],
        "cisco_deactivate": [iccid_of(i) for i in cisco],
    }
    run_id = f"retries_{uuid.uuid4().hex[:12]}"
    vendors = list(VENDOR_OF.values())
    sent_before = {vendor: state.per_device_writes(vendor) for vendor in vendors}
    applied_before = {vendor: state.per_device_writes(vendor, applied_only=True) for vendor in vendors}
    faulty = dict(VENDOR_OF)  # the tasks whose vendor's writes still meet faults
    faults_until: dict[str, int] = {}  # task id -> the last try that met faults
    watcher = TriesWatcher(airflow, dag_id, run_id)

    def end_faults_after_enough_failed_tries() -> None:
        for task_id in [task_id for task_id in faulty if watcher.failed_tries(task_id) >= FAULTY_TRIES]:
            state.clear_faults([faulty.pop(task_id)])
            faults_until[task_id] = watcher.rows[task_id].try_number

    try:
        _wait_until_ready(airflow, dag_id)
        started = time.monotonic()
        state.inject_faults(Faults(server_error=FAULT_SHARE), vendors, writes_only=True)
        faulted_from = state.now()
        _trigger(
            airflow,
            dag_id,
            run_id,
            {"roma_ids": devices["roma_force_offline"], "cisco_iccids": devices["cisco_deactivate"]},
        )
        run_state = watcher.run(RETRIES_RUN_TIMEOUT, end_faults_after_enough_failed_tries)
        took = time.monotonic() - started
        state.clear_faults(vendors)

        # Airflow: each write task failed part-way, was retried, and ended in success.
        assert run_state == "success"
        assert {task_id: row.state for task_id, row in watcher.rows.items()} == dict.fromkeys(
            retries_dags.TASKS, "success"
        )
        tries = {task_id: row.try_number for task_id, row in watcher.rows.items()}
        assert tries["report"] == 1
        assert all(tries[task_id] > 1 for task_id in VENDOR_OF), tries
        earlier = watcher.earlier_tries()
        for task_id in VENDOR_OF:
            assert earlier[task_id] == [(n, "failed") for n in range(1, tries[task_id])]

        # The simulator: every device at its target, each changed by exactly one applied write.
        assert [i for i in roma if state.fleet.device(i)["online_status"] != OFFLINE] == []
        assert [i for i in cisco if state.fleet.device(i)["status"] != retries_dags.CISCO_TARGET_STATUS] == []
        faulted: dict[str, int] = {}
        for task_id, vendor in VENDOR_OF.items():
            ids = [str(device) for device in devices[task_id]]
            applied = since(state.per_device_writes(vendor, applied_only=True), applied_before[vendor])
            assert {device: n for device, n in applied.items() if n > 1} == {}, f"{vendor}: applied twice"
            assert sorted(applied) == sorted(ids)
            # The faults did their part: writes refused with a 500 were sent again, on another try
            # or within one (the hook reads a lost edit back and sends it once more).
            sent = since(state.per_device_writes(vendor), sent_before[vendor])
            assert sent.total() > len(ids)
            faulted[vendor] = sum(
                1
                for request in state.request_log(vendor)
                if request["write"] and request["fault"] == "server_error" and request["time"] >= faulted_from
            )
            assert faulted[vendor] > 0

        # The outcome a user's report reads (pull_outcome): the last try's, each device once, done
        # by that try or found done (what the failed tries did); no failed try's outcome left over.
        xcoms = airflow.xcoms(dag_id, run_id)
        report = xcoms[("report", "return_value")]
        split: dict[str, tuple[int, int]] = {}
        for task_id, ids in devices.items():
            assert report[task_id] == xcoms[(task_id, "return_value")]
            assert (task_id, "outcome") not in xcoms
            done = _each_device_once(report[task_id], ids)
            # The last try did what the failed ones left, and found the rest done.
            assert done.keys() == {"succeeded", "unchanged"}
            split[task_id] = (len(done["succeeded"]), len(done["unchanged"]))
        print(
            f"\n{FAULT_SHARE:.0%} of writes answered 5xx for {FAULTY_TRIES} tries; tries: "
            + ", ".join(
                f"{task_id} {tries[task_id]} (faults until try {faults_until.get(task_id)})"
                for task_id in VENDOR_OF
            )
            + f"; 5xx answers: {faulted}; last try succeeded/unchanged: {split}; the run took {took:.0f} s"
        )
    except BaseException as error:
        error.add_note(f"tries seen: {watcher.seen}")
        error.add_note(airflow.diagnostics(dag_id, run_id))
        raise
    finally:
        state.clear_faults(vendors)


@pytest.mark.timeout(STARTUP_TIMEOUT + RETRIES_RUN_TIMEOUT + 60)
@pytest.mark.parametrize("scheduled", [False, True], ids=["effective_now", "scheduled"])
def test_a_killed_write_task_is_retried_without_writing_twice(
    airflow_standalone: AirflowStandalone, simulator: Simulator, scheduled: bool
) -> None:
    airflow, state = airflow_standalone, simulator.state
    dag_id, task_id = retries_dags.KILLED_DAG_ID, "cisco_deactivate"
    cisco = _pick_now(simulator, CISCO_SIMS, "status", "ACTIVATED")
    iccids = [iccid_of(i) for i in cisco]
    conf: dict[str, Any] = {"cisco_iccids": iccids}
    if scheduled:
        # A little in the simulator's future: Control Center accepts each edit with a 202, and shows
        # no pending change, so only the task's own state can tell a retry what was scheduled.
        conf["effective_date"] = (state.now() + CISCO_DELAY).isoformat(timespec="seconds")
    run_id = f"killed_{uuid.uuid4().hex[:12]}"
    applied_before = state.per_device_writes("cisco", applied_only=True)
    watcher = TriesWatcher(airflow, dag_id, run_id)
    landed_when_killed: set[str] = set()
    #: what the killed try left: the SIMs Control Center took, and those its task state names
    left: dict[str, set[str]] = {}

    def landed() -> set[str]:
        return set(since(state.per_device_writes("cisco", applied_only=True), applied_before))

    def kill_part_way_then_see_what_is_left() -> None:
        row = watcher.rows.get(task_id)
        if not landed_when_killed:
            assert row is None or row.state != "success", "the task ended before it could be killed"
            done = landed()
            if row is not None and row.state == "running" and row.pid and len(done) >= KILL_AFTER:
                assert row.try_number == 1
                assert len(done) < len(iccids), "every SIM was done before the task could be killed"
                airflow.kill_task(row.pid)
                landed_when_killed.update(done)
        elif not left and row is not None and (row.state == "up_for_retry" or row.try_number > 1):
            # Between the tries (the retry reads every SIM before its first edit): what it starts from.
            left.update(landed=landed(), recorded=_in_task_state(airflow, dag_id, run_id, task_id))

    try:
        _wait_until_ready(airflow, dag_id)
        started = time.monotonic()
        _trigger(airflow, dag_id, run_id, conf)
        run_state = watcher.run(RETRIES_RUN_TIMEOUT, kill_part_way_then_see_what_is_left)
        took = time.monotonic() - started

        # Airflow: the killed try failed, and the one retry succeeded.
        assert landed_when_killed
        assert run_state == "success"
        assert {task: row.state for task, row in watcher.rows.items()} == dict.fromkeys(
            retries_dags.KILLED_TASKS, "success"
        )
        assert {task: row.try_number for task, row in watcher.rows.items()} == {task_id: 2, "report": 1}
        assert watcher.earlier_tries() == {task_id: [(1, "failed")]}

        # The simulator: every SIM deactivated (or scheduled to be), each by one applied PUT...
        applied = since(state.per_device_writes("cisco", applied_only=True), applied_before)
        assert sorted(applied) == sorted(iccids)
        twice = {iccid for iccid, n in applied.items() if n > 1}
        if scheduled:
            # ...but the edit in flight when the process died, if one was (they go one at a time): it
            # may have been scheduled, and nothing could record its answer, so the retry sends it
            # again. Every edit the killed try saw accepted was in its task state, and not sent again.
            unrecorded = left["landed"] - left["recorded"]
            assert len(unrecorded) <= 1, (
                f"the killed try's task state names {len(left['landed'] & left['recorded'])} of the "
                f"{len(left['landed'])} edits Control Center scheduled: its retry schedules the others again"
            )
            # Nothing the task state recorded was sent again; the one edit in flight at the kill may
            # have been applied after the look above (the simulator's latency), unrecorded, and resent.
            assert twice & left["recorded"] == set()
            assert len(twice) <= 1, f"SIMs scheduled twice: {sorted(twice)}"
            state.advance(CLOCK_ADVANCE.total_seconds())
        else:
            assert twice == set(), "a SIM was deactivated twice"
        assert [i for i in cisco if state.fleet.device(i)["status"] != retries_dags.CISCO_TARGET_STATUS] == []

        # The outcome: what the killed try did is unchanged (or scheduled), the rest done by the retry.
        xcoms = airflow.xcoms(dag_id, run_id)
        outcome = xcoms[("report", "return_value")][task_id]
        assert outcome == xcoms[(task_id, "return_value")]
        done = _each_device_once(outcome, iccids)
        if scheduled:
            assert done == {"scheduled": iccids}
        else:
            assert done.keys() == {"succeeded", "unchanged"}
            assert landed_when_killed <= set(done["unchanged"])
        print(
            f"\nkilled with {len(landed_when_killed)} of {len(iccids)} SIMs "
            f"{'scheduled' if scheduled else 'deactivated'}; the retry's outcome: "
            f"{ {status: len(ids) for status, ids in done.items()} }; sent twice: {len(twice)}; "
            f"the run took {took:.0f} s"
        )
    except BaseException as error:
        error.add_note(f"tries seen: {watcher.seen}\nSIMs done when killed: {len(landed_when_killed)}")
        error.add_note(airflow.diagnostics(dag_id, run_id))
        raise


def _in_task_state(airflow: AirflowStandalone, dag_id: str, run_id: str, task_id: str) -> set[str]:
    """The device ids Airflow keeps in the task's state store (in any JSON object there): read as
    Airflow stores it, whatever the operator's layout."""
    named: set[str] = set()
    for (value,) in airflow.query(
        "SELECT value FROM task_state_store WHERE dag_id = ? AND run_id = ? AND task_id = ?",
        dag_id,
        run_id,
        task_id,
    ):
        entries = json.loads(value)
        if isinstance(entries, dict):
            named.update(entries)
    return named
