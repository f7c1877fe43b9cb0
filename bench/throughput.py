"""Streamed download and upload throughput against uvicorn (issue 13: ">= 1.5x uvicorn's MB/s").

Run from the repository root (wrap it in ``flock /tmp/zzz-bench.lock`` on a shared machine)::

    python -m bench.throughput --rounds 3 --duration 3
    python -m bench.throughput --servers zzz-eventloop,zzz-eventloop-base,uvicorn --loads upload

Two loads, the same work on every server: ``download`` is ``GET /download``, 16 MiB
streamed as 256 pieces of 64 KiB without a Content-Length (chunked), and ``upload``
is ``POST /upload`` with a 1 MiB body that the application reads whole and answers
with its length. zzz serves ``bench/apps/knobs_app.py`` (``ctx.stream`` and
``ctx.raw_body()``), uvicorn and granian the raw ASGI / WSGI apps in
``bench/apps/asgi_app.py`` / ``wsgi_app.py``. Eight keep-alive connections, wrk
``-t1`` pinned to CPU 1, the server pinned to CPU 0.

For R rounds, for each load, for each server (interleaved, so a shared machine's
drift hits every server alike): start it, check its answer, warm it up, run wrk,
read the server's CPU time (user + system, all threads and children) from /proc
and wrk's own CPU time (``RUSAGE_CHILDREN``: a client at 100 % is the limit, not
the server), stop it by PID. Reported per cell: median MB/s with the rounds'
min-max, CPU µs per request, and the ratio to uvicorn, both of the medians and
per round (each round's servers ran minutes apart, so a round's ratio is the
fairest pair). ``*-base`` servers run the same apps from an older checkout
(``--baseline-tree``), for before/after runs of a change.

Raw runs go to ``bench/results/throughput-<timestamp>.json``, the table to stdout
and ``bench/results/latest-throughput.md``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import servers
from bench.knobs import LOADS, MAX_BODY, EnvSpec, Load, outcome, smoke, uptime, wrk
from bench.servers import Pinning, ServerFailed, ServerSpec

#: The server every ratio is taken against (issue 13's reference).
REFERENCE = "uvicorn"
#: The issue's target: each zzz backend at least this many times uvicorn's MB/s.
TARGET_RATIO = 1.5
ZZZ_APP = "bench.apps.knobs_app:app"
#: zzz's body limit must admit the 1 MiB upload (the default is exactly 1 MiB).
_ZZZ_COMMON = ["--max-body-size", str(MAX_BODY)]
_NATIVE = ["--worker-threads", str(servers.POOL_THREADS), *_ZZZ_COMMON]


def _contestants() -> dict[str, ServerSpec]:
    http = servers.HTTP_SERVERS
    specs = [
        ServerSpec("zzz-native", servers._zzz(ZZZ_APP, "native", _NATIVE),
                   f"zzz native, {servers.POOL_THREADS} worker threads"),
        ServerSpec("zzz-eventloop", servers._zzz(ZZZ_APP, "eventloop", _ZZZ_COMMON),
                   "zzz eventloop (uvloop)"),
        ServerSpec("zzz-native-base", servers._zzz(ZZZ_APP, "native", _NATIVE),
                   "zzz-native on the baseline checkout", baseline=True),
        ServerSpec("zzz-eventloop-base", servers._zzz(ZZZ_APP, "eventloop", _ZZZ_COMMON),
                   "zzz-eventloop on the baseline checkout", baseline=True),
        # The very ASGI app uvicorn serves, on zzz's adapter (bodies streamed).
        http["zzz-eventloop-asgi"],
        http["zzz-native-asgi"],
        http["uvicorn"],
        http["granian"],
        http["granian-wsgi"],
    ]
    return {s.name: s for s in specs}


CONTESTANTS = _contestants()
DEFAULT_SERVERS = "zzz-native,zzz-eventloop,uvicorn,granian,granian-wsgi"
THROUGHPUT_LOADS = ("download", "upload")


@dataclass
class Run:
    load: str
    server: str
    round: int
    ok: bool = False
    error: str = ""
    rps: float = 0.0
    mb_s: float = 0.0
    cpu_us: float = 0.0
    sys_us: float = 0.0
    #: wrk's CPU time over the run's wall time (1.0: the client was the limit).
    client_cpu: float = 0.0
    p50_ms: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(args: argparse.Namespace, pin: Pinning, load_name: str, name: str,
            rnd: int) -> Run:
    run = Run(load_name, name, rnd)
    load: Load = LOADS[load_name]
    base = CONTESTANTS[name]
    spec = EnvSpec(base.name, base.argv, base.note, base.baseline,
                   extra_env=tuple(args.env) if name.startswith("zzz") else ())
    if name.startswith("zzz") and args.zzz_flags:
        argv = base.argv
        spec = EnvSpec(base.name, lambda port, idle: [*argv(port, idle), *args.zzz_flags],
                       base.note, base.baseline, extra_env=spec.extra_env)
    log = args.out_dir / "logs" / f"throughput.{load_name}.{name}.r{rnd}.log"
    try:
        with servers.running(spec, log, pin) as srv:
            smoke(srv.port, load)
            wrk(args, pin, srv.port, load, args.warmup)
            before = servers.tree_cpu_seconds(srv.pid)
            client_before = _children_cpu()
            res = wrk(args, pin, srv.port, load, args.duration)
            client_after = _children_cpu()
            after = servers.tree_cpu_seconds(srv.pid)
    except (ServerFailed, subprocess.TimeoutExpired, OSError) as exc:
        run.error = str(exc)
        return run
    run.errors, requests, secs, run.error = outcome(res, load)
    if run.error:
        return run
    run.rps = requests / secs
    run.mb_s = (res["bytes"] + requests * load.post_bytes) / secs / 1e6
    run.cpu_us = (sum(after) - sum(before)) * 1e6 / requests
    run.sys_us = (after[1] - before[1]) * 1e6 / requests
    run.client_cpu = (client_after - client_before) / secs
    run.p50_ms = res["p50_us"] / 1000
    run.ok = True
    return run


def _round_ratios(runs: list[Run], load: str, server: str) -> list[float]:
    """MB/s of ``server`` over the reference's in the same round, per round."""
    ref = {r.round: r.mb_s for r in runs if r.ok and r.load == load and r.server == REFERENCE}
    return [r.mb_s / ref[r.round] for r in runs
            if r.ok and r.load == load and r.server == server and ref.get(r.round)]


