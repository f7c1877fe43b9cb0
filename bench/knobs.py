"""Measure the socket tuning knobs (README "Performance tuning") on this machine.

Run from the repository root::

    python -m bench.knobs --rounds 3 --duration 4
    python -m bench.knobs --experiments read_size --backends native --rounds 1

Each experiment is one knob on one load shape with two or three settings. For R
rounds, for each experiment, backend and setting (interleaved, so slow drifts of a
shared machine hit every setting alike): start ``zzz run bench.apps.knobs_app:app``
with that setting's flags (pinned to one CPU), check its answer, warm it up, run
wrk (pinned to the other CPU), read the server's CPU time from /proc, stop it by
PID. Reported per cell, median of the rounds: req/s, MB/s moved, and CPU µs per
request, the figure that stays meaningful when other work shares the machine.
Raw runs go to bench/results/knobs-<timestamp>.json, the table to stdout and
bench/results/latest-knobs.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import servers
from bench.bench import RESULT_RE, WRK_GRACE_S, WRK_SCRIPT, WRK_TIMEOUT_S
from bench.servers import Pinning, ServerFailed, ServerSpec

APP = "bench.apps.knobs_app:app"
#: Body of the upload scenario: 1 MiB.
UPLOAD_BYTES = 1024 * 1024
#: The server's body limit: above the upload (the default, 1 MiB, is exactly it).
MAX_BODY = 2 * UPLOAD_BYTES
#: Bytes of the download scenario's answer (bench/apps/knobs_app.py: 256 x 64 KiB).
DOWNLOAD_BYTES = 16 * 1024 * 1024
BACKEND_EXTRA = {"native": ["--worker-threads", str(servers.POOL_THREADS)], "eventloop": []}


@dataclass(frozen=True)
class Load:
    """What wrk sends: path, body size, connections, and whether each request closes."""

    path: str
    post_bytes: int
    connections: int
    close: bool
    expect: bytes


LOADS = {
    "plaintext": Load("/", 0, 50, False, b"Hello, World!"),
    "close": Load("/", 0, 50, True, b"Hello, World!"),
    "upload": Load("/upload", UPLOAD_BYTES, 8, False, str(UPLOAD_BYTES).encode()),
    "download": Load("/download", 0, 8, False, b""),
    "pieces": Load("/pieces", 0, 50, False, b""),
}


@dataclass(frozen=True)
class Experiment:
    """One knob on one load: setting label -> extra ``zzz run`` flags (first: the default).

    A flag written ``env:NAME=VALUE`` is set in the server's environment instead.
    """

    name: str
    load: str
    settings: dict[str, list[str]]


def _sizes(flag: str, sizes: dict[str, int]) -> dict[str, list[str]]:
    return {label: ([f"--{flag}", str(n)] if n else []) for label, n in sizes.items()}


#: glibc malloc keeping freed memory instead of returning it at once (see bench/README.md).
NO_TRIM = ["env:MALLOC_MMAP_THRESHOLD_=67108864", "env:MALLOC_TRIM_THRESHOLD_=67108864"]
BUFFERS = {"default (autotuning)": 0, "64 KiB": 64 * 1024, "4 MiB": 4 * 1024 * 1024}
EXPERIMENTS = {
    e.name: e
    for e in (
        Experiment("tcp_nodelay/plaintext", "plaintext", {"on (default)": [],
                                                          "off": ["--no-tcp-nodelay"]}),
        Experiment("tcp_nodelay/pieces", "pieces", {"on (default)": [],
                                                      "off": ["--no-tcp-nodelay"]}),
        Experiment("tcp_nodelay/download", "download", {"on (default)": [],
                                                        "off": ["--no-tcp-nodelay"]}),
        Experiment("so_rcvbuf/upload", "upload", _sizes("so-rcvbuf", BUFFERS)),
        Experiment("so_sndbuf/download", "download", _sizes("so-sndbuf", BUFFERS)),
        Experiment("read_size/upload", "upload", {
            "default": [], **_sizes("read-size", {"16 KiB": 16384, "64 KiB": 65536,
                                                  "256 KiB": 262144})}),
        Experiment("read_size/plaintext", "plaintext", {
            "default": [], **_sizes("read-size", {"64 KiB": 65536})}),
        Experiment("malloc/upload", "upload", {
            "default": [], "no trim": NO_TRIM,
            "no trim + read_size 256 KiB": [*NO_TRIM, "--read-size", "262144"]}),
        Experiment("tcp_defer_accept/close", "close", {
            "off (default)": [], "1 s": ["--tcp-defer-accept-s", "1"]}),
    )
}


@dataclass(frozen=True)
class EnvSpec(ServerSpec):
    """A server spec with extra environment variables."""

    extra_env: tuple[tuple[str, str], ...] = ()

    def env(self) -> dict[str, str] | None:
        return {**os.environ, **dict(self.extra_env)} if self.extra_env else None


@dataclass
class Run:
    experiment: str
    backend: str
    setting: str
    round: int
    ok: bool = False
    error: str = ""
    rps: float = 0.0
    mb_s: float = 0.0
    cpu_us: float = 0.0
    sys_us: float = 0.0
    p50_ms: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


def wrk(args: argparse.Namespace, pin: Pinning, port: int, load: Load, secs: float,
        ) -> dict[str, Any]:
    cmd = [*pin.client, args.wrk, "-t", "1", "-c", str(load.connections),
           "-d", f"{max(1, round(secs))}s", "--timeout", f"{WRK_TIMEOUT_S}s", "-s", str(WRK_SCRIPT)]
    if load.close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://{servers.HOST}:{port}{load.path}")
    env = {k: v for k, v in os.environ.items() if k != "BENCH_POST_BYTES"}
    if load.post_bytes:
        env["BENCH_POST_BYTES"] = str(load.post_bytes)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=secs + WRK_GRACE_S, check=False)
    match = RESULT_RE.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise ServerFailed(f"wrk failed (exit {proc.returncode}): {proc.stderr[-300:]}")
    result: dict[str, Any] = json.loads(match.group(1))
    return result


def smoke(port: int, load: Load) -> None:
    """Refuse to measure a server that answers wrongly."""
    body = b"x" * load.post_bytes
    method = "POST" if body else "GET"
    raw = (f"{method} {load.path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    status, got = servers.http_request(port, raw, timeout=10)
    # Streamed (chunked) answers, expect=b"": the status only; the download's size is
    # checked in measure() (the probe reads only its start).
    if status != 200 or (load.expect and got != load.expect):
        raise ServerFailed(f"{load.path}: status {status}, {len(got)} bytes {got[:40]!r}")


def measure(args: argparse.Namespace, pin: Pinning, exp: Experiment, backend: str,
            setting: str, rnd: int) -> Run:
    run = Run(exp.name, backend, setting, rnd)
    load = LOADS[exp.load]
    flags = [f for f in exp.settings[setting] if not f.startswith("env:")]
    env = tuple(tuple(f[4:].split("=", 1)) for f in exp.settings[setting] if f.startswith("env:"))
    extra = [*BACKEND_EXTRA[backend], "--max-body-size", str(MAX_BODY), *flags]
    spec = EnvSpec(f"zzz-{backend}", servers._zzz(APP, backend, extra), setting,
                   extra_env=env)  # type: ignore[arg-type]
    log = args.out_dir / "logs" / f"knobs.{exp.name.replace('/', '.')}.{backend}.r{rnd}.log"
    try:
        with servers.running(spec, log, pin) as srv:
            smoke(srv.port, load)
            wrk(args, pin, srv.port, load, args.warmup)
            before = servers.tree_cpu_seconds(srv.pid)
            res = wrk(args, pin, srv.port, load, args.duration)
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
    run.p50_ms = res["p50_us"] / 1000
    run.ok = True
    return run


def outcome(res: dict[str, Any], load: Load) -> tuple[dict[str, int], int, float, str]:
    """wrk's result for ``load``: its errors, requests, seconds, and why the run does not
    count ("" when it does): more than 1 % failed requests, or short downloads."""
    errors = {k[4:]: int(v) for k, v in res.items() if k.startswith("err_") and v}
    requests = int(res["requests"])
    secs = res["duration_us"] / 1e6
    if not requests or errors.get("status", 0) + errors.get("timeout", 0) > requests // 100:
        return errors, requests, secs, f"too many failed requests: {errors} of {requests}"
    if load.path == "/download" and res["bytes"] < requests * DOWNLOAD_BYTES:
        return errors, requests, secs, (f"short downloads: {res['bytes']} bytes for "
                                        f"{requests} requests")
    return errors, requests, secs, ""


def _p50(runs: list[Run]) -> str:
    p50 = statistics.median(r.p50_ms for r in runs)
    return f"{p50:,.2f}" if p50 else "-"  # not recorded by the first version of this script


def table(runs: list[Run], meta: dict[str, Any]) -> str:
    out = [f"# Socket knobs ({meta['timestamp']})", "",
           f"{meta['machine']}; {meta['pinning']}; wrk -t1, {meta['duration']:g}s per run after "
           f"{meta['warmup']:g}s warm-up, median of {meta['rounds']} interleaved round(s).",
           f"uptime before: {meta['uptime_before']}", f"uptime after: {meta['uptime_after']}", "",
           "| experiment | backend | setting | req/s | MB/s | p50 ms | CPU µs/req (sys) | runs ok |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
    keys = list(dict.fromkeys((r.experiment, r.backend, r.setting) for r in runs))
    for key in keys:
        mine = [r for r in runs if (r.experiment, r.backend, r.setting) == key]
        good = [r for r in mine if r.ok]
        if not good:
            reason = next((r.error for r in mine if r.error), "?").splitlines()[0][:80]
            out.append(f"| {' | '.join(key)} | FAILED | | | | 0/{len(mine)} {reason} |")
            continue
        out.append(
            f"| {' | '.join(key)} | {statistics.median(r.rps for r in good):,.0f} | "
            f"{statistics.median(r.mb_s for r in good):,.1f} | "
            f"{_p50(good)} | "
            f"{statistics.median(r.cpu_us for r in good):,.1f} "
            f"({statistics.median(r.sys_us for r in good):,.1f}) | {len(good)}/{len(mine)} |")
    return "\n".join(out) + "\n"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiments", default=",".join(EXPERIMENTS),
                   help=f"comma-separated, of: {', '.join(EXPERIMENTS)}")
    p.add_argument("--backends", default="native,eventloop")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    p.add_argument("--out-dir", type=Path, default=servers.RESULTS_DIR)
    args = p.parse_args(argv)
    exps = [EXPERIMENTS[name] for name in args.experiments.split(",")]
    backends = args.backends.split(",")
    pin = servers.plan_pinning(not args.no_pin, 0, 1)
    meta = {"timestamp": time.strftime("%Y%m%d-%H%M%S"), "pinning": pin.description,
            "machine": f"{os.cpu_count()} CPUs", "duration": args.duration,
            "warmup": args.warmup, "rounds": args.rounds, "uptime_before": uptime(),
            "command": "python -m bench.knobs " + " ".join(argv or [])}
    runs: list[Run] = []
    for rnd in range(1, args.rounds + 1):
        for exp in exps:
            for backend in backends:
                for setting in exp.settings:
                    run = measure(args, pin, exp, backend, setting, rnd)
                    runs.append(run)
                    state = (f"{run.rps:,.0f} req/s {run.mb_s:,.1f} MB/s p50 {run.p50_ms:.2f} ms "
                             f"{run.cpu_us:,.1f} µs/req "
                             f"({run.sys_us:,.1f} sys)"
                             if run.ok else f"FAILED {run.error.splitlines()[0][:100]}")
                    print(f"r{rnd} {exp.name} {backend} {setting}: {state}", flush=True)
    meta["uptime_after"] = uptime()
    text = table(runs, meta)
    print(text)
    doc = {"meta": meta, "runs": [asdict(r) for r in runs]}
    servers.write_results(args.out_dir, f"knobs-{meta['timestamp']}", doc, "latest-knobs.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
