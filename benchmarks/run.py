"""Run every benchmark and write ``benchmarks/results.json``: ``make bench``, or

    python -m benchmarks.run [--only FIGURE_GROUP ...] [--output PATH] [--repeats N]

One function per figure group below. Each starts its own simulator process (so that the simulator
and the client being measured each have a core, and each measurement starts from a known state),
measures the provider against a baseline in the same run, interleaving the two and repeating them
(``--repeats``, best of each kept: the machine may be shared), and returns figures::

    {name: {"value", "unit", "target", "met", "context": {...}}}

``target`` is ``None`` (and ``met`` ``None``) for figures that are reported for context only. The
exit status is non-zero only when a benchmark could not run; targets are reported, not asserted.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import itertools
import json
import math
import os
import platform
import re
import shutil
import socket
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import (
    ROOT,
    BenchmarkError,
    Stopwatch,
    connection_env,
    environment,
    median,
    prepare_environment,
    rounded,
    run_child,
)
from benchmarks.fastpeer import PAGE_SIZE, FastPeer
from benchmarks.overhead import operator_overhead
from benchmarks.pollcost import poll_cost
from benchmarks.readme_table import table
from benchmarks.simproc import SimProcess

RESULTS = ROOT / "benchmarks" / "results.json"
#: A figure whose simulator was busy this share of the wall time was limited by the simulator.
SIMULATOR_BOUND_SHARE = 0.85

CISCO = "cisco_control_center_default"
PALOALTO = "paloalto_iot_default"
HUAWEI = "huawei_roma_default"
VERIZON = "verizon_thingspace_default"
#: A client-side limit no benchmark reaches, where the client's own limiter must not be measured.
UNLIMITED_RPS = 100_000


# --- figures ------------------------------------------------------------------------------------


def figure(
    value: Any,
    unit: str,
    target: tuple[str, float] | tuple[str, bool] | None = None,
    *,
    what: str,
    **context: Any,
) -> dict[str, Any]:
    """One figure: ``target`` is ``(">=", 6)``, ``("<=", 1.3)``, ``("<", 80)``, ``("==", x)`` or ``None``.

    ``met`` is whether ``value`` meets the target; ``None`` without a target, or without a value (a
    figure that was not measured). A NaN value meets no target.
    """
    met = None
    if target is not None and value is not None:
        operator, bound = target
        met = {
            ">=": lambda: value >= bound,
            "<=": lambda: value <= bound,
            "<": lambda: value < bound,
            "==": lambda: value == bound,
        }[operator]()
    return {
        "value": value,
        "unit": unit,
        "target": None if target is None else f"{target[0]} {_shown(target[1])}",
        "met": met,
        "context": {"what": what, **context},
    }


def _shown(bound: float | bool) -> str:
    return str(bound).lower() if isinstance(bound, bool) else f"{bound:g}"


class Measured:
    """One measured run: wall and client CPU time, and how busy the simulator was meanwhile."""

    def __init__(self, label: str, items: int, wall: float, cpu: float, simulator_cpu: float) -> None:
        self.label = label
        self.items = items
        self.wall = wall
        self.cpu = cpu
        self.simulator_cpu = simulator_cpu

    @property
    def rate(self) -> float:
        return self.items / self.wall

    @property
    def simulator_share(self) -> float:
        return self.simulator_cpu / self.wall

    def report(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "wall_s": rounded(self.wall),
            "per_s": rounded(self.rate, 1),
            "client_cpu_s": rounded(self.cpu),
            "client_cpu_ms_per_item": rounded(1000 * self.cpu / self.items, 4),
            "simulator_cpu_share": rounded(self.simulator_share),
        }


def measure(label: str, sim: SimProcess, run: Callable[[], int]) -> Measured:
    """Time ``run`` (which returns how many items it did) in this process."""
    before = sim.cpu_seconds()
    with Stopwatch() as clock:
        items = run()
    return Measured(label, items, clock.wall, clock.cpu, sim.cpu_seconds() - before)


def best(runs: Iterable[Measured]) -> Measured:
    """The fastest of repeated runs: on a shared machine, the one least disturbed."""
    return max(runs, key=lambda run: run.rate)


def interleaved(repeats: int, methods: dict[str, Callable[[], Measured]]) -> dict[str, list[Measured]]:
    """Run each method ``repeats`` times, alternating their order, so drift hits all alike."""
    runs: dict[str, list[Measured]] = {name: [] for name in methods}
    names = list(methods)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            runs[name].append(methods[name]())
    return runs


class Bench:
    """What every figure group gets: the child environment, the scratch directory, the options.

    :param repeats: runs of each method per comparison; ``None`` takes each group's default.
    """

    def __init__(self, env: dict[str, str], workdir: Path, repeats: int | None) -> None:
        self.env = env
        self.workdir = workdir
        self._repeats = repeats
        self.headroom: dict[str, Any] = {}

    def repeats(self, default: int) -> int:
        return default if self._repeats is None else self._repeats

    def simulator(self, **config: Any) -> SimProcess:
        return SimProcess(self.env, **config)


# --- 7. simulator headroom (first: the others are judged against it) ------------------------------

HEADROOM_THREADS = 8
HEADROOM_SECONDS = 6.0


def simulator_headroom(bench: Bench) -> dict[str, Any]:
    """Requests per second the simulator serves for Cisco ``GET /devices/{iccid}`` on one core.

    The client is a few lines over raw keep-alive sockets (a parsed request costs it a small
    fraction of what it costs the simulator), so the simulator, not the client, is what saturates.
    """
    from airflow_provider_iotfleet.simulator.fleet import iccid_of

    with bench.simulator(devices=1000) as sim:
        address = urlsplit(sim.url)
        credentials = sim.credentials
        token = base64.b64encode(f"{credentials['cisco_username']}:{credentials['cisco_api_key']}".encode())
        requests_bytes = [
            (
                f"GET /cisco/rws/api/v1/devices/{iccid_of(index)} HTTP/1.1\r\nHost: {address.netloc}\r\n"
                f"Authorization: Basic {token.decode()}\r\nAccept: application/json\r\n\r\n"
            ).encode()
            for index in range(1000)
        ]
        _hammer(address.hostname or "127.0.0.1", address.port or 80, requests_bytes, 1, 1.0)  # warm-up
        before = sim.cpu_seconds()
        with Stopwatch() as clock:
            served, failed = _hammer(
                address.hostname or "127.0.0.1",
                address.port or 80,
                requests_bytes,
                HEADROOM_THREADS,
                HEADROOM_SECONDS,
            )
        share = (sim.cpu_seconds() - before) / clock.wall
    rate = served / clock.wall
    # Where the simulator was not saturated, what it would serve at a full core.
    capacity = rate / share if share > 0 else math.inf
    bench.headroom = {"requests_per_s": rate, "simulator_cpu_share": share, "capacity_per_s": capacity}
    return {
        "simulator_headroom": figure(
            rounded(rate, 0),
            "requests/s",
            None,
            what="Requests/s the simulator serves on one core (Cisco GET device, "
            f"{HEADROOM_THREADS} keep-alive client threads, no latency)",
            threads=HEADROOM_THREADS,
            seconds=rounded(clock.wall),
            served=served,
            non_200=failed,
            simulator_cpu_share=rounded(share),
            client_cpu_share=rounded(clock.cpu / clock.wall),
            capacity_at_full_core_per_s=rounded(capacity, 0),
        )
    }


def _hammer(host: str, port: int, requests: list[bytes], threads: int, seconds: float) -> tuple[int, int]:
    """Send the requests round-robin on ``threads`` keep-alive connections for ``seconds``."""
    deadline = time.perf_counter() + seconds
    served = [0] * threads
    failed = [0] * threads
    length_header = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")

    def worker(number: int) -> None:
        with socket.create_connection((host, port), timeout=30) as connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffer = b""
            index = number
            while time.perf_counter() < deadline:
                connection.sendall(requests[index % len(requests)])
                index += threads
                while b"\r\n\r\n" not in buffer:
                    chunk = connection.recv(65536)
                    if not chunk:
                        raise BenchmarkError("the simulator closed a keep-alive connection")
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                match = length_header.search(head)
                length = int(match.group(1)) if match else 0
                while len(buffer) < length:
                    buffer += connection.recv(65536)
                buffer = buffer[length:]
                served[number] += 1
                if head[9:12] != b"200":
                    failed[number] += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return sum(served), sum(failed)


# --- 1. per-device edits ------------------------------------------------------------------------

EDITS = 2000
HTTPHOOK_EDITS = 200
EDIT_LATENCY = 0.05
EDIT_CONCURRENCY = 8
EDIT_CHANGE = {"accountCustom1": "bench"}
EDIT_REPEATS = 2


def per_device_edits(bench: Bench) -> dict[str, Any]:
    """2,000 Cisco edits at 50 ms latency: the operator at concurrency 8, vs a loop of
    ``HttpHook.run`` (on the first 200 edits; per-edit throughput compared), vs an ideal 8-thread
    client on one reused ``requests.Session``."""
    import requests
    from airflow.providers.http.hooks.http import HttpHook
    from requests.adapters import HTTPAdapter

    from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
    from airflow_provider_iotfleet.simulator.fleet import iccid_of
    from tests.fakes import operator_context

    iccids = [iccid_of(index) for index in range(EDITS)]
    with bench.simulator(devices=EDITS, latency=EDIT_LATENCY) as sim:
        connections = sim.connections()
        cisco = connections[CISCO]
        variables = connection_env(
            connections,
            **{CISCO: {"max_concurrency": EDIT_CONCURRENCY, "requests_per_second": UNLIMITED_RPS}},
        )
        address = urlsplit(sim.url)
        variables["AIRFLOW_CONN_BENCH_CISCO_HTTP"] = json.dumps(
            {
                "conn_type": "http",
                "host": address.hostname,
                "port": address.port,
                "schema": "http",
                "login": cisco["login"],
                "password": cisco["password"],
            }
        )
        base = f"{cisco['host']}/rws/api/v1/devices/"

        def operator(devices: list[str]) -> int:
            task = CiscoControlCenterEditDevicesOperator(
                # Writes only, as the loops it is compared with (its default reads each SIM first).
                task_id="bench_edits",
                iccids=devices,
                changes=EDIT_CHANGE,
                skip_unchanged=False,
            )
            outcome = task.execute(operator_context("bench_edits"))  # type: ignore[arg-type]
            if outcome["counts"]["succeeded"] != len(devices):
                raise BenchmarkError(
                    f"the operator updated {outcome['counts']['succeeded']} of {len(devices)}"
                )
            return len(devices)

        def ideal(devices: list[str]) -> int:
            session = requests.Session()
            session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=EDIT_CONCURRENCY))
            session.auth = (cisco["login"], cisco["password"])

            def put(iccid: str) -> None:
                answer = session.put(base + iccid, json=EDIT_CHANGE, timeout=30)
                answer.raise_for_status()
                if answer.json()["iccid"] != iccid:
                    raise BenchmarkError(f"unexpected answer {answer.text}")

            with ThreadPoolExecutor(EDIT_CONCURRENCY) as pool:
                list(pool.map(put, devices))
            session.close()
            return len(devices)

        def http_hook(devices: list[str]) -> int:
            hook = HttpHook(method="PUT", http_conn_id="bench_cisco_http")
            for iccid in devices:
                hook.run(f"cisco/rws/api/v1/devices/{iccid}", json=EDIT_CHANGE)
            return len(devices)

        with environment(variables):
            for warm_up in (operator, ideal, http_hook):  # imports, connections, first-call paths
                warm_up(iccids[:16])
            runs = interleaved(
                bench.repeats(EDIT_REPEATS),
                {
                    "ideal": lambda: measure("ideal", sim, lambda: ideal(iccids)),
                    "operator": lambda: measure("operator", sim, lambda: operator(iccids)),
                    "http_hook": lambda: measure(
                        "http_hook", sim, lambda: http_hook(iccids[:HTTPHOOK_EDITS])
                    ),
                },
            )
    op, floor, hook = best(runs["operator"]), best(runs["ideal"]), best(runs["http_hook"])
    context = {
        "edits": EDITS,
        "http_hook_edits": HTTPHOOK_EDITS,
        "latency_s": EDIT_LATENCY,
        "concurrency": EDIT_CONCURRENCY,
        "connection_extras": {"max_concurrency": EDIT_CONCURRENCY, "requests_per_second": UNLIMITED_RPS},
        "change": EDIT_CHANGE,
        "repeats": bench.repeats(EDIT_REPEATS),
        "kept": "best run of each method (highest edits/s)",
        "operator": op.report(),
        "ideal_client": floor.report(),
        "http_hook_loop": hook.report(),
        "all_runs_per_s": {name: [rounded(r.rate, 1) for r in measured] for name, measured in runs.items()},
        "latency_bound_per_s": rounded(EDIT_CONCURRENCY / EDIT_LATENCY, 1),
        "simulator_bound": max(r.simulator_share for r in (op, floor, hook)) >= SIMULATOR_BOUND_SHARE,
    }
    return {
        "edits_vs_http_hook_loop": figure(
            rounded(op.rate / hook.rate, 2),
            "x (edits/s ratio)",
            (">=", 6),
            what="Cisco edits/s: operator at concurrency 8 vs a loop of HttpHook.run "
            f"({HTTPHOOK_EDITS}-edit subset, per-edit throughput), 50 ms latency",
            **context,
        ),
        "edits_vs_ideal_client": figure(
            rounded(op.rate / floor.rate, 3),
            "ratio (edits/s)",
            (">=", 0.9),
            what="Cisco edits/s: operator vs an ideal 8-thread client on one requests.Session",
            **{
                key: context[key] for key in ("operator", "ideal_client", "all_runs_per_s", "simulator_bound")
            },
        ),
    }


# --- 2. rate-limit utilisation ------------------------------------------------------------------

RATE_LIMIT = 40


def rate_limit_utilisation(bench: Bench) -> dict[str, Any]:
    """The same 2,000 edits against a simulator limit of 40 req/s, the connection set to 40 too."""
    from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
    from airflow_provider_iotfleet.simulator.fleet import iccid_of
    from tests.fakes import operator_context

    iccids = [iccid_of(index) for index in range(EDITS)]
    extras = {"max_concurrency": EDIT_CONCURRENCY, "requests_per_second": RATE_LIMIT}
    with bench.simulator(devices=EDITS, latency=EDIT_LATENCY, rate_limits={"cisco": RATE_LIMIT}) as sim:
        variables = connection_env(sim.connections(), **{CISCO: extras})
        outcome: dict[str, Any] = {}

        def operator() -> int:
            task = CiscoControlCenterEditDevicesOperator(
                task_id="bench_rate_limit",
                iccids=iccids,
                changes=EDIT_CHANGE,
                fail_on_error=False,
                skip_unchanged=False,
            )
            outcome.update(task.execute(operator_context("bench_rate_limit")))  # type: ignore[arg-type]
            return int(outcome["counts"]["succeeded"])

        with environment(variables):
            before = sim.counters()
            run = measure("operator", sim, operator)
            after = sim.counters()
        log = sim.request_log("cisco")
    requests_sent = after.get("cisco.requests", 0) - before.get("cisco.requests", 0)
    throttled = after.get("cisco.throttled", 0) - before.get("cisco.throttled", 0)
    served = sorted(arrival for arrival, status, method in log if method == "PUT" and status != 429)
    steady = (len(served) - 1) / (served[-1] - served[0]) if len(served) > 1 else math.nan
    achieved = run.rate
    throttled_at = [arrival - log[0][0] for arrival, status, _ in log if status == 429]
    # Each 429 pauses the connection's limiter for its Retry-After (requests already sent may meet
    # 429s too: one episode). The spacing of the episodes shows what got through between two pauses.
    episodes = throttle_episodes(throttled_at)
    between_episodes = [later - earlier for earlier, later in itertools.pairwise(episodes)]
    context = {
        "edits": EDITS,
        "updated": outcome["counts"]["succeeded"],
        "failed": outcome["counts"]["failed"],
        "limit_per_s": RATE_LIMIT,
        "connection_extras": extras,
        "latency_s": EDIT_LATENCY,
        "achieved_edits_per_s": rounded(achieved, 2),
        "served_rate_first_to_last_per_s": rounded(steady, 2),
        "requests": requests_sent,
        "answered_429": throttled,
        "first_429s_at_s": [rounded(t, 2) for t in throttled_at[:10]],
        "throttle_episodes": len(episodes),
        "seconds_between_episodes_median": rounded(median(between_episodes), 2) if between_episodes else None,
        "operator": run.report(),
        "simulator_bound": False,
    }
    return {
        "rate_limit_utilisation": figure(
            rounded(achieved / RATE_LIMIT, 3),
            "ratio (achieved/limit)",
            (">=", 0.9),
            what="Cisco edits/s under a 40 req/s vendor limit (429 + Retry-After), connection at 40/s",
            **context,
        ),
        "rate_limit_429_share": figure(
            rounded(100 * throttled / requests_sent, 2) if requests_sent else math.nan,
            "% of requests",
            ("<", 1),
            what="Requests the simulator answered 429 in that run",
            requests=requests_sent,
            answered_429=throttled,
        ),
    }


def throttle_episodes(times: list[float], gap: float = 0.5) -> list[float]:
    """The start of each run of 429s (arrival times, ascending) with less than ``gap`` s between them."""
    starts: list[float] = []
    for index, at in enumerate(times):
        if index == 0 or at - times[index - 1] >= gap:
            starts.append(at)
    return starts


# --- 3. FOTA listing ----------------------------------------------------------------------------

FOTA_DEVICES = 200_000
#: ThingSpace publishes no limit; the connection's default (10/s) would make the listing a test of
#: the limiter, 20 s for 200 pages. Raised, so that the client's own cost is measured.
FOTA_RPS = 1000
#: One run of each, to keep ``make bench`` within its time: a listing takes tens of seconds. The
#: wall-time ratio moves with the machine's load (busy neighbours add to both runs alike and pull it
#: towards 1); the client CPU ratio in the figure's context is the steadier evidence.
FOTA_REPEATS = 1
CHILD_TIMEOUT = 600.0


#: The fast peer's device pages wait this long each in the prefetch figure (a tenant far away).
FOTA_LATENCY_S = 0.05
#: Runs of each against the fast peer (a listing there takes a few seconds).
FOTA_PEER_REPEATS = 2


def _fota_runs(
    bench: Bench,
    tag: str,
    connection: dict[str, Any],
    repeats: int,
    cpu_seconds: Callable[[], float] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Run the bare loop and the operator ``repeats`` times each, interleaved, against the server
    ``connection`` names, each in a fresh child process; return their reports by method.

    :param cpu_seconds: the server's CPU time so far (the simulator's), reported per run.
    :raises BenchmarkError: when a child fails or lists or writes other than :data:`FOTA_DEVICES`.
    """
    env = {**bench.env, f"AIRFLOW_CONN_{VERIZON.upper()}": json.dumps(connection)}

    def child(name: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            output = bench.workdir / f"{name}-{tag}.jsonl"
            before = cpu_seconds() if cpu_seconds else 0.0
            report = run_child(
                name,
                {
                    "output": f"file://{output}" if name == "fota-operator" else str(output),
                    "connection": connection,
                },
                env,
                timeout=CHILD_TIMEOUT,
            )
            report["simulator_cpu_s"] = cpu_seconds() - before if cpu_seconds else 0.0
            output.unlink(missing_ok=True)
            if report["devices"] != FOTA_DEVICES or report["lines"] != FOTA_DEVICES:
                raise BenchmarkError(
                    f"{name} ({tag}) listed {report['devices']} devices, wrote {report['lines']}"
                )
            return report

        return run

    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "operator": []}
    methods = {"bare": child("fota-bare"), "operator": child("fota-operator")}
    for repeat in range(bench.repeats(repeats)):
        for name in ("bare", "operator") if repeat % 2 == 0 else ("operator", "bare"):
            runs[name].append(methods[name]())
    return runs


