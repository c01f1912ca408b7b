# Every target creates or updates .venv itself: a fresh clone needs only python3 and the package index.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The unit and DAG tests also run on the lowest Airflow that pyproject.toml allows, in a second venv.
AIRFLOW_FLOOR := 3.2.0
OLDEST_VENV := .venv-oldest
OLDEST_BIN := $(OLDEST_VENV)/bin
OLDEST_INSTALLED := $(OLDEST_VENV)/.installed
# Airflow 3.2 leaves these uncapped (its constraints file pins them; 3.3 caps fastapi) and their newer
# releases break the in-process execution API that dag.test() runs tasks through: fastapi 0.137+ fails
# to build its schemas (TITerminalStatePayload needs a discriminator field), cadwyn 8+ needs that newer
# fastapi, and svcs 26+ deletes app.state.svcs_registry, which Airflow 3.2 also sets, when a lifespan ends.
OLDEST_PINS := 'fastapi<0.137' 'cadwyn<8' 'svcs<26'

.PHONY: test test-fast test-oldest lint format demo airflow bench simulator docs clean cluster test-cluster

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade uv

# Reinstall when the project's dependencies change.
$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test]'
	touch $@

# `make demo`, `make airflow` and `make simulator` need only the package and its runtime dependencies:
# no test, lint or vendor SDK tools.
RUNTIME_INSTALLED := $(VENV)/.runtime-installed
$(RUNTIME_INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e .
	touch $@

lint: $(INSTALLED)
	$(BIN)/ruff check --output-format concise .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Two pytest workers, a test file each at a time (module fixtures such as a booted Airflow are set up
# once): the slow end-to-end tests mostly wait on Airflow's own processes, so two run side by side.
PYTEST_PARALLEL := -n 2 --dist loadfile

test: lint
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not cluster"

# The quick loop while working, not what CI runs: the same lint, then the tests not marked slow (the
# marker in pyproject.toml), leaving out tests/examples and tests/standalone, whose tests that are
# not marked slow still parse every example DAG or drive scripts/demo.py.
test-fast: lint
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not slow" tests/unit tests/integration tests/sdk tests/dagtest

$(OLDEST_BIN)/python: | $(BIN)/python
	$(BIN)/uv venv --quiet --clear --python $(BIN)/python $(OLDEST_VENV)

$(OLDEST_INSTALLED): pyproject.toml Makefile | $(OLDEST_BIN)/python
	$(BIN)/uv pip install --quiet --python $(OLDEST_BIN)/python -e '.[test]' \
		'apache-airflow==$(AIRFLOW_FLOOR)' $(OLDEST_PINS)
	touch $@

# The unit and DAG tests on Airflow $(AIRFLOW_FLOOR), the floor in pyproject.toml (`make test` runs the
# whole suite on the newest Airflow, in .venv). Not part of `make test`, which would take over ten minutes
# with it on a 2-core machine; .ci/run runs both.
test-oldest: $(OLDEST_INSTALLED)
	$(OLDEST_BIN)/pytest $(PYTEST_PARALLEL) tests/unit tests/dagtest

simulator: $(RUNTIME_INSTALLED)
	$(BIN)/python -m airflow_provider_iotfleet.simulator

# The example DAGs end to end with `airflow dags test`, against the local simulator.
demo: $(RUNTIME_INSTALLED)
	$(BIN)/python scripts/demo.py

# The same DAGs in the UI: `airflow standalone` wired to the simulator and example_dags/.
airflow: $(RUNTIME_INSTALLED)
	$(BIN)/python scripts/demo.py --ui

# Benchmarks against the simulator (benchmarks/): writes benchmarks/results.json and prints the table
# for the README. The bench extra brings the HttpHook baseline (apache-airflow-providers-http).
BENCH_INSTALLED := $(VENV)/.bench-installed
$(BENCH_INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[bench]'
	touch $@

bench: $(BENCH_INSTALLED)
	$(BIN)/python -m benchmarks.run

# The docs site (docs/, Sphinx with MyST Markdown) into docs/_build/html. Warnings are errors and
# every cross-reference must resolve (-n); --keep-going lists them all before failing. The docs
# extra brings Sphinx, myst-parser and the theme; no intersphinx, as CI reaches only the package index.
DOCS_INSTALLED := $(VENV)/.docs-installed
$(DOCS_INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[docs]'
	touch $@

docs: $(DOCS_INSTALLED)
	$(BIN)/sphinx-build -b html -W --keep-going -n -E -q docs docs/_build/html

# PostgreSQL, Redis and Airflow on the CeleryExecutor with two workers (scripts/cluster.py): the cluster
# extra brings the Celery provider and the database drivers; scripts/cluster_deps.sh the Debian packages.
CLUSTER_INSTALLED := $(VENV)/.cluster-installed
$(CLUSTER_INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test,cluster]'
	touch $@

cluster: $(CLUSTER_INSTALLED)
	bash scripts/cluster_deps.sh
	$(BIN)/python scripts/cluster.py

# The tests on that cluster (tests/cluster, marked cluster; `make test` leaves them out).
test-cluster: $(INSTALLED) $(CLUSTER_INSTALLED)
	bash scripts/cluster_deps.sh
	$(BIN)/pytest -m cluster -p no:cacheprovider -s tests/cluster

clean:
	rm -rf $(VENV) $(OLDEST_VENV) docs/_build .pytest_cache .mypy_cache .ruff_cache *.egg-info
