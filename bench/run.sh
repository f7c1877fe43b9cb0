#!/usr/bin/env bash
# Entry point of the benchmarks (`make bench`). Arguments go to bench/bench.py, e.g.
#   bench/run.sh --servers uvicorn,waitress --duration 3 --rounds 1
# Installs wrk when it is missing (the only place anything is installed), then runs the
# HTTP benchmark with the project's virtualenv, where the competitors come from the
# `bench` extra (waitress, gunicorn, cheroot, uvicorn, granian).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# BENCH_PYTHON: another interpreter with zzz and the bench extra (default: the project venv).
PY="${BENCH_PYTHON:-$ROOT/.venv/bin/python}"

if ! command -v wrk >/dev/null 2>&1; then
    echo "bench: wrk not found, installing it with apt-get" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get install -y wrk || { $SUDO apt-get update && $SUDO apt-get install -y wrk; }
fi

if [ ! -x "$PY" ]; then
    echo "bench: $PY not found; run 'make test' (or create .venv) first" >&2
    exit 1
fi

cd "$ROOT"
exec "$PY" -m bench.bench "$@"
