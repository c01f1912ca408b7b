"""``make demo``: the example DAGs end to end on Airflow's own machinery, against the local simulator.

On a throwaway AIRFLOW_HOME (SQLite, ``airflow db migrate`` done here), with the simulator on a free
loopback port and its connections exported, each example DAG runs with ``airflow dags test``:
deferrable sensors defer and resume inline, and the simulated clock is moved forward as soon as
Control Center holds scheduled changes, so they come due. Then a short table per DAG says what
changed on which devices. Exits non-zero if any DAG run failed.

``make airflow`` (``--ui``) instead starts ``airflow standalone`` wired to the simulator and the
example DAGs, to watch the same DAGs in the UI with the real scheduler and triggerer.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
)
SCALE_OUT_LABEL = "demo-wave-1"

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
    """Move the simulated clock past what the maintenance window waits for, as soon as it is there:
    a firmware campaign's last device, Control Center's scheduled changes."""
    while not stop.wait(0.5):
        moved = simulator.state.advance_past_pending()
        if moved is None:
            continue
        scheduled, campaigns, seconds = moved
        done = [
            f"{n} {what}"
            for n, what in ((campaigns, "firmware campaign"), (scheduled, "scheduled changes"))
            if n
        ]
        print(f"  simulator: clock moved {seconds / 60:.0f} min forward; {' and '.join(done)} done")


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
        """A write operator's outcome per (mapped) task: under "outcome" when it failed, else its return value."""
        values = self.xcom(dag_id, task_id, "outcome") or self.xcom(dag_id, task_id)
        return [FleetOutcome.from_xcom(value) for value in values]


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
        if state != "success":
            print(f"  see {home / 'logs' / (dag_id + '.log')}")
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
        else:
            for task_id in MAINTENANCE_STEPS:
                if task_id in OPERATOR_STEPS:
                    lines = [outcome.summary() for outcome in results.outcomes(dag_id, task_id)]
                else:
                    key = "outcome" if task_id == "wait_upgrade" else "return_value"
                    lines = [_wait_summary(value) for value in results.xcom(dag_id, task_id, key)]
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
        ]
        assert [dag_id for dag_id, _ in plan] == list(DAG_IDS)
        stop = threading.Event()
        advancer = threading.Thread(target=advance_past_pending, args=(simulator, stop), daemon=True)
        advancer.start()
        try:
            for dag_id, conf in plan:
                print(f"airflow dags test {dag_id} ...", flush=True)
                started = time.monotonic()
                command = [str(AIRFLOW), "dags", "test", dag_id, "-c", json.dumps(conf)]
                code = run(command, env, home / "logs" / f"{dag_id}.log", DAG_TIMEOUT)
                print(f"  exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        finally:
            stop.set()
        ok = report(Results(home / "airflow.db"), simulator, home)
    print("\nall example DAGs succeeded" if ok else "\nsome example DAGs failed")
    return 0 if ok else 1


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


def ui() -> int:
    home = ROOT / ".airflow-demo"
    home.mkdir(exist_ok=True)
    with simulator_running() as simulator:
        env = airflow_env(home, simulator)
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
            f"airflow standalone with AIRFLOW_HOME={home}: the UI is at http://localhost:8080 "
            "(the admin password is printed below and kept in simple_auth_manager_passwords.json.generated)"
        )
        try:
            return subprocess.run([str(AIRFLOW), "standalone"], env=env).returncode
        except KeyboardInterrupt:
            return 0
        finally:
            stop.set()


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
