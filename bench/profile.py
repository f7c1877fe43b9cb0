"""Where a server's time goes under load: py-spy samples of one benchmark server under wrk.

Run from the repository root::

    python -m bench.profile --server zzz-eventloop-asgi --scenario plaintext

Starts the server exactly as bench.py does (same command line, pinned to the server CPU),
puts wrk load on it (pinned to the other CPU) and, after a settling delay, records it with
``py-spy record --format raw --nonblocking`` (py-spy also pinned beside wrk, so it does not
steal the server's CPU). The collapsed stacks are summarised as the share of samples each
function is on the stack (inclusive) and on top of it (self), and written with the raw
stacks to bench/results/logs/profile-<stamp>/. Without ``--native`` the time a thread spends
inside C code (a syscall, uvloop) is counted to the Python function that called it.
py-spy comes from the ``bench`` extra; reading another process's memory needs ptrace
permission (root, or ``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import servers
from bench.bench import SCENARIOS, run_wrk, wrk_command
from bench.servers import HTTP_SERVERS

#: Seconds of load before sampling starts (start-up, warm caches, steady connections).
SETTLE_S = 2
#: Rows of each summary table.
TOP_ROWS = 40


def frame_name(frame: str) -> str:
    """``func (file.py:12)`` → ``func (file.py)``: one row per function, not per line."""
    name, sep, where = frame.partition(" (")
    if not sep:
        return frame
    return f"{name} ({Path(where.split(':', 1)[0]).name})"


def summarise(raw: Path, top: int = TOP_ROWS) -> str:
    """Inclusive and self shares of the samples in py-spy's raw (collapsed) output."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [frame_name(f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    if not total:
        return "no samples\n"
    out = [f"{total} samples", "", "inclusive (on the stack):"]
    out += [f"{100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    out += ["", "self (on top of the stack):"]
    out += [f"{100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--server", default="zzz-eventloop", help=f"one of: {', '.join(HTTP_SERVERS)}")
    p.add_argument("--scenario", default="plaintext", choices=list(SCENARIOS))
    p.add_argument("--duration", type=int, default=10, help="seconds of sampling")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--native", action="store_true", help="also sample C frames (py-spy --native)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--close-connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--wrk-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    # The venv's py-spy, also when the venv is not on PATH.
    venv_spy = Path(sys.executable).with_name("py-spy")
    p.add_argument("--py-spy", default=shutil.which("py-spy") or str(venv_spy))
    p.add_argument("--out-dir", type=Path, default=servers.RESULTS_DIR)
    args = p.parse_args(argv)
    if args.server not in HTTP_SERVERS:
        p.error(f"unknown server {args.server!r}")
    for tool in (args.wrk, args.py_spy):
        if shutil.which(tool) is None:
            p.error(f"{tool} not found (wrk: bench/run.sh installs it; py-spy: the bench extra)")

    pin = servers.plan_pinning(not args.no_pin, args.server_cpu, args.wrk_cpu)
    sc = SCENARIOS[args.scenario]
    out = args.out_dir / "logs" / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.server}.{sc.name}"
    raw = out / f"{stem}.raw"
    load_s = SETTLE_S + args.duration + 2
    result: dict[str, Any] = {}

    def put_load(port: int) -> None:
        # wrk runs in its own process; this thread only waits for it (no GIL held).
        try:
            result.update(run_wrk(wrk_command(args, pin, port, sc, load_s), sc, load_s))
        except (servers.ServerFailed, subprocess.TimeoutExpired) as exc:
            result["error"] = str(exc)

    with servers.running(HTTP_SERVERS[args.server], out / f"{stem}.log", pin) as srv:
        load = threading.Thread(target=put_load, args=(srv.port,))
        load.start()
        time.sleep(SETTLE_S)
        spy = [*pin.client, args.py_spy, "record", "--pid", str(srv.pid)]
        spy += ["--duration", str(args.duration), "--rate", str(args.rate)]
        spy += ["--format", "raw", "--nonblocking", "-o", str(raw)]
        if args.native:
            spy.append("--native")
        done = subprocess.run(spy, capture_output=True, text=True, check=False)
        load.join()
    if done.returncode != 0 or not raw.exists():
        print(f"py-spy failed (exit {done.returncode}): {done.stderr[-400:]}", file=sys.stderr)
        return 1
    if "requests" in result and result.get("duration_us"):
        under = f"{result['requests'] / (result['duration_us'] / 1e6):,.0f} req/s under py-spy"
    else:
        under = f"wrk failed: {result.get('error', '?')}"
    summary = f"{args.server} / {sc.name}: {under}\n\n" + summarise(raw)
    (out / f"{stem}.txt").write_text(summary)
    print(summary)
    print(f"raw stacks: {raw}; summary: {out / f'{stem}.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
