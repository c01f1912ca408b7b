"""``make demo``: ``scripts/demo.py`` run the way the Makefile runs it, its summary checked.

``make demo`` is ``.venv/bin/python scripts/demo.py`` after (re)installing the venv; the test runs
that command itself, not ``make`` (which would reinstall the venv under the test). Each run takes
minutes (three ``airflow dags test`` processes, each paying Airflow's start-up and the in-process
execution API), so one run by default; ``IOTFLEET_DEMO_RUNS=2`` runs it twice in a row, which
shows that a second run does not trip over what the first left behind.

The demo's environment is the caller's, less this test session's ``AIRFLOW*``/``IOTFLEET_*``
variables (as from a developer's shell), with ``TMPDIR`` pointed at the test's temporary directory:
the demo's throwaway AIRFLOW_HOME (``tempfile.mkdtemp``), and with it the inventory file, land
there, and ``AIRFLOW_HOME`` of the demo's own process too (it imports Airflow through the
simulator, and would otherwise create ``~/airflow``); the Airflow commands it starts get the
AIRFLOW_HOME it makes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.example_runs import ROOT

PYTHON = ROOT / ".venv" / "bin" / "python"
DEMO = Path("scripts") / "demo.py"
RUNS = int(os.environ.get("IOTFLEET_DEMO_RUNS", "1"))
#: The demo gives ``airflow db migrate`` 300 s and each of its six DAG runs 600 s.
RUN_TIMEOUT = 300 + 6 * 600 + 120
#: The demo's simulated fleet (``FLEET_SIZE`` in scripts/demo.py) and what its DAG runs do with it.
DEMO_FLEET = 300
TASKS = {
    "iotfleet_firmware_inventory": 2,
    "iotfleet_cellular_enrichment": 8,  # 2 + 3 mapped batches of 100 SIMs, twice
    # 4 operators, 4 sensors, devices_upgraded, effective_date, sims_to_wait_for, report, check_window
    "iotfleet_maintenance_window": 13,
    "iotfleet_fleet_scale_out": 5,  # sim_batches, 3 mapped label_batch, report
    # approved and verified: nothing to roll back
    "iotfleet_planned_sim_change": {"success": 8, "skipped": 2},
    "iotfleet_campaign_finished_event": 1,  # report_campaign, on the maintenance window's campaign
}

# The module's demo runs happen in the setup of whichever test comes first.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(RUNS * RUN_TIMEOUT + 120)]


@dataclass
class DemoRun:
    returncode: int
    output: str
    seconds: float
    tmp: Path

    @property
    def home(self) -> Path:
        match = re.search(r"^AIRFLOW_HOME: (\S+) ", self.output, re.M)
        assert match, self.output
        return Path(match.group(1))


def _run_demo(tmp: Path) -> DemoRun:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "IOTFLEET_"))}
    env.update(TMPDIR=str(tmp), AIRFLOW_HOME=str(tmp / "demo-process-home"))
    started = time.monotonic()
    # Its own session, so that a timeout ends the demo and the Airflow commands it started.
    demo = subprocess.Popen(
        [str(PYTHON), str(DEMO)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = demo.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(demo.pid, signal.SIGKILL)
        output, _ = demo.communicate()
        pytest.fail(f"scripts/demo.py still running after {RUN_TIMEOUT} s:\n{output[-5000:]}")
    return DemoRun(demo.returncode, output, time.monotonic() - started, tmp)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> list[DemoRun]:
    if not PYTHON.exists():
        pytest.skip(f"{PYTHON} is missing: `make demo` creates it (run the tests with .venv/bin/pytest)")
    runs = []
    for number in range(RUNS):
        run = _run_demo(tmp_path_factory.mktemp(f"demo-run-{number + 1}"))
        print(f"scripts/demo.py run {number + 1} of {RUNS}: exit {run.returncode} after {run.seconds:.0f} s")
        runs.append(run)
    return runs


def _counts(text: str) -> dict[str, int]:
    return {state: int(count) for count, state in re.findall(r"(\d+) (\w+)", text)}


def test_make_demo_runs_every_example_dag_to_success(demo_runs: list[DemoRun]) -> None:
    assert len(demo_runs) == RUNS
    for number, run in enumerate(demo_runs, 1):
        where = f"run {number} of {RUNS} ({run.seconds:.0f} s):\n{run.output[-6000:]}"
        out = run.output
        assert run.returncode == 0, where
        assert "  approval: answered 'Approve' through Airflow's HITL API" in out, where
        assert "all example DAGs succeeded" in out, where
        assert run.home.parent == run.tmp, where  # the throwaway AIRFLOW_HOME, in this test's TMPDIR

        # Each DAG: SUCCESS, with every task successful, and the DAG's own non-zero figures.
        assert re.findall(r"^airflow dags test (\w+) \.\.\.$", out, re.M) == list(TASKS), where
        assert re.findall(r"^  exit (\d+) after \d+ s$", out, re.M) == ["0"] * len(TASKS), where
        for dag_id, tasks in TASKS.items():
            line = re.search(rf"^{dag_id}: (\S+)  \(tasks: ([^)]*)\)$", out, re.M)
            assert line, where
            assert line.group(1) == "SUCCESS", where
            assert _counts(line.group(2)) == (tasks if isinstance(tasks, dict) else {"success": tasks}), where

        # The inventory: where the file is, and that it holds the whole fleet.
        inventory = re.search(r"^  inventory: (\d+) devices in (\S+)$", out, re.M)
        assert inventory, where
        assert int(inventory.group(1)) == DEMO_FLEET, where
        uri = inventory.group(2)
        assert uri.startswith(f"file://{run.home}/inventory/fota-") and uri.endswith(".jsonl"), where
        path = Path(uri.removeprefix("file://"))
        assert path.is_file(), where
        assert len(path.read_text().splitlines()) == DEMO_FLEET, where
        rows = re.findall(r"^    .+?\s{2,}\S+\s+SR[\d.]+-\d+\s+(\d+)$", out, re.M)
        assert rows and sum(map(int, rows)) == DEMO_FLEET, where
        not_eligible = re.search(r"^  not FOTA-eligible: (\d+), without license: (\d+)$", out, re.M)
        assert not_eligible and 0 < int(not_eligible.group(1)) < DEMO_FLEET, where

        # The enrichment: every device sent and updated, and held by the simulator.
        assert re.search(
            rf"^  IoT Security: {DEMO_FLEET} devices sent in 3 mapped batches: {DEMO_FLEET} accepted, "
            rf"{DEMO_FLEET} counted as updated; the simulator holds cellular attributes for {DEMO_FLEET} devices$",
            out,
            re.M,
        ), where

        # The maintenance window: every step did something, and nothing failed (the operators' lines
        # name only the statuses that occurred).
        steps = {
            name: _counts(counts)
            for name, counts in re.findall(
                r"^  (force_offline|upgrade_firmware|wait_upgrade|sync_firmware|schedule_sim_change)\s+(.*)$",
                out,
                re.M,
            )
        }
        assert steps == {
            "force_offline": {"succeeded": 5},
            "upgrade_firmware": {"scheduled": 4},
            "wait_upgrade": {"finished": 4, "failed": 0, "pending": 0},
            "sync_firmware": {"succeeded": 4},
            "schedule_sim_change": {"scheduled": 4},
        }, where
        campaign = re.search(
            r"^\s+campaign \S+: (SR[\d.]+-\d+) -> (SR[\d.]+-\d+), \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d$",
            out,
            re.M,
        )
        assert campaign, where
        waits = dict(re.findall(r"^  (wait_\w+)\s+(\d+) matched: ", out, re.M))
        assert waits == {"wait_offline": "5", "wait_firmware": "4", "wait_sim_change": "4"}, where
        assert re.search(
            rf"^  wait_firmware\s+4 matched: \{{('\d+': '{campaign.group(2)}'(, )?){{4}}\}}$", out, re.M
        ), where
        assert "failed in" not in out, where
        assert re.search(
            r"simulator: 1 firmware campaign done \(\d+ min ahead, then the clock put back\)", out
        ), where
        assert re.search(
            r"simulator: 4 scheduled changes done \(\d+ min ahead, then the clock put back\)", out
        ), where
        assert re.search(r"^simulator: \d+ devices changed, 0 changes still scheduled$", out, re.M), where

        # The scale-out: every SIM of the account labelled once, in mapped batches, and held by the simulator.
        assert re.search(
            rf"^  Control Center: {DEMO_FLEET} of {DEMO_FLEET} SIMs labelled '\S+' in 3 mapped batches, 0 failed; "
            rf"the simulator holds the label on {DEMO_FLEET} SIMs$",
            out,
            re.M,
        ), where


def test_make_demo_logs_no_dag_import_error(demo_runs: list[DemoRun]) -> None:
    for run in demo_runs:
        logs = sorted((run.home / "logs").glob("iotfleet_*.log"))
        assert [log.name for log in logs] == sorted(f"{dag_id}.log" for dag_id in TASKS)
        for log in logs:
            text = log.read_text()
            assert "AirflowDagDuplicatedIdException" not in text, log
            assert "Error bagging DAG" not in text, log
