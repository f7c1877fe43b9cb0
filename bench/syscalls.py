"""System calls per request, by server and scenario: where the kernel half of a request goes.

Run from the repository root (``strace`` from Debian's ``strace`` package)::

    python -m bench.syscalls --servers zzz-eventloop,zzz-native,granian-wsgi,uvicorn

CPU time per request splits into user time (the server's own code, which callgrind
counts: ``python -m bench.instructions``) and system time (the kernel: reads, writes,
readiness polling, accepts). The second is set by how many system calls a server makes
per request, which this counts: each server runs alone (pinned as in ``bench.bench``),
``strace -c -f`` attached to it and all its threads while wrk drives it, and the
counts are divided by the requests wrk completed in that window. ``strace`` slows the
server down several times, so the req/s here mean nothing; the calls per request are
what a server does per request (at 64 connections, a slower server may find more
ready connections per ``epoll_wait``, so polling calls per request read as a lower bound).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import servers
from bench.bench import SCENARIOS, check_answers, run_wrk, wrk_command
from bench.servers import HTTP_SERVERS, Pinning, ServerFailed, plan_pinning

#: Seconds strace needs to attach to every thread before wrk starts.
ATTACH_S = 1.0
#: Longest strace may take to write its summary after SIGINT.
SUMMARY_TIMEOUT_S = 30
_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def count(name: str, scenario: str, args: argparse.Namespace, pin: Pinning,
          work: Path) -> dict[str, float]:
    """System calls per request of server ``name`` in ``scenario`` (and ``_requests``)."""
    sc = SCENARIOS[scenario]
    out = work / f"{name}.{scenario}.strace"
    with servers.running(HTTP_SERVERS[name], work / f"{name}.log", pin,
                         timeout=args.start_timeout) as srv:
        check_answers(srv.port, sc)
        # Every process of the server (granian and gunicorn serve from child processes).
        pids = [arg for pid in servers._descendants(srv.pid) for arg in ("-p", str(pid))]
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(out), *pids],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(ATTACH_S)
            res = run_wrk(wrk_command(args, pin, srv.port, sc, args.duration), sc, args.duration)
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(SUMMARY_TIMEOUT_S)
    requests = int(res["requests"])
    if args.keep_raw:
        print(out.read_text(), file=sys.stderr)
    calls: dict[str, float] = {"_requests": requests}
    for line in out.read_text().splitlines():
        match = _ROW.match(line)
        if match and requests and match.group(2) != "total":
            calls[match.group(2)] = int(match.group(1)) / requests
    return calls


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default="zzz-eventloop,zzz-native,granian-wsgi,uvicorn")
    p.add_argument("--scenarios", default="plaintext,close")
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--close-connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--wrk", default="wrk")
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--json", type=Path, help="also write the counts here")
    p.add_argument("--keep-raw", action="store_true", help="print strace's summaries (stderr)")
    args = p.parse_args()
    for tool in ("strace", args.wrk):
        if shutil.which(tool) is None:
            print(f"syscalls: {tool} not found", file=sys.stderr)
            return 2
    pin = plan_pinning(True, 0, 1)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="zzz-syscalls-") as tmp:
        for scenario in args.scenarios.split(","):
            for name in args.servers.split(","):
                try:
                    results[f"{name}/{scenario}"] = count(name, scenario, args, pin, Path(tmp))
                except (ServerFailed, subprocess.SubprocessError, OSError) as exc:
                    print(f"syscalls: {name}/{scenario} failed: {exc}", file=sys.stderr)
    shown = sorted({k for calls in results.values() for k, v in calls.items()
                    if not k.startswith("_") and v >= 0.05})
    print("| server/scenario | total | " + " | ".join(shown) + " |")
    print("|---|---:|" + "---:|" * len(shown))
    for key, calls in results.items():
        total = sum(v for k, v in calls.items() if not k.startswith("_"))
        cells = " | ".join(f"{calls.get(k, 0):.2f}" for k in shown)
        print(f"| {key} | {total:.2f} | {cells} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
