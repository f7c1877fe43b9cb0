"""Instructions per request on the hot path, counted by valgrind: a guard that noise cannot move.

Run from the repository root (valgrind from Debian's ``valgrind`` package)::

    python -m bench.instructions                       # this checkout, every scenario
    python -m bench.instructions --tree /tmp/zzz-old   # another checkout (git worktree)

Wall-clock req/s on a shared 2-CPU machine moves by tens of percent between runs;
instruction counts do not move at all (same input, ``PYTHONHASHSEED=0``). Each scenario
drives one event-loop ``HttpProtocol`` directly with a fake transport, the whole
server-side path in one process: ``data_received`` → engine ``feed`` → ``Router.handle``
→ handler → ``serialize`` → ``transport.write``. It runs under callgrind twice, with
``LOW`` and ``HIGH`` requests; the difference divided by ``HIGH - LOW`` is the cost of one
request without start-up. Kernel work (syscalls, TCP) and uvloop's own I/O are outside
it: this counts what our Python does, which is what a change to it moves.

Scenarios: ``get`` (keep-alive ``GET /``, 13-byte text), ``echo`` (``POST /echo`` with
1 KiB, echoed), ``close`` (a new connection per request: ``connection_made`` + request +
close, on uvloop).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Requests in the short and the long run; their difference is what is reported.
LOW, HIGH = 1_000, 11_000
#: The longest one callgrind run may take (the long one takes about a minute).
RUN_TIMEOUT_S = 600

DRIVER = r'''
import asyncio, sys
import zzz
from zzz.config import Config
from zzz.server import Server
import zzz.backends.eventloop as ev

SCENARIO, N = sys.argv[1], int(sys.argv[2])
STACKED = SCENARIO in ("observed", "logged", "slogged", "stack")
JSON_LINE = SCENARIO in ("slogged", "stack")
if STACKED:
    # The recommended stack of bench/apps/zzz_observed_app.py, server half included.
    from zzz.observability.logs import configure_logging
    configure_logging("info", "json" if JSON_LINE else "text")
    app = zzz.Router(middleware=[
        zzz.health("/healthz"), zzz.request_id(), zzz.metrics("/route-metrics"),
        zzz.structured_logger("info" if JSON_LINE else "debug",
                              format="json" if JSON_LINE else "text"),
    ])
else:
    app = zzz.Router()

@app.get("/")
def index(ctx):
    ctx.text(200, "Hello, World!")

@app.post("/echo")
def echo(ctx):
    ctx.respond(200, "application/octet-stream", ctx.raw_body())

class Transport:
    """Just enough of a transport: writes are dropped, close ends the connection."""
    def __init__(self): self.protocol = None
    def write(self, data): pass
    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 5555) if name == "peername" else default
    def is_closing(self): return False
    def set_write_buffer_limits(self, high=None, low=None): pass
    def pause_reading(self): pass
    def resume_reading(self): pass
    def close(self): self.protocol.connection_lost(None)
    def can_write_eof(self): return True

HEAD = b"Host: localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
REQUESTS = {
    "get": b"GET / HTTP/1.1\r\n" + HEAD + b"\r\n",
    "echo": b"POST /echo HTTP/1.1\r\n" + HEAD
            + b"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n"
            + b"x" * 1024,
    "close": b"GET / HTTP/1.1\r\n" + HEAD + b"Connection: close\r\n\r\n",
}
for stacked in ("observed", "logged", "slogged", "stack"):
    REQUESTS[stacked] = REQUESTS["get"]

async def main():
    config = Config(port=0, max_requests_per_connection=10**9)
    if STACKED and SCENARIO != "stack":
        import dataclasses
        config = dataclasses.replace(config, observability=dataclasses.replace(
            config.observability, metrics_path="/metrics", health_path="/healthz",
            ready_path="/readyz", access_log=SCENARIO == "logged"))
    server = Server(app, config, backend="eventloop")
    backend = ev.EventLoopBackend(server)
    state = ev.LoopState(backend, asyncio.get_running_loop())
    raw = REQUESTS[SCENARIO]
    if SCENARIO == "close":
        for _ in range(N):
            transport = Transport()
            protocol = transport.protocol = ev.HttpProtocol(state)
            protocol.connection_made(transport)
            protocol.data_received(raw)
        return
    transport = Transport()
    protocol = transport.protocol = ev.HttpProtocol(state)
    protocol.connection_made(transport)
    for _ in range(N):
        protocol.data_received(raw)

if SCENARIO == "close":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
'''

SCENARIOS = ("get", "echo", "close")
#: The observability stack of ``bench/apps/zzz_observed_app.py`` on ``GET /`` (issue 10's
#: budget): ``observed`` writes nothing, ``logged`` one access line (text), ``slogged`` one
#: JSON line from ``structured_logger`` (lines go to stderr, discarded); ``stack`` is the
#: README's Router stack alone (JSON line, no server-level metrics or probes).
STACK_SCENARIOS = ("observed", "logged", "slogged", "stack")


def _total(out_file: Path) -> int:
    """Ir of a callgrind output file (its ``summary:``/``totals:`` line)."""
    text = out_file.read_text(errors="replace")
    match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if match is None:
        raise RuntimeError(f"no totals in {out_file}")
    return int(match.group(1))


def count(tree: Path, scenario: str, python: str, work: Path) -> int:
    """Instructions per request of ``scenario`` with the zzz found in ``tree``."""
    driver = work / "driver.py"
    driver.write_text(DRIVER)
    totals = []
    for n in (LOW, HIGH):
        out = work / f"callgrind.{scenario}.{n}"
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree)}
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             python, str(driver), scenario, str(n)],
            cwd=tree, env=env, check=True, timeout=RUN_TIMEOUT_S,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        totals.append(_total(out))
    return (totals[1] - totals[0]) // (HIGH - LOW)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", type=Path, action="append",
                   help="a zzz checkout (repeatable; default: this one)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--python", default=sys.executable)
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        print("instructions: valgrind not found (apt-get install valgrind)", file=sys.stderr)
        return 2
    trees = [t.resolve() for t in (args.tree or [Path(__file__).resolve().parent.parent])]
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS) - set(STACK_SCENARIOS)
    if unknown:
        print(f"instructions: unknown scenario(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    print("| tree | " + " | ".join(f"{s} instr/req" for s in scenarios) + " |")
    print("|---|" + "---:|" * len(scenarios))
    for tree in trees:
        with tempfile.TemporaryDirectory(prefix="zzz-instr-") as tmp:
            row = [f"{count(tree, s, args.python, Path(tmp)):,}" for s in scenarios]
        print(f"| {tree} | " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
