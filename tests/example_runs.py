"""The example DAGs of ``example_dags/``, parsed and run the way Airflow does, against simulators.

The approach is the dag-run harness's (``tests/dag_runs.py``): the session's metadata DB, the
``dags-folder`` bundle pointed at ``example_dags/``, ``dag.test()`` in-process, and what a run left
read back through the ORM. Differences:

* ``IOTFLEET_INVENTORY_ROOT`` points at a session temporary directory before any example file is
  parsed (the ``inventory_root`` fixture): the inventory DAG reads it at import time, and the
  enrichment DAG imports the inventory module, which Python then caches for the whole session.
* DAG files are parsed with ``BundleDagBag`` (a ``DagBag`` that puts the bundle folder on
  ``sys.path``), as the dag processor, ``airflow dags test`` and ``dag.test()`` itself do: the
  enrichment DAG imports its sibling ``iotfleet_firmware_inventory``, which only resolves so.
  :func:`forget_example_modules` first drops cached example modules, as a fresh parsing process
  would not have them.
* Simulators here set the Control Center connection's rate limit like ``scripts/demo.py`` does, so
  that reading every SIM takes seconds.

:func:`run_every_example` is the session's one run of the example DAGs (the ``example_runs``
fixture): every DAG the folder defines, once, as its :data:`RECIPES` entry says, with distinctive
credentials and under the secrets scan's trap. ``test_example_dags.py`` asserts on what each run did,
``test_secrets_scan.py`` looks for secrets in everything the runs showed.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig
from airflow_provider_iotfleet.simulator.campaigns import upgrade_for
from airflow_provider_iotfleet.simulator.fleet import ONLINE, ROMA_ID_BASE, iccid_of, imei_of
from tests.dag_runs import BUNDLE_NAME, DagRunResult, bundle_environment, read_dag_run
from tests.fakes import load_script
from tests.secrets_scan import Book, IssuedTokens, Ran, Trap, env_name, watching_dag_test

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DAGS = ROOT / "example_dags"
#: Each example file and the DAG ids it must define.
EXAMPLE_FILES = {
    "iotfleet_firmware_inventory.py": {"iotfleet_firmware_inventory"},
    "iotfleet_cellular_enrichment.py": {"iotfleet_cellular_enrichment"},
    "iotfleet_maintenance_window.py": {"iotfleet_maintenance_window"},
    "iotfleet_fleet_scale_out.py": {"iotfleet_fleet_scale_out"},
    "iotfleet_planned_sim_change.py": {"iotfleet_planned_sim_change"},
    "iotfleet_campaign_finished_event.py": {"iotfleet_campaign_finished_event"},
}
EXAMPLE_DAG_IDS = sorted(dag_id for ids in EXAMPLE_FILES.values() for dag_id in ids)
INVENTORY = "iotfleet_firmware_inventory"
ENRICHMENT = "iotfleet_cellular_enrichment"
MAINTENANCE = "iotfleet_maintenance_window"
SCALE_OUT = "iotfleet_fleet_scale_out"
PLANNED = "iotfleet_planned_sim_change"
CAMPAIGN_FINISHED = "iotfleet_campaign_finished_event"
#: Devices in the simulated fleet: three ThingSpace pages, and three mapped SIM batches that do
#: not line up with the pages.
FLEET_SIZE = 150
VERIZON_PAGE_SIZE = 50
SIMS_PER_BATCH = 60
#: SIMs the planned change's session run takes (its ``sim_count``): the whole fleet.
PLANNED_SIMS = FLEET_SIZE
#: The label the scale-out puts on every SIM.
SCALE_OUT_LABEL = "wave-7"
#: The inventory's logical date; the enrichment runs an hour later.
INVENTORY_DATE = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
#: The ThingSpace connection's ``console_url`` in the session's runs.
THINGSPACE_CONSOLE_URL = "https://thingspace.example/campaigns/{campaign_id}?account={account_name}"
#: How often the clock advancer looks at Control Center's scheduled changes, s.
ADVANCER_POLL_SECONDS = 0.2

#: What a ``dag.test()`` run of an example left in the metadata DB (``tries`` included).
ExampleRun = DagRunResult


def forget_example_modules() -> None:
    """Drop the example DAG modules Python has cached, so the next parse imports them afresh."""
    names = {Path(name).stem for name in EXAMPLE_FILES}
    for module in list(sys.modules):
        if module in names or any(module.endswith(f"_{name}") for name in names):
            del sys.modules[module]


def parse(dag_folder: Path, bundle_path: Path = EXAMPLE_DAGS) -> Any:
    """Parse ``dag_folder`` (a folder or one file) as the dag processor would, in a fresh state;
    return the ``BundleDagBag``."""
    from airflow.dag_processing.dagbag import BundleDagBag

    forget_example_modules()
    path = list(sys.path)
    try:
        return BundleDagBag(dag_folder=str(dag_folder), bundle_path=bundle_path, bundle_name=BUNDLE_NAME)
    finally:
        sys.path[:] = path  # BundleDagBag appends the bundle for good; the parse is over


@contextmanager
def running_simulator() -> Iterator[Simulator]:
    """A simulator of ``FLEET_SIZE`` devices, its connections in the environment meanwhile."""
    sim = Simulator(SimulatorConfig(devices=FLEET_SIZE, verizon_page_size=VERIZON_PAGE_SIZE)).start()
    try:
        connections = sim.connections()
        # As scripts/demo.py: the simulator enforces no rate limit, so don't wait 5 requests/s.
        connections["cisco_control_center_default"]["extra"] = {
            "requests_per_second": 100,
            "max_concurrency": 4,
        }
        with pytest.MonkeyPatch.context() as mp:
            for conn_id, conn in connections.items():
                mp.setenv(env_name(conn_id), json.dumps(conn))
            yield sim
    finally:
        sim.stop()


def load_dag(dag_id: str, folder: Path = EXAMPLE_DAGS) -> Any:
    """The DAG ``dag_id`` of the bundle ``folder``, freshly parsed; fails the test if it is not there."""
    bag = parse(folder, bundle_path=folder)
    dag = bag.get_dag(dag_id)
    assert dag is not None, f"{dag_id} is not in {folder}: {sorted(bag.dag_ids)}, {bag.import_errors}"
    return dag


def run_example(
    dag_id: str,
    *,
    logical_date: datetime,
    run_conf: dict[str, Any] | None = None,
    folder: Path = EXAMPLE_DAGS,
) -> ExampleRun:
    """Run the DAG ``dag_id`` of ``folder`` once with ``dag.test()``; return what it left in the
    metadata DB.

    Needs the metadata DB (the ``airflow_db`` fixture) and ``folder`` as the bundle
    (:func:`tests.dag_runs.bundle_environment`). Retries keep their number but lose their delay:
    ``dag.test()`` sleeps a retry delay out (5 minutes in the example DAGs), so a failing task then
    fails the run in seconds instead of stalling the test.
    """
    dag = load_dag(dag_id, folder)
    for task in dag.tasks:
        task.retry_delay = timedelta(0)
    return read_dag_run(dag.test(logical_date=logical_date, run_conf=run_conf))


class ClockAdvancer:
    """Move the simulator's clock past what a maintenance window waits for, as ``scripts/demo.py`` does.

    A background thread asks the simulator (``state.advance_past_pending``) to move its clock a
    minute past the last device turn of any running firmware campaign, and past Control Center's
    scheduled changes once at least ``expected`` of them are held, so that the sensors waiting on
    them see them done.
    """

    def __init__(self, simulator: Simulator, expected: int) -> None:
        self.simulator = simulator
        self.expected = expected
        #: (scheduled changes, campaigns at work, seconds moved), each time the clock moved.
        self.advanced: list[tuple[int, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="iotfleet-clock-advancer", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(ADVANCER_POLL_SECONDS):
            moved = self.simulator.state.advance_past_pending(min_scheduled=self.expected)
            if moved is not None:
                self.advanced.append(moved)

    def __enter__(self) -> ClockAdvancer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def online_devices(sim: Simulator) -> list[int]:
    """The indices of the fleet's devices that are online now."""
    fleet = sim.state.fleet
    return [i for i in range(FLEET_SIZE) if fleet.device(i)["online_status"] == ONLINE]