def _fota_summary(report: dict[str, Any]) -> dict[str, Any]:
    wall = report["wall_s"]
    return {
        "wall_s": rounded(wall),
        "devices_per_s": rounded(report["devices"] / wall, 0),
        "client_cpu_s": rounded(report["cpu_s"]),
        "simulator_cpu_s": rounded(report["simulator_cpu_s"]),
        "simulator_cpu_share": rounded(report["simulator_cpu_s"] / wall),
        "pages": report["pages"],
        "peak_rss_growth_mb": report["peak_rss_growth_mb"],
        "peak_rss_mb": report["peak_rss_mb"],
    }


def _fota_peer_figure(
    runs: dict[str, list[dict[str, Any]]], target: tuple[str, float], *, what: str, **context: Any
) -> dict[str, Any]:
    """The operator's best wall time over the bare loop's, against the fast peer."""
    op = min(runs["operator"], key=lambda r: r["wall_s"])
    bare = min(runs["bare"], key=lambda r: r["wall_s"])
    return figure(
        rounded(op["wall_s"] / bare["wall_s"], 3),
        "x (wall time vs bare loop)",
        target,
        what=what,
        client_cpu_ratio=rounded(op["cpu_s"] / bare["cpu_s"], 3),
        operator=_fota_summary(op),
        bare_session_loop=_fota_summary(bare),
        all_runs_wall_s={n: [rounded(r["wall_s"], 2) for r in rs] for n, rs in runs.items()},
        devices=FOTA_DEVICES,
        page_size=PAGE_SIZE,
        server="fast peer (benchmarks/fastpeer.py: precomputed pages, threaded, no rate limit)",
        simulator_bound=False,
        **context,
    )


