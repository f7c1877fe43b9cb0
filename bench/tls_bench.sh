#!/usr/bin/env bash
# TLS keep-alive plaintext GET: zzz native, zzz eventloop and uvicorn with the same certificate.
#
#   bench/tls_bench.sh [DURATION_S] [CONNECTIONS] [ROUNDS]   (defaults: 10 s, 64 connections, 1)
#
# Environment:
#   SERVERS="zzz-native zzz-eventloop uvicorn"   which servers, in this order each round
#   BASELINE_TREE=/path/to/checkout               adds BASELINE_SERVERS (default
#                                                 zzz-native-base): the same command run
#                                                 from that tree (e.g. git archive main)
#   PY=/path/to/python                            default: this tree's .venv/bin/python,
#                                                 else python3 (it must have zzz's deps,
#                                                 uvicorn and trustme)
#   LABEL=name                                    raw output: bench/results/tls-LABEL-DATE.txt
#
# A CA and server certificate are made with trustme into bench/.cache/tls (once). Each
# server runs pinned to CPU 0 (`taskset -c 0`) and wrk, pinned to CPU 1, drives
# https://127.0.0.1:PORT/ with keep-alive connections after a 1 s warm-up. ROUNDS rounds
# run every server once each, interleaved (A B C A B C ...), so a noisy neighbour hits
# all of them alike. Per run: req/s, p50/p99, and the server's CPU time (user + system of
# all its threads, from /proc/PID/stat, read just before and after the measured wrk run)
# per completed request. The summary gives the median of the rounds, the spread (min-max)
# and the median ratio to uvicorn. Settings follow bench/servers.py: 4 worker threads
# for native, keep-alive connections never capped by zzz's max-requests-per-connection,
# uvicorn with httptools + uvloop, access logs off.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PY:-}" ]; then
    PY="$ROOT/.venv/bin/python"
    [ -x "$PY" ] || PY="$(command -v python3)"
fi
CACHE="$ROOT/bench/.cache/tls"
DURATION="${1:-10}"
CONNECTIONS="${2:-64}"
ROUNDS="${3:-1}"
SERVERS="${SERVERS:-zzz-native zzz-eventloop uvicorn}"
BASELINE_TREE="${BASELINE_TREE:-}"
WARMUP_S=1
PORT_BASE=18443
READY_TRIES=100   # x 0.1 s: how long a server gets to answer its first HTTPS request
SERVER_CPU=0
CLIENT_CPU=1
CLK_TCK="$(getconf CLK_TCK)"
RESULTS="$ROOT/bench/results"
RAW="$RESULTS/tls-${LABEL:-run}-$(date -u +%Y%m%d-%H%M%S).txt"

for tool in wrk taskset curl; do
    command -v "$tool" >/dev/null || { echo "tls_bench: $tool is required" >&2; exit 1; }
done
if [ -n "$BASELINE_TREE" ]; then
    SERVERS="$SERVERS ${BASELINE_SERVERS:-zzz-native-base}"
fi

mkdir -p "$CACHE" "$RESULTS"
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

cpu_idle_ticks() {  # cpu: idle + iowait ticks of that CPU since boot
    awk -v c="cpu$1" '$1 == c {print $5 + $6}' /proc/stat
}

