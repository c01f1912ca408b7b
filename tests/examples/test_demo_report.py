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
