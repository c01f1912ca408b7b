"""The example DAGs of ``example_dags/``: how they parse (fast), and each run end to end with
``dag.test()`` against the simulator (slow; the session's one run of them, ``example_runs``), with what
they wrote checked against the simulated fleet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_iotfleet.hooks.paloalto import DEFAULT_MAX_DEVICES_PER_REQUEST
from airflow_provider_iotfleet.outcome import OutcomeBuilder
from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.campaigns import FIRMWARE
from airflow_provider_iotfleet.simulator.fleet import OFFLINE, ROMA_ID_BASE, iccid_of, imei_of
from tests.dag_runs import bundle_environment
from tests.example_runs import (
    CAMPAIGN_FINISHED,
    ENRICHMENT,
    EXAMPLE_DAG_IDS,
    EXAMPLE_DAGS,
    EXAMPLE_FILES,
    FLEET_SIZE,
    INVENTORY,
    INVENTORY_DATE,
    MAINTENANCE,
    PLANNED,
    ROOT,
    SCALE_OUT,
    SCALE_OUT_LABEL,
    SIMS_PER_BATCH,
    ClockAdvancer,
    ExampleRun,
    ExampleRuns,
    maintenance_conf,
    online_devices,
    parse,
    run_example,
    running_simulator,
)
from tests.fakes import OUTCOME_KEYS, assert_outcome_shape

ASSET_NAME = "iotfleet_fota_inventory"
#: How many device ids the inventory summary names per list (the DAG's ``EXAMPLES``).
SUMMARY_EXAMPLES = 20
#: Every edge of each example DAG (upstream, downstream).
EDGES = {
    INVENTORY: {("list_fota_devices", "summarise")},
    ENRICHMENT: {
        ("inventory_path", "carrier_records"),
        ("sim_batches", "carrier_records"),
        ("carrier_records", "push_to_iot_security"),
    },
    MAINTENANCE: {
        ("force_offline", "wait_offline"),
        ("wait_offline", "upgrade_firmware"),
        ("upgrade_firmware", "wait_upgrade"),
        ("wait_upgrade", "devices_upgraded"),
        ("devices_upgraded", "sync_firmware"),
        ("devices_upgraded", "wait_firmware"),
        ("sync_firmware", "wait_firmware"),
        ("wait_firmware", "effective_date"),
        ("effective_date", "schedule_sim_change"),
        ("schedule_sim_change", "wait_sim_change"),
        ("schedule_sim_change", "sims_to_wait_for"),
        ("sims_to_wait_for", "wait_sim_change"),
        ("wait_sim_change", "report"),
        ("report", "check_window"),
    },
    SCALE_OUT: {("sim_batches", "label_batch"), ("label_batch", "report")},
    CAMPAIGN_FINISHED: set(),
    PLANNED: {
        ("sims_to_change", "plan"),
        ("sims_to_change", "apply"),
        ("plan", "summarise_plan"),
        ("summarise_plan", "approve"),
        ("approve", "apply"),
        ("apply", "sims_to_verify"),
        ("sims_to_verify", "verify"),
        ("verify", "rollback_edits"),
        ("rollback_edits", "rollback"),
        ("rollback", "report"),
    },
}
#: Modules that parsing an example file must not import beyond what ``airflow.sdk`` already did.
HEAVY_MODULES = (
    "fsspec",
    "upath",
    "httpx",
    "airflow_provider_iotfleet.simulator",
    "uvicorn",
    "fastapi",
    "starlette",
    "pandas",
    "pyarrow",
    "numpy",
    "boto3",
    "botocore",
)
#: CPU seconds an example file may take to import on top of ``airflow.sdk``.
MAX_IMPORT_CPU_SECONDS = 1.0
#: Modules an example file may add to ``airflow.sdk``'s (178 to 199 today, over 100 of them requests
#: and its dependencies): a deterministic guard next to the CPU figure.
MAX_MODULES_ADDED = 250


def _asset_of_schedule(dag: Any) -> list[Any]:
    return list(dag.timetable.asset_condition.objects)


# --- parsing (fast) ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_bag() -> Any:
    """Every example file, parsed together as the ``dags-folder`` bundle."""
    return parse(EXAMPLE_DAGS)


def test_example_dags_holds_exactly_the_example_files() -> None:
    assert sorted(path.name for path in EXAMPLE_DAGS.glob("*.py")) == sorted(EXAMPLE_FILES)


def test_the_example_folder_parses_without_import_errors(example_bag: Any) -> None:
    assert example_bag.import_errors == {}


def test_the_example_folder_defines_exactly_the_example_dags(example_bag: Any) -> None:
    assert sorted(example_bag.dag_ids) == EXAMPLE_DAG_IDS
    for dag_id in EXAMPLE_DAG_IDS:
        assert Path(example_bag.dags[dag_id].fileloc) == EXAMPLE_DAGS / f"{dag_id}.py"


@pytest.mark.parametrize(
    "filename",
    [name for name in EXAMPLE_FILES],
)
def test_each_file_parsed_alone_defines_exactly_its_own_dag(filename: str) -> None:
    # The dag processor parses one file per process, with the bundle folder on sys.path.
    bag = parse(EXAMPLE_DAGS / filename)

    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXAMPLE_FILES[filename]
    assert {Path(dag.fileloc).name for dag in bag.dags.values()} == {filename}


@pytest.mark.parametrize("dag_id", EXAMPLE_DAG_IDS)
def test_the_dag_has_no_cycle_and_sorts_into_its_chain(example_bag: Any, dag_id: str) -> None:
    dag = example_bag.dags[dag_id]

    dag.check_cycle()  # raises AirflowDagCycleException
    order = [node.task_id for node in dag.task_group.topological_sort()]
    assert sorted(order) == sorted(dag.task_ids)  # every node a task, every task sorted once
    edges = {(upstream, task.task_id) for task in dag.tasks for upstream in task.upstream_task_ids}
    assert edges == EDGES[dag_id]
    for upstream, downstream in edges:
        assert order.index(upstream) < order.index(downstream), (upstream, downstream, order)


@pytest.mark.parametrize("dag_id", EXAMPLE_DAG_IDS)
def test_every_task_retries_has_a_real_owner_and_the_dag_is_tagged(example_bag: Any, dag_id: str) -> None:
    dag = example_bag.dags[dag_id]

    assert "iotfleet" in dag.tags
    assert dag.tasks
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.owner and task.owner != "airflow", (task.task_id, task.owner)


def test_the_dags_schedules_params_and_trigger_rules(example_bag: Any) -> None:
    inventory, maintenance = example_bag.dags[INVENTORY], example_bag.dags[MAINTENANCE]

    assert inventory.schedule == "@daily"
    assert maintenance.schedule is None
    assert maintenance.render_template_as_native_obj is True
    assert [task.task_id for task in maintenance.tasks if task.trigger_rule == "all_done"] == ["report"]
    assert maintenance.params.validate() == {
        "roma_device_ids": [700002, 700003, 700004],
        "iccids": ["89012600000000000052", "89012600000000000060"],
        "sim_status": "DEACTIVATED",
        "effective_in_minutes": 30,
        "imeis": ["356908000000335", "356908000000640"],
        "firmware_name": "GM01Q-SR1.2.0.0-10657-to-SR1.2.1.0-10702",
    }
    assert example_bag.dags[ENRICHMENT].params.validate() == {
        "apn": "iot.fleet.apn",
        "sims_per_batch": 100,
    }
    assert example_bag.dags[SCALE_OUT].params.validate() == {
        "label": "maintenance-wave-1",
        "sims_per_batch": 1000,
    }


def test_the_scale_out_batches_share_the_tenant_through_one_pool(example_bag: Any) -> None:
    from example_dags.iotfleet_fleet_scale_out import PARALLEL_TASKS, POOL

    label_batch = example_bag.dags[SCALE_OUT].task_dict["label_batch"]
    # Mapped, in the tenant's pool, each with its share of the connection's rate: together, at most
    # the pool's slots at once, and at most the connection's rate.
    assert (label_batch.pool, PARALLEL_TASKS) == ("iotfleet_cisco_tenant", 4)
    assert label_batch.pool == POOL
    assert label_batch.partial_kwargs["rate_limit_share"] == pytest.approx(1 / PARALLEL_TASKS)
    assert label_batch.expand_input.value.keys() == {"iccids"}


class PulledXComs:
    """A task instance's ``xcom_pull`` over a dict of ``(task id, key) -> value``."""

    dag_id, run_id = "dag", "run"

    def __init__(self, values: dict[tuple[str, str], Any], states: dict[str, str] | None = None) -> None:
        self.values = values
        self.states = states or {}

    def xcom_pull(self, task_ids: str, key: str = "return_value", **_: Any) -> Any:
        return self.values.get((task_ids, key))

    def get_task_states(self, *, dag_id: str, run_ids: list[str]) -> dict[str, dict[str, str]]:
        return {self.run_id: self.states}