cpu_ticks() {  # pid: utime + stime of all its threads, in clock ticks
    # Fields after the ")" that ends the command name: utime and stime are 12 and 13.
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

run_one() {  # round name port tree command...
    local round="$1" name="$2" port="$3" tree="$4"; shift 4
    local log="$CACHE/$name.log"
    (cd "$tree" && exec taskset -c "$SERVER_CPU" "$@") >"$log" 2>&1 &
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
    local out t0 t1 i0 i1
    i0="$(cpu_idle_ticks "$SERVER_CPU")"
    t0="$(cpu_ticks "$pid")"
    out="$(taskset -c "$CLIENT_CPU" wrk -t1 -c "$CONNECTIONS" -d "${DURATION}s" --latency \
        "https://127.0.0.1:$port/")"
    t1="$(cpu_ticks "$pid")"
    i1="$(cpu_idle_ticks "$SERVER_CPU")"
    {
        echo "### round $round $name (pid $pid, cpu ticks $t0 -> $t1, CLK_TCK $CLK_TCK)"
        echo "$out"
    } >>"$RAW"
    local rps p50 p99 requests cpu_us errors idle
    rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    requests="$(awk '/requests in/ {print $1}' <<<"$out")"
    cpu_us="$(awk -v a="$t0" -v b="$t1" -v n="$requests" -v hz="$CLK_TCK" \
        'BEGIN {printf "%.1f", (b - a) * 1e6 / hz / n}')"
    # Share of the server's CPU left idle during the run: above a few %, the server
    # was not CPU-bound (waiting on hand-offs, or on a client starved of its CPU).
    idle="$(awk -v a="$i0" -v b="$i1" -v hz="$CLK_TCK" -v d="$DURATION" \
        'BEGIN {printf "%.0f%%", (b - a) * 100 / hz / d}')"
    errors="$(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr -s ' ' | tr '\n' ';' || true)"
    printf 'RUN %s %-18s %10s req/s  cpu %6s us/req  p50 %-9s p99 %-9s cpu%s-idle %4s %s\n' \
        "$round" "$name" "$rps" "$cpu_us" "$p50" "$p99" "$SERVER_CPU" "$idle" "$errors" \
        | tee -a "$RAW"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

run_server() {  # round name port
    local round="$1" name="$2" port="$3" tree="$ROOT"
    case "$name" in
        *-base) tree="$BASELINE_TREE" ;;
    esac
    case "$name" in
        # shellcheck disable=SC2046
        zzz-native*) run_one "$round" "$name" "$port" "$tree" $(zzz_cmd native "$port") ;;
        # shellcheck disable=SC2046
        zzz-eventloop*) run_one "$round" "$name" "$port" "$tree" $(zzz_cmd eventloop "$port") ;;
        # shellcheck disable=SC2046
        uvicorn) run_one "$round" "$name" "$port" "$tree" $(uvicorn_cmd "$port") ;;
        *) echo "tls_bench: unknown server $name" >&2; exit 2 ;;
    esac
}

{
    echo "TLS keep-alive GET /: wrk -t1 -c$CONNECTIONS -d${DURATION}s (CPU $CLIENT_CPU)," \
         "server on CPU $SERVER_CPU, $ROUNDS round(s), $("$PY" -c 'import ssl; print(ssl.OPENSSL_VERSION)')"
    echo "tree $ROOT ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))" \
         "${BASELINE_TREE:+baseline $BASELINE_TREE}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$RAW"
for round in $(seq "$ROUNDS"); do
    i=0
    for name in $SERVERS; do
        run_server "$round" "$name" $((PORT_BASE + i))
        i=$((i + 1))
    done
done

# Summary: median of the rounds, spread (min-max), ratio of medians to uvicorn.
"$PY" - "$RAW" <<'EOF' | tee -a "$RAW"
import statistics, sys
runs: dict[str, list[tuple[float, float, float, float]]] = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[:1] == ["RUN"] and len(f) > 9 and f[4] == "req/s":
        unit = {"us": 1e-3, "ms": 1.0}.get(f[9][-2:], 1e3)  # wrk: 850.00us, 1.20ms, 1.05s
        p50 = float(f[9].rstrip("ums")) * unit
        idle = float(f[13].rstrip("%")) if len(f) > 13 else float("nan")
        runs.setdefault(f[2], []).append((float(f[3]), float(f[6]), p50, idle))
uv = statistics.median(r[0] for r in runs["uvicorn"]) if "uvicorn" in runs else None
print(f"{'server':<18} {'req/s median':>12} {'(min-max)':>17} {'cpu us/req':>10} "
      f"{'(min-max)':>11} {'p50 ms':>7} {'x uvicorn':>9} {'cpu idle':>8}  rounds")
for name, rs in runs.items():
    rps = statistics.median(r[0] for r in rs)
    cpu = statistics.median(r[1] for r in rs)
    p50 = statistics.median(r[2] for r in rs)
    idle = statistics.median(r[3] for r in rs)
    ratio = f"{rps / uv:.2f}" if uv else "-"
    print(f"{name:<18} {rps:>12,.0f} {min(r[0] for r in rs):>8,.0f}-{max(r[0] for r in rs):<8,.0f} "
          f"{cpu:>10.1f} {min(r[1] for r in rs):>5.1f}-{max(r[1] for r in rs):<5.1f} "
          f"{p50:>7.2f} {ratio:>9} {idle:>7.0f}%  {len(rs)}")
print(f"raw: {sys.argv[1]}")
EOF
