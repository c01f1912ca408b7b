# Every target creates or updates .venv itself: a fresh clone needs only python3 and the package index.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: test lint format demo airflow bench simulator clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade uv

# Reinstall when the project's dependencies change.
$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test]'
	touch $@

lint: $(INSTALLED)
	$(BIN)/ruff check --output-format concise .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest

simulator: $(INSTALLED)
	$(BIN)/python -m airflow_provider_iotfleet.simulator

# The example DAGs end to end with `airflow dags test`, against the local simulator.
demo: $(INSTALLED)
	$(BIN)/python scripts/demo.py

# The same DAGs in the UI: `airflow standalone` wired to the simulator and example_dags/.
airflow: $(INSTALLED)
	$(BIN)/python scripts/demo.py --ui

bench:
	@echo "make bench is coming with the benchmarks (see the open issues)."

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
