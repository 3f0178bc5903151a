# `make run` and `make test` create .venv when missing and install the project into it
# with the tested versions pinned by constraints.txt.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run once test test-fast test-faults reliability lint bench constraints clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The demo: synthetic data, a trained champion, then the whole stack as local processes
# with drifting traffic (configs/monitoring/demo.yaml). Ctrl-C stops every process.
DEMO_CONFIG := configs/monitoring/demo.yaml
DEMO_SERVICES := mlflow optuna-dashboard api exporter ui sinks prometheus alertmanager simulator

run: $(STAMP)
	$(BIN)/churn-monitor setup --config $(DEMO_CONFIG)
	$(BIN)/churn-monitor train --if-no-champion --trials 10 --shuffle Contract tenure TotalCharges --config $(DEMO_CONFIG)
	$(BIN)/churn-monitor challenger better --if-no-challenger --trials 10 --config $(DEMO_CONFIG)
	$(BIN)/churn-monitor up --config $(DEMO_CONFIG) --services $(DEMO_SERVICES)

# One monitoring pass over the demo's drifted batch file, printed (no servers).
once: $(STAMP)
	$(BIN)/churn-monitor setup
	$(BIN)/churn-monitor train --if-no-champion --trials 10
	$(BIN)/churn-monitor run --current data/demo/current.csv

# Three workers, one test file each at a time (module fixtures train models once per
# file): most tests wait on the processes they start, so even on 2 cores a third worker
# shortens the suite.
test: $(STAMP)
	$(BIN)/python -m pytest --ignore=tests/faults -n 3 --dist loadfile --durations=15

# Unit tests only: no process started, no binary needed; under a minute.
test-fast: $(STAMP)
	$(BIN)/python -m pytest --ignore=tests/faults -m "not integration and not slow" -q

# The fault-injection, load, bad-input and security suite (tests/faults): real
# processes killed, restarted and loaded; slower, so kept out of `make test`. CI runs both.
test-faults: $(STAMP)
	$(BIN)/python -m pytest tests/faults -n 2 --dist loadfile --durations=10

# Re-measure the reliability suite and regenerate the table in docs/reliability.md.
reliability: $(STAMP)
	rm -f reports/reliability.jsonl
	CHURN_RELIABILITY_RESULTS=reports/reliability.jsonl $(BIN)/python -m pytest tests/faults
	$(BIN)/python -m tests.faults.report reports/reliability.jsonl docs/reliability.md

# Style, types and the import rules of docs/architecture.md (CI runs it before the tests).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/drift_speed.py
	$(BIN)/python benchmarks/multivariate_speed.py

# Re-pin after changing dependencies: the versions the suite passed with.
constraints: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^churn-monitor' > constraints.txt

clean:
	rm -rf $(VENV) data reports logs mlruns
