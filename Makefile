# The two README commands: `make demo` (set up + run the demo) and `make test` (set up + run the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-slow test-wheel lint bench
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,ray]'
	touch $@

demo: setup
	$(VENV)/bin/fibroclass demo --out demo_out

test: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

# Slow tests (multi-process DDP, kill -9 resume, long fuzz); CI runs them too (.ci/run).
test-slow: setup
	$(PY) -m pytest -q -m slow || [ $$? -eq 5 ]

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# The installed tool, as a new user gets it: build the wheel, install it in a fresh venv, then run
# `fibroclass --version`, a config by name and the whole demo from an empty folder (CI runs this).
test-wheel: setup
	bash scripts/check_wheel.sh
