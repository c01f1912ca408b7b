"""Fixtures of the example DAG tests (the harness: ``tests/example_runs.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.example_runs import ExampleRuns, forget_example_modules, run_every_example


@pytest.fixture(scope="session", autouse=True)
def inventory_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``IOTFLEET_INVENTORY_ROOT`` for the session, as a ``file://`` URI of a temporary folder."""
    root = f"file://{tmp_path_factory.mktemp('inventory')}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IOTFLEET_INVENTORY_ROOT", root)
        forget_example_modules()
        yield root
    forget_example_modules()


@pytest.fixture(scope="session")
def example_runs(airflow_db: None, inventory_root: str) -> ExampleRuns:
    """The session's one run of every example DAG (:func:`tests.example_runs.run_every_example`):
    ``test_example_dags.py`` asserts on what each run did, ``test_secrets_scan.py`` looks for
    secrets in everything the runs showed. ``make test`` runs both files on one worker, so that the
    DAGs run once (see ``pytest_xdist_make_scheduler`` in tests/conftest.py)."""
    return run_every_example()
