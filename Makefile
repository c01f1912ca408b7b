# Every target creates or updates .venv itself: a fresh clone needs only python3 and the package index.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: test lint format demo bench simulator clean

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

demo:
	@echo "make demo is coming: it needs the vendor simulator and the example DAGs (see the open issues)."

bench:
	@echo "make bench is coming with the benchmarks (see the open issues)."

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