def table(runs: list[Run], meta: dict[str, Any]) -> str:
    out = [f"# Streamed download and upload throughput ({meta['timestamp']})", "",
           f"{meta['machine']}; {meta['pinning']}; wrk -t1 -c8, {meta['duration']:g}s per run "
           f"after {meta['warmup']:g}s warm-up, median of {meta['rounds']} interleaved round(s).",
           f"uptime before: {meta['uptime_before']}", f"uptime after: {meta['uptime_after']}",
           "", "MB/s counts response bytes (download) or request bodies (upload); CPU is the "
           "server's user + system time per request; client = wrk's CPU share of the run; "
           f"ratio = MB/s over {REFERENCE}'s (of the medians; per round min-max).", "",
           "| load | server | MB/s (min-max) | req/s | CPU µs/req (user / sys) | client CPU "
           f"| x {REFERENCE} (rounds) | runs ok |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    medians = {}
    for key in dict.fromkeys((r.load, r.server) for r in runs):
        good = [r for r in runs if (r.load, r.server) == key and r.ok]
        if good:
            medians[key] = statistics.median(r.mb_s for r in good)
    for key in dict.fromkeys((r.load, r.server) for r in runs):
        mine = [r for r in runs if (r.load, r.server) == key]
        good = [r for r in mine if r.ok]
        if not good:
            reason = next((r.error for r in mine if r.error), "?").splitlines()[0][:80]
            out.append(f"| {key[0]} | {key[1]} | FAILED | | | | | 0/{len(mine)} {reason} |")
            continue
        ref = medians.get((key[0], REFERENCE))
        ratio = "-"
        if ref and key[1] != REFERENCE:
            rounds = _round_ratios(runs, *key)
            spread = f" ({min(rounds):.2f}-{max(rounds):.2f})" if rounds else ""
            ratio = f"{medians[key] / ref:.2f}{spread}"
        mb = [r.mb_s for r in good]
        out.append(
            f"| {key[0]} | {key[1]} | {medians[key]:,.0f} ({min(mb):,.0f}-{max(mb):,.0f}) | "
            f"{statistics.median(r.rps for r in good):,.0f} | "
            f"{statistics.median(r.cpu_us for r in good):,.0f} "
            f"({statistics.median(r.cpu_us - r.sys_us for r in good):,.0f} / "
            f"{statistics.median(r.sys_us for r in good):,.0f}) | "
            f"{statistics.median(r.client_cpu for r in good):.0%} | {ratio} | "
            f"{len(good)}/{len(mine)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default=DEFAULT_SERVERS,
                   help=f"comma-separated, of: {', '.join(CONTESTANTS)}")
    p.add_argument("--loads", default=",".join(THROUGHPUT_LOADS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--baseline-tree", type=Path, default=servers.BASELINE_TREE,
                   help="older zzz checkout the *-base servers run from")
    p.add_argument("--env", action="append", default=[], type=lambda s: tuple(s.split("=", 1)),
                   help="NAME=VALUE for the zzz servers' environment (repeatable)")
    p.add_argument("--zzz-flags", default="", type=str.split,
                   help="extra `zzz run` flags for the zzz servers, e.g. '--read-size 65536'")
    p.add_argument("--label", default="throughput", help="results file prefix")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    p.add_argument("--out-dir", type=Path, default=servers.RESULTS_DIR)
    args = p.parse_args(argv)
    names = servers.parse_names(args.servers, CONTESTANTS)
    loads = [name for name in args.loads.split(",") if name]
    servers.BASELINE_TREE = args.baseline_tree
    pin = servers.plan_pinning(not args.no_pin, 0, 1)
    meta = {"timestamp": time.strftime("%Y%m%d-%H%M%S"), "pinning": pin.description,
            "machine": f"{os.cpu_count()} CPUs", "duration": args.duration,
            "warmup": args.warmup, "rounds": args.rounds, "uptime_before": uptime(),
            "servers": {n: CONTESTANTS[n].note for n in names},
            "baseline_tree": str(args.baseline_tree), "env": args.env,
            "zzz_flags": args.zzz_flags,
            "command": "python -m bench.throughput " + " ".join(argv or [])}
    runs: list[Run] = []
    for rnd in range(1, args.rounds + 1):
        for load in loads:
            for name in names:
                run = measure(args, pin, load, name, rnd)
                runs.append(run)
                state = (f"{run.mb_s:,.0f} MB/s {run.rps:,.0f} req/s {run.cpu_us:,.0f} µs/req "
                         f"({run.sys_us:,.0f} sys) client {run.client_cpu:.0%}"
                         if run.ok else f"FAILED {run.error.splitlines()[0][:100]}")
                print(f"r{rnd} {load} {name}: {state}", flush=True)
    meta["uptime_after"] = uptime()
    text = table(runs, meta)
    doc = {"meta": meta, "runs": [asdict(r) for r in runs]}
    servers.write_results(args.out_dir, f"{args.label}-{meta['timestamp']}", doc,
                          f"latest-{args.label}.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
