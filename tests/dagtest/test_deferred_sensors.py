"""A deferrable sensor under ``dag.test()``, which runs its trigger in-process: a wait over more
devices than travel in the trigger's kwargs is read back from the sensor's XCom through the Task SDK."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import OFFLINE, ONLINE, ROMA_ID_BASE
from airflow_provider_iotfleet.triggers.handover import INLINE_DEVICES, WATCH_XCOM_KEY
from tests.dag_runs import FLEET_SIZE, RunDag
from tests.dagtest.dags import iotfleet_dagtest_deferred_sensors as deferred

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

#: Devices waited on: more than travel inline in the trigger's kwargs.
WAITED = 150
#: A valid ROMA id the simulated instance does not have.
UNKNOWN = ROMA_ID_BASE + 999_999


def _listings_for_online(simulator: Simulator) -> int:
    """How many ROMA listings filtered on ``online`` the simulator answered."""
    return sum(
        1
        for request in simulator.state.request_log("huawei")
        if request["path"].endswith("/devices") and "online_status=1" in (request["query"] or "")
    )


@pytest.fixture
def reconnect_once_the_trigger_polls(simulator: Simulator) -> Iterator[list[int]]:
    """Take ``WAITED`` devices offline; once the trigger polls (the sensor's first check is one
    listing, the trigger's first poll another), bring them back online."""
    indices = list(range(WAITED))
    assert WAITED > INLINE_DEVICES and WAITED < FLEET_SIZE
    for index in indices:
        simulator.state.fleet.update(index, {"online_status": OFFLINE})
    stop = threading.Event()

    def reconnect() -> None:
        while not stop.wait(0.05):
            if _listings_for_online(simulator) >= 2:
                for index in indices:
                    simulator.state.fleet.update(index, {"online_status": ONLINE})
                return

    thread = threading.Thread(target=reconnect, name="reconnect", daemon=True)
    thread.start()
    try:
        yield indices
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_deferred_wait_over_many_devices_reads_them_back_from_xcom_in_the_inline_trigger(
    run_dag: RunDag, simulator: Simulator, reconnect_once_the_trigger_polls: list[int]
) -> None:
    ids = [ROMA_ID_BASE + index for index in reconnect_once_the_trigger_polls]

    result = run_dag(
        deferred.DAG_ID,
        logical_date=datetime(2026, 3, 17, 6, 30, tzinfo=UTC),
        run_conf={"roma_ids": [*ids, UNKNOWN]},
    )

    assert result.states == {"wait_online": "success"}
    # The sensor handed its devices over by reference: they are in its own XCom.
    handed = result.xcom("wait_online", WATCH_XCOM_KEY)
    assert handed == {"ids": [*ids, UNKNOWN], "seen": [], "unreachable": []}
    # The trigger waited on exactly them: every device matched, and the unknown one, absent from
    # the listing ("not online"), unreachable once few enough devices were left to read one by one.
    assert result.xcom("wait_online") == {
        "matched": ids,
        "statuses": {**{str(i): "online" for i in ids}, str(UNKNOWN): "not online"},
        "unreachable": {str(UNKNOWN): "not_found"},
    }
    assert _listings_for_online(simulator) >= 3  # the first check, then the trigger's polls
