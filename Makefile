# jetzero: set-up and the two quick-start commands. Needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch, pinned: any other version downloads a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Run the unified loop in the foreground on the embedded nats-server (Ctrl-C stops it).
run: $(STAMP)
	$(BIN)/python scripts/unified_ai_loop.py --foreground --verbose

# The whole test suite (unit, integration against a real nats-server, end to end).
test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy engine streams projections handlers scripts

bench: $(STAMP)
	$(BIN)/python bench/event_store.py
	$(BIN)/python bench/selfplay.py

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis
