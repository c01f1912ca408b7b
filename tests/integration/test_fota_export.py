"""The FOTA inventory export to object storage: complete, streamed in constant memory, and atomic.

``VerizonThingSpaceFotaDevicesOperator(output_path="file://...")`` runs in a child process
(``tests/integration/fota_export_child.py``) against a simulator served from this process, the way a
task try runs in a worker: so its memory is measured apart from the simulator's, and a try can be
killed with SIGKILL. The retry of a killed try runs here, as the same task instance.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_iotfleet.operators.verizon import VerizonThingSpaceFotaDevicesOperator
from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig
from airflow_provider_iotfleet.simulator.fleet import imei_of
from tests.fakes import operator_context
from tests.integration.fota_export_child import DEFAULT_TASK_ID
from tests.simulator_harness import SimulatorFactory

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHILD = "tests.integration.fota_export_child"
#: The longest any child may take (an import of Airflow plus the export); a hang fails, never stalls.
CHILD_TIMEOUT = 180.0
NORMALISED_KEYS = {
    "device_id",
    "mdn",
    "make",
    "model",
    "firmware",
    "fota_eligible",
    "license_assigned",
    "status",
    "protocol",
    "software",
    "files",
    "create_time",
    "upgrade_time",
    "status_time",
    "refresh_time",
    "last_connection_time",
}
SMALL, LARGE = 5_000, 50_000
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def child_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of every child: this test run's, its AIRFLOW_HOME included.

    Where writing bytecode is turned off (PYTHONDONTWRITEBYTECODE), every child would compile all of
    Airflow again, for seconds: the children then share a bytecode cache of their own instead.
    """
    env = dict(os.environ)
    assert env.get("AIRFLOW_HOME"), "tests/conftest.py sets an isolated AIRFLOW_HOME"
    if sys.dont_write_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    return env


@dataclass
class Child:
    """One run of fota_export_child.py."""

    process: subprocess.Popen[bytes]
    report: Path
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def finish(self, timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
        """Wait for the run to end (killing it past ``timeout``); return its report."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            pytest.fail(f"the export did not finish within {timeout:g} s:\n{self.log_tail()}")
        assert self.process.returncode == 0, f"the export failed:\n{self.log_tail()}"
        return json.loads(self.report.read_text())  # type: ignore[no-any-return]


def start_child(
    output: str, workdir: Path, name: str, env: dict[str, str], *options: str, simulator: Simulator
) -> Child:
    """Start an export of ``simulator``'s account to ``output``; its report and log go to ``workdir``."""
    report, log = workdir / f"{name}.report.json", workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", CHILD, output, str(report), *options],
            cwd=REPO,
            env={**env, **simulator.airflow_env()},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Child(process, report, log)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting until {what}")
        pause.wait(poll)


def read_json_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            assert line.endswith("\n"), f"line {number} is not terminated"
            device = json.loads(line)
            assert isinstance(device, dict), f"line {number} is not a JSON object"
            yield device


def complete_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@dataclass
class Export:
    devices: int
    target: Path
    uri: str
    report: dict[str, Any]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, child_env: dict[str, str]) -> dict[int, Export]:
    """One export of a 5,000-device and one of a 50,000-device account, each in its own process (the
    simulator serves from this one), which reports its memory.

    A small export runs first, so that both measured children find every module compiled (a child
    that compiles them starts its export with a bigger heap, which the export then reuses). They run
    one after the other, so that neither competes with the other for the CPUs.
    """
    exports = {}
    for n in (10, SMALL, LARGE):
        workdir = tmp_path_factory.mktemp(f"fota-{n}")
        target = workdir / "exports" / "inventory" / "fota.jsonl"  # parents created by the export
        uri = f"file://{target}"
        with Simulator(SimulatorConfig(devices=n)) as simulator:
            child = start_child(uri, workdir, "export", child_env, simulator=simulator)
            exports[n] = Export(devices=n, target=target, uri=uri, report=child.finish())
    return exports


def test_export_of_50_000_devices_is_one_complete_json_lines_file(exports: dict[int, Export]) -> None:
    export = exports[LARGE]
    account = SimulatorConfig().credentials.verizon_account
    outcome = export.report["outcome"]
    assert outcome == {
        "account_name": account,
        "device_count": LARGE,
        "pages": LARGE // 1000,
        "path": export.uri,
    }
    assert export.report["xcom"] == {}  # a read: its value is the return value, pushed nowhere else
    ids = []
    for device in read_json_lines(export.target):
        assert set(device) == NORMALISED_KEYS
        ids.append(device["device_id"])
    assert len(ids) == LARGE
    assert ids == [imei_of(i) for i in range(LARGE)]  # in order, so each exactly once
    # The temporary file was renamed into place: the directory holds the export and nothing else.
    assert [p.name for p in export.target.parent.iterdir()] == [export.target.name]


def test_export_memory_does_not_grow_with_the_fleet(exports: dict[int, Export]) -> None:
    small, large = exports[SMALL].report, exports[LARGE].report
    assert (small["outcome"]["device_count"], large["outcome"]["device_count"]) == (SMALL, LARGE)
    # How much the process's peak resident set rose above where it stood when the export began
    # (about 15 MiB either way): one page (1000 devices) in memory at a time, so ten times the fleet
    # must not mean more. Keeping the 50,000 devices adds some 65 MiB, keeping just their ids some
    # 3.5 MiB; runs differ by up to 1.5 MiB. The allowance, 4 MiB over 45,000 more devices, is under
    # 95 bytes a device.
    grew_small = (small["peak_rss_kib"] - small["rss_kib_before_export"]) * 1024
    grew_large = (large["peak_rss_kib"] - large["rss_kib_before_export"]) * 1024
    assert grew_small > 0, small  # the measurement sees the export at all
    assert grew_large <= grew_small + 4 * MIB, (grew_small / MIB, grew_large / MIB)


