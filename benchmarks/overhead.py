"""Figure group ``overhead``: what each write operator adds on top of the hook calls it makes.

For every write operator, 100,000 devices against the simulator (no rate limit on the client's
side, no simulated latency): ``operator.execute()`` against the hook method(s) the operator calls
for the same work (the same batches), called as a DAG author calling the hook in a ``@task`` would:
with its defaults, so the hook checks each batch it is given, as the operator checks the whole input
once before its first request (and then tells the hook not to check again). Each run in a fresh
simulator (every write changes the fleet), interleaved and repeated, the best of each kept. The
operator's extra is what it does around those calls: reading its input, de-duplicating, building
the outcome, logging, the task journal. Also reported: the size of the
outcome each operator returns to XCom for 100,000 devices.

Imported by ``benchmarks.run`` (its ``GROUPS``); the helpers it shares with the other groups are
imported from there when the group runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from benchmarks.common import BenchmarkError, connection_env, environment, rounded

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from benchmarks.run import Bench, Measured

#: Devices per operator run.
OVERHEAD_DEVICES = 100_000
#: Runs of each method (operator, hook) per operator; best of each kept.
OVERHEAD_REPEATS = 2
#: The operators' default batch sizes: Palo Alto and ROMA 1,000 a request, a ThingSpace sync 100.
PALOALTO_BATCH = 1000
ROMA_BATCH = 1000
SYNC_BATCH = 100
#: Cisco edits run per device, this many at once (the connection's ``max_concurrency``).
CISCO_CONCURRENCY = 8
CISCO_CHANGE = {"accountCustom1": "bench"}
#: Cisco edits per run: one request each, at the simulator's few hundred to few thousand a second
#: on a shared machine, 100,000 would take minutes a run; the operator's extra is per device, so the
#: ratio holds at any count (its outcome for 100,000 is built apart, see ``outcome_100k``).
CISCO_DEVICES = 10_000
#: The target of every ``overhead_*`` figure: operator wall time over the hook calls' own.
OVERHEAD_TARGET = 1.1
#: A client-side limit no run reaches (the client's own limiter must not be measured).
UNLIMITED_RPS = 100_000

CISCO = "cisco_control_center_default"
PALOALTO = "paloalto_iot_default"
HUAWEI = "huawei_roma_default"
VERIZON = "verizon_thingspace_default"

#: Connection extras per connection id: no client-side rate limit; Cisco's concurrency.
EXTRAS: dict[str, dict[str, Any]] = {
    CISCO: {"requests_per_second": UNLIMITED_RPS, "max_concurrency": CISCO_CONCURRENCY},
    PALOALTO: {"requests_per_minute": 60 * UNLIMITED_RPS},
    HUAWEI: {"requests_per_second": UNLIMITED_RPS},
    VERIZON: {"requests_per_second": UNLIMITED_RPS},
}


@dataclass
class Case:
    """One write operator against its hook calls.

    :ivar key: the figure's suffix (``overhead_<key>``).
    :ivar vendor: the simulator's counter prefix (``<vendor>.requests``).
    :ivar operator: builds the operator (outside the timing: that is the DAG's parsing, where
        Airflow walks every templated argument); its ``execute()`` is what is timed.
    :ivar hook: makes the same hook calls the operator makes, on inputs prepared beforehand.
    :ivar hook_call: what the hook run calls, for the figure's context.
    :ivar check: raises :class:`BenchmarkError` when an outcome is not the expected one.
    :ivar devices: the devices each run goes through.
    :ivar outcome_100k: builds the outcome of :data:`OVERHEAD_DEVICES` devices, for a case that
        runs fewer (``None``: the last operator run's outcome is that one).
    """

    key: str
    operator_name: str
    vendor: str
    conn_id: str
    operator: Callable[[], BaseOperator]
    hook: Callable[[], None]
    hook_call: str
    check: Callable[[dict[str, Any]], None]
    devices: int
    outcome_100k: Callable[[], dict[str, Any]] | None = None
    outcomes: list[dict[str, Any]] = field(default_factory=list)


def overhead_ratio(operator_wall: float, hook_wall: float) -> float:
    """The operator's wall time over the hook calls' own (``inf`` when the hook run took no time)."""
    return operator_wall / hook_wall if hook_wall > 0 else math.inf


def outcome_kib(outcome: dict[str, Any]) -> float:
    """The size of an outcome as Airflow's JSON XCom stores it, in KiB."""
    return len(json.dumps(outcome).encode()) / 1024


def operator_overhead(bench: Bench) -> dict[str, Any]:
    """Each write operator on 100,000 devices vs the hook calls it makes for them, and the size of
    the outcome it returns."""
    from benchmarks.run import figure, interleaved

    cases = _cases(OVERHEAD_DEVICES, min(CISCO_DEVICES, OVERHEAD_DEVICES))
    repeats = bench.repeats(OVERHEAD_REPEATS)
    figures: dict[str, Any] = {}
    for case in cases:

        def operator_run(case: Case = case) -> Callable[[], None]:
            from tests.fakes import operator_context

            task = case.operator()
            context = operator_context(task.task_id)

            def execute() -> None:
                outcome = task.execute(context)  # type: ignore[arg-type]
                case.check(outcome)
                case.outcomes.append(outcome)

            return execute

        def hook_run(case: Case = case) -> Callable[[], None]:
            return case.hook

        runs = interleaved(
            repeats,
            {
                "operator": _fresh(bench, case, "operator", operator_run),
                "hook": _fresh(bench, case, "hook", hook_run),
            },
        )
        op = min(runs["operator"], key=lambda run: run.wall)
        hook = min(runs["hook"], key=lambda run: run.wall)
        ratio = overhead_ratio(op.wall, hook.wall)
        devices = case.devices
        figures[f"overhead_{case.key}"] = figure(
            rounded(ratio, 3),
            "x (operator wall time / hook calls' wall time)",
            ("<=", OVERHEAD_TARGET),
            what=f"{case.operator_name}.execute() on {devices:,} devices vs the hook calls it makes for "
            "them (validation, de-duplication, outcome, logging and journal are the difference)",
            devices=devices,
            hook_call=case.hook_call,
            connection_extras=EXTRAS[case.conn_id],
            simulator="benchmarks.simproc, latency 0, a fresh simulator per run",
            operator={**op.report(), "requests": op.requests},  # type: ignore[attr-defined]
            hook={**hook.report(), "requests": hook.requests},  # type: ignore[attr-defined]
            extra_s=rounded(op.wall - hook.wall),
            extra_us_per_device=rounded(1e6 * (op.wall - hook.wall) / devices, 1),
            client_cpu_ratio=rounded(op.cpu / hook.cpu, 3) if hook.cpu else None,
            # Steadier than wall times on a shared machine: what the operator adds in this process.
            extra_client_cpu_s=rounded(op.cpu - hook.cpu),
            all_runs_wall_s={name: [rounded(r.wall) for r in measured] for name, measured in runs.items()},
            repeats=repeats,
            kept="fastest run of each (lowest wall time)",
        )
        outcome = case.outcomes[-1] if case.outcome_100k is None else case.outcome_100k()
        figures[f"outcome_json_kib_100k_{case.key}"] = figure(
            rounded(outcome_kib(outcome), 1),
            "KiB",
            None,
            what=f"The outcome (XCom return_value) {case.operator_name} returns for {OVERHEAD_DEVICES:,} "
            "devices on success, as Airflow's JSON XCom serialises it",
            built=(
                "by the operator run above"
                if case.outcome_100k is None
                else "by the operator's own outcome builder, as its run records each device, without the requests"
            ),
            counts=outcome.get("counts"),
            keys=sorted(outcome),
            ids_alone_kib=rounded(outcome_kib(_ids(outcome)), 1),
        )
    return figures


def _fresh(
    bench: Bench, case: Case, label: str, prepare: Callable[[], Callable[[], None]]
) -> Callable[[], Measured]:
    """One run against a simulator of its own (every write changes the fleet): ``prepare`` (not
    timed) returns what is timed."""
    from benchmarks.run import measure

    def measured() -> Measured:
        with bench.simulator(devices=case.devices) as sim:
            connections = sim.connections()
            with environment(connection_env(connections, **EXTRAS)):
                run = prepare()

                def counted() -> int:
                    run()
                    return case.devices

                result = measure(label, sim, counted)
            counters = sim.counters()
        result.requests = counters.get(f"{case.vendor}.requests", 0)  # type: ignore[attr-defined]
        return result

    return measured


def _ids(outcome: dict[str, Any]) -> dict[str, Any]:
    """The outcome's ``devices`` alone (every id it lists, by status): what the ids weigh."""
    return dict(outcome.get("devices", {}))


def _cases(devices: int, cisco_devices: int) -> list[Case]:
    """The five write operators, each with the hook calls it makes and its inputs prepared."""
    from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
    from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
    from airflow_provider_iotfleet.hooks.huawei.answers import ForceOfflineResult
    from airflow_provider_iotfleet.hooks.paloalto import PaloAltoIoTSecurityHook
    from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
    from airflow_provider_iotfleet.hooks.verizon.rules import CampaignRequest
    from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
    from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
    from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator
    from airflow_provider_iotfleet.operators.verizon import (
        VerizonThingSpaceFirmwareUpgradeOperator,
        VerizonThingSpaceSyncFirmwareOperator,
    )
    from airflow_provider_iotfleet.simulator.campaigns import firmware_catalog
    from airflow_provider_iotfleet.simulator.fleet import ROMA_ID_BASE, iccid_of, imei_of, ipv4_of
    from airflow_provider_iotfleet.utils import chunks

    # --- Palo Alto: bulk update in batches of 1,000
    pa_devices = [
        {
            "imei": imei_of(index),
            "iccid": iccid_of(index),
            "imsi": f"310260{index:09d}",
            "msisdn": f"1555{index:07d}",
            "ipAddress": ipv4_of(index),
            "apn": "iot.bench",
        }
        for index in range(devices)
    ]
    pa_batches = list(chunks(pa_devices, PALOALTO_BATCH))

    def pa_hook() -> None:
        with PaloAltoIoTSecurityHook(PALOALTO) as hook:
            for batch in pa_batches:
                hook.bulk_update(batch, "cellular", None)

    # --- Huawei ROMA: force offline in batches of 1,000, refused ones read back once
    roma_given = [ROMA_ID_BASE + index for index in range(devices)]
    roma_batches = list(chunks(roma_given, ROMA_BATCH))

    def roma_hook() -> None:
        with HuaweiRomaConnectHook(HUAWEI) as hook:
            answered = [
                hook.force_offline(batch, read_first=False, read_back=False) for batch in roma_batches
            ]
            hook.read_back_refused(
                ForceOfflineResult(
                    succeeded=[entry for result in answered for entry in result.succeeded],
                    failed=[entry for result in answered for entry in result.failed],
                    unchanged=[device for result in answered for device in result.unchanged],
                )
            )

    # --- Cisco: one PUT per device, CISCO_CONCURRENCY at once
    iccids = [iccid_of(index) for index in range(cisco_devices)]
    cisco_edits = [{"iccid": iccid, **CISCO_CHANGE} for iccid in iccids]

    def cisco_hook() -> None:
        with CiscoControlCenterHook(CISCO) as hook:
            hook.edit_devices(cisco_edits, None)

    # --- Verizon: firmware sync in batches of 100; one campaign of every device
    imeis = [imei_of(index) for index in range(devices)]
    sync_batches = list(chunks(imeis, SYNC_BATCH))

    def sync_hook() -> None:
        with VerizonThingSpaceHook(VERIZON) as hook:
            account = hook.resolve_account(None)
            for batch in sync_batches:
                hook.sync_firmware_batch(batch, account_name=account)

    firmware = firmware_catalog()[0].name
    # More than 1,000 devices: the campaign must start after today (ThingSpace adds only before it).
    start = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    end = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    campaign_name = "bench overhead"
    request = CampaignRequest.checked(
        name=campaign_name, firmware_name=firmware, start_date=start, end_date=end
    )

    def upgrade_hook() -> None:
        with VerizonThingSpaceHook(VERIZON) as hook:
            account = hook.resolve_account(None)
            hook.ensure_campaign(imeis, request, protocol="LWM2M", account_name=account)

    def cisco_outcome_100k() -> dict[str, Any]:
        task = CiscoControlCenterEditDevicesOperator(
            task_id="overhead_cisco", iccids=[], changes=CISCO_CHANGE
        )
        outcome = task.new_outcome(devices)
        for index in range(devices):
            outcome.add("succeeded", iccid_of(index))
        return outcome.build(effective_date=None).to_xcom()

    def counted(status: str, expected: int = devices) -> Callable[[dict[str, Any]], None]:
        def check(outcome: dict[str, Any]) -> None:
            got = outcome["counts"].get(status, 0)
            if got != expected:
                raise BenchmarkError(f"{outcome['operation']}: {got} {status}, counts {outcome['counts']}")

        return check

    def upgrade_check(outcome: dict[str, Any]) -> None:
        """Every device scheduled, or left out (not sent) because the firmware is not for it: of a
        fleet of mixed makes, models and versions, about one in eleven can take this firmware."""
        counts = outcome["counts"]
        left_out = sum(len(error["devices"]) for error in outcome["errors"] if not error["attempted"])
        if counts["scheduled"] + left_out != devices or counts["scheduled"] == 0:
            raise BenchmarkError(f"upgrade_firmware: counts {counts}")

    def roma_check(outcome: dict[str, Any]) -> None:
        if outcome["requested"] != devices or any(
            error["attempted"] and error["http_status"] for error in outcome["errors"]
        ):
            raise BenchmarkError("a ROMA force-offline request failed as a whole")

    return [
        Case(
            "paloalto",
            "PaloAltoIoTBulkUpdateOperator",
            "paloalto",
            PALOALTO,
            lambda: PaloAltoIoTBulkUpdateOperator(
                task_id="overhead_paloalto", devices=pa_devices, batch_size=PALOALTO_BATCH
            ),
            pa_hook,
            f"PaloAltoIoTSecurityHook.bulk_update(batch) for each of {len(pa_batches)} batches "
            "(the hook checks each batch)",
            counted("accepted"),
            devices,
        ),
        Case(
            "cisco",
            "CiscoControlCenterEditDevicesOperator",
            "cisco",
            CISCO,
            lambda: CiscoControlCenterEditDevicesOperator(
                task_id="overhead_cisco", iccids=iccids, changes=CISCO_CHANGE, skip_unchanged=False
            ),
            cisco_hook,
            f"CiscoControlCenterHook.edit_devices(edits), {CISCO_CONCURRENCY} at once (the operator with "
            "skip_unchanged=False: both write without reading first)",
            counted("succeeded", cisco_devices),
            cisco_devices,
            cisco_outcome_100k,
        ),
        Case(
            "roma",
            "HuaweiRomaForceOfflineOperator",
            "huawei",
            HUAWEI,
            lambda: HuaweiRomaForceOfflineOperator(
                task_id="overhead_roma",
                device_ids=roma_given,
                batch_size=ROMA_BATCH,
                fail_on_error=False,
            ),
            roma_hook,
            f"HuaweiRomaConnectHook.force_offline(batch, read_back=False) for each of "
            f"{len(roma_batches)} batches, then read_back_refused once for all",
            roma_check,
            devices,
        ),
        Case(
            "verizon_sync",
            "VerizonThingSpaceSyncFirmwareOperator",
            "verizon",
            VERIZON,
            lambda: VerizonThingSpaceSyncFirmwareOperator(
                task_id="overhead_sync", imeis=imeis, batch_size=SYNC_BATCH, fail_on_error=False
            ),
            sync_hook,
            f"VerizonThingSpaceHook.sync_firmware_batch(batch) for each of {len(sync_batches)} batches",
            lambda outcome: None,
            devices,
        ),
        Case(
            "verizon_upgrade",
            "VerizonThingSpaceFirmwareUpgradeOperator",
            "verizon",
            VERIZON,
            lambda: VerizonThingSpaceFirmwareUpgradeOperator(
                task_id="overhead_upgrade",
                imeis=imeis,
                firmware_name=firmware,
                campaign_start_date=start,
                campaign_end_date=end,
                campaign_name=campaign_name,
                # Devices the firmware is not for are left out of the campaign (failed, not sent):
                # the hook's ensure_campaign does the same, and the figure is about the time.
                fail_on_error=False,
            ),
            upgrade_hook,
            "VerizonThingSpaceHook.ensure_campaign(imeis, request): one schedule of "
            "1,000 devices and adds of 1,000",
            upgrade_check,
            devices,
        ),
    ]