def fota_listing(bench: Bench) -> dict[str, Any]:
    """200,000 devices to JSON Lines: the operator (output_path) vs a bare ``requests.Session`` loop
    over the same pages, each in a fresh child process (wall time, CPU, peak RSS growth), against the
    simulator, then against the fast peer (:mod:`benchmarks.fastpeer`, whose pages cost next to
    nothing, so the ratio is the client's own cost), at once and at :data:`FOTA_LATENCY_S` a page."""
    with bench.simulator(devices=FOTA_DEVICES) as sim:
        verizon = {**sim.connections()[VERIZON]}
        verizon["extra"] = {**verizon.get("extra", {}), "requests_per_second": FOTA_RPS}
        runs = _fota_runs(bench, "simulator", verizon, FOTA_REPEATS, sim.cpu_seconds)
    peer_runs: dict[float, dict[str, list[dict[str, Any]]]] = {}
    for latency in (0.0, FOTA_LATENCY_S):
        with FastPeer(FOTA_DEVICES, verizon["extra"]["account_name"], latency_s=latency) as peer:
            peer_connection = {**verizon, "host": peer.url}
            peer_runs[latency] = _fota_runs(bench, f"peer-{latency:g}", peer_connection, FOTA_PEER_REPEATS)
    op = min(runs["operator"], key=lambda r: r["wall_s"])
    bare = min(runs["bare"], key=lambda r: r["wall_s"])
    peak_growth = max(r["peak_rss_growth_mb"] for r in runs["operator"])
    simulator_bound = max(r["simulator_cpu_s"] / r["wall_s"] for r in (op, bare)) >= SIMULATOR_BOUND_SHARE
    cursor_floor_s = FOTA_DEVICES / PAGE_SIZE * FOTA_LATENCY_S
    common = {
        "devices": FOTA_DEVICES,
        "page_size": PAGE_SIZE,
        "connection_extras": {"requests_per_second": FOTA_RPS},
        "operator": _fota_summary(op),
        "bare_session_loop": _fota_summary(bare),
        "simulator_bound": simulator_bound,
    }
    return {
        "fota_listing_wall_time": figure(
            rounded(op["wall_s"], 2),
            "s",
            None,
            what="ThingSpace FOTA listing of 200,000 devices to JSON Lines (operator, output_path)",
            **common,
            all_runs_wall_s={n: [rounded(r["wall_s"], 2) for r in rs] for n, rs in runs.items()},
        ),
        "fota_peak_rss_growth": figure(
            peak_growth,
            "MB",
            ("<", 80),
            what="Peak RSS growth of the child process during that listing (worst run)",
            all_runs_mb=[r["peak_rss_growth_mb"] for r in runs["operator"]],
            bare_loop_mb=[r["peak_rss_growth_mb"] for r in runs["bare"]],
            peak_reset=op["peak_reset"],
        ),
        "fota_client_overhead": figure(
            rounded(op["wall_s"] / bare["wall_s"], 3),
            "x (wall time vs bare loop)",
            ("<=", 1.3),
            what="FOTA listing wall time against the simulator: operator vs a bare requests.Session "
            "loop writing the same pages",
            client_cpu_ratio=rounded(op["cpu_s"] / bare["cpu_s"], 3),
            client_side_wall_ratio=rounded(
                (op["wall_s"] - op["simulator_cpu_s"]) / (bare["wall_s"] - bare["simulator_cpu_s"]), 3
            ),
            **common,
        ),
        "fota_client_overhead_fast_peer": _fota_peer_figure(
            peer_runs[0.0],
            ("<=", 1.2),
            what="The same listing against the fast peer (pages answered at once): operator vs the "
            "bare loop, so the ratio is the client's own cost",
            latency_s=0.0,
        ),
        "fota_listing_with_prefetch": _fota_peer_figure(
            peer_runs[FOTA_LATENCY_S],
            ("<=", 0.8),
            what=f"The same listing against the fast peer at {FOTA_LATENCY_S * 1000:g} ms a page: the "
            "operator (which asks for page k+1 as soon as page k's cursor is read, while it decodes, "
            "normalises and writes page k: a one-page look-ahead) vs the bare loop (one page after "
            "the other)",
            latency_s=FOTA_LATENCY_S,
            operator_prefetch="one page ahead (hooks/verizon/paging.py CursorPager.pages_ahead: the next "
            "request goes out once the cursor is read from the raw answer), on for output_path",
            floor_s=rounded(cursor_floor_s, 2),
            # The cursor of page k+1 is in page k's answer, so no client of this API sends the pages
            # faster than one latency each: this is the best ratio any cursor-following client can
            # reach against this bare loop, however much of its own work it overlaps.
            floor_vs_bare=rounded(
                cursor_floor_s / min(r["wall_s"] for r in peer_runs[FOTA_LATENCY_S]["bare"]), 3
            ),
        ),
    }