def maintenance_conf(sim: Simulator) -> dict[str, Any]:
    """Devices the window can act on, as the DAG's params: disjoint sets of online devices, the
    firmware ones of one make, model and firmware that the simulator's catalogue can upgrade."""
    fleet = sim.state.fleet
    online = online_devices(sim)
    roma = online[:3]
    activated = [i for i in online[3:] if fleet.device(i)["status"] == "ACTIVATED"][:4]
    rest = [i for i in online[3:] if i not in activated]
    upgrade = next(u for i in rest if (u := upgrade_for(fleet.device(i))) is not None)
    same_firmware = [i for i in rest if upgrade_for(fleet.device(i)) == upgrade][:3]
    assert (len(roma), len(activated), len(same_firmware)) == (3, 4, 3)
    return {
        "roma_device_ids": [ROMA_ID_BASE + i for i in roma],
        "iccids": [iccid_of(i) for i in activated],
        "sim_status": "DEACTIVATED",
        "effective_in_minutes": 90,
        "imeis": [imei_of(i) for i in same_firmware],
        "firmware_name": upgrade.name,
    }


# --- The session's one run of every example DAG ----------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How the session's run takes one example DAG (a DAG without a recipe runs with its default
    params, now, on a simulator of its own)."""

    #: The run's logical date; ``None``: now.
    logical_date: datetime | None = None
    #: The run's params, from the simulator just before the run; ``None``: the DAG's defaults.
    conf: Callable[[Simulator], dict[str, Any]] | None = None
    #: How many Control Center changes the run schedules, from its params: the simulated clock is
    #: then moved past them once they are all held, and past any firmware campaign at work meanwhile.
    scheduled_changes: Callable[[dict[str, Any]], int] | None = None
    #: Run on the simulator of this DAG, which ran before (a DAG reading what another one wrote).
    simulator_of: str | None = None
    #: The option chosen for every approval step of the run (``scripts/approval.py``, as the UI's
    #: API answers it); ``None``: the DAG asks for none.
    approval: str | None = None


RECIPES: dict[str, Recipe] = {
    INVENTORY: Recipe(logical_date=INVENTORY_DATE),
    ENRICHMENT: Recipe(
        logical_date=INVENTORY_DATE + timedelta(hours=1),
        conf=lambda sim: {"sims_per_batch": SIMS_PER_BATCH},
        simulator_of=INVENTORY,
    ),
    MAINTENANCE: Recipe(
        logical_date=datetime(2026, 11, 3, 6, 0, tzinfo=UTC),
        conf=maintenance_conf,
        scheduled_changes=lambda params: len(params["iccids"]),
    ),
    SCALE_OUT: Recipe(
        logical_date=datetime(2026, 11, 4, 6, 0, tzinfo=UTC),
        conf=lambda sim: {"sims_per_batch": SIMS_PER_BATCH, "label": SCALE_OUT_LABEL},
    ),
    PLANNED: Recipe(
        logical_date=datetime(2026, 11, 5, 6, 0, tzinfo=UTC),
        conf=lambda sim: {"sim_count": PLANNED_SIMS, "sim_status": "DEACTIVATED"},
        approval="Approve",
    ),
    # Asset-scheduled, so it runs after the maintenance window, on its simulator: without an asset
    # event (dag.test() runs no watcher), it reports on the window's campaign, named in its params.
    CAMPAIGN_FINISHED: Recipe(
        logical_date=datetime(2026, 11, 3, 12, 0, tzinfo=UTC),
        conf=lambda sim: {"campaign_id": next(iter(sim.state.campaigns.summary()))},
        simulator_of=MAINTENANCE,
    ),
}


@dataclass
class ExampleDagRun:
    """One example DAG's run, and its simulator around it."""

    result: ExampleRun
    simulator: Simulator
    #: The params the run was given (``{}``: the DAG's defaults).
    conf: dict[str, Any]
    #: Wall-clock time just before and just after the run.
    started: datetime
    finished: datetime
    #: The simulator's changed devices (its snapshot's ``changed``) just before the run.
    changed_before: dict[str, Any]
    #: Each move of the simulated clock during the run, as :attr:`ClockAdvancer.advanced` lists them.
    clock_moves: list[tuple[int, int, float]] = field(default_factory=list)
    #: The approvals answered during the run (``scripts/approval.py``'s ``Answered``).
    answered: list[Any] = field(default_factory=list)


