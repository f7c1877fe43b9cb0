# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench bench-quick bench-interfaces soak soak-short clean fuzz test-matrix test-versions autobahn autobahn-quick deploy-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m zzz run examples.hello:app --host 127.0.0.1 --port 8888

lint: $(STAMP)
	$(PY) -m ruff check zzz tests examples bench noxfile.py

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

test: lint typecheck deploy-deps pytest test-versions

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	bench/run.sh

# Long fuzzing: the hypothesis properties with FUZZ_EXAMPLES examples each, then
# atheris on the engine and the WebSocket frame path for FUZZ_S seconds each. New
# corpus entries go to .fuzz/<target>; a crash is saved as .fuzz/crashes/<target>-crash-*
# (copy it into tests/fuzz/corpus/<target>/ to keep it as a regression test).
FUZZ_S ?= 300
FUZZ_EXAMPLES ?= 20000

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/fuzz -k "not atheris"
	mkdir -p .fuzz/engine .fuzz/ws .fuzz/crashes
	$(PY) tests/fuzz/atheris_fuzz.py engine -max_total_time=$(FUZZ_S) -artifact_prefix=.fuzz/crashes/engine- .fuzz/engine tests/fuzz/corpus/engine
	$(PY) tests/fuzz/atheris_fuzz.py ws -max_total_time=$(FUZZ_S) -artifact_prefix=.fuzz/crashes/ws- .fuzz/ws tests/fuzz/corpus/ws

# The suite on every supported Python (nox; pyenv's 3.11, 3.12, 3.13 put on PATH).
# NOX_SESSIONS=unit for the unit and fuzz suites only.
PYENV_BINS := $(wildcard $(HOME)/.pyenv/versions/3.11.*/bin $(HOME)/.pyenv/versions/3.12.*/bin $(HOME)/.pyenv/versions/3.13.*/bin)
empty :=
space := $(empty) $(empty)
NOX_SESSIONS ?= tests

test-matrix: $(STAMP)
	PATH="$(subst $(space),:,$(PYENV_BINS)):$$PATH" $(PY) -m nox -s $(NOX_SESSIONS)

# Part of `make test` (so CI covers every version): the unit and fuzz suites on the
# Pythons besides .venv's, both at once (nox `unit-X.Y`, each in a .nox virtualenv
# installed once with the small `unit` extra), after the main suite so their CPU
# does not disturb its timing-sensitive tests. An interpreter that is not installed
# is skipped with a line saying so; a failure prints that session's log and fails.
EXTRA_PYTHONS ?= 3.12 3.13

test-versions: $(STAMP)
	@export PATH="$(subst $(space),:,$(PYENV_BINS)):$$PATH"; mkdir -p .nox; \
	started=$$(date +%s); jobs=""; \
	for v in $(EXTRA_PYTHONS); do \
		if python$$v -c "" >/dev/null 2>&1; then \
			$(PY) -m nox -s unit-$$v >.nox/unit-$$v.log 2>&1 & jobs="$$jobs $$!:$$v"; \
		else echo "test-versions: skipped: python$$v not found"; fi; \
	done; \
	failed=0; for job in $$jobs; do v=$${job#*:}; \
		if wait $${job%%:*}; then \
			echo "test-versions: Python $$v: $$(grep -E '[0-9]+ passed' .nox/unit-$$v.log | tail -n 1)"; \
		else cat .nox/unit-$$v.log; echo "test-versions: Python $$v: FAILED"; failed=1; fi; \
	done; \
	echo "test-versions: $$(( $$(date +%s) - started )) s"; exit $$failed

# Autobahn|Testsuite's fuzzing client against both backends (Python 2.7 from pyenv,
# installed under .autobahn/). All cases take about 10 minutes a backend;
# autobahn-quick leaves out 12.x/13.x (under a minute a backend).
AB_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/2.7.*/bin/python))
AB_DIR := .autobahn
AB_SITE := $(AB_DIR)/py27/lib/python2.7/site-packages
AB_STAMP := $(AB_DIR)/.installed

$(AB_STAMP): tests/autobahn/requirements-py27.txt
	$(AB_PYTHON) -m pip install -q --prefix $(AB_DIR)/py27 setuptools==44.0.0
	PYTHONPATH=$(AB_SITE) $(AB_PYTHON) -m pip install -q --prefix $(AB_DIR)/py27 -r tests/autobahn/requirements-py27.txt
	PYTHONPATH=$(AB_SITE) $(AB_PYTHON) -m pip install -q --prefix $(AB_DIR)/py27 --no-deps autobahntestsuite==25.10.1
	touch $@

autobahn: $(STAMP) $(AB_STAMP)
	$(PY) tests/autobahn/run.py --python2 $(AB_PYTHON) --site $(AB_SITE) --outdir $(AB_DIR)/reports

autobahn-quick: $(STAMP) $(AB_STAMP)
	$(PY) tests/autobahn/run.py --python2 $(AB_PYTHON) --site $(AB_SITE) --outdir $(AB_DIR)/reports --quick

# Mixed load on each backend watching RSS, fds and threads (bench/soak.py; SOAK_S
# seconds a backend, 600 by default); JSON + PNG in bench/results/ (not committed).
SOAK_S ?= 600
soak: $(BENCH_STAMP)
	SOAK_S=$(SOAK_S) $(PY) bench/soak.py

soak-short: $(BENCH_STAMP)
	SOAK_S=60 $(PY) bench/soak.py

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
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .nox .fuzz .hypothesis .autobahn