def test_the_maintenance_report_names_unreachable_devices_of_a_wait_that_failed(example_bag: Any) -> None:
    """A wait that failed on an unreachable device pushed its value under "outcome": the report
    reads it there and names the device and why."""
    report = example_bag.dags[MAINTENANCE].task_dict["report"].python_callable
    wait = {"matched": ["1"], "statuses": {"1": "offline"}, "unreachable": {"2": "not_found"}}
    result = report(ti=PulledXComs({("wait_offline", "outcome"): wait}))
    assert result["failed"]["wait_offline"] == ["2: unreachable (not_found)"]
    assert result["waits_done"]["wait_offline"] is True


def test_the_maintenance_report_names_the_steps_that_failed_and_the_check_fails_the_run(
    example_bag: Any,
) -> None:
    tasks = example_bag.dags[MAINTENANCE].task_dict
    states = {"force_offline": "success", "wait_offline": "failed", "upgrade_firmware": "upstream_failed"}
    report = tasks["report"].python_callable(ti=PulledXComs({}, states))
    assert report["failed_steps"] == ["upgrade_firmware", "wait_offline"]

    with pytest.raises(RuntimeError) as caught:
        tasks["check_window"].python_callable(report)
    assert str(caught.value) == (
        "the maintenance window did not go through: steps failed: upgrade_firmware, wait_offline "
        "(see the report)"
    )
    devices_failed = {**report, "failed_steps": [], "failed": {"force_offline": ["failed: 1 device"]}}
    with pytest.raises(RuntimeError, match="devices failed in: force_offline"):
        tasks["check_window"].python_callable(devices_failed)
    assert (
        tasks["check_window"].python_callable({"failed_steps": [], "failed": {"sync_firmware": []}}) is None
    )


