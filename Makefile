# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench clean deploy-deps

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

# The `deploy` tests put Debian's nginx in front of zzz. Installed when possible (root
# with apt-get); otherwise those tests skip and say why. Never fails the build itself.
deploy-deps:
	@if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get install -y -q nginx-light >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q nginx-light >/dev/null 2>&1)) \
		|| echo "deploy-deps: could not install nginx-light; the deploy tests will skip"; \
	else echo "deploy-deps: not root or no apt-get; the nginx deploy test will skip"; fi

test: lint typecheck deploy-deps pytest

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	bench/run.sh

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