# --- 4. bulk calls ------------------------------------------------------------------------------

BULK_DEVICES = 100_000
BATCH_SIZE = 1000
BULK_REPEATS = 2
#: The Palo Alto operator's requests_in_flight in the figure (the next batch sent while the previous
#: one is answered; the bare loop sends one at a time). 1, its default, is measured too, for context.
PALOALTO_IN_FLIGHT = 2
#: The simulator's default seed, which decides each device's online status at start-up.
SIMULATOR_SEED = 7


def roma_fleet(devices: int, seed: int = SIMULATOR_SEED) -> tuple[int, list[int], dict[str, int]]:
    """The smallest simulated fleet with ``devices`` devices online at start-up: its size, the ROMA
    ids of those devices, and how many of the fleet's first ``devices`` devices are in each status.

    A force-offline of online devices only is refused for none of them, so the operator has nothing
    to read back and sends exactly what a bare loop sends.
    """
    from airflow_provider_iotfleet.simulator.fleet import (
        MAX_DEVICES,
        NEVER_CONNECTED,
        OFFLINE,
        ONLINE,
        ROMA_ID_BASE,
        Fleet,
    )

    fleet = Fleet(size=MAX_DEVICES, seed=seed, now=lambda: datetime.now(UTC))
    online: list[int] = []
    statuses: Counter[int] = Counter()
    index = 0
    while len(online) < devices:
        status = fleet.base(index)["online_status"]
        if index < devices:
            statuses[status] += 1
        if status == ONLINE:
            online.append(ROMA_ID_BASE + index)
        index += 1
    names = {ONLINE: "online", OFFLINE: "offline", NEVER_CONNECTED: "never_connected"}
    return index, online, {names[status]: statuses[status] for status in names}


def roma_read_back_pages(statuses: dict[str, int], page_size: int) -> int:
    """Listing pages the ROMA operator reads back after forcing a mixed fleet offline: the
    never-connected listing, then the offline one (every device that was online or offline).

    :param statuses: devices per start-up status (``online``, ``offline``, ``never_connected``),
        the whole fleet being sent.
    :return: ``ceil(never / page_size) + ceil((online + offline) / page_size)``.
    """
    never = statuses["never_connected"]
    offline_after = statuses["online"] + statuses["offline"]
    return math.ceil(never / page_size) + math.ceil(offline_after / page_size)


