"""Good-client latency under slow-client attack, each party in its own process.

``python tests/reliability/p99_probe.py --backend eventloop --transport tls``

test_slow_clients.py runs the server, the attackers and the good client in one
process, so the good client's latency there includes waiting for the GIL behind
the attackers' own asyncio loop (and its TLS handshakes). This probe separates
them: the server is a ``zzz run`` subprocess (the test's deadlines), the
attackers (the same :mod:`attackers` mix) another process, and the good client a
plain blocking keep-alive socket in this one. It prints the good client's median,
p99 and max, and the server's CPU seconds, with and without the attack. Not run
by ``make test``: a measuring tool for the report (machine load moves its figures).
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from integration.tls_helpers import make_tls_files  # noqa: E402

from reliability.conftest import start_cli_server  # noqa: E402

#: The attack mix of test_slow_clients.py's main test.
HEAD_ATTACKS = ("slowloris", "slow_body", "silent", "half_open")
#: Deadlines of the server under attack (ms), as in test_slow_clients.py.
DEADLINE_MS = "1000"
#: Pause between two requests of the good client.
PAUSE_S = 0.01
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
ATTACK = (
    "import sys, ssl\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from reliability.attackers import run_attackers\n"
    "port, count, ca, phase = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])\n"
    f"kinds = [{HEAD_ATTACKS!r}[i % 4] for i in range(count)]\n"
    "context = ssl.create_default_context(cafile=ca) if ca != '-' else None\n"
    "out = run_attackers(kinds, port, context, phase)\n"
    "print(sum(o.cut_after is not None for o in out), 'of', len(out), 'cut;',\n"
    "      sum(o.error is not None for o in out), 'errors')\n"
)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _connect(port: int, context: ssl.SSLContext | None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="localhost")
    return sock


def _ask(sock: socket.socket) -> bool:
    """One request; False when the server had closed the connection (keep-alive
    request limit): the caller reconnects, as httpx does, inside the timed span."""
    try:
        sock.sendall(REQUEST)
        data = b""
        while not data.endswith(b"hello"):
            chunk = sock.recv(65536)
            if not chunk:
                return False
            data += chunk
    except (ConnectionError, ssl.SSLError):
        return False
    return True


def good_client(port: int, context: ssl.SSLContext | None, stop: threading.Event,
                latencies: list[float]) -> None:
    sock = _connect(port, context)
    while not stop.is_set():
        started = time.perf_counter()
        if not _ask(sock):
            sock.close()
            sock = _connect(port, context)
            if not _ask(sock):
                raise ConnectionError("a fresh connection was closed without an answer")
        latencies.append(time.perf_counter() - started)
        stop.wait(PAUSE_S)
    sock.close()


def measure(port: int, context: ssl.SSLContext | None, seconds: float,
            attack: subprocess.Popen[str] | None) -> list[float]:
    stop, latencies = threading.Event(), []
    thread = threading.Thread(target=good_client, args=(port, context, stop, latencies))
    thread.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (attack is None or attack.poll() is None):
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    return sorted(latencies)


def report(label: str, lat: list[float], cpu: float) -> None:
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"{label}: {len(lat)} requests, median {statistics.median(lat) * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms; server CPU {cpu:.2f} s",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="eventloop")
    parser.add_argument("--transport", default="tcp", choices=["tcp", "tls"])
    parser.add_argument("--attackers", type=int, default=1000)
    parser.add_argument("--phase", type=float, default=5.0)
    parser.add_argument("--extra", nargs="*", default=[], help="more zzz run flags")
    parser.add_argument("--profile", help="py-spy collapsed stacks of the server under "
                        "attack to this file (py-spy from the bench extra)")
    args = parser.parse_args()
    flags = ["tests.integration.apps:app", "--backend", args.backend,
             "--read-timeout-ms", DEADLINE_MS, "--write-timeout-ms", DEADLINE_MS,
             "--keepalive-timeout-ms", DEADLINE_MS, "--max-connections", "4096",
             "--kernel-backlog", str(max(128, args.attackers)), *args.extra]
    ca, context = "-", None
    with tempfile.TemporaryDirectory() as tmp:
        if args.transport == "tls":
            files = make_tls_files(Path(tmp), "probe")
            flags += ["--tls-cert", str(files.cert_file), "--tls-key", str(files.key_file)]
            ca = str(files.ca_file)
            context = ssl.create_default_context(cafile=ca)
        srv = start_cli_server(*flags, nofile="max")
        try:
            label = f"{args.backend}/{args.transport}"
            before = cpu_s(srv.proc.pid)
            report(f"[{label}] quiet", measure(srv.port, context, 2.0, None),
                   cpu_s(srv.proc.pid) - before)
            before = cpu_s(srv.proc.pid)
            spy = None
            if args.profile:
                spy = subprocess.Popen(
                    ["py-spy", "record", "-p", str(srv.proc.pid), "-r", "200", "-d",
                     str(int(args.phase)), "-f", "raw", "-o", args.profile, "-t", "-n"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.0)  # py-spy attaches
            attack = subprocess.Popen(
                [sys.executable, "-c", ATTACK, str(TESTS), str(srv.port), str(args.attackers),
                 ca, str(args.phase)], stdout=subprocess.PIPE, text=True)
            lat = measure(srv.port, context, args.phase + 10, attack)
            out, _ = attack.communicate(30)
            report(f"[{label}] {args.attackers} attackers ({out.strip()})", lat,
                   cpu_s(srv.proc.pid) - before)
            if spy is not None:
                spy.wait(args.phase + 30)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
