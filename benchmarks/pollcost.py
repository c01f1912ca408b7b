"""Poll cost of a waiting sensor: the requests one poll of a 10,000-device wait takes once 1% of the
devices changed, against the requests of a full read of them (figure group ``poll_cost``).

Each vendor gets a simulator process of its own with a fleet of :data:`FLEET` devices, all watched
by one status watch (the object a deferred sensor's trigger polls with), driven with the sync hook
in this process. The first poll reads every watched device. Then :data:`CHANGED` unmatched devices
are changed through the vendor's own API (a Cisco edit to the target status, a ROMA force-offline),
as another client would, and one more poll is made. The simulator counts every request it serves, so
each figure is a count, not a time::

    ratio = requests of the poll after the change / requests of a full read

A full read is the same for both vendors: one ``GET`` of each watched device (10,000 requests), the
read both APIs offer for any device and what a sensor without change filters pays every poll. Each
figure's context also compares the poll with the vendor's cheapest read of every device (Cisco's
Search Devices paged in full, ROMA's filtered listings), which says how close to the floor a poll is:
Cisco's poll pays for what changed; ROMA's API has no change filter, so a poll pays for the pages
of the devices in the target status, which the context says plainly. The requests that made the
change are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from benchmarks.common import BenchmarkError, connection_env, environment

#: Devices in the simulated fleet, all of them watched.
FLEET = 10_000
#: Devices changed between the full read and the measured poll (1% of the fleet).
CHANGED = FLEET // 100
#: The issue's target: a poll after a 1% change costs at most this share of a full read.
TARGET_RATIO = 0.05
#: A client-side limit no poll reaches: the requests are counted, not timed.
UNLIMITED_RPS = 100_000
#: A sensor's default poke_interval, for the Cisco figure's cost averaged over its hourly full read.
SENSOR_POLL_INTERVAL_S = 60.0
CISCO = "cisco_control_center_default"
HUAWEI = "huawei_roma_default"
CISCO_TARGET = "DEACTIVATED"
ROMA_TARGET = "offline"


def poll_ratio(changed_poll: int, full_read: int) -> float:
    """The requests of a poll after a change as a share of the requests of a full read.

    :return: ``changed_poll / full_read`` rounded to 4 places; ``nan`` when the full read took no
        request (nothing to compare with).
    """
    if full_read <= 0:
        return math.nan
    return round(changed_poll / full_read, 4)


def amortised_requests(changed_poll: int, full_read: int, every: int) -> float:
    """Average requests per poll when every ``every``-th poll is a full read and the others cost
    ``changed_poll`` each.

    :return: ``(full_read + (every - 1) * changed_poll) / every``; ``changed_poll`` when ``every``
        is 0 (no periodic full read).
    """
    if every <= 0:
        return float(changed_poll)
    return (full_read + (every - 1) * changed_poll) / every


def _counted(sim: Any, vendor: str, run: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``run`` and return the requests the simulator served the vendor meanwhile, and its result."""
    before = sim.counters().get(f"{vendor}.requests", 0)
    result = run()
    return sim.counters().get(f"{vendor}.requests", 0) - before, result