def bulk_calls(bench: Bench) -> dict[str, Any]:
    """100,000 Palo Alto devices and 100,000 ROMA ids: the operators vs bare Session loops sending
    the same batches (ROMA's signed with the hook module's functions), each in a fresh simulator.

    The clock runs over ``execute()`` only: building the operator (which Airflow does when it parses
    the DAG file, in the DAG processor, not in the task) is outside it. The ROMA comparison uses
    devices that are all online, so that neither side has refused devices to read back; the
    operator's read-back on a mixed fleet is reported apart, as its requests.
    """
    import requests

    from airflow_provider_iotfleet.hooks.huawei.auth import (
        SDK_DATE_FORMAT,
        SIGNING_ALGORITHM,
        request_signature,
    )
    from airflow_provider_iotfleet.hooks.huawei.hook import MAX_PAGE_SIZE as ROMA_PAGE_SIZE
    from airflow_provider_iotfleet.hooks.paloalto import validate_cellular_devices
    from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
    from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator
    from airflow_provider_iotfleet.simulator.fleet import ROMA_ID_BASE, iccid_of, imei_of, ipv4_of
    from airflow_provider_iotfleet.utils import chunks, distinct
    from airflow_provider_iotfleet.validation import validate_roma_device_ids as validate_ids
    from tests.fakes import operator_context

    devices = [
        {
            "imei": imei_of(index),
            "iccid": iccid_of(index),
            "imsi": f"310260{index:09d}",
            "msisdn": f"1555{index:07d}",
            "ipAddress": ipv4_of(index),
            "apn": "iot.bench",
        }
        for index in range(BULK_DEVICES)
    ]
    roma_fleet_size, roma_ids, _ = roma_fleet(BULK_DEVICES)
    mixed_ids = [ROMA_ID_BASE + index for index in range(BULK_DEVICES)]
    extras = {
        PALOALTO: {"requests_per_minute": 60 * UNLIMITED_RPS},
        HUAWEI: {"requests_per_second": UNLIMITED_RPS},
    }
    fleet_sizes = {"paloalto": BULK_DEVICES, "huawei": roma_fleet_size}

    def paloalto_operator(
        connections: dict[str, Any], in_flight: int = PALOALTO_IN_FLIGHT
    ) -> Callable[[], int]:
        task = PaloAltoIoTBulkUpdateOperator(
            task_id="bench_paloalto", devices=devices, batch_size=BATCH_SIZE, requests_in_flight=in_flight
        )
        context = operator_context("bench_paloalto")

        def run() -> int:
            outcome = task.execute(context)  # type: ignore[arg-type]
            if outcome["updated"] != BULK_DEVICES or outcome["errors"]:
                raise BenchmarkError(f"the Palo Alto operator updated {outcome['updated']}")
            return BULK_DEVICES

        return run

    def paloalto_bare(connections: dict[str, Any]) -> int:
        connection = connections[PALOALTO]
        session = requests.Session()
        session.headers.update({"X-Key-Id": connection["login"], "X-Access-Key": connection["password"]})
        params = {"customerid": connection["extra"]["customer_id"], "updateSource": "cellular"}
        updated = 0
        for batch in chunks(devices, BATCH_SIZE):
            answer = session.put(
                f"{connection['host']}/pub/v4.0/device/bulkUpdate",
                params=params,
                json={"devicelist": batch},
                timeout=30,
            )
            answer.raise_for_status()
            body = answer.json()
            if str(body["code"]) != "1":
                raise BenchmarkError(f"bulk update refused: {body}")
            updated += int(body["updatedDeviceNum"])
        session.close()
        if updated != BULK_DEVICES:
            raise BenchmarkError(f"the bare loop updated {updated}")
        return BULK_DEVICES

    def roma_task(ids: list[int]) -> Callable[[], dict[str, Any]]:
        task = HuaweiRomaForceOfflineOperator(
            task_id="bench_roma", device_ids=ids, batch_size=BATCH_SIZE, fail_on_error=False
        )
        context = operator_context("bench_roma")

        def run() -> dict[str, Any]:
            outcome: dict[str, Any] = task.execute(context)  # type: ignore[arg-type]
            if outcome["requested"] != len(ids) or any(
                error["attempted"] and error["http_status"] for error in outcome["errors"]
            ):
                raise BenchmarkError("a ROMA force-offline request failed as a whole")
            return outcome

        return run

    def roma_operator(connections: dict[str, Any]) -> Callable[[], int]:
        run = roma_task(roma_ids)

        def forced() -> int:
            outcome = run()
            if outcome["counts"].get("succeeded") != BULK_DEVICES:
                raise BenchmarkError(f"ROMA forced {outcome['counts']} of {BULK_DEVICES} offline")
            return BULK_DEVICES

        return forced

    def roma_bare(connections: dict[str, Any]) -> int:
        connection = connections[HUAWEI]
        extra = connection["extra"]
        url = (
            f"{connection['host']}/v2/{extra['project_id']}/link/instances/{extra['instance_id']}"
            "/devices/force-offline"
        )
        host = urlsplit(url).netloc
        session = requests.Session()
        answered = 0
        for batch in chunks(roma_ids, BATCH_SIZE):
            body = json.dumps({"device_ids": batch}).encode()
            headers = {
                "Content-Type": "application/json",
                "Host": host,
                "X-Sdk-Date": datetime.now(UTC).strftime(SDK_DATE_FORMAT),
                "X-Project-Id": extra["project_id"],
            }
            signature, signed = request_signature(connection["password"], "POST", url, headers, body)
            headers["Authorization"] = (
                f"{SIGNING_ALGORITHM} Access={connection['login']}, "
                f"SignedHeaders={';'.join(signed)}, Signature={signature}"
            )
            answer = session.post(url, data=body, headers=headers, timeout=30)
            answer.raise_for_status()
            result = answer.json()
            if result["failed"]:
                raise BenchmarkError(f"ROMA refused {len(result['failed'])} online devices")
            answered += len(result["success"])
        session.close()
        if answered != BULK_DEVICES:
            raise BenchmarkError(f"ROMA answered for {answered} devices")
        return BULK_DEVICES

    def fresh(
        label: str, vendor: str, prepare: Callable[[dict[str, Any]], Callable[[], int]]
    ) -> Callable[[], Measured]:
        """One run against a simulator of its own, so that every run finds the same fleet;
        ``prepare`` returns what is timed (building an operator is not)."""

        def measured() -> Measured:
            with bench.simulator(devices=fleet_sizes[vendor], seed=SIMULATOR_SEED) as sim:
                connections = sim.connections()
                with environment(connection_env(connections, **extras)):
                    result = measure(label, sim, prepare(connections))
                counters = sim.counters()
            result.requests = counters.get(f"{vendor}.requests", 0)  # type: ignore[attr-defined]
            return result

        return measured

    def bare(run: Callable[[dict[str, Any]], int]) -> Callable[[dict[str, Any]], Callable[[], int]]:
        return lambda connections: lambda: run(connections)

    # Validation alone, as each operator does it before its first request and as its hook does it
    # again for every batch it sends (evidence for the ratio: "validation must not dominate").
    with Stopwatch() as paloalto_validation:
        checked, _ = distinct(validate_cellular_devices(devices), key=lambda d: tuple(sorted(d.items())))
        paloalto_batches = list(chunks(checked, BATCH_SIZE))
    with Stopwatch() as paloalto_hook_validation:
        for batch in paloalto_batches:
            validate_cellular_devices(batch)
    with Stopwatch() as roma_validation:
        roma_batches = list(chunks(distinct(validate_ids(roma_ids), key=lambda i: i)[0], BATCH_SIZE))
    with Stopwatch() as roma_hook_validation:
        for batch in roma_batches:
            validate_ids(batch)

    figures: dict[str, Any] = {}
    expected_requests = math.ceil(BULK_DEVICES / BATCH_SIZE)
    for vendor, key, label, operator, bare_loop, validation, hook_validation in (
        (
            "paloalto",
            "paloalto",
            "IoT Security bulk update",
            paloalto_operator,
            paloalto_bare,
            paloalto_validation,
            paloalto_hook_validation,
        ),
        (
            "huawei",
            "roma",
            "ROMA force-offline",
            roma_operator,
            roma_bare,
            roma_validation,
            roma_hook_validation,
        ),
    ):
        methods = {
            "operator": fresh("operator", vendor, operator),
            "bare": fresh("bare", vendor, bare(bare_loop)),
        }
        if vendor == "paloalto":
            methods["operator_one_in_flight"] = fresh(
                "operator_one_in_flight", vendor, lambda connections: paloalto_operator(connections, 1)
            )
        runs = interleaved(bench.repeats(BULK_REPEATS), methods)
        op, floor = best(runs["operator"]), best(runs["bare"])
        context = {
            "devices": BULK_DEVICES,
            "batch_size": BATCH_SIZE,
            "connection_extras": extras[PALOALTO if vendor == "paloalto" else HUAWEI],
            "timed": "operator.execute() only; the operator is built before the clock starts (Airflow "
            "builds it when it parses the DAG file, in the DAG processor), the bare loop from its first "
            "request",
            "operator": {**op.report(), "requests": op.requests},  # type: ignore[attr-defined]
            "bare_session_loop": {**floor.report(), "requests": floor.requests},  # type: ignore[attr-defined]
            "validation_s": {
                "operator_whole_list": rounded(validation.wall),
                "hook_per_batch": rounded(hook_validation.wall),
            },
            "validation_share_of_operator_wall": rounded((validation.wall + hook_validation.wall) / op.wall),
            "all_runs_per_s": {
                name: [rounded(r.rate, 0) for r in measured] for name, measured in runs.items()
            },
            "repeats": bench.repeats(BULK_REPEATS),
            "kept": "best run of each (highest devices/s); a fresh simulator per run",
            "simulator_bound": max(op.simulator_share, floor.simulator_share) >= SIMULATOR_BOUND_SHARE,
        }
        if vendor == "paloalto":
            one = best(runs["operator_one_in_flight"])
            context["requests_in_flight"] = PALOALTO_IN_FLIGHT
            context["one_in_flight"] = {
                "ratio": rounded(one.rate / floor.rate, 3),
                "what": "the same operator with requests_in_flight=1 (its default): one request at a time",
                **one.report(),
            }
        if vendor == "huawei":
            context["bare_loop_signing"] = "hooks.huawei.auth.request_signature, SDK-HMAC-SHA256 per request"
            context["fleet"] = (
                f"the first {BULK_DEVICES:,} devices online at start-up of a {roma_fleet_size:,}-device "
                "simulated fleet (seed 7): ROMA refuses none, so neither side reads anything back (the "
                "read-back of a mixed fleet is roma_bulk_read_back_requests)"
            )
        figures[f"{key}_bulk_vs_bare"] = figure(
            rounded(op.rate / floor.rate, 3),
            "ratio (devices/s)",
            (">=", 0.8),
            what=f"{label} of 100,000 devices in batches of 1,000: operator vs a bare Session loop",
            **context,
        )
        made = max(r.requests for r in runs["operator"])  # type: ignore[attr-defined]
        figures[f"{key}_bulk_requests"] = figure(
            made,
            "requests",
            ("==", expected_requests),
            what=f"{label}: {'write ' if vendor == 'huawei' else ''}requests the operator made for "
            "100,000 devices (ceil(n / batch_size))",
            per_run=[r.requests for r in runs["operator"]],  # type: ignore[attr-defined]
        )
    figures.update(_roma_read_back(bench, roma_task(mixed_ids), extras, ROMA_PAGE_SIZE))
    return figures


