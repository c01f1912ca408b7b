"""What ``make demo`` prints about each DAG run, read from a metadata DB built here (no Airflow run)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from airflow_provider_iotfleet.outcome import OutcomeBuilder
from tests.fakes import load_demo_script


def _outcome(succeeded: list[str], failed: list[str]) -> str:
    builder = OutcomeBuilder("bulk_update", "Palo Alto Networks IoT Security", len(succeeded) + len(failed))
    builder.add_many("accepted", succeeded)
    builder.refuse(failed, "400", "Bad Request")
    return json.dumps(builder.build(updated=len(succeeded), batches=1).to_xcom())


def test_the_outcomes_of_mapped_batches_are_read_per_batch(tmp_path: Path) -> None:
    """A failed batch pushes under "outcome", the others return theirs: every batch counts."""
    db = tmp_path / "airflow.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE dag_run (id INTEGER, dag_id TEXT)")
        connection.execute(
            "CREATE TABLE xcom (dag_run_id INTEGER, task_id TEXT, map_index INTEGER, key TEXT, value TEXT)"
        )
        connection.execute("INSERT INTO dag_run VALUES (1, 'enrich')")
        rows = [
            (1, "push", 0, "return_value", _outcome(["a", "b"], [])),
            (1, "push", 1, "outcome", _outcome(["c"], ["d"])),
            (1, "push", 2, "return_value", _outcome(["e"], [])),
        ]
        connection.executemany("INSERT INTO xcom VALUES (?, ?, ?, ?, ?)", rows)
    outcomes = load_demo_script().Results(db).outcomes("enrich", "push")
    assert [outcome.ids() for outcome in outcomes] == [["a", "b"], ["c", "d"], ["e"]]


def test_the_demo_names_the_steps_that_failed(tmp_path: Path) -> None:
    """A run whose report succeeded but whose steps failed: the demo lists those steps."""
    db = tmp_path / "airflow.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE dag_run (id INTEGER, dag_id TEXT, run_id TEXT)")
        connection.execute(
            "CREATE TABLE task_instance (dag_id TEXT, run_id TEXT, task_id TEXT, map_index INTEGER, state TEXT)"
        )
        connection.execute("INSERT INTO dag_run VALUES (1, 'window', 'manual_1')")
        rows = [
            ("window", "manual_1", "force_offline", -1, "success"),
            ("window", "manual_1", "wait_offline", -1, "failed"),
            ("window", "manual_1", "label", 2, "failed"),
            ("window", "manual_1", "upgrade_firmware", -1, "upstream_failed"),
            ("window", "manual_1", "report", -1, "success"),
            ("window", "manual_1", "check_window", -1, "failed"),
        ]
        connection.executemany("INSERT INTO task_instance VALUES (?, ?, ?, ?, ?)", rows)
    demo = load_demo_script()
    states = demo.Results(db).task_states("window")
    assert demo.failed_steps(states) == ["check_window", "label[2]", "upgrade_firmware", "wait_offline"]