def test_the_scale_out_report_fails_naming_the_sims_not_labelled(example_bag: Any) -> None:
    report = example_bag.dags[SCALE_OUT].task_dict["report"].python_callable
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 2)
    builder.add_many("succeeded", ["a", "b"])
    good = builder.build().to_xcom()
    assert report([good, good]) == {
        "batches": 2,
        "succeeded": 4,
        "unchanged": 0,
        "scheduled": 0,
        "accepted": 0,
        "failed": 0,
        "unknown": 0,
    }
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 2)
    builder.add("succeeded", "c")
    builder.refuse(["89012600000000000011"], "20000001", "Invalid ICCID.", http_status=404)
    with pytest.raises(
        RuntimeError,
        match=r"1 of 4 SIMs were not labelled: failed: 1 device, 20000001 \(HTTP 404\): Invalid ICCID\. "
        r"e\.g\. 89012600000000000011",
    ):
        report([good, builder.build().to_xcom()])


def test_the_enrichment_is_scheduled_on_the_asset_the_inventory_writes(
    example_bag: Any, inventory_root: str
) -> None:
    listing = example_bag.dags[INVENTORY].get_task("list_fota_devices")
    enrichment = example_bag.dags[ENRICHMENT]

    [written] = listing.outlets
    assert (written.name, written.uri) == (ASSET_NAME, inventory_root)
    assert _asset_of_schedule(enrichment) == [written]
    assert enrichment.schedule == [written]
    assert enrichment.get_task("inventory_path").inlets == [written]
    assert listing.output_path == inventory_root + "/fota-{{ ds }}.jsonl"


def test_the_enrichment_copied_alone_still_names_the_inventory_asset(
    tmp_path: Path, inventory_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = tmp_path / "dags"
    alone.mkdir()
    shutil.copy(EXAMPLE_DAGS / f"{ENRICHMENT}.py", alone)
    # Not importable from anywhere else either (dag.test() leaves example_dags on sys.path).
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if Path(entry).resolve() != EXAMPLE_DAGS])

    bag = parse(alone, bundle_path=alone)

    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == [ENRICHMENT]
    [asset] = _asset_of_schedule(bag.dags[ENRICHMENT])
    assert (asset.name, asset.uri) == (ASSET_NAME, inventory_root)


# --- what parsing imports (fast; one fresh interpreter, a fork per import) ---------------------

#: Imports ``airflow.sdk``, then forks per example module, once to warm the bytecode cache and then
#: ``IMPORT_SAMPLES`` times: each child starts from exactly what ``airflow.sdk`` imported, imports
#: the example with ``example_dags`` on ``sys.path``, and writes the modules that added and the CPU
#: seconds it took. One interpreter start-up in all.
_IMPORT_PROBE = """
import importlib, json, os, sys, time
started = time.process_time()
import airflow.sdk
sdk_cpu = time.process_time() - started
folder, output, samples = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name in sys.argv[4:]:
    for sample in range(-1, samples):  # -1: a warm-up, which writes the bytecode cache
        pid = os.fork()
        if pid == 0:
            before = set(sys.modules)
            sys.path.insert(0, folder)
            started = time.process_time()
            importlib.import_module(name)
            cpu = time.process_time() - started
            report = {"sdk_cpu": sdk_cpu, "cpu": cpu, "before": sorted(before), "after": sorted(sys.modules)}
            if sample >= 0:
                with open(os.path.join(output, f"{name}.{sample}.json"), "w") as out:
                    json.dump(report, out)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status:
            sys.exit(f"importing {name} failed: wait status {status}")
"""
#: Imports of each example file measured; the least CPU of them counts (the others met contention).
IMPORT_SAMPLES = 3


