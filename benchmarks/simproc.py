"""The vendor simulator in a process of its own, driven from the benchmark runner.

In the runner's process the simulator would share one interpreter lock with the client being
measured: both would slow down, and client overhead would be hidden in the simulator's. Here it has
a core to itself (the machine has two: one for it, one for the client), and the runner asks it for
its counters and request log over a pipe::

    with SimProcess(env, devices=2000, latency=0.05) as sim:
        sim.connections()          # the four default connections, pointing at it
        sim.counters()             # state.counters ("cisco.requests", "cisco.throttled", ...)
        sim.request_log("cisco")   # [[arrival epoch seconds, status, method], ...]
        sim.cpu_seconds()          # CPU time the simulator process has used so far

The child (``python -m benchmarks.simproc CONFIG_JSON``) prints one JSON line once it serves, then
answers one JSON line per command read from stdin; ``stop`` or the end of stdin (the runner died)
stops it.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil

from benchmarks.common import ROOT, WORKDIR_VARIABLE, BenchmarkError

STARTUP_TIMEOUT = 120.0
COMMAND_TIMEOUT = 60.0


class SimProcess:
    """A simulator child process; a context manager that always stops it.

    :param env: the child's environment (from :func:`~benchmarks.common.prepare_environment`).
    :param config: :class:`~airflow_provider_iotfleet.simulator.SimulatorConfig` fields.
    """

    def __init__(self, env: dict[str, str], **config: Any) -> None:
        self.env = env
        self.config = config
        self.process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._started: dict[str, Any] = {}
        self._log = Path(env[WORKDIR_VARIABLE]) / f"simulator-{id(self):x}.log"

    def start(self) -> Self:
        self._log_handle = open(self._log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, arguments built here
            [sys.executable, "-m", "benchmarks.simproc", json.dumps(self.config)],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_handle,
            text=True,
        )
        reader = threading.Thread(target=self._read, name="simproc-reader", daemon=True)
        reader.start()
        try:
            self._started = self._reply(STARTUP_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _reply(self, timeout: float) -> Any:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise BenchmarkError(f"the simulator did not answer within {timeout:g} s") from None
        if line is None:
            tail = self._log.read_text(errors="replace")[-3000:] if self._log.exists() else ""
            raise BenchmarkError(f"the simulator process ended:\n{tail}")
        return json.loads(line)

    def ask(self, command: str) -> Any:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._reply(COMMAND_TIMEOUT)

    @property
    def url(self) -> str:
        return str(self._started["url"])

    @property
    def pid(self) -> int:
        return int(self._started["pid"])

    def connections(self) -> dict[str, dict[str, Any]]:
        """The JSON-form Airflow connections of the four default connection ids."""
        return dict(self._started["connections"])

    @property
    def credentials(self) -> dict[str, str]:
        return dict(self._started["credentials"])

    def counters(self) -> dict[str, int]:
        return dict(self.ask("counters"))

    def request_log(self, vendor: str) -> list[list[Any]]:
        """``[[arrival epoch seconds, status, method], ...]`` of the vendor's logged requests."""
        return list(self.ask(f"log {vendor}"))

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the simulator has used so far."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        try:
            if process.poll() is None and process.stdin is not None:
                try:
                    process.stdin.write("stop\n")
                    process.stdin.close()
                except (BrokenPipeError, OSError):
                    pass
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        finally:
            self.process = None
            self._log_handle.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def main(config_json: str) -> None:
    from dataclasses import asdict

    from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig

    simulator = Simulator(SimulatorConfig(**json.loads(config_json))).start()
    state = simulator.state

    def reply(value: Any) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    try:
        reply(
            {
                "url": simulator.url,
                "pid": os.getpid(),
                "connections": simulator.connections(),
                "credentials": asdict(simulator.config.credentials),
            }
        )
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "stop":
                break
            if command == "counters":
                with state.lock:
                    reply(dict(state.counters))
            elif command == "log":
                reply(
                    [
                        [record["time"].timestamp(), record["status"], record["method"]]
                        for record in state.request_log(argument or None)
                    ]
                )
            else:
                reply({"error": f"unknown command {command!r}"})
    finally:
        simulator.stop()


if __name__ == "__main__":
    main(sys.argv[1])
