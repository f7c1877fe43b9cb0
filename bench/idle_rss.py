"""Memory cost of idle keep-alive connections, and whether a busy server still answers.

    python -m bench.idle_rss --servers zzz-eventloop,zzz-native,uvicorn --connections 10000

For each server: start it alone on 127.0.0.1, note its RSS (VmRSS from /proc, children
included), open N keep-alive connections that each send one complete request and read its
response, then leave them idle. Report the RSS growth per idle connection, how many
connections the server still holds open, and how long a brand-new client waits for an answer
while the idle ones are parked. Everything is bounded: connection count, per-socket timeouts
and an overall deadline after which the test stops opening connections and reports what it got.
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import servers
from bench.servers import HTTP_SERVERS, Pinning, ServerFailed, write_results

DEFAULT_SERVERS = "zzz-eventloop,zzz-native,uvicorn"
# Connections opened before their responses are read; below every server's accept backlog.
BATCH = 200
# Per-socket timeout while opening the idle connections.
SOCKET_TIMEOUT_S = 10.0
# File descriptors kept free for the harness itself (logs, the probe client, pipes).
FD_MARGIN = 64
# Pause before reading RSS, so allocations triggered by the last batch have settled.
SETTLE_S = 1.0
# New-client probes timed after the idle connections are in place (median reported).
PROBES = 5
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
MAX_RESPONSE_BYTES = 64 * 1024


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (servers started later inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def read_response(sock: socket.socket) -> None:
    """Read one response with a Content-Length body; raise OSError if it is not a 200."""
    data = b""
    while len(data) < MAX_RESPONSE_BYTES:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(body) >= length:
                if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                    raise OSError(f"unexpected response {head[:40]!r}")
                if b"connection: close" in head.lower():
                    raise OSError("server asked to close the connection")
                return
        chunk = sock.recv(MAX_RESPONSE_BYTES)
        if not chunk:
            raise OSError("server closed the connection")
        data += chunk
    raise OSError("response too large")


def count_open(socks: list[socket.socket]) -> int:
    """How many idle connections the server has not closed (a closed one polls readable)."""
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    closed = 0
    for fd, _ in poller.poll(0):
        sock = by_fd[fd]
        try:
            sock.setblocking(False)
            if sock.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return len(socks) - closed


def probe_new_client(port: int, timeout: float) -> list[float]:
    times = []
    for _ in range(PROBES):
        t0 = time.monotonic()
        status, body = servers.http_request(
            port, b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n", timeout
        )
        if status != 200 or body != b"Hello, World!":
            raise OSError(f"new client got status {status}, body {body[:40]!r}")
        times.append((time.monotonic() - t0) * 1000)
    return times


def measure(name: str, n: int, deadline_s: float, log_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"server": name, "target": n, "ok": False}
    socks: list[socket.socket] = []
    try:
        with servers.running(
            HTTP_SERVERS[name], log_dir / f"idle.{name}.log", Pinning(), idle=True
        ) as srv:
            for _ in range(3):
                servers.http_request(
                    srv.port, REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
                )
            time.sleep(SETTLE_S)
            before = servers.tree_rss_bytes(srv.pid)
            result["rss_before"] = before
            start = time.monotonic()
            error = ""
            confirmed = 0
            try:
                while len(socks) < n:
                    if time.monotonic() - start > deadline_s:
                        error = f"deadline of {deadline_s:.0f}s reached"
                        break
                    batch = []
                    for _ in range(min(BATCH, n - len(socks))):
                        s = socket.create_connection(
                            (servers.HOST, srv.port), timeout=SOCKET_TIMEOUT_S
                        )
                        batch.append(s)
                        socks.append(s)  # tracked at once, so it is closed whatever happens
                        s.sendall(REQUEST)
                    for s in batch:
                        read_response(s)
                        confirmed += 1
            except OSError as exc:
                error = f"after {confirmed} connections: {exc}"
            result["open_seconds"] = round(time.monotonic() - start, 2)
            result["opened"] = confirmed
            time.sleep(SETTLE_S)
            if srv.proc.poll() is not None:
                raise ServerFailed(f"server died {error}\n{srv.log_tail()}")
            after = servers.tree_rss_bytes(srv.pid)
            result["rss_after"] = after
            result["still_open"] = count_open(socks[:confirmed])
            if confirmed:
                result["bytes_per_conn"] = round((after - before) / confirmed)
            try:
                times = probe_new_client(srv.port, SOCKET_TIMEOUT_S)
                result["new_client_ms"] = round(statistics.median(times), 2)
                result["new_client_max_ms"] = round(max(times), 2)
            except OSError as exc:
                error = (error + "; " if error else "") + f"new client not answered: {exc}"
            result["error"] = error
            result["ok"] = not error
            if srv.proc.poll() is not None:
                result["ok"] = False
                result["error"] = f"server died\n{srv.log_tail()}"
    except (ServerFailed, OSError) as exc:
        result["error"] = str(exc)
    finally:
        for s in socks:
            s.close()
    return result


def render(results: list[dict[str, Any]], n: int) -> str:
    out = [f"## Idle keep-alive connections (target {n:,})", ""]
    out += [
        "| server | held | still open | RSS before MiB | RSS after MiB | bytes / idle conn | new client ms (median / max) | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    mib = 1024 * 1024
    for r in results:
        if "rss_after" not in r:
            reason = r.get("error", "").strip().splitlines()
            out.append(
                f"| {r['server']} | FAILED | - | - | - | - | - | {reason[0] if reason else ''} |"
            )
            continue
        probe = (
            f"{r['new_client_ms']} / {r['new_client_max_ms']}"
            if "new_client_ms" in r
            else "no answer"
        )
        note = r["error"].strip().splitlines()[0] if r.get("error") else ""
        out.append(
            f"| {r['server']} | {r['opened']:,} | {r['still_open']:,} | {r['rss_before'] / mib:.1f} | "
            f"{r['rss_after'] / mib:.1f} | {r.get('bytes_per_conn', 0):,} | {probe} | {note} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--servers", default=DEFAULT_SERVERS, help=f"from: {', '.join(HTTP_SERVERS)}")
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--deadline", type=float, default=120, help="max seconds to open connections")
    p.add_argument("--out-dir", type=Path, default=servers.RESULTS_DIR)
    args = p.parse_args(argv)
    names = servers.parse_names(args.servers, HTTP_SERVERS)

    limit = raise_fd_limit()
    n = args.connections
    if n + FD_MARGIN > limit:
        n = max(1, limit - FD_MARGIN)
        print(f"idle_rss: RLIMIT_NOFILE hard limit {limit}: testing {n} connections", flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = args.out_dir / "logs" / stamp
    results = []
    for name in names:
        print(f"idle_rss: {name}: opening {n:,} idle keep-alive connections ...", flush=True)
        r = measure(name, n, args.deadline, log_dir)
        results.append(r)
        print(
            f"idle_rss: {name}: {json.dumps({k: v for k, v in r.items() if k != 'error'})}"
            + (f"\n  error: {r['error']}" if r.get("error") else ""),
            flush=True,
        )
    table = render(results, n)
    doc = {"connections": n, "results": results}
    write_results(args.out_dir, f"idle-{stamp}", doc, "latest-idle.md", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