@pytest.fixture(scope="module")
def import_probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Per example file: the modules importing it added to ``airflow.sdk``'s, and the CPU it took."""
    output = tmp_path_factory.mktemp("import-probe")
    modules = [Path(name).stem for name in EXAMPLE_FILES]
    # Bytecode cached as in any installed deployment, but outside the source tree and the venv (this
    # environment may set PYTHONDONTWRITEBYTECODE, and compiling every module dominates then).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        PYTHONPYCACHEPREFIX=str(tmp_path_factory.mktemp("pycache")),
    )
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, str(EXAMPLE_DAGS), str(output), str(IMPORT_SAMPLES), *modules],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reports = {}
    for filename in EXAMPLE_FILES:
        module = Path(filename).stem
        samples = [json.loads((output / f"{module}.{n}.json").read_text()) for n in range(IMPORT_SAMPLES)]
        report = samples[0]
        report["cpu_samples"] = [sample["cpu"] for sample in samples]
        report["cpu"] = min(report["cpu_samples"])
        report["new"] = sorted(set(report["after"]) - set(report["before"]))
        assert all(sorted(set(x["after"]) - set(x["before"])) == report["new"] for x in samples)
        report["by_package"] = Counter(name.split(".")[0] for name in report["new"]).most_common()
        reports[filename] = report
    return reports


def _imported(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == name or m.startswith(name + ".") for name in names)]


@pytest.mark.parametrize("filename", list(EXAMPLE_FILES))
def test_parsing_an_example_imports_nothing_heavy_beyond_airflow_sdk(
    import_probe: dict[str, Any], filename: str
) -> None:
    report = import_probe[filename]

    assert Path(filename).stem in report["new"]  # the probe did import the example
    # The event-driven example uses a trigger and a hook, no operator.
    assert {"airflow_provider_iotfleet.operators", "airflow_provider_iotfleet.triggers"} & set(report["new"])
    already = [name for name in HEAVY_MODULES if name in report["before"]]
    assert _imported(report["new"], HEAVY_MODULES) == [], f"airflow.sdk had already imported {already}"


@pytest.mark.parametrize(
    "filename",
    [name for name in EXAMPLE_FILES],
)
def test_parsing_an_example_does_not_import_requests(import_probe: dict[str, Any], filename: str) -> None:
    report = import_probe[filename]

    assert "requests" not in report["before"]
    assert _imported(report["new"], ("requests",)) == [], report["by_package"]


@pytest.mark.parametrize("filename", list(EXAMPLE_FILES))
def test_parsing_an_example_costs_well_under_a_second_of_cpu(
    import_probe: dict[str, Any], filename: str, record_property: Any
) -> None:
    report = import_probe[filename]
    cpu, added = report["cpu"], len(report["new"])
    record_property("import_cpu_seconds", [round(sample, 3) for sample in report["cpu_samples"]])
    record_property("airflow_sdk_cpu_seconds", round(report["sdk_cpu"], 3))
    record_property("modules_added", added)
    figures = (
        f"{filename}: {cpu:.2f} s CPU (least of {[round(x, 2) for x in report['cpu_samples']]}) and "
        f"{added} modules beyond airflow.sdk (which took {report['sdk_cpu']:.2f} s CPU); "
        f"added per package: {report['by_package']}"
    )
    print(figures)

    assert cpu < MAX_IMPORT_CPU_SECONDS, figures
    assert added < MAX_MODULES_ADDED, figures


# --- end to end with dag.test() against the simulator (slow) -----------------------------------

#: The end-to-end tests' time limit, which covers the session's run of every example DAG (the first
#: of these tests sets it up). The thread method, because the signal one can be disarmed by the
#: tasks running in this process, and a maintenance sensor left waiting would wait for 6 hours.
E2E_TIMEOUT = pytest.mark.timeout(600, method="thread")


@pytest.fixture
def fleet_simulator(example_runs: ExampleRuns) -> Simulator:
    """The simulator of the inventory and then the enrichment, which read what it wrote."""
    return example_runs.runs[INVENTORY].simulator


@pytest.fixture
def inventory_run(example_runs: ExampleRuns) -> ExampleRun:
    return example_runs.runs[INVENTORY].result


@pytest.mark.slow
@E2E_TIMEOUT
def test_the_inventory_writes_the_whole_fleet_and_summarises_it(
    inventory_run: ExampleRun, fleet_simulator: Simulator, inventory_root: str
) -> None:
    fleet = fleet_simulator.state.fleet
    devices = [fleet.device(i) for i in range(FLEET_SIZE)]
    path = f"{inventory_root}/fota-{INVENTORY_DATE.date().isoformat()}.jsonl"
    account = fleet_simulator.config.credentials.verizon_account

    assert inventory_run.states == {"list_fota_devices": "success", "summarise": "success"}
    assert inventory_run.state == "success"

    assert inventory_run.xcom("list_fota_devices") == {
        "account_name": account,
        "path": path,
        "device_count": FLEET_SIZE,
        "pages": 3,
    }
    written = Path(path.removeprefix("file://"))
    lines = [json.loads(line) for line in written.read_text().splitlines()]
    ids = [line["device_id"] for line in lines]
    assert ids == [imei_of(i) for i in range(FLEET_SIZE)]
    assert len(set(ids)) == len(ids)
    assert [(line["make"], line["model"], line["firmware"]) for line in lines] == [
        (d["make"], d["model"], d["firmware"]) for d in devices
    ]
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name]  # no partial file left

    firmware = Counter((d["make"], d["model"], d["firmware"]) for d in devices)
    not_eligible = [d["imei"] for d in devices if d["protocol"] == "HTTP"]
    assert 0 < len(not_eligible) < FLEET_SIZE
    assert inventory_run.xcom("summarise") == {
        "devices": FLEET_SIZE,
        "path": path,
        "firmware": [
            {"make": make, "model": model, "firmware": version, "devices": count}
            for (make, model, version), count in sorted(firmware.items())
        ],
        "not_fota_eligible": {"count": len(not_eligible), "examples": not_eligible[:SUMMARY_EXAMPLES]},
        "without_license": {"count": 0, "examples": []},
    }
    assert sum(row["devices"] for row in inventory_run.xcom("summarise")["firmware"]) == FLEET_SIZE

    assert inventory_run.asset_events == [
        (
            "list_fota_devices",
            inventory_root,
            {"account_name": account, "device_count": FLEET_SIZE, "path": path},
        )
    ]


