#!/usr/bin/env bash
# TLS keep-alive plaintext GET: zzz native, zzz eventloop and uvicorn with the same certificate.
#
#   bench/tls_bench.sh [DURATION_S] [CONNECTIONS]      (defaults: 10 s, 64 connections)
#
# A CA and server certificate are made with trustme into bench/.cache/tls (once). Each
# server runs pinned to CPU 0 (`taskset -c 0`) and wrk, pinned to CPU 1, drives
# https://127.0.0.1:PORT/ with keep-alive connections after a 1 s warm-up; one line of
# req/s per server is printed. Settings follow bench/servers.py: 4 worker threads for
# native, keep-alive connections never capped by zzz's max-requests-per-connection,
# uvicorn with httptools + uvloop, access logs off.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
CACHE="$ROOT/bench/.cache/tls"
DURATION="${1:-10}"
CONNECTIONS="${2:-64}"
WARMUP_S=1
PORT_BASE=18443
READY_TRIES=100   # x 0.1 s: how long a server gets to answer its first HTTPS request
SERVER_CPU=0
CLIENT_CPU=1

for tool in wrk taskset curl; do
    command -v "$tool" >/dev/null || { echo "tls_bench: $tool is required" >&2; exit 1; }
done

mkdir -p "$CACHE"
if [ ! -s "$CACHE/cert.pem" ]; then
    "$PY" - "$CACHE" <<'EOF'
import sys, trustme
out = sys.argv[1]
ca = trustme.CA()
leaf = ca.issue_cert("127.0.0.1", "localhost")
ca.cert_pem.write_to_path(f"{out}/ca.pem")
leaf.cert_chain_pems[0].write_to_path(f"{out}/cert.pem")
leaf.private_key_pem.write_to_path(f"{out}/key.pem")
EOF
fi
CERT="$CACHE/cert.pem"
KEY="$CACHE/key.pem"
CA="$CACHE/ca.pem"

zzz_cmd() {  # backend port
    echo "$PY -m zzz run bench.apps.zzz_app:app --backend $1 --host 127.0.0.1 --port $2" \
         "--log-level warning --max-requests-per-connection 1000000 --worker-threads 4" \
         "--tls-cert $CERT --tls-key $KEY"
}
uvicorn_cmd() {  # port
    echo "$PY -m uvicorn bench.apps.asgi_app:app --host 127.0.0.1 --port $1 --workers 1" \
         "--http httptools --loop uvloop --no-access-log --log-level warning --ws none" \
         "--ssl-certfile $CERT --ssl-keyfile $KEY"
}

run_one() {  # name port command...
    local name="$1" port="$2"; shift 2
    local log="$CACHE/$name.log"
    (cd "$ROOT" && exec taskset -c "$SERVER_CPU" "$@") >"$log" 2>&1 &
    local pid=$!
    local ok=""
    for _ in $(seq "$READY_TRIES"); do
        if curl -fsS --cacert "$CA" "https://127.0.0.1:$port/" >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.1
    done
    if [ -z "$ok" ]; then
        echo "$name: did not start; log:" >&2; tail -5 "$log" >&2
        kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
        return 0
    fi
    taskset -c "$CLIENT_CPU" wrk -t1 -c "$CONNECTIONS" -d "${WARMUP_S}s" \
        "https://127.0.0.1:$port/" >/dev/null
    local out
    out="$(taskset -c "$CLIENT_CPU" wrk -t1 -c "$CONNECTIONS" -d "${DURATION}s" --latency \
        "https://127.0.0.1:$port/")"
    local rps p50 p99 errors
    rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    errors="$(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr -s ' ' | tr '\n' ';' || true)"
    printf '%-15s %10s req/s   p50 %-9s p99 %-9s %s\n' "$name" "$rps" "$p50" "$p99" "$errors"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

echo "TLS keep-alive GET /: wrk -t1 -c$CONNECTIONS -d${DURATION}s (CPU $CLIENT_CPU)," \
     "server on CPU $SERVER_CPU, $("$PY" -c 'import ssl; print(ssl.OPENSSL_VERSION)')"
# shellcheck disable=SC2046
run_one zzz-native $((PORT_BASE + 0)) $(zzz_cmd native $((PORT_BASE + 0)))
# shellcheck disable=SC2046
run_one zzz-eventloop $((PORT_BASE + 1)) $(zzz_cmd eventloop $((PORT_BASE + 1)))
# shellcheck disable=SC2046
run_one uvicorn $((PORT_BASE + 2)) $(uvicorn_cmd $((PORT_BASE + 2)))
