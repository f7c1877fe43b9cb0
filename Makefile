# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench bench-quick bench-interfaces clean

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

# Under 2 minutes, before and after every hot-path change (not part of `make test`): both
# backends against uvicorn, GET / POST / close, 2 interleaved rounds, ratios and CPU µs/req.
# Writes bench/results/quick-<timestamp>.json and latest-quick.md/.png.
bench-quick: $(BENCH_STAMP)
	bench/run.sh --label quick --servers zzz-native,zzz-eventloop,uvicorn \
		--scenarios plaintext,echo,close --rounds 2 --duration 2 --warmup 1 \
		--compare zzz-native/uvicorn,zzz-eventloop/uvicorn

# Issue 9: the same raw ASGI app (zzz eventloop/native, uvicorn, granian, hypercorn) and raw
# WSGI app (zzz native/eventloop, gunicorn gthread, waitress, granian) in one interleaved run.
bench-interfaces: $(BENCH_STAMP)
	bench/run.sh --label interfaces --servers zzz-eventloop-asgi,zzz-native-asgi,uvicorn,granian,hypercorn,zzz-native-wsgi,zzz-eventloop-wsgi,gunicorn,waitress,granian-wsgi

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