@pytest.mark.slow
@E2E_TIMEOUT
def test_the_enrichment_pushes_each_sims_identifiers_to_iot_security(
    inventory_run: ExampleRun, fleet_simulator: Simulator, example_runs: ExampleRuns
) -> None:
    enrichment = example_runs.runs[ENRICHMENT]
    assert enrichment.simulator is fleet_simulator  # the enrichment read what the inventory wrote
    assert enrichment.conf == {"sims_per_batch": SIMS_PER_BATCH}
    fleet = fleet_simulator.state.fleet
    assert enrichment.changed_before == {}
    batches = [
        list(range(start, min(start + SIMS_PER_BATCH, FLEET_SIZE)))
        for start in range(0, FLEET_SIZE, SIMS_PER_BATCH)
    ]
    assert len(batches) == 3

    result = enrichment.result

    mapped = [
        f"{task}[{k}]" for task in ("carrier_records", "push_to_iot_security") for k in range(len(batches))
    ]
    assert result.states == dict.fromkeys(["inventory_path", "sim_batches", *mapped], "success")
    assert result.state == "success"
    # The newest inventory, read from the asset event the inventory run emitted.
    assert result.xcom("inventory_path") == inventory_run.xcom("summarise")["path"]
    assert result.xcom("sim_batches") == [[iccid_of(i) for i in batch] for batch in batches]

    def identifiers(i: int) -> dict[str, str]:
        device = fleet.device(i)
        return {
            "imei": device["imei"],
            "iccid": device["iccid"],
            "imsi": device["imsi"],
            "msisdn": device["msisdn"],
            "apn": "iot.fleet.apn",
        }

    for k, batch in enumerate(batches):
        assert result.xcom(f"carrier_records[{k}]") == [identifiers(i) for i in batch]
        outcome = result.xcom(f"push_to_iot_security[{k}]")
        assert_outcome_shape(
            outcome, operation="bulk_update", requested=[fleet.device(i)["imei"] for i in batch]
        )
        assert outcome["counts"]["accepted"] == outcome["updated"] == len(batch)
        assert outcome["batches"] == -(-len(batch) // DEFAULT_MAX_DEVICES_PER_REQUEST)
        assert (f"push_to_iot_security[{k}]", "outcome") not in result.xcoms  # pushed once

    changed = fleet_simulator.state.snapshot()["changed"]
    assert sorted(changed, key=int) == [str(i) for i in range(FLEET_SIZE)]
    for i in range(FLEET_SIZE):
        assert changed[str(i)]["paloalto"] == identifiers(i), i
    assert fleet_simulator.state.snapshot()["counters"]["paloalto.bulk_updates"] == len(batches)


@pytest.mark.slow
@E2E_TIMEOUT
def test_the_maintenance_window_takes_every_device_through_every_step(example_runs: ExampleRuns) -> None:
    window = example_runs.runs[MAINTENANCE]
    simulator, conf, result = window.simulator, window.conf, window.result
    fleet = simulator.state.fleet
    roma_indices = [device_id - ROMA_ID_BASE for device_id in conf["roma_device_ids"]]
    sim_indices = [fleet.by_iccid(iccid) for iccid in conf["iccids"]]
    started, finished = window.started, window.finished

    assert result.states == dict.fromkeys(
        [
            "force_offline",
            "wait_offline",
            "upgrade_firmware",
            "wait_upgrade",
            "devices_upgraded",
            "sync_firmware",
            "wait_firmware",
            "effective_date",
            "schedule_sim_change",
            "sims_to_wait_for",
            "wait_sim_change",
            "report",
            "check_window",
        ],
        "success",
    )
    assert result.state == "success"
    # The clock moved twice: past the campaign's last device, then, once Control Center held every
    # scheduled change, past the last one.
    assert [moved[:2] for moved in window.clock_moves] == [(0, 1), (len(conf["iccids"]), 0)]
    assert simulator.state.fleet.pending == []

    # Huawei: forced offline, and the sensor saw them offline.
    force_offline = result.xcom("force_offline")
    assert_outcome_shape(force_offline, operation="force_offline", requested=conf["roma_device_ids"])
    assert force_offline["devices"]["succeeded"] == conf["roma_device_ids"]
    assert [fleet.device(i)["online_status"] for i in roma_indices] == [OFFLINE] * 3
    wait_offline = result.xcom("wait_offline")
    assert sorted(map(int, wait_offline["matched"])) == conf["roma_device_ids"]
    assert wait_offline["statuses"] == {str(device_id): "offline" for device_id in conf["roma_device_ids"]}

    # Cisco: scheduled for the effective date computed when the devices were offline, then applied.
    effective = datetime.fromisoformat(result.xcom("effective_date"))
    assert started + timedelta(minutes=90) <= effective <= finished + timedelta(minutes=90)
    schedule = result.xcom("schedule_sim_change")
    assert_outcome_shape(schedule, operation="edit_devices", requested=conf["iccids"])
    assert schedule["devices"]["scheduled"] == conf["iccids"]
    assert datetime.fromisoformat(schedule["effective_date"]) == effective.replace(microsecond=0)
    assert [fleet.device(i)["status"] for i in sim_indices] == ["DEACTIVATED"] * 4
    assert result.xcom("wait_sim_change") == {
        "matched": conf["iccids"],
        "statuses": dict.fromkeys(conf["iccids"], "DEACTIVATED"),
        "unreachable": {},
    }

    # Verizon: one campaign upgraded every device, a sync read the new firmware, and the sensor saw it.
    upgrade = FIRMWARE[conf["firmware_name"]]
    campaign = result.xcom("upgrade_firmware")
    assert_outcome_shape(campaign, operation="upgrade_firmware", requested=conf["imeis"])
    assert campaign["devices"]["scheduled"] == conf["imeis"]
    assert {key: value for key, value in campaign.items() if key not in OUTCOME_KEYS} == {
        "account_name": simulator.connections()["verizon_thingspace_default"]["extra"]["account_name"],
        "campaign_id": campaign["campaign_id"],
        "campaign_name": f"airflow {MAINTENANCE}.upgrade_firmware {result.run_id}",
        "campaign_status": "CampaignRequestPending",
        "firmware_name": conf["firmware_name"],
        "firmware_from": upgrade.source,
        "firmware_to": upgrade.target,
        "start_date": started.date().isoformat(),  # the logical date (Nov 3) has passed: today
        "end_date": (started.date() + timedelta(days=1)).isoformat(),  # a whole day at least
    }
    (held,) = simulator.state.snapshot()["campaigns"].values()
    assert held["campaignName"] == f"airflow {MAINTENANCE}.upgrade_firmware {result.run_id}"
    assert result.xcom("wait_upgrade") == {
        "campaign_id": campaign["campaign_id"],
        "status": "CampaignScheduled",
        "finished": conf["imeis"],
        "failed": [],
        "pending": [],
    }
    assert result.xcom("devices_upgraded") == conf["imeis"]
    assert [fleet.device(fleet.by_imei(imei))["firmware"] for imei in conf["imeis"]] == [upgrade.target] * 3
    sync = result.xcom("sync_firmware")
    assert_outcome_shape(sync, operation="sync_firmware", requested=conf["imeis"])
    assert sync["devices"]["succeeded"] == conf["imeis"]
    assert sync["firmware"] == dict.fromkeys(conf["imeis"], upgrade.target)
    assert result.xcom("wait_firmware") == {
        "matched": conf["imeis"],
        "firmware": dict.fromkeys(conf["imeis"], upgrade.target),
        "unreachable": {},
    }

    report = result.xcom("report")
    assert report["failed"] == {
        "force_offline": [],
        "upgrade_firmware": [],
        "sync_firmware": [],
        "schedule_sim_change": [],
        "wait_upgrade": [],
    }
    assert report["waits_done"] == dict.fromkeys(
        ["wait_offline", "wait_upgrade", "wait_firmware", "wait_sim_change"], True
    )
    assert report["steps"]["schedule_sim_change"] == schedule["counts"]
    assert report["steps"]["force_offline"] == force_offline["counts"]


@dataclass
class FailedWindow:
    """A maintenance window run on one ROMA device that is not online and one ICCID not in the fleet."""

    simulator: Simulator
    conf: dict[str, Any]
    offline_id: int
    missing: str
    other_firmware: str
    result: ExampleRun


@pytest.fixture(scope="module")
def failed_window(airflow_db: None) -> Iterator[FailedWindow]:
    with running_simulator() as sim, pytest.MonkeyPatch.context() as mp:
        bundle_environment(mp, EXAMPLE_DAGS)
        fleet = sim.state.fleet
        conf = maintenance_conf(sim)
        # Already offline: ROMA refuses it, the read-back finds it offline: unchanged, not failed.
        offline = next(i for i in range(FLEET_SIZE) if fleet.device(i)["online_status"] == OFFLINE)
        missing = iccid_of(999_999)  # Luhn-valid, beyond the fleet
        assert fleet.by_iccid(missing) is None
        conf["roma_device_ids"] = [*conf["roma_device_ids"][:2], ROMA_ID_BASE + offline]
        conf["iccids"] = [*conf["iccids"][:2], missing]
        # Of the upgrade's make and model, on other firmware: left out of the campaign, the others go on.
        upgrade = FIRMWARE[conf["firmware_name"]]
        other_firmware = next(
            i
            for i in online_devices(sim)
            if (fleet.device(i)["model"], fleet.device(i)["firmware"]) == (upgrade.model, upgrade.target)
        )
        conf["imeis"] = [*conf["imeis"][:2], imei_of(other_firmware)]
        with ClockAdvancer(sim, expected=2):  # the campaign's devices, the two real SIMs' changes
            result = run_example(
                MAINTENANCE, logical_date=datetime(2026, 11, 4, 6, 0, tzinfo=UTC), run_conf=conf
            )
        yield FailedWindow(sim, conf, ROMA_ID_BASE + offline, missing, imei_of(other_firmware), result)


@pytest.mark.slow
@E2E_TIMEOUT
def test_the_maintenance_report_names_exactly_the_devices_that_failed(failed_window: FailedWindow) -> None:
    fleet = failed_window.simulator.state.fleet
    conf, result = failed_window.conf, failed_window.result
    offline_id, missing = failed_window.offline_id, failed_window.missing

    # Every step did its part for the devices it could (fail_on_error=False on both writes): what
    # could not be done is in the outcomes and the report lists it; the Cisco wait is for the SIMs
    # Control Center took. The check after the report then fails the run, so that it shows failed.
    assert set(result.states.values()) == {"success", "failed"}
    assert [task for task, state in result.states.items() if state == "failed"] == ["check_window"]
    assert result.tries["schedule_sim_change"] == 1  # not retried: a retry would schedule twice
    assert result.state == "failed"
    assert result.xcom("sims_to_wait_for") == conf["iccids"][:2]

    report = result.xcom("report")
    assert report["failed_steps"] == []
    failed = report["failed"]
    # The device already offline is as asked: unchanged, in no failure line.
    assert failed["force_offline"] == []
    assert result.xcom("force_offline")["devices"]["unchanged"] == [offline_id]
    # Read first (skip_unchanged), so Control Center's 404 for the GET, one line for the error.
    assert failed["schedule_sim_change"] == [
        "failed: 1 device, 20000001 (HTTP 404): Resource not found - Invalid ICCID. e.g. " + missing
    ]
    upgrade = FIRMWARE[conf["firmware_name"]]
    # Read first, the device on other firmware is left out of the campaign (not sent), so the
    # campaign's report has no failure.
    assert failed["upgrade_firmware"] == [
        f"failed (not sent): 1 device, other_firmware: runs {upgrade.target}, not {upgrade.source}, "
        f"which {conf['firmware_name']} upgrades from. e.g. {failed_window.other_firmware}"
    ]
    assert failed["wait_upgrade"] == failed["sync_firmware"] == []
    assert report["waits_done"] == dict.fromkeys(
        ["wait_offline", "wait_upgrade", "wait_firmware", "wait_sim_change"], True
    )
    # Only the devices upgraded were synced and waited for; the other keeps its firmware.
    assert result.xcom("devices_upgraded") == conf["imeis"][:2]
    assert result.xcom("sync_firmware")["devices"]["succeeded"] == conf["imeis"][:2]
    assert result.xcom("wait_firmware")["firmware"] == dict.fromkeys(conf["imeis"][:2], upgrade.target)
    assert fleet.device(fleet.by_imei(failed_window.other_firmware))["firmware"] == upgrade.target

    # Everything else was done: the online devices forced offline, the real SIMs scheduled.
    outcome = result.xcom("schedule_sim_change")  # fail_on_error=False: its return value
    assert outcome["devices"]["scheduled"] == conf["iccids"][:2]
    assert [(error["devices"], error["http_status"]) for error in outcome["errors"]] == [([missing], 404)]
    for device_id in conf["roma_device_ids"][:2]:
        assert fleet.device(device_id - ROMA_ID_BASE)["online_status"] == OFFLINE
    for iccid in conf["iccids"][:2]:  # scheduled once, applied when they came due
        assert fleet.device(fleet.by_iccid(iccid))["status"] == conf["sim_status"]


@pytest.mark.slow
@E2E_TIMEOUT
def test_a_sim_that_cannot_be_changed_neither_fails_nor_retries_the_others(
    failed_window: FailedWindow,
) -> None:
    # Control Center shows no pending change, so a retry could not tell what was already scheduled:
    # each real SIM's change was sent, and applied, exactly once.
    writes = failed_window.simulator.state.per_device_writes(vendor="cisco", applied_only=True)
    assert {iccid: writes[iccid] for iccid in failed_window.conf["iccids"][:2]} == dict.fromkeys(
        failed_window.conf["iccids"][:2], 1
    )


@pytest.mark.slow
@E2E_TIMEOUT
def test_the_scale_out_labels_every_sim_once_in_mapped_batches(example_runs: ExampleRuns) -> None:
    scale_out = example_runs.runs[SCALE_OUT]
    simulator, result = scale_out.simulator, scale_out.result
    assert scale_out.conf == {"sims_per_batch": SIMS_PER_BATCH, "label": SCALE_OUT_LABEL}
    batches = [
        list(range(start, min(start + SIMS_PER_BATCH, FLEET_SIZE)))
        for start in range(0, FLEET_SIZE, SIMS_PER_BATCH)
    ]

    mapped = [f"label_batch[{k}]" for k in range(len(batches))]
    assert result.states == dict.fromkeys(["sim_batches", *mapped, "report"], "success")
    assert result.xcom("sim_batches") == [[iccid_of(i) for i in batch] for batch in batches]
    for k, batch in enumerate(batches):
        outcome = result.xcom(f"label_batch[{k}]")
        assert_outcome_shape(outcome, operation="edit_devices", requested=[iccid_of(i) for i in batch])
        assert outcome["devices"]["succeeded"] == [iccid_of(i) for i in batch]
    assert result.xcom("report") == {
        "batches": 3,
        "succeeded": FLEET_SIZE,
        "unchanged": 0,
        "scheduled": 0,
        "accepted": 0,
        "failed": 0,
        "unknown": 0,
    }
    changed = simulator.state.snapshot()["changed"]
    assert sorted(changed, key=int) == [str(i) for i in range(FLEET_SIZE)]
    assert all(device["custom"] == {"accountCustom1": "wave-7"} for device in changed.values())
    # One PUT per SIM, none repeated.
    assert simulator.state.per_device_writes("cisco") == Counter({iccid_of(i): 1 for i in range(FLEET_SIZE)})


@pytest.mark.slow
@E2E_TIMEOUT
def test_the_campaign_finished_dag_reports_the_campaign_its_params_name_without_an_event(
    example_runs: ExampleRuns,
) -> None:
    # dag.test() runs no asset watcher (the triggerer does: tests/standalone covers the event).
    run = example_runs.runs[CAMPAIGN_FINISHED]
    campaign_id = run.conf["campaign_id"]
    campaign = run.simulator.state.campaigns.summary()[campaign_id]
    devices = campaign["devices"]

    assert run.result.states == {"report_campaign": "success"}
    report = run.result.xcom("report_campaign")
    assert report == {
        "campaign_id": campaign_id,
        "from_event": False,
        "status": campaign["status"],
        "devices": len(devices),
        "finished": sum(device["status"] == "Finished" for device in devices.values()),
        "failed": len(report["failed_examples"]),
        "pending": len(devices) - report["finished"] - report["failed"],
        "failed_examples": report["failed_examples"],
    }
    assert report["finished"] == len(devices) == 3  # the window upgraded its three devices


def test_mapped_tasks_show_their_batch_and_size_in_the_grid(example_runs: ExampleRuns) -> None:
    """The labels the grid shows instead of [0], [1], [2] (each task's rendered map_index_template)."""
    scale_out = example_runs.runs[SCALE_OUT].result
    assert scale_out.map_labels == {
        "label_batch[0]": "batch 1: 60 SIMs",
        "label_batch[1]": "batch 2: 60 SIMs",
        "label_batch[2]": "batch 3: 30 SIMs",
    }
    enrichment = example_runs.runs[ENRICHMENT].result
    devices = [len(enrichment.xcom(f"carrier_records[{k}]")) for k in range(3)]
    assert enrichment.map_labels == {
        "carrier_records[0]": "batch 1: 60 SIMs",
        "carrier_records[1]": "batch 2: 60 SIMs",
        "carrier_records[2]": "batch 3: 30 SIMs",
        **{f"push_to_iot_security[{k}]": f"batch {k + 1}: {devices[k]} devices" for k in range(3)},
    }


@pytest.mark.slow
@E2E_TIMEOUT
def test_each_write_task_shows_its_console_link(example_runs: ExampleRuns) -> None:
    """What the task's page links to: the URL Airflow stored for the UI when the task ended."""
    window = example_runs.runs[MAINTENANCE].result
    upgrade = window.xcom("upgrade_firmware")
    assert window.xcom("upgrade_firmware", "_link_ThingSpaceCampaignLink") == (
        f"https://thingspace.example/campaigns/{upgrade['campaign_id']}?account={upgrade['account_name']}"
    )
    assert window.xcom("force_offline", "_link_RomaInstanceLink").startswith(
        "https://console.huaweicloud.com/roma/?region="
    )
    # Control Center has no public console address: no link unless the connection sets one.
    assert window.xcom("schedule_sim_change", "_link_ControlCenterDeviceLink") == ""
    enrichment = example_runs.runs[ENRICHMENT].result
    links = {
        enrichment.xcom(f"push_to_iot_security[{k}]", "_link_IoTSecurityInventoryLink") for k in range(3)
    }
    assert len(links) == 1
    assert links.pop().endswith(".iot.paloaltonetworks.com")
