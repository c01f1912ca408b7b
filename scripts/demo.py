"""``make demo``: the example DAGs end to end on Airflow's own machinery, against the local simulator.

On a throwaway AIRFLOW_HOME (SQLite, ``airflow db migrate`` done here), with the simulator on a free
loopback port and its connections exported, each example DAG runs with ``airflow dags test``:
deferrable sensors defer and resume inline, and the simulated clock is moved forward as soon as
Control Center holds scheduled changes, so they come due. Then a short table per DAG says what
changed on which devices. Exits non-zero if any DAG run failed.

``make airflow`` (``--ui``) instead starts ``airflow standalone`` wired to the simulator and the
example DAGs, to watch the same DAGs in the UI with the real scheduler and triggerer, in
``.airflow-demo/`` (kept from one run to the next; ``IOTFLEET_DEMO_HOME`` names another folder). The
api-server listens on 8080 when that port is free, else on a free port (``AIRFLOW__API__PORT`` chooses
it). Once every part of Airflow is up, the script prints the UI's address and the admin's login; it
exits non-zero, saying which part failed and where its output is, if a part does not start. Ctrl-C
(or SIGTERM, SIGHUP) stops standalone and every process it started.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil  # an Airflow dependency

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DAGS = ROOT / "example_dags"
AIRFLOW = Path(sys.executable).with_name("airflow")
FLEET_SIZE = 300
#: Per DAG run; the maintenance window's waits are the longest part.
DAG_TIMEOUT = 600
DAG_IDS = (
    "iotfleet_firmware_inventory",
    "iotfleet_cellular_enrichment",
    "iotfleet_maintenance_window",
    "iotfleet_fleet_scale_out",
    "iotfleet_planned_sim_change",
    "iotfleet_campaign_finished_event",
)
#: The DAG whose approval the demo answers, and the answer (scripts/approval.py, as the UI's API does).
APPROVAL = ("iotfleet_planned_sim_change", "Approve")
SCALE_OUT_LABEL = "demo-wave-1"
#: ``make airflow``: Airflow's own port for the UI, taken when it is free.
UI_PORT = 8080
#: How long ``airflow standalone`` may take until the api-server answers and the scheduler,
#: dag-processor and triggerer heartbeat: 30 to 60 s on an idle machine, over 150 s on two busy cores.
STARTUP_TIMEOUT = 300.0
#: Seconds standalone's processes get to end on SIGTERM, and as long again to be gone, before SIGKILL.
STOP_GRACE = 15.0
#: How often the script looks at standalone while it starts and runs, s.
POLL_INTERVAL = 0.5
#: The parts ``airflow standalone`` starts, each as ``airflow <part>`` (its output prefixed "<part> | ").
PARTS = ("scheduler", "dag-processor", "api-server", "triggerer")
#: The parts that heartbeat, and their names in the api-server's health report.
HEARTBEATS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
#: Where the simple auth manager (which standalone uses) keeps the passwords it generates.
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"

from airflow_provider_iotfleet.outcome import STATUSES, FleetOutcome  # noqa: E402
from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig  # noqa: E402
from airflow_provider_iotfleet.simulator.campaigns import upgrade_for  # noqa: E402
from airflow_provider_iotfleet.simulator.fleet import ONLINE, ROMA_ID_BASE, iccid_of, imei_of  # noqa: E402


def airflow_env(home: Path, simulator: Simulator) -> dict[str, str]:
    """The environment every Airflow command of the demo runs with."""
    connections = simulator.connections()
    # The simulator enforces no rate limit unless told to: let Control Center lookups go faster
    # than the vendor's published 5 requests/s, 4 at a time, so the demo takes seconds, not minutes.
    connections["cisco_control_center_default"]["extra"] = {"requests_per_second": 100, "max_concurrency": 4}
    return {
        **os.environ,
        # What Airflow starts runs `airflow` from PATH (standalone starts each of its parts so): this venv's
        # first, also from a shell where the venv is not activated.
        "PATH": os.pathsep.join(filter(None, (str(AIRFLOW.parent), os.environ.get("PATH")))),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLE_DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "IOTFLEET_INVENTORY_ROOT": f"file://{home}/inventory",
        **{f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in connections.items()},
    }


def advance_past_pending(simulator: Simulator, stop: threading.Event) -> None:
    """Apply what the maintenance window waits for as soon as it is there (a firmware campaign's last
    device, Control Center's scheduled changes) by moving the simulated clock past it and back: the
    next run's "in 90 minutes" is 90 minutes away again."""
    while not stop.wait(0.5):
        moved = simulator.state.advance_past_pending(keep_clock=True)
        if moved is None:
            continue
        scheduled, campaigns, seconds = moved
        done = [
            f"{n} {what}"
            for n, what in ((campaigns, "firmware campaign"), (scheduled, "scheduled changes"))
            if n
        ]
        print(
            f"  simulator: {' and '.join(done)} done ({seconds / 60:.0f} min ahead, then the clock put back)"
        )


def pick_devices(simulator: Simulator) -> dict[str, Any]:
    """Devices of the simulated fleet the maintenance window can act on, as the DAG's params."""
    fleet = simulator.state.fleet
    online = [i for i in range(fleet.size) if fleet.device(i)["online_status"] == ONLINE]
    activated = [i for i in online[5:] if fleet.device(i)["status"] == "ACTIVATED"][:4]
    rest = [i for i in online[5:] if i not in activated]
    upgrade = next(u for i in rest if (u := upgrade_for(fleet.device(i))) is not None)
    upgradable = [i for i in rest if upgrade_for(fleet.device(i)) == upgrade]
    return {
        "roma_device_ids": [ROMA_ID_BASE + i for i in online[:5]],
        "iccids": [iccid_of(i) for i in activated],
        "sim_status": "DEACTIVATED",
        "effective_in_minutes": 90,
        "imeis": [imei_of(i) for i in upgradable[:4]],
        "firmware_name": upgrade.name,
    }


def run(command: list[str], env: dict[str, str], log: Path, timeout: float) -> int:
    """Run an Airflow command, its output to ``log``; return its exit code."""
    with log.open("w") as out:
        try:
            return subprocess.run(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            out.write(f"\n[demo] timed out after {timeout:.0f} s\n")
            return 124


class Results:
    """Read DAG runs, task states and XComs back from the demo's metadata DB."""

    def __init__(self, db: Path) -> None:
        self._db = sqlite3.connect(db)

    def run_state(self, dag_id: str) -> str:
        row = self._db.execute(
            "SELECT state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        return row[0] if row else "not run"

    def task_states(self, dag_id: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT ti.task_id, ti.map_index, ti.state FROM task_instance ti JOIN dag_run dr"
            " ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id WHERE dr.id ="
            " (SELECT MAX(id) FROM dag_run WHERE dag_id = ?)",
            (dag_id,),
        ).fetchall()
        return {f"{task}[{index}]" if index >= 0 else task: state for task, index, state in rows}

    def xcom(self, dag_id: str, task_id: str, key: str = "return_value") -> list[Any]:
        rows = self._db.execute(
            "SELECT x.value FROM xcom x JOIN dag_run dr ON x.dag_run_id = dr.id WHERE dr.id ="
            " (SELECT MAX(id) FROM dag_run WHERE dag_id = ?) AND x.task_id = ? AND x.key = ? ORDER BY x.map_index",
            (dag_id, task_id, key),
        ).fetchall()
        return [_decode(value) for (value,) in rows]

    def outcomes(self, dag_id: str, task_id: str) -> list[FleetOutcome]:
        """A write operator's outcome per (mapped) task instance: under "outcome" when it failed,
        else its return value."""
        rows = self._db.execute(
            "SELECT x.map_index, x.key, x.value FROM xcom x JOIN dag_run dr ON x.dag_run_id = dr.id WHERE dr.id ="
            " (SELECT MAX(id) FROM dag_run WHERE dag_id = ?) AND x.task_id = ? AND x.key IN ('outcome', 'return_value')"
            " ORDER BY x.map_index",
            (dag_id, task_id),
        ).fetchall()
        by_index: dict[int, Any] = {}
        for map_index, key, value in rows:
            if key == "outcome" or map_index not in by_index:
                by_index[map_index] = value
        return [FleetOutcome.from_xcom(_decode(value)) for value in by_index.values()]


def _decode(value: Any) -> Any:
    while isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            break
    return value


#: The maintenance window's steps in DAG order; the operators' outcomes, and the waits' results.
MAINTENANCE_STEPS = (
    "force_offline",
    "wait_offline",
    "upgrade_firmware",
    "wait_upgrade",
    "sync_firmware",
    "wait_firmware",
    "schedule_sim_change",
    "wait_sim_change",
)
OPERATOR_STEPS = ("force_offline", "upgrade_firmware", "sync_firmware", "schedule_sim_change")


def failed_steps(states: dict[str, str]) -> list[str]:
    """The tasks (``task[map index]`` for mapped ones) of a run that failed, or did not run because
    a task before them failed, sorted by name."""
    return sorted(task for task, state in states.items() if state in ("failed", "upstream_failed"))


def _counts(counts: dict[str, int] | None) -> str:
    """``"56 succeeded, 4 unchanged"``, or ``"nothing"`` for a step that did not run."""
    return ", ".join(f"{n} {status}" for status, n in (counts or {}).items() if n) or "nothing"


def _wait_summary(value: dict[str, Any]) -> str:
    """One line for a maintenance wait: what it matched, or where the campaign ended."""
    if "campaign_id" in value:
        return (
            f"{len(value['finished'])} finished, {len(value['failed'])} failed, {len(value['pending'])} pending "
            f"(campaign {value['campaign_id']}, {value['status']})"
        )
    return f"{len(value['matched'])} matched: {value.get('statuses') or value.get('firmware')}"


def report(results: Results, simulator: Simulator, home: Path) -> bool:
    """Print a short table per DAG; return whether every run succeeded."""
    ok = True
    snapshot = simulator.state.snapshot()
    changed = snapshot["changed"].values()
    for dag_id in DAG_IDS:
        state = results.run_state(dag_id)
        ok &= state == "success"
        states = results.task_states(dag_id)
        counts = {s: list(states.values()).count(s) for s in sorted(set(states.values()))}
        print(f"\n{dag_id}: {state.upper()}  (tasks: {', '.join(f'{n} {s}' for s, n in counts.items())})")
        if failed := failed_steps(states):
            print(f"  steps failed: {', '.join(failed)}")
        # `airflow dags test` writes each task's log into its own output: one file per DAG run.
        print(f"  task logs: {home / 'logs' / (dag_id + '.log')}")
        if dag_id == "iotfleet_firmware_inventory":
            for summary in results.xcom(dag_id, "summarise"):
                print(f"  inventory: {summary['devices']} devices in {summary['path']}")
                for row in summary["firmware"]:
                    print(
                        f"    {row['make']:<26} {row['model']:<8} {row['firmware']:<18} {row['devices']:>5}"
                    )
                print(
                    f"  not FOTA-eligible: {summary['not_fota_eligible']['count']}, "
                    f"without license: {summary['without_license']['count']}"
                )
        elif dag_id == "iotfleet_cellular_enrichment":
            batches = results.outcomes(dag_id, "push_to_iot_security")
            outcome = FleetOutcome.combine(batches) if batches else None
            in_pan = sum(1 for device in changed if device.get("paloalto"))
            if outcome is not None:
                print(
                    f"  IoT Security: {outcome.requested} devices sent in {len(batches)} mapped batches: "
                    f"{outcome.summary()}, {outcome.details['updated']} counted as updated; the simulator "
                    f"holds cellular attributes for {in_pan} devices"
                )
        elif dag_id == "iotfleet_fleet_scale_out":
            for totals in results.xcom(dag_id, "report"):
                labelled = sum(
                    1 for device in changed if device["custom"].get("accountCustom1") == SCALE_OUT_LABEL
                )
                done = totals["succeeded"] + totals["unchanged"]
                print(
                    f"  Control Center: {done} of {sum(totals[s] for s in STATUSES)} SIMs labelled "
                    f"{SCALE_OUT_LABEL!r} in {totals['batches']} mapped batches, {totals['failed']} failed; "
                    f"the simulator holds the label on {labelled} SIMs"
                )
        elif dag_id == "iotfleet_campaign_finished_event":
            for done in results.xcom(dag_id, "report_campaign"):
                print(
                    f"  campaign {done['campaign_id']} ({done['status']}): {done['finished']} of "
                    f"{done['devices']} devices upgraded, {done['failed']} failed, {done['pending']} pending"
                )
        elif dag_id == APPROVAL[0]:
            for done in results.xcom(dag_id, "report") + results.xcom(dag_id, "report", "report"):
                print(
                    f"  {'approved' if done['approved'] else 'rejected'}; planned {_counts(done['planned'])}; "
                    f"applied {_counts(done['applied'])}; "
                    f"{'verified' if done['verified'] else 'not verified'}; "
                    f"rolled back {_counts(done['rolled_back'])}"
                )
        else:
            for task_id in MAINTENANCE_STEPS:
                if task_id in OPERATOR_STEPS:
                    lines = [outcome.summary() for outcome in results.outcomes(dag_id, task_id)]
                else:
                    # The campaign sensor pushes under "outcome" only when it failed the task.
                    values = results.xcom(dag_id, task_id, "outcome") or results.xcom(dag_id, task_id)
                    lines = [_wait_summary(value) for value in values]
                for line in lines:
                    print(f"  {task_id:<20} {line}")
            for upgrade in results.outcomes(dag_id, "upgrade_firmware"):
                details = upgrade.details
                print(
                    f"  {'':<20} campaign {details['campaign_id']}: {details['firmware_from']} -> "
                    f"{details['firmware_to']}, {details['start_date']} to {details['end_date']}"
                )
            for failures in results.xcom(dag_id, "report"):
                for step, items in failures["failed"].items():
                    for item in items:
                        print(f"  failed in {step}: {item}")
    print(
        f"\nsimulator: {len(snapshot['changed'])} devices changed, {len(snapshot['scheduled'])} changes still scheduled"
    )
    return ok


@contextmanager
def simulator_running() -> Iterator[Simulator]:
    simulator = Simulator(SimulatorConfig(devices=FLEET_SIZE, verizon_page_size=100)).start()
    print(f"simulator: {FLEET_SIZE} devices at {simulator.url} (stopped when the demo ends)")
    try:
        yield simulator
    finally:
        simulator.stop()


def demo() -> int:
    home = Path(tempfile.mkdtemp(prefix="iotfleet-demo-"))
    (home / "logs").mkdir()
    print(f"AIRFLOW_HOME: {home} (throwaway, SQLite)")
    with simulator_running() as simulator:
        env = airflow_env(home, simulator)
        print("airflow db migrate ...")
        if run([str(AIRFLOW), "db", "migrate"], env, home / "logs" / "db-migrate.log", 300):
            print(f"airflow db migrate failed: see {home / 'logs' / 'db-migrate.log'}")
            return 1
        plan = [
            ("iotfleet_firmware_inventory", {}),
            ("iotfleet_cellular_enrichment", {"sims_per_batch": 100}),
            ("iotfleet_maintenance_window", pick_devices(simulator)),
            ("iotfleet_fleet_scale_out", {"sims_per_batch": 100, "label": SCALE_OUT_LABEL}),
            ("iotfleet_planned_sim_change", {"sim_count": 200, "sim_status": "DEACTIVATED"}),
            # Asset-scheduled on a campaign watcher, which `airflow dags test` does not run (only a
            # triggerer does): a run without an asset event reports on the campaign its params name,
            # the maintenance window's, known once that DAG ran.
            ("iotfleet_campaign_finished_event", lambda: {"campaign_id": window_campaign(simulator)}),
        ]
        assert [dag_id for dag_id, _ in plan] == list(DAG_IDS)
        stop = threading.Event()
        advancer = threading.Thread(target=advance_past_pending, args=(simulator, stop), daemon=True)
        advancer.start()
        try:
            for dag_id, conf in plan:
                print(f"airflow dags test {dag_id} ...", flush=True)
                started = time.monotonic()
                params = conf() if callable(conf) else conf
                command = [str(AIRFLOW), "dags", "test", dag_id, "-c", json.dumps(params)]
                answerer = answer_approval(env, home) if dag_id == APPROVAL[0] else None
                code = run(command, env, home / "logs" / f"{dag_id}.log", DAG_TIMEOUT)
                print(f"  exit {code} after {time.monotonic() - started:.0f} s", flush=True)
                if answerer is not None:
                    print(f"  approval: {approval_result(answerer, home)}", flush=True)
        finally:
            stop.set()
        ok = report(Results(home / "airflow.db"), simulator, home)
    print("\nall example DAGs succeeded" if ok else "\nsome example DAGs failed")
    return 0 if ok else 1


def window_campaign(simulator: Simulator) -> str:
    """The id of the firmware campaign the maintenance window scheduled (the demo's only one)."""
    (campaign_id,) = simulator.state.campaigns.summary()
    return str(campaign_id)


def answer_approval(env: dict[str, str], home: Path) -> subprocess.Popen[bytes]:
    """Start ``scripts/approval.py`` on the demo's metadata DB: it answers the approval of
    :data:`APPROVAL`'s DAG once it waits, through Airflow's own HITL API route, as a person in the UI
    would; its output goes to ``logs/approval.log``."""
    dag_id, option = APPROVAL
    with (home / "logs" / "approval.log").open("w") as out:
        return subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts" / "approval.py"),
                "--dag-id",
                dag_id,
                "--answer",
                option,
                "--timeout",
                str(DAG_TIMEOUT),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def approval_result(answerer: subprocess.Popen[bytes], home: Path) -> str:
    """Whether the approval was answered (the answerer ends once it has), and how; ends it if not."""
    try:
        code = answerer.wait(timeout=10)
    except subprocess.TimeoutExpired:
        answerer.terminate()
        answerer.wait(timeout=10)
        code = None
    log = home / "logs" / "approval.log"
    if code == 0:
        return f"answered {APPROVAL[1]!r} through Airflow's HITL API (scripts/approval.py, see {log})"
    return f"not answered (see {log})"


def scale_out_pool() -> tuple[str, int]:
    """The pool iotfleet_fleet_scale_out runs in, and its slots, as the DAG file defines them."""
    spec = importlib.util.spec_from_file_location(
        "iotfleet_fleet_scale_out", EXAMPLE_DAGS / "iotfleet_fleet_scale_out.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.POOL, module.PARALLEL_TASKS


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether nothing listens on ``port``, on any interface (the api-server listens on all of them)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def ui_env(home: Path, simulator: Simulator, port: int) -> dict[str, str]:
    """The environment of ``airflow standalone`` and its parts: :func:`airflow_env`, the api-server on
    ``port``, the log servers on free ports (another Airflow on this machine may hold their defaults),
    the generated password where :func:`login` reads it, and output unbuffered so it shows as it comes."""
    return {
        **airflow_env(home, simulator),
        "AIRFLOW__API__PORT": str(port),
        # Also where tasks reach the execution API ({base_url}/execution/; Airflow's default is port 8080).
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / PASSWORDS_FILE),
        "PYTHONUNBUFFERED": "1",
    }


def login(env: dict[str, str]) -> list[str]:
    """How to log in to the UI: the users and passwords the simple auth manager generated (standalone
    prints them only when it generates them, on the first run over an Airflow home)."""
    if env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "").lower() == "true":
        return ["  no login: the simple auth manager lets everyone in as admin"]
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    try:
        passwords = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        passwords = {}
    if not passwords:
        return [f"  the simple auth manager keeps its users' passwords in {path}"]
    return [
        f"  user {user}, password {password} (the simple auth manager keeps it in {path})"
        for user, password in passwords.items()
    ]


@contextmanager
def interrupting(*signums: int) -> Iterator[None]:
    """Meanwhile, these signals stop the script as Ctrl-C does (KeyboardInterrupt)."""
    previous = {signum: signal.signal(signum, signal.default_int_handler) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


#: "<part> | <line>": a line of a part's output, as standalone shows it.
PART_LINE = re.compile(r"^(\S+)\s*\| ?(.*)$")
#: Python's report of an exception that ended a thread: standalone starts each part's process from a
#: thread named after the part, which ends so when the process cannot be started. The reports of
#: parts that fail at once come interleaved, even within a line.
THREAD_FAILED = "Exception in thread"
THREAD_FAILED_NAMED = re.compile(rf"{THREAD_FAILED} ({'|'.join(PARTS)})\b")
#: The exception itself, the last line of a traceback ("FileNotFoundError: [Errno 2] ...").
EXCEPTION_LINE = re.compile(r"^(\w+\.)*\w+(: .*)?$")
#: Signals that stop ``make airflow`` as Ctrl-C does.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _and(names: list[str]) -> str:
    return " and ".join(filter(None, (", ".join(names[:-1]), names[-1])))


class Standalone:
    """``airflow standalone`` in a session of its own: its output shown here and kept (all of it, and
    each part's), its start watched, and stopped with every process it started.

    :param command: the command (``airflow standalone``).
    :param env: its environment (:func:`ui_env`).
    :param logs: the folder for its output: ``output.log`` and ``<part>.log``.
    :param port: the api-server's port.
    """

    def __init__(self, command: list[str], env: dict[str, str], logs: Path, port: int) -> None:
        self.command = command
        self.env = env
        self.logs = logs
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        #: Whether a part's process could not be started; the parts named so, and the exceptions.
        self.start_failed = False
        self.failed: set[str] = set()
        self.exceptions: list[str] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._health = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def log(self, part: str = "output") -> Path:
        return self.logs / f"{part}.log"

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C reaches this script, which stops standalone with all it started.
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="standalone-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Show standalone's output and keep it, each part's also in its own log; note the parts that
        could not be started, and why."""
        assert self.process is not None
        assert self.process.stdout is not None
        parts = {part: self.log(part).open("w") for part in PARTS}
        with self.log().open("w") as everything:
            for raw in self.process.stdout:
                line = raw.decode(errors="replace").rstrip()
                print(line, flush=True)
                everything.write(line + "\n")
                everything.flush()
                if (match := PART_LINE.match(line)) and match.group(1) in parts:
                    parts[match.group(1)].write(match.group(2) + "\n")
                    parts[match.group(1)].flush()
                elif THREAD_FAILED in line:
                    with self._lock:
                        self.start_failed = True
                        self.failed.update(THREAD_FAILED_NAMED.findall(line))
                elif self.start_failed and EXCEPTION_LINE.match(line):
                    with self._lock:
                        # Another report's indentation can land inside this one: "Error:     [Errno 2]".
                        self.exceptions.append(" ".join(line.split()))
        for log in parts.values():
            log.close()

    def problem(self) -> str | None:
        """What went wrong, and where to read more: parts that could not be started, or standalone's
        exit. None while neither happened."""
        assert self.process is not None
        if self.start_failed:
            time.sleep(1.0)  # the rest of the tracebacks, and the other parts' processes, are on their way
            with self._lock:
                named = set(self.failed)
                # Interleaving garbles some of the reports ("FileNotFoundErrorFileNotFoundError: ..."):
                # the exception most of them end with, the shortest when as many end with two.
                exception = max(
                    self.exceptions,
                    key=lambda report: (
                        sum(other.endswith(report) for other in self.exceptions),
                        -len(report),
                    ),
                    default="see the traceback",
                )
            # A part's name can be cut in two by another's report: a part with no process failed too.
            failed = [part for part in PARTS if part in named or part not in self.running_parts()]
            # The tracebacks are in standalone's own output, not in the parts'.
            return f"the {_and(failed or ['a part'])} could not be started ({exception}): see {self.log()}"
        code = self.process.poll()
        if code is not None:
            return f"airflow standalone exited with code {code}: see {self.log()}"
        return None

    def running_parts(self) -> set[str]:
        """The parts whose process runs (as standalone's child, "airflow <part> ...")."""
        assert self.process is not None
        running = set()
        with suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children():
                with suppress(psutil.Error):
                    # The api-server calls itself "airflow api_server -- host:... port:...".
                    words = " ".join(child.cmdline()).replace("_", "-").split()
                    running.update(part for part in PARTS if part in words)
        return running

    def health(self) -> dict[str, Any] | None:
        """The api-server's health report, or None while it does not answer it."""
        url = f"http://127.0.0.1:{self.port}/api/v2/monitor/health"
        try:
            with self._health.open(url, timeout=5.0) as answer:
                report = json.load(answer)
        except (OSError, ValueError):
            return None
        return report if isinstance(report, dict) else None

    @staticmethod
    def not_beating(report: dict[str, Any], since: datetime) -> list[str]:
        """The parts with no heartbeat in the health ``report`` since ``since``; an earlier run of
        Airflow over the same home leaves its own heartbeats in the metadata DB."""
        late = []
        for part, name in HEARTBEATS.items():
            status = report.get(name) or {}
            beat = status.get(f"latest_{name}_heartbeat")
            when = datetime.fromisoformat(beat) if isinstance(beat, str) else None
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            if status.get("status") != "healthy" or when is None or when < since:
                late.append(part)
        return late

    def wait_until_up(self, since: datetime, timeout: float) -> str | None:
        """Wait until the api-server answers and every part that heartbeats has done so since ``since``;
        return None then, or what failed (:meth:`problem`, or what was not up after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            if problem := self.problem():
                return problem
            report = self.health()
            late = list(HEARTBEATS) if report is None else self.not_beating(report, since)
            if not late:
                return None
            if time.monotonic() >= deadline:
                if report is None:
                    return (
                        f"the api-server did not answer on port {self.port} within {timeout:.0f} s: "
                        f"see {self.log('api-server')}"
                    )
                return "; ".join(
                    f"the {part} did not start within {timeout:.0f} s (no heartbeat): see {self.log(part)}"
                    for part in late
                )
            time.sleep(POLL_INTERVAL)

    def watch(self) -> str:
        """Wait until something goes wrong (:meth:`problem`); return what."""
        while (problem := self.problem()) is None:
            time.sleep(POLL_INTERVAL)
        return problem

    def stop(self) -> None:
        """End standalone and every process it started: SIGTERM to its process group and to every
        process below it (the task processes run in process groups of their own); after
        :data:`STOP_GRACE` s for standalone to end and as long again for the rest, SIGKILL."""
        if self.process is None:
            return
        # A second Ctrl-C does not cut the cleanup short; it is bounded anyway.
        previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
        try:
            tree = self._tree()
            self._signal(tree, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_GRACE)
            deadline = time.monotonic() + STOP_GRACE
            while self._running(tree) and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL)
            self._signal(tree + self._tree(), signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_GRACE)
            if self._reader is not None:
                self._reader.join(timeout=STOP_GRACE)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _tree(self) -> list[psutil.Process]:
        """Standalone and every process below it."""
        assert self.process is not None
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _signal(self, tree: list[psutil.Process], signum: int) -> None:
        assert self.process is not None
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)
        for process in tree:
            with suppress(psutil.Error):
                process.send_signal(signum)  # psutil checks that the pid is still that process's

    @staticmethod
    def _running(tree: list[psutil.Process]) -> bool:
        for process in tree:
            with suppress(psutil.Error):
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    return True
        return False


def serve(
    command: list[str], env: dict[str, str], home: Path, port: int, startup_timeout: float = STARTUP_TIMEOUT
) -> int:
    """Run ``command`` (``airflow standalone``) until Ctrl-C, SIGTERM or SIGHUP, and return 0 then; once
    it is up, print the UI's address and login. Return 1 as soon as a part of it could not be started,
    it exited, or it was not up within ``startup_timeout`` s, saying what failed and where its output is.
    Whatever happens, no process it started is left running."""
    standalone = Standalone(command, env, home / "logs" / "standalone", port)
    started = time.monotonic()
    since = datetime.now(UTC)
    try:
        with interrupting(signal.SIGTERM, signal.SIGHUP):
            standalone.start()
            problem = standalone.wait_until_up(since, startup_timeout)
            if problem is None:
                print(
                    f"\nairflow standalone is up after {time.monotonic() - started:.0f} s: "
                    f"the UI is at http://localhost:{port} (Ctrl-C stops it)"
                )
                print("\n".join(login(env)), flush=True)
                problem = standalone.watch()
    except KeyboardInterrupt:
        print("\nstopping airflow standalone ...", flush=True)
        problem = None
    finally:
        standalone.stop()
    if problem is None:
        print("airflow standalone stopped", flush=True)
        return 0
    print(f"\nairflow standalone failed: {problem}", flush=True)
    return 1


def ui() -> int:
    home = Path(os.environ.get("IOTFLEET_DEMO_HOME") or ROOT / ".airflow-demo").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if chosen := os.environ.get("AIRFLOW__API__PORT"):
        port = int(chosen)
        if not port_free(port):
            print(f"port {port} (AIRFLOW__API__PORT) is in use: choose another one")
            return 1
    else:
        port = UI_PORT if port_free(UI_PORT) else free_port()
    try:
        with interrupting(signal.SIGTERM, signal.SIGHUP), simulator_running() as simulator:
            env = ui_env(home, simulator, port)
            # iotfleet_fleet_scale_out's tasks wait for a pool that does not exist until it is created.
            pool, slots = scale_out_pool()
            print(f"airflow db migrate, and the pool {pool} ...", flush=True)
            for command in (
                ["db", "migrate"],
                ["pools", "set", pool, str(slots), "Cisco Control Center account: tasks at once"],
            ):
                if run([str(AIRFLOW), *command], env, home / "setup.log", 300):
                    print(f"airflow {' '.join(command[:2])} failed: see {home / 'setup.log'}")
                    return 1
            stop = threading.Event()
            threading.Thread(target=advance_past_pending, args=(simulator, stop), daemon=True).start()
            print(
                f"airflow standalone with AIRFLOW_HOME={home}, on port {port} (its output is also kept in "
                f"{home / 'logs' / 'standalone'}); the UI's address and login follow once every part is up",
                flush=True,
            )
            try:
                return serve([str(AIRFLOW), "standalone"], env, home, port)
            finally:
                stop.set()
    except KeyboardInterrupt:
        print("\nstopped", flush=True)
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ui", action="store_true", help="start airflow standalone instead of running the DAGs"
    )
    args = parser.parse_args()
    if shutil.which(str(AIRFLOW)) is None:
        print(f"{AIRFLOW} not found: run `make demo`, which creates the environment first")
        return 1
    return ui() if args.ui else demo()


if __name__ == "__main__":
    sys.exit(main())
