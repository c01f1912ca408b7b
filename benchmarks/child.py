"""The measurements that need a fresh process of their own: memory peaks, event loops, import times.

    python -m benchmarks.child NAME ARGUMENTS_JSON REPORT_PATH

Each writes a JSON report (see :func:`benchmarks.common.run_child`). Connections come from the
``AIRFLOW_CONN_*`` environment the runner sets.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable
from typing import Any

from benchmarks.common import PeakRss, Stopwatch, percentile, rounded, write_report

CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
#: How long the loop observers run alone before the triggers start (the idle loop's own lag).
IDLE_SECONDS = 1.0
#: How many types the census of GC-tracked objects the triggers added reports, most numerous first.
CENSUS_TYPES = 25


def child(function: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    CHILDREN[function.__name__.replace("_", "-")] = function
    return function


# --- FOTA listing -------------------------------------------------------------------------------


@child
def fota_operator(arguments: dict[str, Any]) -> dict[str, Any]:
    """``VerizonThingSpaceFotaDevicesOperator(output_path=...)`` over the whole account."""
    from airflow_provider_iotfleet.operators.verizon import VerizonThingSpaceFotaDevicesOperator
    from tests.fakes import operator_context

    operator = VerizonThingSpaceFotaDevicesOperator(task_id="bench_fota", output_path=arguments["output"])
    context = operator_context("bench_fota")
    with PeakRss() as memory, Stopwatch() as clock:
        outcome = operator.execute(context)  # type: ignore[arg-type]
    return {
        "wall_s": clock.wall,
        "cpu_s": clock.cpu,
        **memory.report(),
        "devices": outcome["device_count"],
        "pages": outcome["pages"],
        "lines": _count_lines(arguments["output"]),
    }


@child
def fota_bare(arguments: dict[str, Any]) -> dict[str, Any]:
    """The same pages with a bare ``requests.Session``: log in, GET each page, write JSON Lines.

    No normalisation, validation, retries or atomic rename: the floor any client pays.
    """
    import requests

    connection = arguments["connection"]
    root = connection["host"]
    extra = connection["extra"]
    account = extra["account_name"]
    with PeakRss() as memory, Stopwatch() as clock:
        session = requests.Session()
        token = session.post(
            f"{root}/api/ts/v1/oauth2/token",
            auth=(connection["login"], connection["password"]),
            data={"grant_type": "client_credentials"},
            timeout=30,
        )
        token.raise_for_status()
        bearer = token.json()["access_token"]
        login = session.post(
            f"{root}/api/m2m/v1/session/login",
            headers={"Authorization": f"Bearer {bearer}"},
            json={"username": extra["m2m_username"], "password": extra["m2m_password"]},
            timeout=30,
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {bearer}", "VZ-M2M-Token": login.json()["sessionToken"]}
        devices = pages = 0
        last_seen = "0"
        with open(arguments["output"], "w", encoding="utf-8") as out:
            while True:
                answer = session.get(
                    f"{root}/api/fota/v3/devices/{account}",
                    params={"lastSeenDeviceId": last_seen},
                    headers=headers,
                    timeout=30,
                )
                answer.raise_for_status()
                body = answer.json()
                page = body["deviceList"]
                out.write("".join(json.dumps(device, separators=(",", ":")) + "\n" for device in page))
                devices += len(page)
                pages += 1
                if not body.get("hasMoreData"):
                    break
                last_seen = body["lastSeenDeviceId"]
        session.close()
    return {
        "wall_s": clock.wall,
        "cpu_s": clock.cpu,
        **memory.report(),
        "devices": devices,
        "pages": pages,
        "lines": _count_lines(arguments["output"]),
    }


def _count_lines(path: str) -> int:
    with open(path.removeprefix("file://"), "rb") as written:
        return sum(1 for _ in written)


# --- deferrable scale ---------------------------------------------------------------------------


#: The trigger kinds the deferrable-scale benchmark mixes, by the name its ``mix`` argument uses.
TRIGGER_KINDS = ("cisco", "roma", "firmware", "campaign")


def _scale_triggers(mix: dict[str, int], poll_interval: float, timed: Callable[[type], type]) -> list[Any]:
    """The triggers of the deferrable-scale benchmark: ``mix[kind]`` of each kind, each waiting for
    something the simulator never reports, so that each polls until it is cancelled.

    Device ``i`` of the fleet is the ``i``-th trigger's (Cisco status by ICCID, ROMA online status by
    device id, ThingSpace firmware by IMEI); a campaign trigger watches a campaign of one device,
    scheduled here first (it starts tomorrow, so it is never over while the benchmark runs).
    ``timed`` subclasses each trigger class with a watch that records its polls.
    """
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime, timedelta

    from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
    from airflow_provider_iotfleet.simulator.campaigns import upgrade_for
    from airflow_provider_iotfleet.simulator.core import SimulatorConfig
    from airflow_provider_iotfleet.simulator.fleet import ONLINE, Fleet, iccid_of, imei_of
    from airflow_provider_iotfleet.triggers.cisco import CiscoDeviceStatusTrigger
    from airflow_provider_iotfleet.triggers.huawei import HuaweiRomaDeviceStatusTrigger
    from airflow_provider_iotfleet.triggers.verizon import (
        VerizonThingSpaceCampaignTrigger,
        VerizonThingSpaceFirmwareTrigger,
    )

    unknown = set(mix) - set(TRIGGER_KINDS)
    if unknown:
        raise ValueError(f"unknown trigger kinds {sorted(unknown)}: use {TRIGGER_KINDS}")
    # The simulator's fleet is a pure function of its size and seed: the same devices, read here.
    fleet = Fleet(size=sum(mix.values()), seed=SimulatorConfig().seed, now=lambda: datetime.now(UTC))
    deadline = time.time() + 3600
    common = {"poll_interval": poll_interval, "deadline": deadline}
    indices = iter(range(fleet.size))
    created: list[Any] = []
    cisco, roma = timed(CiscoDeviceStatusTrigger), timed(HuaweiRomaDeviceStatusTrigger)
    for index in itertools.islice(indices, mix.get("cisco", 0)):
        created.append(
            cisco(conn_id="cisco_control_center_default", ids=[iccid_of(index)], target="RETIRED", **common)
        )
    for index in itertools.islice(indices, mix.get("roma", 0)):
        device = fleet.base(index)  # waits for the online status it does not have
        target = "offline" if device["online_status"] == ONLINE else "online"
        created.append(roma(conn_id="huawei_roma_default", ids=[device["roma_id"]], target=target, **common))
    firmware = timed(VerizonThingSpaceFirmwareTrigger)
    for index in itertools.islice(indices, mix.get("firmware", 0)):
        created.append(
            firmware(conn_id="verizon_thingspace_default", ids=[imei_of(index)], target="NEVER-9.9", **common)
        )
    # Any device of the fleet with an upgrade on offer (a campaign is a ThingSpace matter of its own).
    upgrades = [
        (index, package)
        for index in range(fleet.size)
        if (package := upgrade_for(fleet.base(index))) is not None
    ][: mix.get("campaign", 0)]
    if len(upgrades) < mix.get("campaign", 0):
        raise ValueError(f"only {len(upgrades)} devices have an upgrade, for {mix['campaign']} campaigns")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()

    def schedule(chunk: list[tuple[int, Any]]) -> list[str]:
        with VerizonThingSpaceHook() as hook:
            return [
                hook.schedule_campaign(
                    [imei_of(index)],
                    firmware_name=package.name,
                    firmware_from=package.source,
                    firmware_to=package.target,
                    start_date=tomorrow,
                    end_date=tomorrow,
                )["campaign_id"]
                for index, package in chunk
            ]

    with ThreadPoolExecutor(8) as pool:
        campaigns = [cid for ids in pool.map(schedule, [upgrades[n::8] for n in range(8)]) for cid in ids]
    campaign = timed(VerizonThingSpaceCampaignTrigger)
    for campaign_id in campaigns:
        created.append(
            campaign(conn_id="verizon_thingspace_default", ids=[campaign_id], target="over", **common)
        )
    return created


@child
def triggers(arguments: dict[str, Any]) -> dict[str, Any]:
    """``mix`` triggers (``{"cisco": n, "roma": n, "firmware": n, "campaign": n}``, see
    :func:`_scale_triggers`) in one event loop, as a triggerer runs them, with two observers.

    Each trigger waits for something it never sees and polls every ``poll_interval`` seconds. A
    subclass of each watch records when each poll starts and ends (and nothing else): round ``n`` is
    the span from the first trigger starting its n-th poll to the last one finishing it (every
    trigger starts at once, so round 1 is the time to poll all of them once). Once every trigger has
    finished ``rounds`` polls they are cancelled, as a triggerer cancels the triggers it no longer
    runs (their shared hooks are closed then).

    The observers: a ticker task sleeping ``tick`` seconds, whose oversleep is the loop's lag, and a
    copy of the triggerer's own watchdog (``TriggerRunner.block_watchdog``: it sleeps 0.1 s and warns
    when that took longer than ``[triggerer] blocked_main_thread_warning_threshold``, 0.2 s by
    default), whose would-be warnings are counted.
    """
    import asyncio

    # Loaded in a triggerer before any trigger runs (its job runner imports it); Airflow's
    # mask_secret imports it on first use, which would otherwise block the loop here, not there.
    import airflow.sdk.execution_time.task_runner  # noqa: F401
    from airflow.configuration import conf

    mix = {kind: int(number) for kind, number in arguments["mix"].items()}
    count = sum(mix.values())
    poll_interval = float(arguments["poll_interval"])
    rounds = int(arguments["rounds"])
    tick = float(arguments["tick"])
    limit = float(arguments["limit"])
    threshold = conf.getfloat("triggerer", "blocked_main_thread_warning_threshold", fallback=0.2)
    # Samples are kept in arrays of doubles, which the garbage collector does not track: lists of
    # float tuples would add thousands of objects for it to scan, and lengthen the pauses measured.
    polls: dict[int, tuple[array[float], array[float]]] = {}  # (starts, ends) of each round's polls
    last_starts: dict[int, float] = {}  # each trigger's last poll start, by id(watch)
    start_gaps = array("d")  # between each trigger's consecutive poll starts
    finished = asyncio.Event()

    def timed(trigger_class: type) -> type:
        class TimedWatch(trigger_class.watch_class):  # type: ignore[name-defined,misc]
            async def apoll(self, hook: Any) -> None:
                number = self.polls + 1
                started = time.perf_counter()
                if (previous := last_starts.get(id(self))) is not None:
                    start_gaps.append(started - previous)
                last_starts[id(self)] = started
                await super().apoll(hook)
                round_starts, round_ends = polls.setdefault(number, (array("d"), array("d")))
                round_starts.append(started)
                round_ends.append(time.perf_counter())
                if number == rounds and len(round_ends) == count:
                    finished.set()

        return type(f"Timed{trigger_class.__name__}", (trigger_class,), {"watch_class": TimedWatch})

    loaded_census = _census()
    created = _scale_triggers(mix, poll_interval, timed)
    built_objects = len(gc.get_objects())
    # (generation, wall seconds, CPU seconds) of each garbage collection: on a shared machine the
    # wall time also holds what other processes took meanwhile, the CPU time only the collector's.
    collections: list[tuple[int, float, float, float]] = []
    collecting: dict[str, float] = {}

    # Objects promoted into the oldest generation by each collection of the younger two (those it
    # had to look at, less those it freed): their growth is what starts a full collection.
    promotions: list[tuple[float, int]] = []

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            if info["generation"] == 1:
                collecting["young"] = len(gc.get_objects(0)) + len(gc.get_objects(1))
            collecting["since"], collecting["cpu_since"] = time.perf_counter(), time.thread_time()
        elif "since" in collecting:
            if info["generation"] == 1 and "young" in collecting:
                promotions.append((time.perf_counter(), collecting.pop("young") - info["collected"]))
            collections.append(
                (
                    info["generation"],
                    time.perf_counter(),
                    time.perf_counter() - collecting.pop("since"),
                    time.thread_time() - collecting.pop("cpu_since"),
                )
            )

    gc.callbacks.append(on_collection)

    async def run() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        lag_times, lags = array("d"), array("d")  # when each tick woke up, and how late
        blocked: list[tuple[float, float]] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                expected = loop.time() + tick
                await asyncio.sleep(tick)
                lag_times.append(time.perf_counter())
                lags.append(loop.time() - expected)

        async def watchdog() -> None:  # as TriggerRunner.block_watchdog, counting instead of logging
            while not done.is_set():
                last_run = time.monotonic()
                await asyncio.sleep(0.1)
                elapsed = time.monotonic() - last_run
                if elapsed > threshold:
                    blocked.append((time.perf_counter(), elapsed))

        events: list[str] = []

        async def wait(trigger: Any) -> None:
            async for event in trigger.run():
                events.append(
                    f"{type(trigger).__name__}: {event.payload['status']} {event.payload['message']}"
                )
                return

        observers = [asyncio.create_task(ticker()), asyncio.create_task(watchdog())]
        await asyncio.sleep(IDLE_SECONDS)  # the observers alone first: the idle loop's own lag
        started = time.perf_counter()
        tasks = [asyncio.create_task(wait(trigger)) for trigger in created]
        with contextlib.suppress(TimeoutError):  # then fewer complete rounds than asked are reported
            await asyncio.wait_for(finished.wait(), timeout=limit)
        ended = time.perf_counter()
        running_census = _census()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        done.set()
        await asyncio.gather(*observers)
        return {
            "events": events,
            "lags": list(zip(lag_times, lags, strict=True)),
            "blocked": blocked,
            "started": started,
            "ended": ended,
            "running_census": running_census,
        }

    with PeakRss() as memory, Stopwatch() as clock:
        outcome = asyncio.run(run())
    gc.callbacks.remove(on_collection)
    started, ended = outcome["started"], outcome["ended"]
    round_times = {
        number: max(ends) - min(round_starts)
        for number, (round_starts, ends) in sorted(polls.items())
        if len(ends) == count
    }
    # Round 1 ends when the last trigger has polled once: everything before is start-up (every
    # trigger reading its connection and sending its first request at once), the rest steady polling.
    first_round_end = max(polls[1][1], default=ended) if 1 in polls else ended
    phases = {
        "idle": [lag for at, lag in outcome["lags"] if at < started],
        "round_1": [lag for at, lag in outcome["lags"] if started <= at <= first_round_end],
        "later": [lag for at, lag in outcome["lags"] if first_round_end < at <= ended],
    }
    # Between one poll's start and the next one's, a trigger polls, sleeps ``poll_interval`` and
    # waits for the loop: what is beyond ``poll_interval`` is what the others cost it.
    gaps = list(start_gaps)
    running = [lag * 1000 for lag in phases["round_1"] + phases["later"]]
    return {
        "mix": mix,
        "rounds_s": {str(number): rounded(seconds) for number, seconds in round_times.items()},
        "polls_per_round": {str(number): len(ends) for number, (_, ends) in sorted(polls.items())},
        "poll_seconds": _spread(
            [
                end - start
                for round_starts, ends in polls.values()
                for start, end in zip(round_starts, ends, strict=True)
            ]
        ),
        "poll_start_gaps_s": _spread(gaps) if gaps else None,
        "events": outcome["events"][:20],
        "event_count": len(outcome["events"]),
        "wall_s": rounded(ended - started),
        "cpu_s": rounded(clock.cpu),  # the whole loop's, with the idle second and the cancellations
        "lag_ms": {
            **{phase: _spread([lag * 1000 for lag in lags], 2) for phase, lags in phases.items()},
            "running": _spread(running, 2),
        },
        "ticks": len(outcome["lags"]),
        "watchdog_threshold_s": threshold,
        "watchdog_warnings": len(outcome["blocked"]),
        "watchdog_longest_s": rounded(max((e for _, e in outcome["blocked"]), default=0.0)),
        "gc_tracked_objects": {
            "before_triggers": loaded_census.total(),
            "triggers_built": built_objects,
            "running": outcome["running_census"].total(),
            "running_added_by_type": dict(
                (outcome["running_census"] - loaded_census).most_common(CENSUS_TYPES)
            ),
        },
        "gc_pauses_ms": {
            f"generation_{generation}": _spread(
                [s * 1000 for g, _, s, _ in collections if g == generation], 2
            )
            for generation in sorted({g for g, _, _, _ in collections})
        },
        "gc_pauses_cpu_ms": {
            f"generation_{generation}": _spread(
                [c * 1000 for g, _, _, c in collections if g == generation], 2
            )
            for generation in sorted({g for g, _, _, _ in collections})
        },
        # From the first poll to the last: counts, not times, so the same on a loaded machine.
        "gc_full_collections_running": sum(
            1 for g, at, _, _ in collections if g == 2 and started <= at <= ended
        ),
        "gc_promoted_per_poll": rounded(
            sum(n for at, n in promotions if started <= at <= ended)
            / max(1, sum(len(ends) for _, ends in polls.values())),
            1,
        ),
        "watchdog_warnings_in_round_1": sum(1 for at, _ in outcome["blocked"] if at <= first_round_end),
        **memory.report(),
    }


def _census() -> Counter[str]:
    """The objects the garbage collector tracks now, counted by type name."""
    return Counter(type(tracked).__qualname__ for tracked in gc.get_objects())


def _spread(values: list[float], digits: int = 3) -> dict[str, Any]:
    """The median, 99th percentile and maximum of ``values`` (``None`` each when there are none)."""
    if not values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    return {
        "p50": rounded(percentile(values, 0.50), digits),
        "p99": rounded(percentile(values, 0.99), digits),
        "max": rounded(max(values), digits),
        "n": len(values),
    }


# --- import cost --------------------------------------------------------------------------------


@child
def imports(arguments: dict[str, Any]) -> dict[str, Any]:
    """Import ``airflow.sdk`` (and ``preload``), then time importing the provider's ``modules``."""
    import importlib

    started = time.perf_counter()
    import airflow.sdk  # noqa: F401

    for name in arguments.get("preload", []):
        module, _, attribute = name.partition(":")
        loaded = importlib.import_module(module)
        if attribute:
            getattr(loaded, attribute)
    sdk_s = time.perf_counter() - started
    before = set(sys.modules)
    started = time.perf_counter()
    for module in arguments["modules"]:
        importlib.import_module(module)
    provider_s = time.perf_counter() - started
    added = sorted(set(sys.modules) - before)
    return {
        "sdk_s": sdk_s,
        "provider_s": provider_s,
        "added": added,
        "requests_loaded": "requests" in sys.modules,
        "httpx_loaded_before": "httpx" in before,
    }


def main(argv: list[str]) -> int:
    name, arguments, report = argv
    write_report(report, CHILDREN[name](json.loads(arguments)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
