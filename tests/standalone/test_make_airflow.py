"""``make airflow`` (``scripts/demo.py --ui``): Airflow's processes find ``airflow``, a part that does
not start ends the script with an error, and Ctrl-C leaves nothing behind.

The fast tests run ``serve``, the part of ``scripts/demo.py`` that starts and watches
``airflow standalone``, on a stand-in (``fake_standalone.py``) that behaves as standalone does in each
situation, in a second.

The slow test runs ``make airflow`` from a shell where the venv is not activated: ``make -o
.venv/.runtime-installed airflow`` (``-o``: the venv is taken as it is, not reinstalled under the test) with the
venv's bin dir taken off PATH and no ``VIRTUAL_ENV``, over a temporary Airflow home
(``IOTFLEET_DEMO_HOME``) and a free port for the api-server (``AIRFLOW__API__PORT``). ``make airflow``
runs ``.venv/bin/python scripts/demo.py --ui``, which starts ``airflow standalone``; standalone starts
its four parts as ``airflow <part>``, found on PATH. The test waits until the api-server reports every
part healthy and the demo has printed the login, logs in with it, then sends SIGINT to make's process
group (what Ctrl-C in a terminal does) and checks that no process make started, at any depth, is left.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import psutil
import pytest

from tests.airflow_standalone import (
    LOG_TAIL_LINES,
    POLL_INTERVAL,
    ROOT,
    api_health,
    free_port,
    group_alive,
    signal_group,
    tail,
)
from tests.fakes import load_demo_script

VENV_BIN = ROOT / ".venv" / "bin"
#: ``scripts/demo.py`` gives ``airflow db migrate`` and ``airflow pools set`` 300 s each and standalone
#: 300 s to start; on two shared cores the whole takes 1 to 3 minutes.
UI_TIMEOUT = 600.0
#: The demo stops standalone within about 30 s (SIGTERM, up to 15 s + 15 s, then SIGKILL); make then exits.
STOP_TIMEOUT = 60.0
#: The api-server's health report: each component that heartbeats.
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")

FAKE_STANDALONE = Path(__file__).with_name("fake_standalone.py")
#: The stand-in's bounds: its start-up, and the grace its processes get on SIGTERM (the script's
#: STOP_GRACE), short for a fast test.
FAKE_STARTUP_TIMEOUT = 2.0
FAKE_STOP_GRACE = 1.0
#: How long ``serve`` may take over a stand-in: a second or two, and its stop of 3 x FAKE_STOP_GRACE.
FAKE_RUN_TIMEOUT = 30.0


def _load_demo() -> ModuleType:
    module: ModuleType = load_demo_script()
    return module


class _Simulator:
    """As much of a simulator as ``airflow_env`` reads."""

    @staticmethod
    def connections() -> dict[str, dict[str, Any]]:
        return {"cisco_control_center_default": {"conn_type": "cisco_control_center"}}


@pytest.mark.parametrize("path", ["/usr/local/bin:/usr/bin:/bin", ""])
def test_every_airflow_process_of_the_demo_finds_the_venvs_airflow_first(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = _load_demo()
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", path)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    for env in (
        demo.airflow_env(tmp_path, _Simulator()),
        demo.ui_env(tmp_path, _Simulator(), free_port()),
    ):
        assert env["PATH"].split(os.pathsep) == [venv_bin, *filter(None, path.split(os.pathsep))]
        assert shutil.which("airflow", path=env["PATH"]) == str(demo.AIRFLOW)


def _left_with(marker: str) -> list[str]:
    """Processes (not zombies) with ``marker`` in their command line, described."""
    left = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if marker in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            left.append(f"{process.info['pid']} {cmdline[:160]}")
    return left


def _serve_fake(behaviour: str, home: Path, port: int) -> subprocess.Popen[str]:
    home.mkdir()
    return subprocess.Popen(
        [
            sys.executable,
            str(FAKE_STANDALONE),
            "serve",
            behaviour,
            str(home),
            str(port),
            str(FAKE_STARTUP_TIMEOUT),
            str(FAKE_STOP_GRACE),
        ],
        cwd=ROOT,
        # As from a shell: not this session's Airflow settings (its debug logging).
        env={
            **{name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")},
            "AIRFLOW_HOME": str(home / "driver-home"),
            "PYTHONUNBUFFERED": "1",
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _kill_left_with(marker: str) -> None:
    for line in _left_with(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)


def _finish(process: subprocess.Popen[str], home: Path) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=FAKE_RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        signal_group(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"serve still running after {FAKE_RUN_TIMEOUT:g} s:\n{output}")
    finally:
        _kill_left_with(str(home))
    return process.returncode, output


#: What standalone does, and how ``serve`` must end then: its exit code, and the last line it prints.
STARTS_THAT_FAIL = {
    "airflow not on PATH": (
        "parts-cannot-start",
        r"airflow standalone failed: the ((scheduler|dag-processor|api-server|triggerer)(, | and )?){{4}} could "
        r"not be started \(FileNotFoundError: \[Errno 2\] No such file or directory: 'airflow'\): "
        r"see {home}/logs/standalone/output\.log",
    ),
    "reports garbled by interleaving": (
        "garbled-reports",
        r"airflow standalone failed: the scheduler, dag-processor, api-server and triggerer could not be "
        r"started \(FileNotFoundError: \[Errno 2\] No such file or directory: 'airflow'\): "
        r"see {home}/logs/standalone/output\.log",
    ),
    "standalone exits": (
        "exits",
        r"airflow standalone failed: airflow standalone exited with code 3: see {home}/logs/standalone/output\.log",
    ),
    "the api-server never answers": (
        "silent",
        r"airflow standalone failed: the api-server did not answer on port {port} within 2 s: "
        r"see {home}/logs/standalone/api-server\.log",
    ),
    "the triggerer never heartbeats": (
        "triggerer-down",
        r"airflow standalone failed: the triggerer did not start within 2 s \(no heartbeat\): "
        r"see {home}/logs/standalone/triggerer\.log",
    ),
}


@pytest.mark.parametrize(("behaviour", "message"), STARTS_THAT_FAIL.values(), ids=STARTS_THAT_FAIL)
def test_make_airflow_exits_non_zero_when_a_part_does_not_start(
    behaviour: str, message: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    port = free_port()
    code, output = _finish(_serve_fake(behaviour, home, port), home)
    assert code == 1, output
    assert re.search(f"^{message.format(home=re.escape(str(home)), port=port)}$", output, re.M), output
    assert _left_with(str(home)) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_make_airflow_stops_every_process_it_started_on_ctrl_c(signum: int, tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    process = _serve_fake("up", home, port)
    assert process.stdout is not None
    lines = []
    try:
        deadline = time.monotonic() + FAKE_RUN_TIMEOUT
        while not lines or not lines[-1].startswith("  user admin, password fake-password "):
            assert time.monotonic() < deadline, "".join(lines)
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        # The driver, the stand-in, and its two processes (one of which ignores SIGTERM).
        assert len(_left_with(str(home))) == 4, _left_with(str(home))
        assert "the UI is at http://localhost:" in "".join(lines)
    except BaseException:
        signal_group(process.pid, signal.SIGKILL)
        _kill_left_with(str(home))
        raise
    signal_group(process.pid, signum)
    code, output = _finish(process, home)
    assert code == 0, "".join(lines) + output
    assert "stopping airflow standalone ..." in output
    assert _left_with(str(home)) == []
    assert not group_alive(process.pid)


def _shell_env(tmp: Path, port: int) -> dict[str, str]:
    """A developer's shell without the venv: PATH without its bin dir, no VIRTUAL_ENV, nothing of this
    test session (AIRFLOW*, IOTFLEET_*, PYTEST_*, an outer make's MAKEFLAGS)."""
    venv_bin = {str(VENV_BIN), str(VENV_BIN.resolve())}
    path = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and entry not in venv_bin and str(Path(entry).resolve()) not in venv_bin
    ]
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "IOTFLEET_", "PYTEST_", "MAKE", "MFLAGS"))
        and name not in ("PATH", "VIRTUAL_ENV")
    }
    env.update(
        PATH=os.pathsep.join(path),
        IOTFLEET_DEMO_HOME=str(tmp / "airflow-home"),
        AIRFLOW__API__PORT=str(port),
        # The demo process's own Airflow import (the simulator, the scale-out DAG file), not ~/airflow.
        AIRFLOW_HOME=str(tmp / "demo-process-home"),
        PYTHONUNBUFFERED="1",
    )
    return env


