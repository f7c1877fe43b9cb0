"""Run the Autobahn|Testsuite fuzzing client against zzz's WebSocket echo (``make autobahn``).

For each backend an echo server (every message sent back as received) starts in
this process on 127.0.0.1, and ``wstest -m fuzzingclient`` (Autobahn|Testsuite,
Python 2.7: ``make autobahn`` installs it and its pinned requirements under
``.autobahn/``) runs its cases against it. The report lands in
``.autobahn/reports/<backend>/``; this script prints the count of each
behaviour and exits 1 on any FAILED case or on more NON-STRICT cases than
:data:`MAX_NON_STRICT` (uvicorn on wsproto's count in the same run).

``--quick`` leaves out 12.x and 13.x (permessage-deflate at many sizes and
window bits: most of the ~10 minutes a backend takes).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import zzz
from zzz.config import Config
from zzz.server import Server

#: NON-STRICT cases tolerated (uvicorn on wsproto scores 7 in the same run).
MAX_NON_STRICT = 7
#: Autobahn's 9.x cases send messages up to 16 MiB; the echo must take them.
ECHO_MAX_MESSAGE = 64 * 1024 * 1024
#: Cases left out by --quick (the compression matrix).
QUICK_EXCLUDE = ["12.*", "13.*"]
#: Longest a whole wstest run may take before it is stopped.
RUN_TIMEOUT_S = 3600
READY_TIMEOUT_S = 10.0


def echo_app() -> zzz.Router:
    app = zzz.Router()

    def on_message(ws: zzz.WebSocket, message: str | bytes) -> None:
        if isinstance(message, str):
            ws.send(message)
        else:
            ws.send_binary(message)

    app.ws("/", on_message=on_message)
    return app


def start(backend: str) -> tuple[Server, threading.Thread]:
    config = Config(host="127.0.0.1", port=0, ws_max_message_size=ECHO_MAX_MESSAGE,
                    ws_ping_interval_ms=0)
    server = Server(echo_app(), config, backend=backend)
    thread = threading.Thread(target=server.listen, name=f"autobahn-{backend}", daemon=True)
    thread.start()
    if not server.ready.wait(READY_TIMEOUT_S):
        raise SystemExit(f"{backend} server did not start")
    return server, thread


def run_wstest(wstest: list[str], spec: dict[str, Any], workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    spec_file = workdir / "fuzzingclient.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    subprocess.run([*wstest, "-m", "fuzzingclient", "-s", str(spec_file)], cwd=workdir,
                   check=True, timeout=RUN_TIMEOUT_S, stdout=subprocess.DEVNULL)


def summarize(index_file: Path, agent: str) -> collections.Counter[str]:
    results = json.loads(index_file.read_text())[agent]
    counts: collections.Counter[str] = collections.Counter()
    for case, result in sorted(results.items()):
        for key in ("behavior", "behaviorClose"):
            if result[key] in ("FAILED", "NON-STRICT", "WRONG CODE", "UNCLEAN"):
                print(f"  {case}: {key} {result[key]}")
        counts[result["behavior"]] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python2", required=True, help="the Python 2.7 interpreter")
    parser.add_argument("--site", required=True, help="site-packages holding autobahntestsuite")
    parser.add_argument("--outdir", default=".autobahn/reports")
    parser.add_argument("--backend", action="append", choices=sorted(zzz.backends.BACKENDS))
    parser.add_argument("--quick", action="store_true", help="leave out 12.x and 13.x")
    args = parser.parse_args()
    # A site dir (not PYTHONPATH): zope.interface is a namespace package set up by a .pth file.
    launcher = ("import site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv[0] = 'wstest'; "
                "from autobahntestsuite.wstest import run; run()")
    wstest = [args.python2, "-W", "ignore", "-c", launcher, str(Path(args.site).resolve())]
    failed = False
    for backend in args.backend or sorted(zzz.backends.BACKENDS):
        server, thread = start(backend)
        agent = f"zzz-{backend}"
        outdir = Path(args.outdir).resolve() / backend
        try:
            run_wstest(wstest, {
                "outdir": str(outdir),
                "servers": [{"agent": agent, "url": f"ws://127.0.0.1:{server.address[1]}"}],
                "cases": ["*"],
                "exclude-cases": QUICK_EXCLUDE if args.quick else [],
                "exclude-agent-cases": {},
            }, outdir)
        finally:
            server.shutdown()
            thread.join(READY_TIMEOUT_S)
        counts = summarize(outdir / "index.json", agent)
        print(f"{backend}: {dict(sorted(counts.items()))}  (report: {outdir}/index.html)")
        if counts["FAILED"] or counts["NON-STRICT"] > MAX_NON_STRICT:
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