def _roma_read_back(
    bench: Bench, run: Callable[[], dict[str, Any]], extras: dict[str, Any], page_size: int
) -> dict[str, Any]:
    """The ROMA operator once over the simulator's first 100,000 devices as they start (a mix of
    online, offline and never-connected): its write requests and the read-back of refused devices.

    :return: ``roma_bulk_read_back_requests`` (reported, no target), its context the expected count.
    """
    _, _, statuses = roma_fleet(BULK_DEVICES)
    with bench.simulator(devices=BULK_DEVICES, seed=SIMULATOR_SEED) as sim:
        with environment(connection_env(sim.connections(), **extras)), Stopwatch() as clock:
            outcome = run()
        counters = sim.counters()
    writes = counters.get("huawei.force_offline", 0)
    reads = counters.get("huawei.requests", 0) - writes
    return {
        "roma_bulk_read_back_requests": figure(
            reads,
            "requests",
            what="ROMA force-offline of 100,000 devices of a mixed fleet: the listing pages the operator "
            "reads once, after every batch, to tell refused devices already offline (unchanged) from "
            "never-connected ones (failed); a bare loop does not do this work",
            expected=roma_read_back_pages(statuses, page_size),
            expected_rule=f"ceil(never_connected / {page_size}) + ceil((online + offline) / {page_size}): "
            "the never-connected listing, then the offline listing once the batches are sent",
            fleet_statuses=statuses,
            write_requests=writes,
            outcome_counts=outcome["counts"],
            wall_s=rounded(clock.wall),
        )
    }


# --- 5. import cost -----------------------------------------------------------------------------

IMPORT_RUNS = 5
PRELOADED_IMPORT_RUNS = 3
IMPORT_TIMEOUT = 300.0
#: What a DAG file typically has loaded already when it imports an operator.
DAG_FILE_PRELOAD = [
    "airflow.sdk:DAG",
    "airflow.sdk:dag",
    "airflow.sdk:task",
    "airflow.sdk:BaseOperator",
    "airflow.sdk:BaseHook",
    "airflow.sdk:BaseSensorOperator",
    "airflow.sdk:Asset",
]


#: Modules a DAG file never loads: imported only when an optional extra is installed and used (the
#: OpenLineage run facet, when the openlineage provider emits lineage after a task). They need the
#: extra's own packages (the OpenLineage client brings requests), so they are not the provider's
#: import cost; the figure's context lists them.
OPTIONAL_EXTRA_MODULES = {"airflow_provider_iotfleet.operators.lineage_facets": "openlineage"}


def provider_modules() -> list[str]:
    """Every hook, operator, sensor and trigger module of the provider, but for
    :data:`OPTIONAL_EXTRA_MODULES`."""
    modules = []
    for package in ("hooks", "operators", "sensors", "triggers"):
        name = f"airflow_provider_iotfleet.{package}"
        spec = importlib.util.find_spec(name)
        assert spec is not None
        assert spec.submodule_search_locations is not None
        for location in spec.submodule_search_locations:
            modules += sorted(
                f"{name}.{path.stem}"
                for path in Path(location).glob("*.py")
                if path.stem != "__init__" and f"{name}.{path.stem}" not in OPTIONAL_EXTRA_MODULES
            )
    return modules


def import_cost(bench: Bench) -> dict[str, Any]:
    """Importing every hook, operator, sensor and trigger module after ``airflow.sdk``, in fresh
    processes (median of several), what ``-X importtime`` says costs most, and what they load."""
    import subprocess

    modules = provider_modules()
    run_child("imports", {"modules": modules}, bench.env, timeout=IMPORT_TIMEOUT)  # bytecode, page cache
    runs = [
        run_child("imports", {"modules": modules}, bench.env, timeout=IMPORT_TIMEOUT)
        for _ in range(IMPORT_RUNS)
    ]
    preloaded = [
        run_child(
            "imports", {"modules": modules, "preload": DAG_FILE_PRELOAD}, bench.env, timeout=IMPORT_TIMEOUT
        )
        for _ in range(PRELOADED_IMPORT_RUNS)
    ]
    cost_ms = median([r["provider_s"] for r in runs]) * 1000
    added = runs[0]["added"]
    packages = Counter(name.split(".")[0] for name in added)

    marker = "--iotfleet-bench-marker--"
    code = f"import sys, airflow.sdk\nsys.stderr.write('{marker}\\n')\n" + "".join(
        f"import {module}\n" for module in modules
    )
    traced = subprocess.run(  # noqa: S603 - this interpreter, code built here
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        env=bench.env,
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT,
        check=True,
    )
    entries = _importtime(traced.stderr.split(marker, 1)[1])
    by_self = sorted(entries, key=lambda e: e["self_us"], reverse=True)
    outermost = min((e["depth"] for e in entries), default=0)
    by_cumulative = sorted(
        (e for e in entries if e["depth"] == outermost), key=lambda e: e["cumulative_us"], reverse=True
    )
    self_by_package: Counter[str] = Counter()
    for entry in entries:
        self_by_package[entry["module"].split(".")[0]] += entry["self_us"]
    external = {
        package: {
            "modules": count,
            "self_ms_in_importtime_run": rounded(self_by_package.get(package, 0) / 1000, 1),
            "examples": [name for name in added if name.split(".")[0] == package][:8],
        }
        for package, count in packages.most_common()
        if package != "airflow_provider_iotfleet"
    }
    requests_loaded = any(r["requests_loaded"] for r in runs + preloaded)
    return {
        "import_cost": figure(
            rounded(cost_ms, 1),
            "ms (median)",
            ("<=", 150),
            what="Importing every hook, operator, sensor and trigger module after airflow.sdk (fresh process)",
            modules=len(modules),
            left_out_optional_extra_modules=OPTIONAL_EXTRA_MODULES,
            runs_ms=[rounded(r["provider_s"] * 1000, 1) for r in runs],
            airflow_sdk_import_ms_median=rounded(median([r["sdk_s"] for r in runs]) * 1000, 0),
            after_dag_file_imports_ms_median=rounded(median([r["provider_s"] for r in preloaded]) * 1000, 1),
            after_dag_file_imports_runs_ms=[rounded(r["provider_s"] * 1000, 1) for r in preloaded],
            dag_file_preload=DAG_FILE_PRELOAD,
            importtime_total_ms=rounded(sum(e["self_us"] for e in entries) / 1000, 1),
            importtime_top_self_ms={e["module"]: rounded(e["self_us"] / 1000, 2) for e in by_self[:12]},
            importtime_top_cumulative_ms={
                e["module"]: rounded(e["cumulative_us"] / 1000, 2) for e in by_cumulative[:12]
            },
            modules_added=len(added),
            packages_added_besides_the_provider=external,
            httpx_already_loaded_by_airflow_sdk=all(r["httpx_loaded_before"] for r in runs),
        ),
        "import_loads_requests": figure(
            requests_loaded,
            "bool",
            ("==", False),
            what="Whether importing those modules loads requests (the sync client imports it lazily)",
        ),
    }


