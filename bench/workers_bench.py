"""Worker-process scaling: zzz ``--workers 1|2`` against uvicorn, gunicorn and granian.

This machine has 2 cores and wrk needs one, so two workers cannot double the
throughput; scaling is measured as *efficiency*: requests per second of server CPU
time (all processes of the server: supervisor/arbiter and workers, from
``/proc/<pid>/stat``). With two workers it should stay near that of one (the
supervisor and the second process cost almost nothing). Each server runs plaintext
GET and a 1 KiB POST echo with one wrk thread and keep-alive connections.

Method (why each part is there):

- **Adjacent, alternating pairs.** Other jobs share the machine, so its speed
  drifts. For each server the 1- and 2-worker runs are back to back, in the order
  1, 2 in even rounds and 2, 1 in odd ones, and the efficiency is the ratio within
  one round; the table gives the median ratio over the rounds (and the medians of
  the raw figures). Each cell records the 1-minute load average when it started.
- **Same client, and equal connections per worker.** ``c64``: 64 connections for
  both worker counts (the same offered load, split in two). ``c128``: two workers
  with 128 connections (64 each, what one worker had). wrk is the bottleneck at
  either count, so both are reported; neither makes a worker as busy as one
  worker alone (see bench/README.md).
- **Idle cost.** Before the load, the server's CPU time over ``--idle`` seconds
  with no request at all: what the supervisor/arbiter and per-worker background
  work (timers, watchdogs, polling threads) cost by themselves.
- ``--pin``: server on CPU 0, wrk on CPU 1 (``taskset``), so two workers share
  one core instead of competing with wrk.

Run from the repository root (needs wrk and the ``bench`` extra):

    PYTHONPATH=. python bench/workers_bench.py [--seconds 5] [--rounds 3] [--servers a,b]

Prints one JSON line per measurement and markdown tables of medians.
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
#: wrk keep-alive connections of the baseline (one worker, and two with the same load).
CONNECTIONS = 64
#: CPU the server is pinned to with ``--pin`` (wrk gets the other one).
SERVER_CPU, WRK_CPU = "0", "1"
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


def cpu_ns(pids: list[int]) -> int:
    """CPU time of every live thread of ``pids`` in ns (``schedstat``: precise, where
    ``stat`` counts 10 ms ticks; threads that exited are missing, fine while idle)."""
    total = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
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


def wrk(port: int, seconds: int, post: bool, connections: int = CONNECTIONS,
        pin: bool = False) -> dict[str, float]:
    env = dict(os.environ)
    path = "/echo" if post else "/"
    if post:
        env["BENCH_POST_BYTES"] = str(POST_BYTES)
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(LUA),
            f"http://127.0.0.1:{port}{path}"]
    if pin:
        argv = ["taskset", "-c", WRK_CPU, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 30,
                         check=True).stdout
    match = re.search(r"^BENCH_RESULT (\{.*\})$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(out[-300:])
    result: dict[str, float] = json.loads(match.group(1))
    return result


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def measure(name: str, workers: int, seconds: int, idle: float, pin: bool,
            round_no: int) -> list[dict[str, object]]:
    port = free_port()
    argv = with_port(name, servers(workers)[name], port)
    if pin:
        argv = ["taskset", "-c", SERVER_CPU, *argv]
    proc = subprocess.Popen(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    rows: list[dict[str, object]] = []
    base = {"server": name, "workers": workers, "round": round_no}
    try:
        wait_ready(port, proc)
        time.sleep(1.0)  # every worker up
        pids = tree(proc.pid)
        idle_before = cpu_ns(pids)
        time.sleep(idle)
        rows.append({**base, "scenario": "idle", "load": load_average(),
                     "idle_cpu_ms_per_s": round((cpu_ns(pids) - idle_before) / 1e6 / idle, 3),
                     "processes": len(pids)})
        cells = [(False, CONNECTIONS), (True, CONNECTIONS)]
        if workers > 1:
            cells += [(False, CONNECTIONS * workers), (True, CONNECTIONS * workers)]
        for post, connections in cells:
            load = load_average()
            wrk(port, 1, post, connections, pin)  # warm-up
            before = cpu(pids)
            result = wrk(port, seconds, post, connections, pin)
            used = cpu(pids) - before
            requests = result["requests"]
            errors = sum(int(v) for k, v in result.items() if k.startswith("err_"))
            rows.append({**base, "scenario": "post-echo" if post else "plaintext",
                         "connections": connections, "load": load,
                         "rps": round(requests / (result["duration_us"] / 1e6)),
                         "server_cpu_s": round(used, 2),
                         "req_per_cpu_s": round(requests / used) if used else 0,
                         "errors": errors, "processes": len(pids)})
    except (RuntimeError, subprocess.SubprocessError) as exc:
        rows.append({**base, "error": str(exc)})
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it started
            proc.wait(5)
    return rows


def pick(rows: list[dict[str, object]], **match: object) -> list[dict[str, object]]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def report(rows: list[dict[str, object]], names: list[str]) -> None:
    """Markdown tables: medians of the raw figures, and the median per-round ratio."""
    rounds = sorted({int(str(r["round"])) for r in rows})
    print("\n| server | scenario | req/s w1 | req/s w2 | req/CPU-s w1 | req/CPU-s w2 (c64) | "
          "eff c64 | req/CPU-s w2 (c128) | eff c128 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        for scenario in ("plaintext", "post-echo"):
            one = pick(rows, server=name, scenario=scenario, workers=1)
            two = pick(rows, server=name, scenario=scenario, workers=2, connections=CONNECTIONS)
            two_c = pick(rows, server=name, scenario=scenario, workers=2,
                         connections=2 * CONNECTIONS)
            eff: dict[str, list[float]] = {"c64": [], "c128": []}
            for n in rounds:
                base = pick(one, round=n)
                for key, cell in (("c64", two), ("c128", two_c)):
                    other = pick(cell, round=n)
                    if base and other and float(str(base[0]["req_per_cpu_s"])):
                        eff[key].append(float(str(other[0]["req_per_cpu_s"]))
                                        / float(str(base[0]["req_per_cpu_s"])))

            def med(cell: list[dict[str, object]], key: str) -> float:
                return median([float(str(r[key])) for r in cell])

            print(f"| {name} | {scenario} | {med(one, 'rps'):,.0f} | {med(two, 'rps'):,.0f} | "
                  f"{med(one, 'req_per_cpu_s'):,.0f} | {med(two, 'req_per_cpu_s'):,.0f} | "
                  f"{median(eff['c64']):.2f} | {med(two_c, 'req_per_cpu_s'):,.0f} | "
                  f"{median(eff['c128']):.2f} |")
    print("\n| server | idle CPU ms/s w1 | idle CPU ms/s w2 | processes w2 |")
    print("|---|---:|---:|---:|")
    for name in names:
        idle = {w: pick(rows, server=name, scenario="idle", workers=w) for w in (1, 2)}
        procs = max((int(str(r["processes"])) for r in idle[2]), default=0)
        print(f"| {name} | {median([float(str(r['idle_cpu_ms_per_s'])) for r in idle[1]]):.2f} | "
              f"{median([float(str(r['idle_cpu_ms_per_s'])) for r in idle[2]]):.2f} | {procs} |")
    loads = [float(str(r["load"])) for r in rows if "load" in r]
    if loads:
        print(f"\nload average during the run: {min(loads):.2f} to {max(loads):.2f} "
              f"(median {median(loads):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=float, default=3.0,
                        help="seconds of idle CPU measured per server before the load")
    parser.add_argument("--pin", action="store_true",
                        help=f"server on CPU {SERVER_CPU}, wrk on CPU {WRK_CPU}")
    parser.add_argument("--servers", default=",".join(servers(1)))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (make bench installs it)")
    if args.pin and shutil.which("taskset") is None:
        sys.exit("--pin needs taskset (util-linux)")
    names = args.servers.split(",")
    rows: list[dict[str, object]] = []
    for round_no in range(args.rounds):
        for name in names:
            order = (1, 2) if round_no % 2 == 0 else (2, 1)
            for workers in order:
                for row in measure(name, workers, args.seconds, args.idle, args.pin, round_no):
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    report(rows, names)


if __name__ == "__main__":
    main()