def _tree(root: psutil.Process, seen: dict[int, psutil.Process], groups: set[int]) -> None:
    """Add ``root`` and every process below it to ``seen`` (pid -> process), their process groups to
    ``groups``."""
    try:
        below = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for process in (root, *below):
        seen.setdefault(process.pid, process)
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(process.pid))


def _left(processes: list[psutil.Process], groups: set[int]) -> list[str]:
    """Those of ``processes`` still running, and any other process of ``groups``, described; a zombie
    has ended (this machine's init may take its time to reap one whose parent ended)."""
    left = {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left[process.pid] = f"{process.pid} {' '.join(process.cmdline())[:160]}"
    for process in psutil.process_iter(["pid", "status", "cmdline"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) in groups:
                left[process.pid] = f"{process.pid} {' '.join(process.info['cmdline'] or [])[:160]}"
    return sorted(left.values())


@pytest.mark.slow
@pytest.mark.timeout(UI_TIMEOUT + STOP_TIMEOUT + 60)
def test_make_airflow_from_a_clean_shell_serves_the_ui_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    if not (VENV_BIN / "airflow").exists():
        pytest.skip(f"{VENV_BIN / 'airflow'} is missing: `make airflow` creates it")
    port = free_port()
    env = _shell_env(tmp_path, port)
    output_path = tmp_path / "make-airflow.out"
    started = time.monotonic()
    seen: dict[int, psutil.Process] = {}
    groups: set[int] = set()
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            [make, "--no-print-directory", "-o", ".venv/.runtime-installed", "airflow"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    root = psutil.Process(process.pid)
    try:
        # Until every component is healthy and the demo printed the login.
        deadline = time.monotonic() + UI_TIMEOUT
        login = None
        while True:
            _tree(root, seen, groups)
            code = process.poll()
            assert code is None, f"make airflow exited with {code} before the UI answered"
            health = api_health(port)
            healthy = health is not None and all(
                health.get(part, {}).get("status") == "healthy" for part in COMPONENTS
            )
            login = re.search(
                r"^  user (\S+), password (\S+) ", output_path.read_text(errors="replace"), re.M
            )
            if healthy and login:
                break
            assert time.monotonic() < deadline, (
                f"the UI did not answer within {UI_TIMEOUT:g} s (health on port {port}: {health})"
            )
            time.sleep(POLL_INTERVAL)
        up = time.monotonic() - started
        _tree(root, seen, groups)
        user, password = login.groups()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0, trust_env=False) as client:
            token = client.post("/auth/token", json={"username": user, "password": password})
            assert token.status_code == 201, f"the printed login is refused: {token.text}"
            assert client.get("/").status_code == 200

        # Ctrl-C: SIGINT to the foreground process group, which is make and the demo.
        stopping = time.monotonic()
        signal_group(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make airflow still running {STOP_TIMEOUT:g} s after SIGINT")
        stopped = time.monotonic() - stopping
        assert _left(list(seen.values()), groups) == []
        print(
            f"\nmake airflow: UI up after {up:.0f} s, {len(seen)} processes, stopped {stopped:.1f} s after SIGINT"
        )
    except BaseException as error:
        error.add_note(f"\n===== make airflow output (last {LOG_TAIL_LINES} lines) =====")
        error.add_note(tail(output_path, LOG_TAIL_LINES))
        raise
    finally:
        signal_group(process.pid, signal.SIGKILL)
        for leftover in seen.values():
            with contextlib.suppress(psutil.Error):
                leftover.kill()  # psutil checks that the pid is still that process's
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
