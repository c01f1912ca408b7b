"""End-to-end runs of the test DAGs in ``dags/``: operators fed by XCom and templates, against a
simulator, with outcomes, task states and the simulator's state checked afterwards."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import OFFLINE, ONLINE, ROMA_ID_BASE, iccid_of, imei_of
from tests.dag_runs import DAGS_FOLDER, FLEET_SIZE, VERIZON_PAGE_SIZE, RunDag
from tests.dagtest.dags import iotfleet_dagtest_all_operators as all_ops
from tests.dagtest.dags import iotfleet_dagtest_deferred_sensors as deferred
from tests.dagtest.dags import iotfleet_dagtest_mapped_upstream as mapped
from tests.dagtest.dags import iotfleet_dagtest_partial_failure as partial
from tests.fakes import assert_outcome_shape

pytestmark = pytest.mark.slow


def _changed(sim: Simulator) -> dict[str, dict]:
    return sim.state.snapshot()["changed"]


def test_the_dag_files_parse_quickly_and_without_errors(airflow_db: None, dags_bundle: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags_bundle))

    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {all_ops.DAG_ID, deferred.DAG_ID, mapped.DAG_ID, partial.DAG_ID}
    parse_seconds = {Path(stat.file).name: stat.duration.total_seconds() for stat in bag.dagbag_stats}
    assert sorted(parse_seconds) == [
        "iotfleet_dagtest_all_operators.py",
        "iotfleet_dagtest_deferred_sensors.py",
        "iotfleet_dagtest_mapped_upstream.py",
        "iotfleet_dagtest_partial_failure.py",
    ]
    # Module-level code only defines tasks: no requests, nothing heavier than the operators' imports.
    slow = {name: seconds for name, seconds in parse_seconds.items() if seconds > 1.0}
    assert not slow, f"DAG files in {DAGS_FOLDER} parse slowly: {slow}"
    assert bag.get_dag(all_ops.DAG_ID).render_template_as_native_obj is True
    assert [
        task.task_id for task in bag.get_dag(partial.DAG_ID).tasks if task.trigger_rule == "all_done"
    ] == ["report_failures"]


def test_every_operator_runs_from_upstream_xcom_and_a_downstream_task_sums_them_up(
    run_dag: RunDag, simulator: Simulator, tmp_path: Path
) -> None:
    fleet = simulator.state.fleet
    # The starting states the DAG's choice of devices relies on (simulator seed 7).
    assert [fleet.device(i)["online_status"] for i in all_ops.HUAWEI] == [ONLINE, ONLINE, OFFLINE]
    assert all(fleet.device(i)["online_status"] == ONLINE for i in all_ops.SYNC + all_ops.HUAWEI_FROM_PARAMS)
    assert all(fleet.device(i)["rate_plan"] != all_ops.RATE_PLAN for i in all_ops.CISCO)
    assert all(fleet.device(i)["status"] == "ACTIVATED" for i in all_ops.CISCO_SCHEDULED)
    assert all_ops.NOT_IN_FLEET >= FLEET_SIZE
    assert _changed(simulator) == {}

    # Near now, so that the Cisco edit scheduled for a day after the logical date is in the future.
    logical_date = datetime.now(UTC).replace(microsecond=0)

    result = run_dag(all_ops.DAG_ID, logical_date=logical_date, run_conf={"out_dir": str(tmp_path)})

    assert result.states == {
        task_id: "success" for task_id in ("pick_devices", *all_ops.OPERATOR_TASKS, "summarize")
    }
    assert result.state == "success"
    changed = _changed(simulator)
    counters = simulator.state.snapshot()["counters"]
    fota_file = tmp_path / "fota" / logical_date.date().isoformat() / f"{result.run_id}.jsonl"

    # The upstream task's lists travelled as XCom (multiple_outputs: one XCom per key).
    assert result.xcom("pick_devices", "iccids") == [iccid_of(i) for i in (*all_ops.CISCO, all_ops.CISCO[0])]
    assert result.xcom("pick_devices", "roma_ids") == [ROMA_ID_BASE + i for i in all_ops.HUAWEI]

    # Every operator returned its outcome, once: nothing under "outcome" when the task succeeded.
    for task_id in all_ops.OPERATOR_TASKS:
        assert (task_id, "outcome") not in result.xcoms, task_id

    # Palo Alto: 4 devices in 2 requests of 2, all accepted; the one outside the fleet not counted as
    # updated. Each device under its first identifier.
    paloalto_ids = [
        imei_of(all_ops.PALOALTO[0]),
        iccid_of(all_ops.PALOALTO[1]),
        f"1555{all_ops.PALOALTO[2]:07d}",
        imei_of(all_ops.NOT_IN_FLEET),
    ]
    paloalto = result.xcom("paloalto_update")
    assert_outcome_shape(paloalto, operation="bulk_update", requested=paloalto_ids)
    assert (paloalto["devices"]["accepted"], paloalto["updated"], paloalto["batches"]) == (paloalto_ids, 3, 2)
    assert counters["paloalto.bulk_updates"] == 2
    assert changed[str(all_ops.PALOALTO[0])]["paloalto"] == {
        "imei": imei_of(all_ops.PALOALTO[0]),
        "apn": all_ops.APN,
        "SessionEvtType": "start",
    }
    assert changed[str(all_ops.PALOALTO[1])]["paloalto"] == {
        "iccid": iccid_of(all_ops.PALOALTO[1]),
        "apn": all_ops.APN,
    }
    assert changed[str(all_ops.PALOALTO[2])]["paloalto"]["apn"] == all_ops.APN

    # Cisco: the repeated ICCID sent once; the templated custom field rendered to the run id.
    cisco_iccids = [iccid_of(i) for i in all_ops.CISCO]
    cisco = result.xcom("cisco_edit")
    assert_outcome_shape(cisco, operation="edit_devices", requested=cisco_iccids)
    assert cisco["devices"]["succeeded"] == cisco_iccids
    assert counters["cisco.edits"] == 3 + 2  # and two scheduled
    for i in all_ops.CISCO:
        assert changed[str(i)]["rate_plan"] == all_ops.RATE_PLAN
        assert changed[str(i)]["custom"] == {"operatorCustom1": result.run_id}

    # Cisco, scheduled: accepted (202) for a day after the logical date, applied when that comes.
    scheduled_iccids = [iccid_of(i) for i in all_ops.CISCO_SCHEDULED]
    effective = logical_date + timedelta(days=1)
    cisco_schedule = result.xcom("cisco_schedule")
    assert_outcome_shape(cisco_schedule, operation="edit_devices", requested=scheduled_iccids)
    assert cisco_schedule["devices"]["scheduled"] == scheduled_iccids
    assert cisco_schedule["effective_date"] == effective.isoformat()
    assert simulator.state.snapshot()["scheduled"] == [
        {"due": effective.isoformat(), "iccid": iccid, "changes": {"status": all_ops.SCHEDULED_STATUS}}
        for iccid in scheduled_iccids
    ]
    assert not any(str(i) in changed for i in all_ops.CISCO_SCHEDULED)

    # Huawei: the online devices forced offline; the one already offline refused by ROMA, read back
    # and reported unchanged (as asked), not failed.
    huawei = result.xcom("huawei_offline")
    assert_outcome_shape(
        huawei, operation="force_offline", requested=[ROMA_ID_BASE + i for i in all_ops.HUAWEI]
    )
    assert huawei["devices"]["succeeded"] == [ROMA_ID_BASE + i for i in all_ops.HUAWEI[:2]]
    assert huawei["devices"]["unchanged"] == [ROMA_ID_BASE + all_ops.HUAWEI[2]]
    assert huawei["errors"] == []
    assert counters["huawei.force_offline"] == 2 + 1  # two batches of 2 and 1, plus the params task
    for i in all_ops.HUAWEI[:2]:
        assert changed[str(i)]["online_status"] == OFFLINE
    assert str(all_ops.HUAWEI[2]) not in changed

    # The ids from a Jinja template over params rendered to a real list (render_template_as_native_obj).
    params_ids = [ROMA_ID_BASE + i for i in all_ops.HUAWEI_FROM_PARAMS]
    assert result.rendered["huawei_offline_from_params"]["device_ids"] == params_ids
    assert result.xcom("huawei_offline_from_params")["devices"]["succeeded"] == params_ids
    for i in all_ops.HUAWEI_FROM_PARAMS:
        assert changed[str(i)]["online_status"] == OFFLINE

    # Verizon FOTA: streamed to the {{ ds }}-templated path under the run conf's out_dir.
    fota = result.xcom("verizon_fota")
    assert fota == {
        "account_name": simulator.config.credentials.verizon_account,
        "path": str(fota_file),
        "device_count": 3,
        "pages": 1,
        "requested": 4,
        "missing": [imei_of(all_ops.NOT_IN_FLEET)],
    }
    assert result.rendered["verizon_fota"]["output_path"] == str(fota_file)
    lines = [json.loads(line) for line in fota_file.read_text().splitlines()]
    assert [(d["device_id"], d["firmware"], d["model"]) for d in lines] == [
        (imei_of(i), fleet.device(i)["firmware"], fleet.device(i)["model"]) for i in all_ops.FOTA
    ]
    assert sorted(p.name for p in fota_file.parent.iterdir()) == [fota_file.name]  # no partial file left
    assert result.asset_events == [
        (
            "verizon_fota",
            all_ops.FOTA_INVENTORY.uri,
            {"account_name": fota["account_name"], "device_count": 3, "path": str(fota_file)},
        )
    ]

    # Verizon FOTA, whole account: every page streamed to a file:// URI, in IMEI order.
    account_uri = f"file://{tmp_path}/account/{logical_date.date().isoformat()}.jsonl"
    pages = -(-FLEET_SIZE // VERIZON_PAGE_SIZE)
    assert pages > 1
    assert result.xcom("verizon_fota_account") == {
        "account_name": simulator.config.credentials.verizon_account,
        "path": account_uri,
        "device_count": FLEET_SIZE,
        "pages": pages,
    }
    account_file = Path(account_uri.removeprefix("file://"))
    listed = [json.loads(line)["device_id"] for line in account_file.read_text().splitlines()]
    assert listed == [imei_of(i) for i in range(FLEET_SIZE)]

    # Verizon firmware sync: every device synced to the firmware it reports.
    sync = result.xcom("verizon_sync")
    sync_imeis = [imei_of(i) for i in all_ops.SYNC]
    assert_outcome_shape(sync, operation="sync_firmware", requested=sync_imeis)
    assert sync["account_name"] == simulator.config.credentials.verizon_account
    assert sync["devices"]["succeeded"] == sync_imeis
    assert sync["firmware"] == {imei_of(i): fleet.device(i)["reported_firmware"] for i in all_ops.SYNC}
    assert counters["verizon.firmware_syncs"] == 1
    for i in all_ops.SYNC:
        assert "firmware_synced_at" in changed[str(i)]

    # The downstream task read every outcome from XCom, the same way whichever the vendor.
    summary = result.xcom("summarize")
    assert summary["pushed_once"] == dict.fromkeys(all_ops.OPERATOR_TASKS, True)
    assert summary["paloalto"] == {"updated": 3}
    assert summary["go_on"] == {
        "paloalto_update": sorted(paloalto_ids),
        "cisco_edit": sorted(cisco_iccids),
        "cisco_schedule": sorted(scheduled_iccids),
        "huawei_offline": [ROMA_ID_BASE + i for i in all_ops.HUAWEI],
        "huawei_offline_from_params": params_ids,
        "verizon_sync": sorted(sync_imeis),
    }
    assert summary["counts"]["huawei_offline"] == {
        "succeeded": 2,
        "unchanged": 1,
        "scheduled": 0,
        "accepted": 0,
        "failed": 0,
        "unknown": 0,
    }
    assert {key: summary[key] for key in ("fota", "fota_account")} == {
        "fota": {
            "device_count": 3,
            "path": str(fota_file),
            "missing": [imei_of(all_ops.NOT_IN_FLEET)],
            "requested": 4,
        },
        "fota_account": {"device_count": FLEET_SIZE, "pages": pages, "path": account_uri},
    }

    # The scheduled deactivation lands once the simulator's clock passes the effective date.
    simulator.state.advance(timedelta(days=2).total_seconds())
    for i in all_ops.CISCO_SCHEDULED:
        assert fleet.device(i)["status"] == all_ops.SCHEDULED_STATUS


def test_an_all_done_task_reports_exactly_the_device_a_failed_operator_could_not_edit(
    run_dag: RunDag, simulator: Simulator
) -> None:
    fleet = simulator.state.fleet
    assert [fleet.device(i)["status"] for i in partial.EDITED] == ["ACTIVATED", "ACTIVATED"]
    missing = iccid_of(partial.NOT_IN_FLEET)

    result = run_dag(partial.DAG_ID, logical_date=datetime(2026, 3, 15, 6, 30, tzinfo=UTC))

    assert result.states == {
        "pick_iccids": "success",
        "deactivate": "failed",
        "report_failures": "success",
    }
    # The run's state follows its leaves, and the only leaf (the report) succeeded.
    assert result.state == "success"
    edited = sorted(iccid_of(i) for i in partial.EDITED)
    report = result.xcom("report_failures")
    assert {key: value for key, value in report.items() if key != "lines"} == {
        "requested": 3,
        "done": edited,
        "failed": {missing: {"http_status": 404, "error_code": "20000001"}},
        "deactivate_return_value": None,
    }
    (line,) = report["lines"]
    assert line.startswith("failed: 1 device, 20000001 (HTTP 404):") and line.endswith(f"e.g. {missing}")
    outcome = result.xcom("deactivate", "outcome")
    assert_outcome_shape(outcome, operation="edit_devices", requested=[*edited, missing])
    assert [error["devices"] for error in outcome["errors"]] == [[missing]]
    assert ("deactivate", "return_value") not in result.xcoms  # failed: pushed once, under "outcome"

    # Every device was tried: the two in the fleet were changed despite the failure in between.
    changed = _changed(simulator)
    assert sorted(changed) == sorted(str(i) for i in partial.EDITED)
    for i in partial.EDITED:
        assert changed[str(i)]["status"] == partial.STATUS
        assert changed[str(i)]["custom"] == {"customerCustom2": "dagtest"}


def test_operators_read_the_lazy_output_of_a_mapped_upstream_task_as_a_list(
    run_dag: RunDag, simulator: Simulator
) -> None:
    fleet = simulator.state.fleet
    assert all(fleet.device(i)["online_status"] == ONLINE for i in mapped.HUAWEI + mapped.SYNC)

    result = run_dag(mapped.DAG_ID, logical_date=datetime(2026, 3, 16, 6, 30, tzinfo=UTC))

    assert result.states == {
        "roma_id[0]": "success",
        "roma_id[1]": "success",
        "imei[0]": "success",
        "imei[1]": "success",
        "huawei_offline": "success",
        "verizon_sync": "success",
    }
    assert result.xcom("huawei_offline")["devices"]["succeeded"] == [ROMA_ID_BASE + i for i in mapped.HUAWEI]
    assert result.xcom("huawei_offline")["errors"] == []
    assert result.xcom("verizon_sync")["devices"]["succeeded"] == [imei_of(i) for i in mapped.SYNC]
    changed = _changed(simulator)
    for i in mapped.HUAWEI:
        assert changed[str(i)]["online_status"] == OFFLINE
    for i in mapped.SYNC:
        assert "firmware_synced_at" in changed[str(i)]