def _importtime(text: str) -> list[dict[str, Any]]:
    """Parse ``-X importtime`` lines: ``import time: self [us] | cumulative | imported package``."""
    entries = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3:
            continue
        name = fields[2].rstrip()
        entries.append(
            {
                "module": name.strip(),
                "depth": (len(name) - len(name.lstrip())) // 2,
                "self_us": int(fields[0]),
                "cumulative_us": int(fields[1]),
            }
        )
    return entries


# --- 6. deferrable scale ------------------------------------------------------------------------

#: The deferred sensors in one triggerer's loop, by kind (see ``benchmarks.child._scale_triggers``).
TRIGGER_MIX = {"cisco": 800, "roma": 600, "firmware": 400, "campaign": 200}
TRIGGERS = sum(TRIGGER_MIX.values())
TRIGGER_LATENCY = 0.05
TRIGGER_CONCURRENCY = 16
#: Four times the triggers of the 500-trigger figure at the request rate it had (500 every 2 s):
#: 200 polls a second. A sensor's default poke interval is 60 s.
POLL_INTERVAL = 10.0
ROUNDS = 3
TICK = 0.01
#: The longest the triggers may take for their rounds before they are cancelled anyway.
TRIGGER_LIMIT = 240.0
#: What each kind waits for and what one poll of it asks the simulator.
TRIGGER_KINDS = {
    "cisco": "CiscoDeviceStatusTrigger, one ICCID, status RETIRED (never reached): GET /devices/{iccid} "
    "first, then one Search Devices call per poll",
    "roma": "HuaweiRomaDeviceStatusTrigger, one ROMA device, the online status it does not have: one "
    "GET of the device per poll (AK/SK signed)",
    "firmware": "VerizonThingSpaceFirmwareTrigger, one IMEI, firmware NEVER-9.9: one POST of the FOTA "
    "subset listing per poll (OAuth token and M2M session shared)",
    "campaign": "VerizonThingSpaceCampaignTrigger, one campaign of one device starting tomorrow (never "
    "over): the campaign and its device report per poll",
}
LAG_P99_TARGET_MS = 10.0
LAG_MAX_TARGET_MS = 100.0


def deferrable_scale(bench: Bench) -> dict[str, Any]:
    """2,000 deferred sensors of mixed vendors (Cisco status, ROMA online status, ThingSpace firmware
    and campaign triggers) in one event loop against the simulator (50 ms latency), in a child
    process: the time of one polling round, RSS, the loop's lag seen by a ticker task, and how often
    the triggerer's own watchdog would have said a trigger blocked the loop."""
    with bench.simulator(devices=TRIGGERS, latency=TRIGGER_LATENCY) as sim:
        extras = {"max_concurrency": TRIGGER_CONCURRENCY, "requests_per_second": UNLIMITED_RPS}
        env = {
            **bench.env,
            **connection_env(sim.connections(), **{CISCO: extras, HUAWEI: extras, VERIZON: extras}),
            # What a triggerer logs: each trigger's line per poll.
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
        before = sim.counters()
        cpu_before = sim.cpu_seconds()
        report = run_child(
            "triggers",
            {
                "mix": TRIGGER_MIX,
                "poll_interval": POLL_INTERVAL,
                "rounds": ROUNDS,
                "tick": TICK,
                "limit": TRIGGER_LIMIT,
            },
            env,
            timeout=CHILD_TIMEOUT,
        )
        simulator_cpu = sim.cpu_seconds() - cpu_before
        after = sim.counters()
    rounds = {int(number): seconds for number, seconds in report["rounds_s"].items()}
    if 1 not in rounds or report["event_count"]:
        raise BenchmarkError(f"the triggers did not run as planned: {report}")
    vendors = ("cisco", "huawei", "verizon")
    requests = {
        vendor: after.get(f"{vendor}.requests", 0) - before.get(f"{vendor}.requests", 0) for vendor in vendors
    }
    # Each vendor's triggers share one hook, so one pool of connections: the slowest vendor's share
    # of a round sets the floor (a campaign poll is two requests).
    per_vendor_polls = {"cisco": TRIGGER_MIX["cisco"], "huawei": TRIGGER_MIX["roma"]}
    per_vendor_polls["verizon"] = TRIGGER_MIX["firmware"] + 2 * TRIGGER_MIX["campaign"]
    full_floor = max(math.ceil(n / TRIGGER_CONCURRENCY) * TRIGGER_LATENCY for n in per_vendor_polls.values())
    simulator_share = simulator_cpu / report["wall_s"]
    lag = report["lag_ms"]
    running = lag["running"]
    context = {
        "triggers": TRIGGERS,
        "mix": report["mix"],
        "kinds": TRIGGER_KINDS,
        "latency_s": TRIGGER_LATENCY,
        "connection_extras": extras,
        "connections": "one per vendor (cisco, huawei, verizon), each trigger kind of a vendor sharing its hook",
        "poll_interval_s": POLL_INTERVAL,
        "rounds_s": report["rounds_s"],
        "round": "from the first trigger starting its n-th poll to the last one finishing it; "
        "all start at once, so round 1 polls all of them once",
        "complete_rounds": f"{len(rounds)} of {ROUNDS} within {TRIGGER_LIMIT:g} s",
        "polls_per_round": report["polls_per_round"],
        "poll_seconds": report["poll_seconds"],
        "poll_start_gaps_s": report["poll_start_gaps_s"],
        "wall_s": report["wall_s"],
        "preloaded": "airflow.sdk.execution_time.task_runner, as in a triggerer",
        "round_floor_s": rounded(full_floor, 2),
        "requests": requests,
        "requests_total": sum(requests.values()),
        "client_cpu_s": report["cpu_s"],
        "client_cpu_ms_per_request": rounded(1000 * report["cpu_s"] / max(1, sum(requests.values())), 3),
        "simulator_cpu_share_of_run": rounded(simulator_share),
        "simulator_bound": simulator_share >= SIMULATOR_BOUND_SHARE,
        "log_level": "INFO (a line per trigger per poll, as in a triggerer)",
    }
    slowest = max(rounds.values())
    lag_max = running["max"] or 0.0
    lag_p99 = running["p99"] or 0.0
    lag_context = {
        "by_phase_ms": lag,
        "phases": "idle: the loop alone before the triggers start (the machine's own noise); round_1: "
        "until every trigger polled once; later: the rest; running: round_1 and later",
        "ticks": report["ticks"],
        "triggers": TRIGGERS,
        "mix": report["mix"],
    }
    return {
        "triggers_poll_round": figure(
            rounded(slowest, 3),
            "s (slowest round)",
            None,
            what=f"{TRIGGERS} deferred sensors of mixed vendors in one event loop: time of one polling "
            f"round ({TRIGGER_CONCURRENCY} connections per vendor, 50 ms latency; floor {full_floor:.2f} s)",
            **context,
        ),
        "triggers_peak_rss": figure(
            report["peak_rss_mb"],
            "MB",
            None,
            what=f"Peak RSS of the process running the {TRIGGERS} triggers (Airflow loaded)",
            growth_mb=report["peak_rss_growth_mb"],
            rss_before_mb=report["rss_before_mb"],
        ),
        "triggers_rss_growth": figure(
            report["peak_rss_growth_mb"],
            "MB",
            None,
            what=f"RSS growth from before the {TRIGGERS} triggers were built to the peak while they polled",
            per_trigger_kib=rounded(report["peak_rss_growth_mb"] * 1024 / TRIGGERS, 1),
            rss_before_mb=report["rss_before_mb"],
            mix=report["mix"],
        ),
        "triggers_loop_lag_max": figure(
            rounded(lag_max, 1),
            "ms",
            ("<=", LAG_MAX_TARGET_MS),
            what=f"Event-loop lag among those triggers, from the first poll to the last: the longest a "
            f"{TICK * 1000:g} ms ticker task overslept",
            **lag_context,
        ),
        "triggers_loop_lag_p99": figure(
            lag_p99,
            "ms",
            ("<=", LAG_P99_TARGET_MS),
            what="Event-loop lag among those triggers, from the first poll to the last: p99",
            p50_ms=running["p50"],
            later_p99_ms=lag["later"]["p99"],
            idle_p99_ms=lag["idle"]["p99"],
            **lag_context,
        ),
        "triggers_block_watchdog": figure(
            report["watchdog_warnings"],
            "warnings",
            ("==", 0),
            what="Times the triggerer's blocked-loop watchdog would have warned (a 100 ms sleep took "
            f"over {report['watchdog_threshold_s']:g} s): no trigger may block the loop",
            source="a copy of airflow.jobs.triggerer_job_runner.TriggerRunner.block_watchdog, "
            "[triggerer] blocked_main_thread_warning_threshold",
            threshold_s=report["watchdog_threshold_s"],
            longest_s=report["watchdog_longest_s"],
            in_round_1=report["watchdog_warnings_in_round_1"],
            gc_pauses_ms=report["gc_pauses_ms"],
            gc_pauses_cpu_ms=report.get("gc_pauses_cpu_ms"),
            gc_full_collections_running=report.get("gc_full_collections_running"),
            gc_promoted_per_poll=report.get("gc_promoted_per_poll"),
            gc_tracked_objects=report["gc_tracked_objects"],
            triggers=TRIGGERS,
            mix=report["mix"],
        ),
    }


# --- the run ------------------------------------------------------------------------------------

# --- 8. what one run of 100,000 devices stores in Airflow ---------------------------------------

SIZE_DEVICES = 100_000
XCOM_LIMIT_MIB = 3.0
TRIGGER_KWARGS_LIMIT_KIB = 16.0


def xcom_bytes(pushed: dict[str, Any]) -> int:
    """Bytes of every XCom one try pushed, serialised as Airflow's JSON XCom does."""
    return sum(len(json.dumps(value).encode()) for value in pushed.values())


def stored_sizes(bench: Bench) -> dict[str, Any]:
    """What one try of a write operator on 100,000 devices that all fail with one error (a wrong
    Control Center API key) pushes to XCom, against the ids alone; and what a deferrable sensor over
    100,000 devices puts in the trigger table (its device list goes by XCom reference)."""
    from airflow_provider_iotfleet.exceptions import IoTFleetOperationFailedError
    from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
    from airflow_provider_iotfleet.simulator.fleet import iccid_of
    from tests.fakes import operator_context
    from tests.trigger_kwargs import deferral_for_devices, kwargs_bytes

    iccids = [iccid_of(index) for index in range(SIZE_DEVICES)]
    with bench.simulator(devices=SIZE_DEVICES) as sim:
        connections = sim.connections()
        wrong_key = {**connections[CISCO], "password": "not-the-api-key"}
        with environment(connection_env({**connections, CISCO: wrong_key})):
            task = CiscoControlCenterEditDevicesOperator(
                task_id="bench_sizes", iccids=iccids, changes={"status": "ACTIVATED"}
            )
            context = operator_context("bench_sizes")
            try:
                task.execute(context)  # type: ignore[arg-type]
            except IoTFleetOperationFailedError:
                pass
            else:
                raise BenchmarkError("the edits with a wrong API key did not fail")
    pushed = dict(context["ti"].xcom)  # type: ignore[attr-defined]
    outcome = pushed.get("outcome") or {}
    ids_alone = len(json.dumps(iccids).encode())
    size = xcom_bytes(pushed)
    trigger, sensor_ti = deferral_for_devices(SIZE_DEVICES)
    return {
        "trigger_kwargs_kib_100k": figure(
            rounded(kwargs_bytes(trigger) / 1024, 2),
            "KiB",
            ("<=", TRIGGER_KWARGS_LIMIT_KIB),
            what=f"Trigger kwargs of a deferrable Cisco status sensor over {SIZE_DEVICES:,} SIMs (half of them "
            "matched by its first check), as the trigger table stores them (before encryption)",
            by_reference_xcom_mib=rounded(xcom_bytes(sensor_ti.xcom) / 2**20, 2),
        ),
        "xcom_mib_100k_failed": figure(
            rounded(size / 2**20, 2),
            "MiB",
            ("<=", XCOM_LIMIT_MIB),
            what=f"XCom pushed by one try of a Cisco edit of {SIZE_DEVICES:,} SIMs that all fail with "
            "one error (a wrong API key): every key, as Airflow serialises it",
            keys=sorted(pushed),
            ids_alone_mib=rounded(ids_alone / 2**20, 2),
            error_groups=len(outcome.get("errors", [])),
            counts=outcome.get("counts"),
        ),
    }


GROUPS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "headroom": simulator_headroom,
    "imports": import_cost,
    "edits": per_device_edits,
    "rate_limit": rate_limit_utilisation,
    "fota": fota_listing,
    "bulk": bulk_calls,
    "triggers": deferrable_scale,
    "sizes": stored_sizes,
    "poll_cost": poll_cost,
    "overhead": operator_overhead,
}


