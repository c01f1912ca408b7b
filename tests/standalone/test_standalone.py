"""A real Airflow: ``airflow standalone`` (scheduler with the LocalExecutor, triggerer, dag-processor,
api-server, SQLite) against the simulator, booted once for the two tests here (``conftest.py``).

Deferrable sensors handed to and resumed by the real triggerer: ``dags/iotfleet_standalone_triggerer.py``
runs, and the test plays the outside world: once a sensor is ``deferred`` it makes that sensor's devices
reach their target (the Cisco scheduled edit comes due when the simulator clock is advanced; the ROMA
devices reconnect; the ThingSpace devices report the new firmware), so each of those sensors can only
succeed through its trigger, polled in the triggerer.

Scale-out: ``example_dags/iotfleet_fleet_scale_out.py`` labels 20,000 SIMs in mapped batches on four
worker processes, under the simulated account's rate limit (see its section below).

Both share one simulator: each checks what changed during its own run.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import (
    FIRMWARE_VERSIONS,
    OFFLINE,
    ONLINE,
    ROMA_ID_BASE,
    iccid_of,
    imei_of,
)
from tests.standalone.conftest import (
    CISCO_MAX_CONCURRENCY,
    CISCO_VENDOR_LIMIT,
    FLEET_SIZE,
    LATENCY,
    POLL_INTERVAL,
    AirflowStandalone,
)
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


def _wait_until_ready(airflow: AirflowStandalone) -> None:
    """Until the dag-processor has put the DAG into the metadata DB and the api-server answers."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not (
        airflow.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", DAG_ID) and airflow.api_ready()
    ):
        airflow.check_alive()
        errors = airflow.query("SELECT filename, stacktrace FROM import_error")
        assert not errors, f"the DAG file does not import: {errors}"
        assert time.monotonic() < deadline, (
            f"within {STARTUP_TIMEOUT:g} s, {DAG_ID} was not parsed or the api-server did not answer"
        )
        time.sleep(POLL_INTERVAL)


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
                if task_id not in watcher.acted and watcher.deferred(task_id):
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
        schedule = xcoms[("cisco_schedule_deactivation", "return_value")]
        assert (schedule["requested"], schedule["devices"]["scheduled"], schedule["errors"]) == (
            3,
            iccids,
            [],
        )
        assert xcoms[("cisco_wait_deactivated", "return_value")] == {
            "matched": iccids,
            "statuses": dict.fromkeys(iccids, test_dag.CISCO_TARGET_STATUS),
            "unreachable": {},
        }
        forced = xcoms[("roma_force_offline", "return_value")]
        assert (forced["requested"], forced["devices"]["succeeded"], forced["errors"]) == (3, roma_ids, [])
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
            SCALE_OUT_DAG_ID,
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
        error.add_note(airflow.diagnostics(SCALE_OUT_DAG_ID, run_id))
        raise
