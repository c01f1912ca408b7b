"""What the benchmark runner, the simulator process and the measured child processes share.

Nothing here imports Airflow: :func:`prepare_environment` must run before the first Airflow import,
since Airflow reads ``AIRFLOW_HOME`` and its logging level when it is imported.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.memory import reset_peak_rss, status_kib

ROOT = Path(__file__).resolve().parent.parent
#: The environment variable that tells a child process where the run's scratch directory is.
WORKDIR_VARIABLE = "IOTFLEET_BENCH_WORKDIR"


class BenchmarkError(RuntimeError):
    """A benchmark could not run (as opposed to a figure that missed its target)."""


def prepare_environment(workdir: Path, *, log_level: str = "WARNING") -> dict[str, str]:
    """Point this process and its children at a throwaway Airflow home and a bytecode cache.

    Where writing bytecode is turned off (``PYTHONDONTWRITEBYTECODE``, as on the CI machines),
    every fresh process would compile all of Airflow again, for seconds: import times would then
    measure the compiler. Children share a bytecode cache in ``workdir`` instead, as an installed
    Airflow has one.

    :return: the environment for child processes.
    """
    pycache = workdir / "pycache"
    pycache.mkdir(parents=True, exist_ok=True)
    home = workdir / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    sys.dont_write_bytecode = False
    sys.pycache_prefix = str(pycache)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.update(
        {
            "PYTHONPYCACHEPREFIX": str(pycache),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": log_level,
            WORKDIR_VARIABLE: str(workdir),
        }
    )
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    return dict(os.environ)


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block (connections for in-process runs)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def connection_env(
    connections: Mapping[str, Mapping[str, Any]], **extras: Mapping[str, Any]
) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables for the simulator's connections, with extras merged in per conn id."""
    variables = {}
    for conn_id, connection in connections.items():
        merged = {**connection, "extra": {**connection.get("extra", {}), **extras.get(conn_id, {})}}
        variables[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(merged)
    return variables


# --- measuring ----------------------------------------------------------------------------------


class PeakRss:
    """The resident set before a block and its peak during it, in KiB (see :func:`reset_peak_rss`)."""

    def __enter__(self) -> PeakRss:
        self.reset = reset_peak_rss()
        self.before_kib = status_kib("VmRSS") if self.reset else status_kib("VmHWM")
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_kib = status_kib("VmHWM")
        if self.before_kib is None or self.peak_kib is None:  # no /proc: the whole process's peak
            self.before_kib, self.peak_kib = 0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def report(self) -> dict[str, Any]:
        """The figures in MB (10^6 bytes), as the targets are written."""
        return {
            "rss_before_mb": round(self.before_kib * 1024 / 1e6, 1),
            "peak_rss_mb": round(self.peak_kib * 1024 / 1e6, 1),
            "peak_rss_growth_mb": round((self.peak_kib - self.before_kib) * 1024 / 1e6, 1),
            "peak_reset": self.reset,
        }


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Stopwatch:
    """Wall time and this process's CPU time of a block."""

    def __enter__(self) -> Stopwatch:
        self._cpu = cpu_seconds()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._start
        self.cpu = cpu_seconds() - self._cpu


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rounded(value: float, digits: int = 3) -> float:
    return round(value, digits) if math.isfinite(value) else value


# --- child processes ----------------------------------------------------------------------------


def run_child(
    name: str, arguments: Mapping[str, Any], env: Mapping[str, str], *, timeout: float
) -> dict[str, Any]:
    """Run ``python -m benchmarks.child NAME ARGS`` and return the JSON report it writes.

    The child is killed past ``timeout``; its output is kept in the run's scratch directory.

    :raises BenchmarkError: when it fails or times out.
    """
    workdir = Path(env[WORKDIR_VARIABLE])
    with tempfile.NamedTemporaryFile(
        "w", dir=workdir, prefix=f"{name}-", suffix=".json", delete=False
    ) as handle:
        report = Path(handle.name)
    log = report.with_suffix(".log")
    command = [sys.executable, "-m", "benchmarks.child", name, json.dumps(arguments), str(report)]
    with open(log, "wb") as output:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, arguments built here
            command, cwd=ROOT, env=dict(env), stdout=output, stderr=subprocess.STDOUT
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"child {name} did not finish within {timeout:g} s; see {log}") from None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    if process.returncode != 0 or report.stat().st_size == 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise BenchmarkError(f"child {name} failed with exit code {process.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def write_report(path: str, report: Mapping[str, Any]) -> None:
    """Write a child's JSON report atomically (a killed child leaves none)."""
    partial = f"{path}.tmp"
    with open(partial, "w", encoding="utf-8") as out:
        json.dump(report, out)
    os.replace(partial, path)
