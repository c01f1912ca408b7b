"""Event-driven scheduling on a real Airflow: ``example_dags/iotfleet_campaign_finished_event.py``
under ``airflow standalone`` of its own (the watcher runs in the triggerer, which ``dag.test()`` has
not), watching a campaign the test scheduled on a simulator of its own. The test plays ThingSpace:
once the triggerer runs the watcher, while the campaign is at work, it moves the simulated clock past the campaign's
end; the watcher's one event must then start exactly one DAG run, which reports on that campaign.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig
from airflow_provider_iotfleet.simulator.campaigns import upgrade_for
from airflow_provider_iotfleet.simulator.fleet import ONLINE, imei_of
from tests.airflow_standalone import AirflowStandalone

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example_dags" / "iotfleet_campaign_finished_event.py"
DAG_ID = "iotfleet_campaign_finished_event"
TRIGGER = "airflow_provider_iotfleet.triggers.verizon.VerizonThingSpaceCampaignFinishedTrigger"
#: The watcher's poll interval: the least an event trigger accepts.
POLL_SECONDS = 10
CAMPAIGN_SIZE = 3
#: Backstops for a busy machine (start-up takes over 150 s on two shared cores).
STARTUP_TIMEOUT = 300.0
RUN_TIMEOUT = 180.0
LOOK_INTERVAL = 0.5


def schedule_campaign(sim: Simulator, account: str) -> tuple[str, list[str]]:
    """A campaign of a few online devices of one upgrade, starting tomorrow on the simulated clock."""
    fleet = sim.state.fleet
    by_upgrade: dict[Any, list[str]] = {}
    for index in range(fleet.size):
        device = fleet.device(index)
        eligible = device["online_status"] == ONLINE and device["protocol"] != "HTTP"
        if eligible and (upgrade := upgrade_for(device)) is not None:
            by_upgrade.setdefault(upgrade, []).append(imei_of(index))
    upgrade, imeis = max(by_upgrade.items(), key=lambda item: len(item[1]))
    imeis = sorted(imeis[:CAMPAIGN_SIZE])
    now = sim.state.now()
    campaign = sim.state.campaigns.schedule(
        account,
        {
            "firmwareName": upgrade.name,
            "firmwareFrom": upgrade.source,
            "firmwareTo": upgrade.target,
            "protocol": upgrade.protocol,
            "startDate": (now + timedelta(days=1)).date().isoformat(),
            "endDate": (now + timedelta(days=2)).date().isoformat(),
            "deviceList": imeis,
        },
    )
    return campaign.id, imeis


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Simulator, AirflowStandalone, str]]:
    sim = Simulator(SimulatorConfig(devices=60)).start()
    home = tmp_path_factory.mktemp("standalone-events")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(EXAMPLE, dags / EXAMPLE.name)
    connections = sim.connections()
    campaign_id, _ = schedule_campaign(
        sim, connections["verizon_thingspace_default"]["extra"]["account_name"]
    )
    env = {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in connections.items()}
    env.update(IOTFLEET_WATCHED_CAMPAIGN_ID=campaign_id, IOTFLEET_WATCH_POLL_SECONDS=str(POLL_SECONDS))
    airflow = AirflowStandalone(home / "airflow-home", env, dags_folder=dags)
    try:
        airflow.start()
        yield sim, airflow, campaign_id
    finally:
        airflow.stop()
        sim.stop()


def campaign_reads(sim: Simulator, campaign_id: str) -> int:
    """How many requests named the campaign (the watcher's polls, the DAG's report)."""
    return sum(campaign_id in record["path"] for record in sim.state.request_log(vendor="verizon"))


def until(airflow: AirflowStandalone, what: str, timeout: float, look: Any) -> Any:
    """Look until ``look()`` is truthy; fail naming ``what`` after ``timeout`` s (a backstop)."""
    deadline = time.monotonic() + timeout
    while not (found := look()):
        airflow.check_alive()
        errors = airflow.query("SELECT filename, stacktrace FROM import_error")
        assert not errors, f"the DAG file does not import: {errors}"
        assert time.monotonic() < deadline, (
            f"{what} did not happen within {timeout:g} s\n{airflow.diagnostics(DAG_ID)}"
        )
        time.sleep(LOOK_INTERVAL)
    return found


@pytest.mark.timeout(STARTUP_TIMEOUT + 2 * RUN_TIMEOUT + 120)
def test_the_campaign_finished_watcher_starts_exactly_one_dag_run_that_reports_the_campaign(
    watched: tuple[Simulator, AirflowStandalone, str],
) -> None:
    sim, airflow, campaign_id = watched
    until(
        airflow,
        "the DAG's parse",
        STARTUP_TIMEOUT,
        lambda: (
            airflow.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", DAG_ID) and airflow.api_ready()
        ),
    )
    airflow.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    # The watcher's trigger, picked up by the triggerer, while the campaign is at work: no run yet.
    until(
        airflow,
        "the triggerer running the watcher",
        RUN_TIMEOUT,
        lambda: airflow.query(
            "SELECT 1 FROM trigger WHERE classpath = ? AND triggerer_id IS NOT NULL", TRIGGER
        ),
    )
    assert airflow.query("SELECT count(*) FROM dag_run WHERE dag_id = ?", DAG_ID) == [(0,)]

    moved = sim.state.advance_past_pending()
    assert moved is not None and moved[1] == 1  # the one campaign at work, now over

    run_id, state = until(
        airflow,
        "a DAG run started by the asset event, and its end",
        RUN_TIMEOUT,
        lambda: next(
            iter(
                airflow.query(
                    "SELECT run_id, state FROM dag_run WHERE dag_id = ? AND state IN ('success', 'failed')",
                    DAG_ID,
                )
            ),
            None,
        ),
    )
    assert state == "success", airflow.diagnostics(DAG_ID, run_id)
    (run_type,) = airflow.query("SELECT run_type FROM dag_run WHERE run_id = ?", run_id)[0]
    assert run_type == "asset_triggered"
    report = airflow.xcoms(DAG_ID, run_id)[("report_campaign", "return_value")]
    held = sim.state.campaigns.summary()[campaign_id]
    assert report == {
        "campaign_id": campaign_id,
        "from_event": True,
        "status": held["status"],
        "devices": CAMPAIGN_SIZE,
        "finished": sum(device["status"] == "Finished" for device in held["devices"].values()),
        "failed": report["failed"],
        "pending": 0,
        "failed_examples": report["failed_examples"],
    }
    assert report["finished"] + report["failed"] == CAMPAIGN_SIZE
    events = airflow.query("SELECT extra FROM asset_event WHERE source_dag_id IS NULL")
    assert [json.loads(extra)["payload"]["campaign_id"] for (extra,) in events] == [campaign_id]

    # One event per occurrence: the campaign stays over, and the watcher, which has reported it, waits
    # instead of polling again (a watcher that returned would be started afresh and poll at once).
    # Three of its poll intervals on the triggerer's own heartbeats, so a busy machine cannot cut the
    # look short; then the same reads of the campaign, the same run and the same event.
    reads = campaign_reads(sim, campaign_id)
    assert reads  # the watcher polled it, the run reported on it
    (since,) = airflow.query("SELECT max(latest_heartbeat) FROM job WHERE job_type = 'TriggererJob'")[0]
    until(
        airflow,
        f"the triggerer's heartbeats over {3 * POLL_SECONDS} s after the event",
        RUN_TIMEOUT,
        lambda: airflow.query(
            "SELECT 1 FROM job WHERE job_type = 'TriggererJob' "
            "AND (julianday(latest_heartbeat) - julianday(?)) * 86400 >= ?",
            since,
            3 * POLL_SECONDS,
        ),
    )
    assert campaign_reads(sim, campaign_id) == reads
    assert airflow.query("SELECT count(*) FROM dag_run WHERE dag_id = ?", DAG_ID) == [(1,)]
    assert len(airflow.query("SELECT id FROM asset_event WHERE source_dag_id IS NULL")) == 1
