"""Every Python snippet of the README and the docs pages compiles, and runs as a user would run it:
DAG snippets build their DAGs, and write operators a snippet creates run against the simulator."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk import DAG, BaseOperator
from airflow.sdk.definitions._internal.contextmanager import DagContext

from airflow_provider_iotfleet.operators.base import IoTFleetWriteOperator
from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.fleet import ONLINE
from tests.fakes import operator_context
from tests.simulator_harness import SimulatorFactory, run_task
from tests.snippets import Snippet, python_snippets

SNIPPETS = python_snippets()
RUN = [snippet for snippet in SNIPPETS if snippet.not_tested is None]

#: Snippets known to fail, by a line of their code, with why and the error they raise. Strict: once
#: a snippet passes, its entry must go. None fails today.
KNOWN_FAILURES: dict[str, tuple[str, type[Exception]]] = {}

#: The firmware the upgrade snippets are for, and the make and model that offers it.
UPGRADE_MODEL, UPGRADE_FROM = "GM01Q", "SR1.2.0.0-10657"


def _marks(snippet: Snippet) -> list[pytest.MarkDecorator]:
    known = [failure for line, failure in KNOWN_FAILURES.items() if line in snippet.code]
    return [pytest.mark.xfail(reason=why, raises=error, strict=True) for why, error in known[:1]]


def test_every_python_block_compiles() -> None:
    broken = []
    for snippet in SNIPPETS:
        try:
            compile(snippet.code, snippet.name, "exec")
        except SyntaxError as error:
            broken.append(f"{snippet.name}: {error}")
    assert not broken, "\n".join(broken)


def test_opted_out_blocks_say_why() -> None:
    opted_out = {snippet.name: snippet.not_tested for snippet in SNIPPETS if snippet.not_tested is not None}
    print("\n".join(f"not tested: {name}: {reason}" for name, reason in opted_out.items()))
    assert all(opted_out.values()), f"an opt-out without a reason: {opted_out}"


@pytest.fixture
def snippet_simulator(start_simulator: SimulatorFactory) -> Iterator[Simulator]:
    """A simulator whose four default connections the snippet's hooks and operators reach; the
    environment is restored afterwards (a snippet may add to it)."""
    environment = dict(os.environ)
    yield start_simulator(devices=200)
    os.environ.clear()
    os.environ.update(environment)


def _imeis_for_upgrade(simulator: Simulator) -> list[str]:
    """Online LWM2M devices of the upgrade's make and model at its ``from`` firmware."""
    fleet = simulator.state.fleet
    devices = (fleet.device(index) for index in range(simulator.config.devices))
    return [
        device["imei"]
        for device in devices
        if device["model"] == UPGRADE_MODEL
        and device["firmware"] == UPGRADE_FROM
        and device["protocol"] == "LWM2M"
        and device["online_status"] == ONLINE
    ][:5]


def _run_snippet(code: str, name: str) -> tuple[dict[str, Any], list[Any]]:
    """Exec ``code`` in a fresh namespace; return the namespace and the DAGs it built."""
    built: list[Any] = []
    pop = DagContext.pop

    def recording_pop() -> Any:
        dag = pop()
        if dag is not None:
            built.append(dag)
        return dag

    namespace: dict[str, Any] = {"__name__": "snippet"}
    # Tasks a snippet creates outside a DAG of its own land in this one, as in a user's DAG file.
    with pytest.MonkeyPatch.context() as patch, DAG(dag_id="snippet", schedule=None) as host:
        patch.setattr(DagContext, "pop", staticmethod(recording_pop))
        exec(compile(code, name, "exec"), namespace)  # noqa: S102 - the docs' own snippets
    return namespace, [dag for dag in built if dag is not host]


@pytest.mark.slow
@pytest.mark.parametrize("snippet", [pytest.param(s, id=s.name, marks=_marks(s)) for s in RUN])
def test_snippet_runs(snippet: Snippet, snippet_simulator: Simulator) -> None:
    namespace, dags = _run_snippet(snippet.code, snippet.name)

    for dag in dags:
        assert dag.task_dict, f"{snippet.name}: DAG {dag.dag_id} has no tasks"
    operators = [value for value in namespace.values() if isinstance(value, BaseOperator)]
    writes = [operator for operator in operators if isinstance(operator, IoTFleetWriteOperator)]
    for operator in writes:
        context: dict[str, Any] = {
            **operator_context(operator.task_id),
            "params": {"imeis": _imeis_for_upgrade(snippet_simulator)},
        }
        operator.render_template_fields(context)
        outcome, succeeded = run_task(operator, context)
        assert succeeded, f"{snippet.name}: {operator.task_id} failed: {outcome['errors']}"
        assert outcome["requested"] > 0, f"{snippet.name}: {operator.task_id} was given no devices"
        assert outcome["counts"]["scheduled"] + outcome["counts"]["succeeded"] == outcome["requested"]
