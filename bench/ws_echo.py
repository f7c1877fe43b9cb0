"""WebSocket echo round-trips per second with many concurrent clients.

    python -m bench.ws_echo --servers zzz-eventloop,uvicorn --clients 100 --duration 10

For each server: start it alone on 127.0.0.1 (pinned to one CPU), connect N clients
(websockets' asyncio client, compression off), and have each one send a text message and
wait for its echo, over and over, for the duration. Reports round-trips/s, round-trip
latency p50/p99, and round-trips per CPU-second the server burned: the client is Python too
and may be the bottleneck, and the per-CPU-second figure stays comparable when it is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench import servers
from bench.servers import WS_SERVERS, ServerFailed, write_results

DEFAULT_SERVERS = "zzz-eventloop,uvicorn"
WS_PATH = "/ws"
# Seconds allowed for all clients to complete their opening handshakes.
CONNECT_TIMEOUT_S = 20.0
# Seconds one echo may take before the client counts the run as failed.
ECHO_TIMEOUT_S = 10.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc (psutil is not a dependency)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def client(
    url: str, message: str, stop: asyncio.Event, ready: asyncio.Barrier, lat: list[float]
) -> None:
    async with connect(url, compression=None, proxy=None, ping_interval=None) as ws:
        await ready.wait()
        while not stop.is_set():
            t0 = time.perf_counter()
            await ws.send(message)
            reply = await asyncio.wait_for(ws.recv(), ECHO_TIMEOUT_S)
            lat.append(time.perf_counter() - t0)
            if reply != message:
                raise RuntimeError(f"echo mismatch: {str(reply)[:40]!r}")


async def load(url: str, clients: int, duration: float, size: int) -> dict[str, Any]:
    stop = asyncio.Event()
    ready = asyncio.Barrier(clients + 1)
    lat: list[float] = []
    message = "x" * size
    tasks = [asyncio.create_task(client(url, message, stop, ready, lat)) for _ in range(clients)]
    try:
        gate = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait(
            [gate, *tasks], timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if gate not in done:
            gate.cancel()
            failed = [t.exception() for t in done if t.exception() is not None]
            reason = repr(failed[0]) if failed else f"timed out after {CONNECT_TIMEOUT_S:.0f}s"
            raise ServerFailed(f"clients could not connect: {reason}")
        t0 = time.perf_counter()
        await asyncio.sleep(duration)
        stop.set()
        elapsed = time.perf_counter() - t0
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise ServerFailed(f"{len(errors)} client(s) failed: {errors[0]!r}")
    lat.sort()
    return {
        "round_trips": len(lat),
        "rtt_per_s": len(lat) / elapsed,
        "p50_ms": lat[len(lat) // 2] * 1000 if lat else 0.0,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0,
    }


def run_loop(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run the clients on uvloop when available: a faster client disturbs the figures less."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: dict[str, Any] = uvloop.run(coro)
    return result


def measure(
    name: str, args: argparse.Namespace, pin: servers.Pinning, log_dir: Path
) -> dict[str, Any]:
    result: dict[str, Any] = {"server": name, "ok": False}
    try:
        with servers.running(WS_SERVERS[name], log_dir / f"ws.{name}.log", pin) as srv:
            url = f"ws://{servers.HOST}:{srv.port}{WS_PATH}"
            cpu0 = cpu_seconds(srv.pid)
            result.update(run_loop(load(url, args.clients, args.duration, args.size)))
            cpu = cpu_seconds(srv.pid) - cpu0
            result["server_cpu_s"] = round(cpu, 2)
            result["rtt_per_cpu_s"] = result["round_trips"] / cpu if cpu > 0 else 0.0
            result["ok"] = True
    except (ServerFailed, OSError, TimeoutError, RuntimeError) as exc:
        result["error"] = str(exc) or repr(exc)
    except Exception as exc:  # a handshake rejection etc. must not stop the other servers
        result["error"] = repr(exc)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--servers", default=DEFAULT_SERVERS, help=f"from: {', '.join(WS_SERVERS)}")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--rounds", type=int, default=1, help="median of this many runs per server")
    p.add_argument("--size", type=int, default=64, help="text message size in bytes")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--out-dir", type=Path, default=servers.RESULTS_DIR)
    args = p.parse_args(argv)
    names = servers.parse_names(args.servers, WS_SERVERS)
    pin = servers.plan_pinning(not args.no_pin, 0, 1)
    if pin.client:
        # The client is this process: keep it off the server's CPU.
        os.sched_setaffinity(0, {1})
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = args.out_dir / "logs" / stamp
    print(
        f"ws_echo: {args.clients} clients, {args.size}-byte text, {args.duration}s; {pin.description}"
    )

    runs: list[dict[str, Any]] = []
    for rnd in range(1, args.rounds + 1):
        for name in names:
            r = measure(name, args, pin, log_dir)
            r["round"] = rnd
            runs.append(r)
            shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}
            print(f"ws_echo: r{rnd} {json.dumps(shown)}", flush=True)

    out = [
        f"## WebSocket echo ({args.clients} clients, {args.size}-byte text, {args.duration}s)",
        "",
    ]
    out += ["| server | round-trips/s | p50 ms | p99 ms | round-trips per server CPU-s | runs ok |"]
    out += ["|---|---:|---:|---:|---:|---:|"]
    for name in names:
        good = [r for r in runs if r["server"] == name and r["ok"]]
        ok = f"{len(good)}/{args.rounds}"
        if not good:
            err = next((r.get("error", "") for r in runs if r["server"] == name), "")
            out.append(
                f"| {name} | FAILED | - | - | - | {ok} ({err.strip().splitlines()[0] if err.strip() else ''}) |"
            )
            continue
        med = {
            k: statistics.median(r[k] for r in good)
            for k in ("rtt_per_s", "p50_ms", "p99_ms", "rtt_per_cpu_s")
        }
        out.append(
            f"| {name} | {med['rtt_per_s']:,.0f} | {med['p50_ms']:.2f} | {med['p99_ms']:.2f} | "
            f"{med['rtt_per_cpu_s']:,.0f} | {ok} |"
        )
    table = "\n".join(out)
    doc = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}
    write_results(args.out_dir, f"ws-{stamp}", doc, "latest-ws.md", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