@dataclass
class ExampleRuns:
    """The session's run of every example DAG: each DAG's run, and what the secrets scan needs."""

    #: The credentials every simulator accepted (and their wrong twins, which nothing used).
    book: Book
    #: Every token the simulators issued.
    tokens: IssuedTokens
    #: Everything logged and printed during the runs.
    trap: Trap
    #: Each task try and trigger ``dag.test()`` ran.
    ran: Ran
    #: By DAG id, in the order they ran.
    runs: dict[str, ExampleDagRun]

    @property
    def simulators(self) -> list[Simulator]:
        """Every simulator of the runs, once each."""
        return list({id(run.simulator): run.simulator for run in self.runs.values()}.values())

    def unused_seeds(self) -> Iterator[int]:
        """Simulator seeds that none of the runs' simulators has (see :func:`run_every_example`)."""
        return itertools.count(max(sim.config.seed for sim in self.simulators) + 1)


def run_every_example() -> ExampleRuns:
    """Run every DAG of ``example_dags/`` once with ``dag.test()``, those scheduled on assets after
    the others, each as :data:`RECIPES` says, against simulators that accept only a freshly drawn
    :class:`Book` of distinctive credentials, with every issued token recorded, under a
    :class:`Trap`, and each task try and trigger kept; the simulators are stopped at the end.

    Each simulator has a seed of its own: simulators of one seed draw the same random tokens and
    request ids, and a request id of one that a log shows would read as a token of another.

    Needs the metadata DB (the ``airflow_db`` fixture) and ``IOTFLEET_INVENTORY_ROOT`` (the
    ``inventory_root`` fixture).
    """
    bag = parse(EXAMPLE_DAGS)
    assert bag.dags and not bag.import_errors, bag.import_errors
    dags = sorted(
        bag.dags.values(), key=lambda d: (getattr(d.timetable, "asset_condition", None) is not None, d.dag_id)
    )
    book, tokens, ran = Book.draw(), IssuedTokens(), Ran()
    config = SimulatorConfig(
        devices=FLEET_SIZE, verizon_page_size=VERIZON_PAGE_SIZE, credentials=book.credentials
    )
    seeds = itertools.count(config.seed)
    runs: dict[str, ExampleDagRun] = {}
    with ExitStack() as simulators, Trap() as trap, watching_dag_test(ran):
        for dag in dags:
            recipe = RECIPES.get(dag.dag_id, Recipe())
            if recipe.simulator_of is not None:
                sim = runs[recipe.simulator_of].simulator
            else:
                sim = Simulator(replace(config, seed=next(seeds)))
                tokens.watch(sim.state)
                simulators.enter_context(sim)
            runs[dag.dag_id] = _run_with_recipe(dag, recipe, sim, book)
    return ExampleRuns(book, tokens, trap, ran, runs)