def cisco_poll_cost(bench: Any) -> dict[str, Any]:
    """A Cisco wait for ``DEACTIVATED`` over the whole fleet: full read, 1% edited, one poll."""
    from airflow_provider_iotfleet.hooks.cisco import MAX_SEARCH_PAGE_SIZE, CiscoControlCenterHook
    from airflow_provider_iotfleet.simulator.fleet import iccid_of
    from airflow_provider_iotfleet.triggers.cisco import FULL_READ_AFTER, CiscoDeviceStatusWatch

    iccids = [iccid_of(index) for index in range(FLEET)]
    extras = {"max_concurrency": 8, "requests_per_second": UNLIMITED_RPS}
    with (
        bench.simulator(devices=FLEET) as sim,
        environment(connection_env(sim.connections(), **{CISCO: extras})),
    ):
        hook = CiscoControlCenterHook()
        watch = CiscoDeviceStatusWatch(iccids, CISCO_TARGET)
        full_read, _ = _counted(sim, "cisco", lambda: watch.poll(hook))
        unmatched = list(watch.unmatched)
        if len(unmatched) < CHANGED:
            raise BenchmarkError(f"only {len(unmatched)} devices left to change")
        changed = unmatched[:: len(unmatched) // CHANGED][:CHANGED]
        edits, _ = _counted(
            sim, "cisco", lambda: [hook.edit_device(iccid, {"status": CISCO_TARGET}) for iccid in changed]
        )
        poll, _ = _counted(sim, "cisco", lambda: watch.poll(hook))
        left = len(watch.unmatched)
    if left != len(unmatched) - CHANGED:
        raise BenchmarkError(f"the poll after the change left {left} of {len(unmatched)} devices unmatched")
    search_full_read = math.ceil(FLEET / MAX_SEARCH_PAGE_SIZE)
    # A sensor's default poke_interval is 60 s: a full read (of the devices still unmatched) every
    # hour is one poll in 60.
    polls_per_full_read = round(FULL_READ_AFTER.total_seconds() / SENSOR_POLL_INTERVAL_S)
    amortised = amortised_requests(poll, len(unmatched) - CHANGED, polls_per_full_read)
    return {
        "poll_cost_cisco": _figure(
            poll,
            FLEET,
            vendor="Cisco Control Center",
            what_full="GET /devices/{iccid} for each watched device (what the first poll does: "
            f"{full_read} requests measured)",
            first_poll_requests=full_read,
            what_poll="Search Devices modifiedSince the previous poll (minus a 10 min overlap), "
            f"{MAX_SEARCH_PAGE_SIZE} a page",
            unmatched_before_change=len(unmatched),
            change_requests=edits,
            change=f"PUT /devices/{{iccid}} status={CISCO_TARGET} for {CHANGED} unmatched devices",
            search_full_read_requests=search_full_read,
            ratio_vs_search_full_read=poll_ratio(poll, search_full_read),
            safety_net=f"the first poll {FULL_READ_AFTER} after the last full read reads the unmatched "
            "devices in full again (GET each), which the figure leaves out; at a poll every "
            f"{SENSOR_POLL_INTERVAL_S:g} s, averaged over {polls_per_full_read} polls of this change rate: "
            f"{amortised:g} requests a poll",
            amortised_ratio=poll_ratio(round(amortised), FLEET),
        )
    }


def roma_poll_cost(bench: Any) -> dict[str, Any]:
    """A ROMA wait for ``offline`` over the whole fleet: full read, 1% forced offline, one poll."""
    from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
    from airflow_provider_iotfleet.hooks.huawei.hook import MAX_PAGE_SIZE
    from airflow_provider_iotfleet.simulator.fleet import ROMA_ID_BASE
    from airflow_provider_iotfleet.triggers.huawei import RomaOnlineStatusWatch

    ids = [ROMA_ID_BASE + index for index in range(FLEET)]
    extras = {"requests_per_second": UNLIMITED_RPS}
    with (
        bench.simulator(devices=FLEET) as sim,
        environment(connection_env(sim.connections(), **{HUAWEI: extras})),
    ):
        hook = HuaweiRomaConnectHook()
        watch = RomaOnlineStatusWatch(ids, ROMA_TARGET)
        full_read, _ = _counted(sim, "huawei", lambda: watch.poll(hook))
        unmatched = list(watch.unmatched)
        if len(unmatched) < CHANGED:
            raise BenchmarkError(f"only {len(unmatched)} devices left to change")
        changed = unmatched[:: len(unmatched) // CHANGED][:CHANGED]
        forced, result = _counted(sim, "huawei", lambda: hook.force_offline(changed, read_back=False))
        if len(result.succeeded) != CHANGED:
            raise BenchmarkError(f"ROMA forced {len(result.succeeded)} of {CHANGED} devices offline")
        poll, _ = _counted(sim, "huawei", lambda: watch.poll(hook))
        left = len(watch.unmatched)
    if left != len(unmatched) - CHANGED:
        raise BenchmarkError(f"the poll after the change left {left} of {len(unmatched)} devices unmatched")
    unfiltered = math.ceil(FLEET / MAX_PAGE_SIZE)
    return {
        "poll_cost_roma": _figure(
            poll,
            FLEET,
            vendor="Huawei ROMA Connect",
            what_full="GET .../devices/{device_id} for each watched device (the hook's first poll "
            f"takes fewer: the listings filtered on online_status=2 and =0, {full_read} requests)",
            first_poll_requests=full_read,
            ratio_vs_first_poll=poll_ratio(poll, full_read),
            what_poll="the listing filtered on the target status (offline) alone: every device left "
            "was seen connected, so none can be never-connected again. ROMA's API has no change filter "
            "(no modified-since, no ordering by update time), so a poll pages every device of the "
            "instance in the target status, not only those that changed",
            unmatched_before_change=len(unmatched),
            change_requests=forced,
            change=f"POST .../devices/force-offline for {CHANGED} online devices",
            unfiltered_full_read_requests=unfiltered,
            ratio_vs_unfiltered_listing=poll_ratio(poll, unfiltered),
            floor=f"ROMA's cheapest read of every device is its listing ({unfiltered} pages unfiltered, "
            f"{full_read} filtered on the statuses that matter); a poll cannot cost less than one page, so "
            f"against those reads no poll gets under {poll_ratio(1, unfiltered):g}: what a poll costs "
            "grows with the devices in the target status, not with what changed, because the API has "
            "no change filter",
        )
    }


def _figure(
    poll: int, full_read: int, *, vendor: str, what_full: str, what_poll: str, **context: Any
) -> dict[str, Any]:
    from benchmarks.run import figure

    return figure(
        poll_ratio(poll, full_read),
        "ratio (requests)",
        ("<=", TARGET_RATIO),
        what=f"{vendor}: requests of one poll of a {FLEET:,}-device status wait after {CHANGED} devices "
        "(1%) changed, over the requests of a full read (one GET per watched device)",
        poll_requests=poll,
        full_read_requests=full_read,
        fleet=FLEET,
        watched=FLEET,
        changed=CHANGED,
        full_read=what_full,
        poll=what_poll,
        server="the project's simulator (own process), requests counted by it",
        **context,
    )


def poll_cost(bench: Any) -> dict[str, Any]:
    """Figures ``poll_cost_cisco`` and ``poll_cost_roma`` (see the module docstring)."""
    return {**cisco_poll_cost(bench), **roma_poll_cost(bench)}