def versions() -> dict[str, str]:
    import airflow
    import httpx
    import requests

    import airflow_provider_iotfleet

    found = {
        "airflow": airflow.__version__,
        "provider": airflow_provider_iotfleet.__version__,
        "requests": requests.__version__,
        "httpx": httpx.__version__,
    }
    for package in ("apache-airflow-providers-http", "fastapi", "uvicorn"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["provider_git"] = _git_revision()
    return found


def _git_revision() -> str:
    """The checkout measured: its commit, and whether it had uncommitted changes."""
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, as make does
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "airflow_provider_iotfleet"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} (package with uncommitted changes)" if changed else commit


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def mark_simulator_bound(figures: dict[str, Any], headroom: dict[str, Any]) -> None:
    """Say in the headroom figure which figures the simulator limited."""
    headroom_figure = figures.get("simulator_headroom")
    if headroom_figure is None:
        return
    headroom_figure["context"]["simulator_bound_figures"] = sorted(
        name for name, fig in figures.items() if fig["context"].get("simulator_bound")
    )
    headroom_figure["context"]["rule"] = (
        f"a figure is simulator-bound when the simulator process was busy >= {SIMULATOR_BOUND_SHARE:.0%} "
        "of its wall time (simulator_cpu_share in each figure's context)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=list(GROUPS), help="run only these figure groups")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"default {RESULTS.relative_to(ROOT)}")
    parser.add_argument(
        "--repeats", type=int, default=None, help="runs of each method per comparison (default: per group)"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    when = datetime.now(UTC).isoformat(timespec="seconds")
    workdir = Path(tempfile.mkdtemp(prefix="iotfleet-bench-"))
    try:
        env = prepare_environment(workdir)
        bench = Bench(env, workdir, None if args.repeats is None else max(1, args.repeats))
        info = machine()
        figures: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, group in GROUPS.items():
            if args.only and name not in args.only:
                continue
            print(f"[bench] {name} ...", flush=True)
            group_started = time.perf_counter()
            try:
                figures.update(group(bench))
            except Exception as error:  # one broken benchmark must not hide the others' figures
                errors[name] = f"{type(error).__name__}: {error}"
                traceback.print_exc()
            print(f"[bench] {name}: {time.perf_counter() - group_started:.1f} s", flush=True)
        mark_simulator_bound(figures, bench.headroom)
        info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        results = {
            "machine": info,
            "versions": versions(),
            "figures": figures,
            "when": when,
            "duration_s": round(time.perf_counter() - started, 1),
            "notes": (
                "Each figure measured in this one run against the simulator, which runs in its own "
                "process; ratios are what to compare, absolute times are context only."
            ),
        }
        if errors:
            results["errors"] = errors
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(table(results))
    print(f"[bench] wrote {args.output} in {results['duration_s']:.0f} s", flush=True)
    if errors:
        print(f"[bench] could not run: {', '.join(errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # The first Airflow import reads AIRFLOW_HOME: nothing above imports Airflow at module level.
    raise SystemExit(main())