def _run_with_recipe(dag: Any, recipe: Recipe, sim: Simulator, book: Book) -> ExampleDagRun:
    """Run ``dag`` once against ``sim``, its connections on ``book``'s credentials, as ``recipe`` says."""
    conf = recipe.conf(sim) if recipe.conf is not None else {}
    changed_before = sim.state.snapshot()["changed"]
    with pytest.MonkeyPatch.context() as mp:
        connections = book.default_connections(sim)
        # A console link template of one's own, followed through to the link the UI shows.
        connections["verizon_thingspace_default"]["extra"]["console_url"] = THINGSPACE_CONSOLE_URL
        for conn_id, conn in connections.items():
            mp.setenv(env_name(conn_id), json.dumps(conn))
        bundle_environment(mp, EXAMPLE_DAGS)
        advancer = None
        if recipe.scheduled_changes is not None:
            advancer = ClockAdvancer(sim, expected=recipe.scheduled_changes(conf or dag.params.validate()))
        answerer = load_script("approval").Answerer(dag.dag_id, recipe.approval) if recipe.approval else None
        started = datetime.now(UTC)
        with advancer if advancer is not None else nullcontext(), answerer or nullcontext():
            result = run_example(
                dag.dag_id, logical_date=recipe.logical_date or started, run_conf=conf or None
            )
        finished = datetime.now(UTC)
    return ExampleDagRun(
        result,
        sim,
        conf,
        started,
        finished,
        changed_before,
        advancer.advanced if advancer else [],
        answerer.answered if answerer else [],
    )
