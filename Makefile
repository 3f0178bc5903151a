# `make run` and `make test` create .venv when missing and install the project into it
# with the tested versions pinned by constraints.txt.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench constraints clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/churn-monitor setup
	$(BIN)/churn-monitor train --if-no-champion --trials 10
	$(BIN)/churn-monitor run --current data/demo/current.csv

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/drift_speed.py

# Re-pin after changing dependencies: the versions the suite passed with.
constraints: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^churn-monitor' > constraints.txt

clean:
	rm -rf $(VENV) data reports logs mlruns
