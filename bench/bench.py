"""HTTP throughput/latency benchmark: zzz against other Python servers, measured with wrk.

Run from the repository root (bench/run.sh does this)::

    python -m bench.bench --servers uvicorn,waitress --duration 3 --rounds 1

For R rounds, for each scenario, for each server: start that server alone on 127.0.0.1
(pinned to one CPU), check its answers, warm it up, run wrk (pinned to another CPU), stop it
by PID. Interleaving rounds spreads slow drifts of the machine over every server. The median
of the rounds is reported per cell; raw figures go to bench/results/<timestamp>.json and the
table to stdout and bench/results/latest.md, a bar chart to bench/results/latest.png. A server
that fails is reported and skipped.

Each measured run also records the server's CPU time (user and system, from /proc/<pid>/stat
of the server and its workers) divided by the requests served: the per-request CPU budget,
which shows a hot-path regression even when the machine is too noisy for req/s to.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import servers
from bench.servers import HTTP_SERVERS, Pinning, ServerFailed, write_results

WRK_SCRIPT = servers.BENCH_DIR / "wrk_report.lua"
# Size of the echo scenario's request body.
ECHO_BODY_BYTES = 1024
# wrk's own timeout per request; a reply slower than this counts as a timeout error.
WRK_TIMEOUT_S = 5
# Extra seconds wrk may run beyond --duration before the harness gives up on it.
WRK_GRACE_S = 30
# Pairs whose servers are not both in a run are left out of its ratio table.
DEFAULT_COMPARE = ",".join(
    [
        "zzz-native/waitress",
        "zzz-native/uvicorn",
        "zzz-eventloop/uvicorn",
        "zzz-eventloop-async/uvicorn",
        # Issue 9: the same raw ASGI / WSGI app on zzz and on its peers.
        "zzz-eventloop-asgi/uvicorn",
        "zzz-eventloop-asgi/granian",
        "zzz-eventloop-asgi/hypercorn",
        "zzz-native-asgi/uvicorn",
        "zzz-native-wsgi/gunicorn",
        "zzz-native-wsgi/waitress",
        "zzz-native-wsgi/granian-wsgi",
        "zzz-eventloop-wsgi/gunicorn",
        "zzz-eventloop-wsgi/waitress",
        "zzz-eventloop-wsgi/granian-wsgi",
        # Before/after: current zzz over the baseline checkout.
        "zzz-native/zzz-native-base",
        "zzz-native-async/zzz-native-async-base",
        "zzz-eventloop/zzz-eventloop-base",
        "zzz-eventloop-async/zzz-eventloop-async-base",
    ]
)
# Failures that will repeat in every later cell of that server: it is skipped from then on.
BROKEN_CAUSES = ("before answering", "no HTTP answer", "no baseline zzz checkout")
RESULT_RE = re.compile(r"^BENCH_RESULT (\{.*\})$", re.MULTILINE)


@dataclass(frozen=True)
class Scenario:
    """One load shape: what wrk requests and how many connections it keeps."""

    name: str
    path: str
    post_bytes: int
    connection_close: bool
    description: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("plaintext", "/", 0, False, "GET / -> 13-byte text/plain, keep-alive"),
        Scenario("echo", "/echo", ECHO_BODY_BYTES, False, "POST /echo 1 KiB body, keep-alive"),
        Scenario("close", "/", 0, True, "GET / with Connection: close (new TCP conn per req)"),
    )
}


@dataclass
class Run:
    """One wrk measurement (or failure) of one server in one scenario and round."""

    server: str
    scenario: str
    round: int
    ok: bool
    error: str = ""
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    start_s: float = 0.0
    # Server CPU time per completed request during the measured run, microseconds.
    cpu_user_us: float = 0.0
    cpu_sys_us: float = 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_user_us + self.cpu_sys_us


def check_answers(port: int, scenario: Scenario) -> None:
    """Refuse to benchmark a server whose endpoint answers wrongly (fast but wrong is no win)."""
    if scenario.post_bytes:
        body = b"x" * scenario.post_bytes
        raw = (
            f"POST {scenario.path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        expected = body
    else:
        raw = f"GET {scenario.path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode()
        expected = b"Hello, World!"
    try:
        status, got = servers.http_request(port, raw)
    except (OSError, ValueError) as exc:
        raise ServerFailed(f"smoke check of {scenario.path} failed: {exc}") from exc
    if status != 200 or got != expected:
        raise ServerFailed(
            f"smoke check of {scenario.path}: status {status}, body {got[:60]!r} "
            f"(expected 200, {expected[:20]!r}...)"
        )


def wrk_command(
    args: argparse.Namespace, pin: Pinning, port: int, sc: Scenario, secs: float
) -> list[str]:
    conns = args.close_connections if sc.connection_close else args.connections
    cmd = [*pin.client, args.wrk, "-t", str(args.threads), "-c", str(conns)]
    cmd += ["-d", f"{max(1, round(secs))}s", "--latency", "--timeout", f"{WRK_TIMEOUT_S}s"]
    cmd += ["-s", str(WRK_SCRIPT)]
    if sc.connection_close:
        cmd += ["-H", "Connection: close"]
    return [*cmd, f"http://{servers.HOST}:{port}{sc.path}"]


def run_wrk(cmd: list[str], sc: Scenario, secs: float) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("BENCH_POST_BYTES", None)
    if sc.post_bytes:
        env["BENCH_POST_BYTES"] = str(sc.post_bytes)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=secs + WRK_GRACE_S, check=False
    )
    match = RESULT_RE.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise ServerFailed(
            f"wrk failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-400:]}"
        )
    result: dict[str, Any] = json.loads(match.group(1))
    return result


def measure(
    args: argparse.Namespace, pin: Pinning, name: str, sc: Scenario, rnd: int, log_dir: Path
) -> Run:
    spec = HTTP_SERVERS[name]
    log_path = log_dir / f"{name}.{sc.name}.r{rnd}.log"
    run = Run(server=name, scenario=sc.name, round=rnd, ok=False)
    try:
        with servers.running(spec, log_path, pin, timeout=args.start_timeout) as srv:
            check_answers(srv.port, sc)
            if args.warmup > 0:
                run_wrk(wrk_command(args, pin, srv.port, sc, args.warmup), sc, args.warmup)
            cpu_before = servers.tree_cpu_seconds(srv.pid)
            res = run_wrk(wrk_command(args, pin, srv.port, sc, args.duration), sc, args.duration)
            cpu_after = servers.tree_cpu_seconds(srv.pid)
            if srv.proc.poll() is not None:
                raise ServerFailed(f"server died during the run\n{srv.log_tail()}")
    except (ServerFailed, subprocess.TimeoutExpired, OSError) as exc:
        run.error = str(exc)
        return run
    run.errors = {k[4:]: int(v) for k, v in res.items() if k.startswith("err_") and v}
    run.requests = int(res["requests"])
    run.rps = res["requests"] / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0
    run.p50_ms = res["p50_us"] / 1000
    run.p99_ms = res["p99_us"] / 1000
    if run.requests:
        run.cpu_user_us = (cpu_after[0] - cpu_before[0]) * 1e6 / run.requests
        run.cpu_sys_us = (cpu_after[1] - cpu_before[1]) * 1e6 / run.requests
    # wrk counts non-2xx/3xx replies as status errors: those requests are not successes.
    bad = run.errors.get("status", 0) + run.errors.get("timeout", 0)
    if run.requests == 0 or bad > run.requests // 100:
        run.error = f"too many failed requests: {run.errors} of {run.requests}"
        return run
    run.ok = True
    return run


# --- reporting -------------------------------------------------------------------------------


def median_cells(runs: list[Run]) -> dict[tuple[str, str], dict[str, Any]]:
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for key in {(r.server, r.scenario) for r in runs}:
        mine = [r for r in runs if (r.server, r.scenario) == key]
        good = [r for r in mine if r.ok]
        cell: dict[str, Any] = {"ok_runs": len(good), "runs": len(mine)}
        if good:
            cell["rps"] = statistics.median(r.rps for r in good)
            cell["rps_min"] = min(r.rps for r in good)
            cell["rps_max"] = max(r.rps for r in good)
            cell["p50_ms"] = statistics.median(r.p50_ms for r in good)
            cell["p99_ms"] = statistics.median(r.p99_ms for r in good)
            cell["cpu_user_us"] = statistics.median(r.cpu_user_us for r in good)
            cell["cpu_sys_us"] = statistics.median(r.cpu_sys_us for r in good)
            cell["cpu_us"] = statistics.median(r.cpu_us for r in good)
            socket_errors = sum(sum(r.errors.values()) for r in good)
            cell["errors"] = socket_errors
        else:
            cell["error"] = next((r.error for r in mine if r.error), "not run")
        cells[key] = cell
    return cells


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def render_markdown(
    meta: dict[str, Any],
    cells: dict[tuple[str, str], dict[str, Any]],
    server_names: list[str],
    scenario_names: list[str],
    compare: list[tuple[str, str]],
) -> str:
    out = [f"# zzz benchmark results ({meta['timestamp']})", ""]
    out.append(
        f"Machine: {meta['cpu_count']} CPUs ({meta['cpu_model']}), {meta['platform']}, "
        f"Python {meta['python']}. Pinning: {meta['pinning']}."
    )
    out.append(
        f"wrk -t{meta['threads']}, {meta['connections']} connections keep-alive / "
        f"{meta['close_connections']} for close, {meta['duration']}s per run after "
        f"{meta['warmup']}s warm-up, median of {meta['rounds']} interleaved round(s)."
    )
    out.append(
        f"Load average (1/5/15 min) before: {meta['loadavg_before']}, after: "
        f"{meta['loadavg_after']} (above ~1 before the start means other work shared the CPUs)."
    )
    out.append(f"zzz commit: {meta['commit']}.")
    if meta.get("baseline_commit"):
        out.append(f"Baseline (`*-base`) commit: {meta['baseline_commit']}.")
    out.append(
        "CPU µs/req: the server's user + system CPU time during the measured run (all its "
        "threads and workers, from /proc/<pid>/stat) per completed request, median of the rounds."
    )
    out.append("")
    for sc in scenario_names:
        out += [f"## {sc}: {SCENARIOS[sc].description}", ""]
        out += [
            "| server | req/s | min-max req/s | p50 ms | p99 ms | CPU µs/req (user+sys) "
            "| runs ok | note |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name in server_names:
            cell = cells.get((name, sc))
            if cell is None:
                continue
            runs = f"{cell['ok_runs']}/{cell['runs']}"
            if "rps" in cell:
                note = f"{cell['errors']} socket errors" if cell["errors"] else ""
                out.append(
                    f"| {name} | {cell['rps']:,.0f} | "
                    f"{cell['rps_min']:,.0f}-{cell['rps_max']:,.0f} | {cell['p50_ms']:.2f} | "
                    f"{cell['p99_ms']:.2f} | {cell['cpu_us']:.1f} "
                    f"({cell['cpu_user_us']:.1f}+{cell['cpu_sys_us']:.1f}) | {runs} | {note} |"
                )
            else:
                reason = first_line(cell["error"]).replace("|", "/")[:120]
                out.append(f"| {name} | FAILED | - | - | - | - | {runs} | {reason} |")
        out.append("")
    if compare:
        out += ["## Ratios (req/s of the first server / req/s of the baseline)", ""]
        out += ["| pair | " + " | ".join(scenario_names) + " |"]
        out += ["|---|" + "---:|" * len(scenario_names)]
        for a, b in compare:
            row = []
            for sc in scenario_names:
                ca, cb = cells.get((a, sc), {}), cells.get((b, sc), {})
                if "rps" in ca and "rps" in cb and cb["rps"]:
                    row.append(f"{ca['rps'] / cb['rps']:.2f}x")
                else:
                    row.append("n/a")
            out.append(f"| {a} / {b} | " + " | ".join(row) + " |")
        out.append("")
        # On a shared machine req/s swings with whatever else runs; the CPU a server spends
        # per request swings much less, so its ratio is the steadier comparison.
        out += [
            "## CPU ratios (the baseline's CPU µs/req / the first server's; above 1: the first "
            "spends less CPU per request)",
            "",
        ]
        out += ["| pair | " + " | ".join(scenario_names) + " |"]
        out += ["|---|" + "---:|" * len(scenario_names)]
        for a, b in compare:
            row = []
            for sc in scenario_names:
                ca, cb = cells.get((a, sc), {}), cells.get((b, sc), {})
                if ca.get("cpu_us") and cb.get("cpu_us"):
                    row.append(f"{cb['cpu_us'] / ca['cpu_us']:.2f}x")
                else:
                    row.append("n/a")
            out.append(f"| {a} / {b} | " + " | ".join(row) + " |")
        out.append("")
    failures = [
        (name, sc, cells[(name, sc)]["error"])
        for name in server_names
        for sc in scenario_names
        if (name, sc) in cells and "rps" not in cells[(name, sc)]
    ]
    if failures:
        out += ["## Failures", ""]
        for name, sc, err in failures:
            out.append(f"- **{name}** / {sc}:")
            out += ["  ```", *[f"  {line}" for line in err.strip().splitlines()], "  ```"]
        out.append("")
    return "\n".join(out)


def render_chart(
    path: Path,
    meta: dict[str, Any],
    cells: dict[tuple[str, str], dict[str, Any]],
    server_names: list[str],
    scenario_names: list[str],
) -> bool:
    """Write a grouped bar chart of median req/s (one group per scenario) to ``path``.

    matplotlib comes from the ``bench`` extra; without it the chart is skipped with a note
    (False), the tables and JSON being the results of record.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: write files only
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib not installed (pip install -e '.[bench]'): no chart")
        return False
    width = 0.8 / max(1, len(server_names))
    fig, ax = plt.subplots(
        figsize=(max(8.0, 1.6 + 0.45 * len(server_names) * len(scenario_names)), 5)
    )
    for i, name in enumerate(server_names):
        xs, ys = [], []
        for j, sc in enumerate(scenario_names):
            cell = cells.get((name, sc), {})
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(cell.get("rps", 0.0))
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, labels=[f"{y / 1000:.1f}k" if y else "fail" for y in ys], fontsize=6)
    ax.set_xticks(range(len(scenario_names)), scenario_names)
    ax.set_ylabel("req/s (median)")
    ax.set_title(
        f"zzz benchmark {meta['timestamp']}: median of {meta['rounds']} round(s), "
        f"{meta['duration']:g}s each",
        fontsize=10,
    )
    ax.legend(fontsize=7, ncols=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def git_commit(tree: Path) -> str:
    """``<short hash> <subject>`` of the checkout at ``tree`` (empty when it is not one)."""
    proc = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parse_compare(text: str, names: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in text.split(","):
        a, sep, b = item.strip().partition("/")
        if sep and a in names and b in names:
            pairs.append((a, b))
    return pairs


def publish(
    out_dir: Path,
    label: str,
    doc: dict[str, Any],
    cells: dict[tuple[str, str], dict[str, Any]],
    compare_text: str,
) -> None:
    """Write ``<stamp>.json``, ``latest[-label].md`` and ``latest[-label].png`` for one run."""
    meta = doc["meta"]
    names, scenario_names = list(meta["servers"]), list(meta["scenarios"])
    compare = parse_compare(compare_text, names)
    table = render_markdown(meta, cells, names, scenario_names, compare)
    latest = f"latest-{label}" if label else "latest"
    chart = out_dir / f"{latest}.png"
    if render_chart(chart, meta, cells, names, scenario_names):
        table += f"\n![req/s per server and scenario]({chart.name})\n"
    write_results(out_dir, meta["timestamp"], doc, f"{latest}.md", table)
    if chart.exists():
        print(f"chart: {chart}")


def rerender(path: Path, out_dir: Path, label: str, compare_text: str) -> int:
    """Redraw an earlier run's tables and chart from its JSON (rewritten unchanged)."""
    doc = json.loads(path.read_text())
    cells = {
        (m["server"], m["scenario"]): {
            k: v for k, v in m.items() if k not in ("server", "scenario")
        }
        for m in doc["medians"]
    }
    publish(out_dir, label, doc, cells, compare_text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--servers",
        default=",".join(servers.DEFAULT_HTTP_SERVERS),
        help=f"comma-separated, from: {', '.join(HTTP_SERVERS)}",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, from: {', '.join(SCENARIOS)}",
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; median reported")
    p.add_argument("--duration", type=float, default=10, help="seconds of each measured wrk run")
    p.add_argument(
        "--warmup", type=float, default=1, help="seconds of unmeasured wrk warm-up (0: none)"
    )
    p.add_argument(
        "--connections", type=int, default=64, help="wrk connections, keep-alive scenarios"
    )
    p.add_argument(
        "--close-connections", type=int, default=16, help="wrk connections, close scenario"
    )
    p.add_argument("--threads", type=int, default=1, help="wrk threads (it is pinned to one CPU)")
    p.add_argument(
        "--compare",
        default=DEFAULT_COMPARE,
        help="comma-separated A/B pairs: ratio of A's req/s to baseline B's",
    )
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--wrk-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--start-timeout", type=float, default=servers.START_TIMEOUT_S)
    p.add_argument("--wrk", default=shutil.which("wrk") or "wrk", help="wrk binary")
    p.add_argument("--out-dir", type=Path, default=servers.RESULTS_DIR)
    p.add_argument(
        "--label",
        default="",
        help="name results <label>-<timestamp>.json and latest-<label>.md/.png "
        "(e.g. quick), so they do not replace the full run's latest.md",
    )
    p.add_argument(
        "--baseline-tree",
        type=Path,
        default=servers.BASELINE_TREE,
        help="older zzz checkout the *-base servers run from (git worktree add PATH COMMIT)",
    )
    p.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="do not measure: redraw the tables and chart of an earlier run's JSON",
    )
    args = p.parse_args(argv)
    servers.BASELINE_TREE = args.baseline_tree.resolve()
    if args.render is not None:
        return rerender(args.render, args.out_dir, args.label, args.compare)

    names = servers.parse_names(args.servers, HTTP_SERVERS)
    scenario_names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenario_names if s not in SCENARIOS]
    if unknown or not names or not scenario_names:
        p.error(f"need known servers and scenarios (unknown scenarios: {unknown})")
    if args.rounds < 1 or args.duration < 1:
        p.error("--rounds and --duration must be at least 1")
    if shutil.which(args.wrk) is None:
        p.error(f"wrk not found ({args.wrk}); bench/run.sh installs it")

    pin = servers.plan_pinning(not args.no_pin, args.server_cpu, args.wrk_cpu)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.label:
        stamp = f"{args.label}-{stamp}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = args.out_dir / "logs" / stamp
    total = args.rounds * len(scenario_names) * len(names)
    print(
        f"bench: {len(names)} server(s) x {len(scenario_names)} scenario(s) x {args.rounds} "
        f"round(s) = {total} runs; {pin.description}; logs in {log_dir}",
        flush=True,
    )

    load_before = os.getloadavg()
    # Recorded before measuring: the checkout may get new commits while a long run goes on.
    commit = git_commit(servers.REPO_ROOT)
    baseline_commit = (
        git_commit(servers.BASELINE_TREE) if any(HTTP_SERVERS[n].baseline for n in names) else ""
    )
    runs: list[Run] = []
    broken: dict[str, str] = {}
    done = 0
    for rnd in range(1, args.rounds + 1):
        for sc_name in scenario_names:
            sc = SCENARIOS[sc_name]
            for name in names:
                done += 1
                if name in broken:
                    # It failed to start once; retrying every cell would only burn time.
                    runs.append(Run(name, sc_name, rnd, False, f"skipped: {broken[name]}"))
                    continue
                t0 = time.monotonic()
                run = measure(args, pin, name, sc, rnd, log_dir)
                runs.append(run)
                took = time.monotonic() - t0
                if run.ok:
                    extra = f" errors={run.errors}" if run.errors else ""
                    print(
                        f"[{done}/{total}] r{rnd} {sc_name:9} {name:20} {run.rps:10,.0f} req/s  "
                        f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:7.2f} ms  "
                        f"cpu {run.cpu_us:5.1f} us/req{extra}  ({took:.0f}s)",
                        flush=True,
                    )
                else:
                    print(
                        f"[{done}/{total}] r{rnd} {sc_name:9} {name:20} FAILED: "
                        f"{run.error.strip()}",
                        flush=True,
                    )
                    if any(cause in run.error for cause in BROKEN_CAUSES):
                        broken[name] = first_line(run.error)

    cells = median_cells(runs)
    meta = {
        "timestamp": stamp,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pinning": pin.description,
        "commit": commit,
        "baseline_commit": baseline_commit,
        # Other work on the machine skews every figure; the load averages make that visible.
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "wrk_version": first_line(
            subprocess.run([args.wrk, "-v"], capture_output=True, text=True, check=False).stdout
        ),
        "rounds": args.rounds,
        "duration": args.duration,
        "warmup": args.warmup,
        "threads": args.threads,
        "connections": args.connections,
        "close_connections": args.close_connections,
        "servers": {
            n: {"note": HTTP_SERVERS[n].note, "argv": HTTP_SERVERS[n].argv(0, False)} for n in names
        },
        "scenarios": {s: asdict(SCENARIOS[s]) for s in scenario_names},
    }
    doc = {
        "meta": meta,
        "runs": [asdict(r) for r in runs],
        "medians": [{"server": k[0], "scenario": k[1], **v} for k, v in sorted(cells.items())],
    }
    publish(args.out_dir, args.label, doc, cells, args.compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
