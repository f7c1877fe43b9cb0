"""Worker-process scaling: zzz ``--workers 1|2`` against uvicorn, gunicorn and granian.

This machine has 2 cores and wrk needs one, so two workers cannot double the
throughput; scaling is measured as *efficiency*: requests per second of server CPU
time (all processes of the server: supervisor/arbiter and workers, from
``/proc/<pid>/stat``). With two workers it should stay near that of one (the
supervisor and the second process cost almost nothing). Each server runs plaintext
GET and a 1 KiB POST echo, rounds interleaved, one wrk thread and 64 keep-alive
connections. Run from the repository root (needs wrk and the ``bench`` extra):

    PYTHONPATH=. python bench/workers_bench.py [--seconds 5] [--rounds 2]

Prints one JSON line per run and a markdown table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "wrk_report.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Threads per process for the thread-pool servers (as bench/servers.py).
POOL_THREADS = 4
#: wrk keep-alive connections.
CONNECTIONS = 64
#: Longest wait for a server to answer after starting.
START_S = 30.0
POST_BYTES = 1024


def servers(workers: int) -> dict[str, list[str]]:
    py = sys.executable
    w = str(workers)
    zzz = [py, "-m", "zzz", "run", "bench.apps.zzz_app:app", "--log-level", "warning",
           "--max-requests-per-connection", "1000000", "--workers", w]
    return {
        "zzz-native": [*zzz, "--backend", "native", "--worker-threads", str(POOL_THREADS)],
        "zzz-eventloop": [*zzz, "--backend", "eventloop"],
        "uvicorn": [py, "-m", "uvicorn", "bench.apps.asgi_app:app", "--http", "httptools",
                    "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
                    "--ws", "none", "--workers", w],
        "gunicorn-gthread": [py, "-m", "gunicorn", "-k", "gthread", "-w", w, "--threads",
                             str(POOL_THREADS), "--log-level", "warning",
                             "bench.apps.wsgi_app:app"],
        "gunicorn-uvicorn": [py, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker",
                             "-w", w, "--log-level", "warning", "bench.apps.asgi_app:app"],
        "granian": [py, "-m", "granian", "--interface", "asgi", "--workers", w,
                    "--runtime-threads", "1", "--loop", "uvloop", "--http", "1", "--no-ws",
                    "--log-level", "warning", "--no-access-log", "bench.apps.asgi_app:app"],
    }


def with_port(name: str, argv: list[str], port: int) -> list[str]:
    if name.startswith("gunicorn"):
        return [*argv[:-1], "-b", f"127.0.0.1:{port}", argv[-1]]
    if name.startswith("zzz"):
        return [*argv, "--host", "127.0.0.1", "--port", str(port)]
    return [*argv, "--host", "127.0.0.1", "--port", str(port)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("not ready")


def wrk(port: int, seconds: int, post: bool) -> dict[str, float]:
    env = dict(os.environ)
    path = "/echo" if post else "/"
    if post:
        env["BENCH_POST_BYTES"] = str(POST_BYTES)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(LUA),
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, env=env, timeout=seconds + 30, check=True).stdout
    match = re.search(r"^BENCH_RESULT (\{.*\})$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(out[-300:])
    result: dict[str, float] = json.loads(match.group(1))
    return result


def measure(name: str, workers: int, seconds: int) -> list[dict[str, object]]:
    port = free_port()
    argv = with_port(name, servers(workers)[name], port)
    proc = subprocess.Popen(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    rows: list[dict[str, object]] = []
    try:
        wait_ready(port, proc)
        time.sleep(1.0)  # every worker up
        pids = tree(proc.pid)
        for post in (False, True):
            wrk(port, 1, post)  # warm-up
            before = cpu(pids)
            result = wrk(port, seconds, post)
            used = cpu(pids) - before
            requests = result["requests"]
            errors = sum(int(v) for k, v in result.items() if k.startswith("err_"))
            rows.append({"server": name, "workers": workers,
                         "scenario": "post-echo" if post else "plaintext",
                         "rps": round(requests / (result["duration_us"] / 1e6)),
                         "server_cpu_s": round(used, 2),
                         "req_per_cpu_s": round(requests / used) if used else 0,
                         "errors": errors, "processes": len(pids)})
    except (RuntimeError, subprocess.SubprocessError) as exc:
        rows.append({"server": name, "workers": workers, "error": str(exc)})
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it started
            proc.wait(5)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--servers", default=",".join(servers(1)))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (make bench installs it)")
    names = args.servers.split(",")
    rows: list[dict[str, object]] = []
    for _ in range(args.rounds):
        for workers in (1, 2):
            for name in names:
                for row in measure(name, workers, args.seconds):
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    print("\n| server | scenario | req/s w1 | req/s w2 | req/CPU-s w1 | req/CPU-s w2 | w2/w1 eff |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        for scenario in ("plaintext", "post-echo"):
            cell = {}
            for workers in (1, 2):
                ok = [r for r in rows if r.get("server") == name and r.get("workers") == workers
                      and r.get("scenario") == scenario]
                cell[workers] = (statistics.median(float(r["rps"]) for r in ok) if ok else 0,
                                 statistics.median(float(r["req_per_cpu_s"]) for r in ok)
                                 if ok else 0)
            eff = cell[2][1] / cell[1][1] if cell[1][1] else 0
            print(f"| {name} | {scenario} | {cell[1][0]:.0f} | {cell[2][0]:.0f} | "
                  f"{cell[1][1]:.0f} | {cell[2][1]:.0f} | {eff:.2f} |")


if __name__ == "__main__":
    main()
