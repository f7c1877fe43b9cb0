# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench soak soak-short clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m zzz run examples.hello:app --host 127.0.0.1 --port 8888

lint: $(STAMP)
	$(PY) -m ruff check zzz tests examples bench

typecheck: $(STAMP)
	$(PY) -m mypy --strict zzz

pytest: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck pytest

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	bench/run.sh

# Mixed load on each backend watching RSS, fds and threads (bench/soak.py; SOAK_S
# seconds a backend, 600 by default); JSON + PNG in bench/results/ (not committed).
SOAK_S ?= 600
soak: $(BENCH_STAMP)
	SOAK_S=$(SOAK_S) $(PY) bench/soak.py

soak-short: $(BENCH_STAMP)
	SOAK_S=60 $(PY) bench/soak.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