@pytest.mark.parametrize("previous", [False, True], ids=["first-export", "over-a-previous-export"])
def test_killed_export_retried_leaves_one_complete_file(
    start_simulator: SimulatorFactory, tmp_path: Path, child_env: dict[str, str], previous: bool
) -> None:
    devices, page_size = 1_000, 50
    # Each page takes a while, so that the first try is surely still writing when it is killed.
    simulator = start_simulator(devices=devices, verizon_page_size=page_size, latency=0.1)
    target = tmp_path / "exports" / "fota.jsonl"
    uri = f"file://{target}"
    previous_export = b""
    if previous:  # an earlier complete export, which must stay whole until the new one is complete
        target.parent.mkdir(parents=True)
        previous_export = b"".join(
            json.dumps({"device_id": imei_of(i), "firmware": "old"}).encode() + b"\n" for i in range(10)
        )
        target.write_bytes(previous_export)

    def partials() -> list[Path]:
        return sorted(target.parent.glob(f".{target.name}.*.partial")) if target.parent.exists() else []

    # The first try runs in a process of its own, killed (SIGKILL: no cleanup) after three pages.
    first = start_child(
        uri, tmp_path, "first-try", child_env, "--task-id", DEFAULT_TASK_ID, simulator=simulator
    )

    def target_touched() -> bool:
        return target.read_bytes() != previous_export if previous else target.exists()

    def three_pages_written_or_done() -> bool:
        written = partials()
        return (
            (bool(written) and complete_lines(written[0]) >= 3 * page_size)
            or target_touched()
            or first.process.poll() is not None
        )

    try:
        wait_until(three_pages_written_or_done, CHILD_TIMEOUT, "the first try has written three pages")
        assert not target_touched(), "the target changed before the export was complete"
        assert first.process.poll() is None, f"the first try ended before it was killed:\n{first.log_tail()}"
        os.kill(first.process.pid, signal.SIGKILL)
    finally:
        if first.process.poll() is None:
            first.process.kill()
        first.process.wait(timeout=10)
    assert first.process.returncode == -signal.SIGKILL
    assert not first.report.exists()

    # Killed halfway: the target is as it was; the killed try's temporary file is left behind.
    if previous:
        assert target.read_bytes() == previous_export
    else:
        assert not target.exists()
    (leftover,) = partials()
    written = complete_lines(leftover)
    assert 3 * page_size <= written < devices, written

    # The retry: the same task instance, its second try (a temporary file of its own), run to completion.
    context = operator_context(DEFAULT_TASK_ID, try_number=2)
    operator = VerizonThingSpaceFotaDevicesOperator(task_id=DEFAULT_TASK_ID, output_path=uri)
    outcome = operator.execute(context)
    assert context["ti"].xcom == {}  # type: ignore[attr-defined]  # a read only returns its value
    assert outcome == {
        "account_name": simulator.config.credentials.verizon_account,
        "device_count": devices,
        "pages": devices // page_size,
        "path": uri,
    }
    ids = [device["device_id"] for device in read_json_lines(target)]
    assert ids == [imei_of(i) for i in range(devices)]  # complete, each once
    # The retry renamed its own temporary file; the killed try's is left alone (a try still running
    # could own it), and is never mistaken for the export.
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([target.name, leftover.name])
    assert complete_lines(leftover) == written


def test_overlapping_tries_each_rename_a_whole_file_over_the_target(
    start_simulator: SimulatorFactory, tmp_path: Path, child_env: dict[str, str]
) -> None:
    """Two tries of one task instance (a zombie try and its retry), in processes of their own, both
    writing at once: each writes a temporary file of its own and renames it whole over the target."""
    devices, page_size = 200, 50
    simulator = start_simulator(devices=devices, verizon_page_size=page_size)
    target = tmp_path / "exports" / "fota.jsonl"
    resume = tmp_path / "resume"
    tries = [
        start_child(
            f"file://{target}",
            tmp_path,
            f"try-{number}",
            child_env,
            *("--try-number", str(number), "--pause-after-pages", "1", "--resume-when", str(resume)),
            simulator=simulator,
        )
        for number in (1, 2)
    ]
    try:
        # Both have written their first page, and wait: they overlap, whatever the machine's speed.
        wait_until(
            lambda: all(
                Path(f"{child.report}.paused").exists() or child.process.poll() is not None for child in tries
            ),
            CHILD_TIMEOUT,
            "both tries have written a page",
        )
        for child in tries:
            assert child.process.poll() is None, (
                f"a try ended before the other had begun:\n{child.log_tail()}"
            )
        partials = sorted(target.parent.glob(f".{target.name}.*.partial"))
        assert len(partials) == 2, partials  # a temporary file per try, never a shared one
        assert not target.exists()
        resume.touch()
        reports = [child.finish() for child in tries]  # both succeed: no raw OSError, no error at all
    finally:
        for child in tries:
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait(timeout=10)
    for report in reports:
        assert report["outcome"] == {
            "account_name": simulator.config.credentials.verizon_account,
            "device_count": devices,
            "pages": devices // page_size,
            "path": f"file://{target}",
        }
    ids = [device["device_id"] for device in read_json_lines(target)]  # every line whole
    assert ids == [imei_of(i) for i in range(devices)]
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # both renamed, nothing left
