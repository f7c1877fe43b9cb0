"""Per-request log lines on real servers (zzz/observability/lines.py), on both backends.

With zzz's own handler alone the lines skip the ``LogRecord`` and are written in
batches of whole lines: under concurrent load every request gives exactly one
complete line, lines show up without further traffic, a SIGTERM right after the
traffic loses none, and two worker processes sharing one stderr pipe never tear a
line. With a user's handler (``--log-config`` / dictConfig, or one added in code)
that handler receives real ``LogRecord`` objects with the fields.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from zzz.config import ObservabilityConfig
from zzz.observability import lines as lines_module
from zzz.observability import observer as observer_module
from zzz.observability.lines import LineHandler

from .lines_app import app as quiet_app
from .procs import ZzzProcess

#: Requests of the concurrency tests, and the client threads sending them.
REQUESTS = 240
THREADS = 6
#: Bound on lines showing up without further traffic: the flusher's FLUSH_AGE_S plus
#: generous slack for a loaded CI machine (it is a bound, not a measurement).
APPEAR_WITHIN_S = 5.0
ACCESS_TEXT = re.compile(r' INFO zzz\.access: 127\.0\.0\.1:\d+ "GET /n/(\d+) HTTP/1\.1" 200 ')
#: What each kind of run writes per request, and how to read the request number back.
KINDS: dict[str, tuple[list[str], str, Callable[[str], str | None]]] = {}


def _access_text(line: str) -> str | None:
    match = ACCESS_TEXT.search(line)
    return match.group(1) if match else None


def _json_of(logger: str) -> Callable[[str], str | None]:
    def read(line: str) -> str | None:
        if f'"logger": "{logger}"' not in line:
            return None
        record = json.loads(line)  # a torn line fails here
        assert record["status"] == 200 and record["method"] == "GET"
        assert record["request_id"] and len(record["request_id"]) == 32
        return str(record["path"]).rsplit("/", 1)[1]
    return read


def _request_text(line: str) -> str | None:
    if " INFO zzz.request: " not in line:
        return None
    match = re.search(r"method=GET path=/n/(\d+) route=/n/:id status=200 ", line)
    assert match, line
    return match.group(1)


KINDS.update({
    "access-text": (["tests.integration.lines_app:app", "--access-log"], "zzz.access",
                    _access_text),
    "access-json": (["tests.integration.lines_app:app", "--access-log", "--log-format", "json"],
                    '"zzz.access"', _json_of("zzz.access")),
    "request-text": (["tests.integration.lines_app:text_app"], "zzz.request", _request_text),
    "request-json": (["tests.integration.lines_app:json_app", "--log-format", "json"],
                     '"zzz.request"', _json_of("zzz.request")),
})


@pytest.fixture
def start(backend: str) -> Iterator[Callable[..., ZzzProcess]]:
    started: list[ZzzProcess] = []

    def run(*args: str) -> ZzzProcess:
        process = ZzzProcess([*args, "--port", "0", "--backend", backend,
                              "--log-level", "info", "--drain-timeout-ms", "5000"])
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


def _load(port: int, count: int = REQUESTS, close: bool = False) -> None:
    """``count`` GETs of /n/0 … /n/count-1 from THREADS threads; every one must be a 200."""
    failures: list[str] = []

    def client(numbers: range) -> None:
        headers = {"Connection": "close"} if close else {}
        with httpx.Client(timeout=10) as http:
            for n in numbers:
                response = http.get(f"http://127.0.0.1:{port}/n/{n}", headers=headers)
                if response.status_code != 200 or response.text != str(n):
                    failures.append(f"/n/{n}: {response.status_code}")

    threads = [threading.Thread(target=client, args=(range(t, count, THREADS),))
               for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures[:5]


def _numbers(process: ZzzProcess, kind: str) -> list[str]:
    read = KINDS[kind][2]
    with process._changed:
        lines = list(process.lines)
    return [n for n in map(read, lines) if n is not None]


@pytest.mark.parametrize("kind", ["access-text", "request-json"])
def test_concurrent_requests_give_whole_lines_that_appear_without_more_traffic(start, kind):
    args, marker, _ = KINDS[kind]
    process = start(*args)
    _load(process.port)
    # No further traffic: the flusher writes what the size bound has not.
    process.wait_for(re.escape(marker), count=REQUESTS, timeout=APPEAR_WITHIN_S)
    numbers = _numbers(process, kind)
    assert sorted(numbers, key=int) == [str(n) for n in range(REQUESTS)]  # N requests, N lines


@pytest.mark.parametrize("kind", ["access-json", "request-text"])
def test_sigterm_right_after_traffic_loses_no_line(start, kind):
    process = start(*KINDS[kind][0])
    _load(process.port)
    process.stop()  # SIGTERM at once, well inside FLUSH_AGE_S of the last lines
    assert process.process.returncode == 0, process.log
    assert sorted(_numbers(process, kind), key=int) == [str(n) for n in range(REQUESTS)]
    assert "stopped" in process.lines[-1], process.lines[-3:]  # the lines came before it


def test_workers_sharing_a_stderr_pipe_never_tear_a_line(start):
    process = start(*KINDS["access-json"][0], "--workers", "2")
    process.wait_for("worker \\d+ started", count=2)
    _load(process.port, close=True)  # new connections: both workers answer
    process.stop()
    records = [json.loads(line) for line in process.lines if line.startswith("{")]
    access = [r for r in records if r["logger"] == "zzz.access"]
    assert sorted((r["path"] for r in access), key=lambda p: int(p.rsplit("/", 1)[1])) == [
        f"/n/{n}" for n in range(REQUESTS)]


def test_dict_config_handler_gets_records_with_fields(start, tmp_path: Path):
    """``--log-config``: a stdlib FileHandler with zzz's JsonFormatter (``()``), behind a
    user filter, receives both the access and the structured records with their fields."""
    target = tmp_path / "requests.jsonl"
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"zzz_only": {"name": "zzz"}},
        "formatters": {"json": {"()": "zzz.observability.JsonFormatter"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(target),
                              "formatter": "json", "filters": ["zzz_only"]},
                     "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["console"], "level": "INFO"},
        "loggers": {"zzz.access": {"handlers": ["file"], "level": "INFO", "propagate": False},
                    "zzz.request": {"handlers": ["file"], "level": "INFO",
                                    "propagate": False}},
    }
    config_file = tmp_path / "logging.json"
    config_file.write_text(json.dumps(config))
    process = start("tests.integration.lines_app:text_app", "--access-log",
                    "--log-config", str(config_file))
    count = 30
    _load(process.port, count)
    process.stop()
    records = [json.loads(line) for line in target.read_text().splitlines()]
    access = [r for r in records if r["logger"] == "zzz.access"]
    structured = [r for r in records if r["logger"] == "zzz.request"]
    assert len(access) == count and len(structured) == count
    for record in access:
        assert record["status"] == 200 and record["bytes"] >= 1
        assert isinstance(record["duration_us"], int) and len(record["request_id"]) == 32
    for record in structured:
        assert record["route"] == "/n/:id" and record["request_id"]


class Recorder(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("zzz.access")
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.propagate = False  # pytest's capture handlers on the root are out of the way
    logger.setLevel(logging.INFO)
    yield logger
    for handler in logger.handlers:
        if isinstance(handler, LineHandler):
            handler.close()
    logger.handlers[:], logger.propagate, logger.level = saved


def test_user_handler_beside_zzz_handler_gets_log_records(serve, backend, access_logger,
                                                         tmp_path: Path):
    target = tmp_path / "log"
    stream = target.open("w")
    own = LineHandler(stream, json=True)
    recorder = Recorder()
    access_logger.handlers[:] = [own, recorder]  # pytest attaches its own at phase start
    try:
        srv = serve(quiet_app, observability=ObservabilityConfig(access_log=True))
        with httpx.Client(timeout=10) as http:
            for n in range(20):
                assert http.get(f"{srv.url}/n/{n}").status_code == 200
        own.flush()
        assert len(recorder.records) == 20
        for record in recorder.records:
            assert isinstance(record, logging.LogRecord)
            assert record.name == "zzz.access" and record.levelno == logging.INFO
            fields: dict[str, Any] = vars(record)
            assert fields["status"] == 200 and fields["method"] == "GET"
            assert fields["path"].startswith("/n/") and len(fields["request_id"]) == 32
        lines = target.read_text().splitlines()  # zzz's handler still wrote them, from records
        assert [json.loads(line)["path"] for line in lines] == [f"/n/{n}" for n in range(20)]
    finally:
        stream.close()


def test_no_access_log_pays_nothing(serve, backend, access_logger, monkeypatch):
    def must_not_run(*args: Any) -> None:
        raise AssertionError("access line built without --access-log")

    monkeypatch.setattr(observer_module, "_log_access", must_not_run)
    monkeypatch.setattr(lines_module.LineHandler, "write", must_not_run)
    own = LineHandler(io.StringIO())
    access_logger.handlers[:] = [own]  # the fast path would be open: still nothing happens
    srv = serve(quiet_app, observability=ObservabilityConfig(metrics_path="/metrics"))
    with httpx.Client(timeout=10) as http:
        for n in range(20):
            assert http.get(f"{srv.url}/n/{n}").status_code == 200
    assert own.stream.getvalue() == ""
    assert not own._flusher_started  # no thread either
