"""The per-request line fast path (zzz/observability/lines.py) and request ids.

The fast path must write exactly what the stdlib path writes for the same request,
take the stdlib path whenever anything but zzz's own handler would see the record,
write whole lines only, and lose or repeat nothing (size, age, emit, fork).
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

import zzz
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.http.response import Response
from zzz.middleware.request_id import GENERATED_ID_BYTES, new_request_id
from zzz.observability import lines as lines_module
from zzz.observability.lines import (
    FLUSH_AGE_S,
    FLUSH_SIZE,
    PIPE_CHUNK,
    LineHandler,
    LinePath,
    fast_handler,
)
from zzz.observability.observer import _log_access

#: Longest wait for the flusher thread to write an old line (many times FLUSH_AGE_S).
AGE_WAIT_S = 5.0
#: A fixed time.time() for byte-for-byte comparisons.
NOW = 1764633600.25
#: The same instant in ns: Python 3.13's LogRecord takes its time from time.time_ns().
NOW_NS = 1_764_633_600_250_000_000


@pytest.fixture
def isolated() -> Iterator[logging.Logger]:
    """``zzz.access`` not propagating (pytest's capture handlers sit on the root), restored after.

    pytest also attaches its capture handler to non-propagating loggers when a test
    phase starts: tests set the handler list with :func:`only`."""
    loggers = [logging.getLogger(name) for name in ("zzz.access", "zzz.request", "zzz.t")]
    saved = [(lg, lg.handlers[:], lg.filters[:], lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.handlers.clear()
        lg.filters.clear()
        lg.setLevel(logging.INFO)
        lg.propagate = False
    yield loggers[0]
    for lg, handlers, filters, level, propagate in saved:
        for handler in lg.handlers:
            handler.close()
        lg.handlers[:] = handlers
        lg.filters[:] = filters
        lg.setLevel(level)
        lg.propagate = propagate


def only(logger: logging.Logger, *handlers: logging.Handler) -> None:
    logger.handlers[:] = handlers


def _request(agent: str | None = "curl/8 \"x\" \\ é", path: str = '/a b"c\\d/é') -> Request:
    fields = [("host", "x")]
    if agent is not None:
        fields.append(("user-agent", agent))
    return Request("GET", path, "", Headers(fields), client=("127.0.0.1", 4242))


@pytest.mark.parametrize("json_format", [False, True])
@pytest.mark.parametrize("agent", ["curl/8 \"x\" \\ é\t", None])
def test_access_fast_line_equals_the_record_line(isolated, monkeypatch, json_format, agent):
    monkeypatch.setattr(time, "time", lambda: NOW)
    monkeypatch.setattr(time, "time_ns", lambda: NOW_NS)
    fast_out, slow_out = io.StringIO(), io.StringIO()
    response = Response(200, [("X-Request-Id", "rid-1")], b"hello")
    request = _request(agent)

    fast = LineHandler(fast_out, json=json_format)
    only(isolated, fast)
    path = LinePath(isolated, logging.INFO)
    assert path.handler(NOW) is fast
    _log_access(path, request, response, 200, 5, 17)
    fast.flush()
    isolated.removeHandler(fast)

    slow = LineHandler(slow_out, json=json_format)
    slow.addFilter(lambda record: True)  # any filter: the record path
    only(isolated, slow)
    path = LinePath(isolated, logging.INFO)
    assert path.handler(NOW) is None
    _log_access(path, request, response, 200, 5, 17)

    assert fast_out.getvalue() == slow_out.getvalue()
    assert fast_out.getvalue().count("\n") == 1
    if json_format:
        line = json.loads(fast_out.getvalue())
        assert line["user_agent"] == agent and line["request_id"] == "rid-1"
        assert line["path"] == request.raw_path and line["status"] == 200


@pytest.mark.parametrize("json_format", [False, True])
@pytest.mark.parametrize("message_format", ["text", "json"])
def test_structured_fast_line_equals_the_record_line(isolated, monkeypatch, json_format,
                                                     message_format):
    monkeypatch.setattr(time, "time", lambda: NOW)
    monkeypatch.setattr(time, "time_ns", lambda: NOW_NS)
    request_logger = logging.getLogger("zzz.request")
    request_logger.setLevel(logging.WARNING)
    out: list[str] = []
    for fast_path in (True, False):
        buffer = io.StringIO()
        handler = LineHandler(buffer, json=json_format)
        if not fast_path:
            handler.addFilter(lambda record: True)
        only(request_logger, handler)
        app = _user_app(message_format)  # its own LinePath, decided afresh
        monkeypatch.setattr(time, "perf_counter_ns", lambda: 5_000_000)  # duration 0
        req = _request(path='/users/a b"c=é')
        req.headers.add("X-Request-Id", "abc")
        app.handle(req, zzz.Server(app, zzz.Config(port=0)))
        handler.flush()
        request_logger.removeHandler(handler)
        out.append(buffer.getvalue())
    assert out[0] == out[1]
    assert out[0].count("\n") == 1
    assert "WARNING" in out[0] or '"level": "warning"' in out[0]
    message = json.loads(out[0])["message"] if json_format else out[0].split(": ", 1)[1]
    if message_format == "json":
        fields = json.loads(message)
        assert fields["route"] == "/users/:id" and fields["request_id"] == "abc"
        assert fields["path"] == '/users/a b"c=é'
    else:
        assert 'path="/users/a b\\"c=\\u00e9"' in message and "route=/users/:id" in message


def _user_app(message_format: str) -> zzz.Router:
    app = zzz.Router(middleware=[zzz.request_id(),
                                 zzz.structured_logger("warning", format=message_format)])

    @app.get("/users/:id")
    def user(ctx: zzz.Context) -> None:
        ctx.text(200, "x")

    return app


def test_fast_path_only_for_zzz_handler_alone(isolated):
    own = LineHandler(io.StringIO())
    only(isolated, own)
    assert fast_handler(isolated, logging.INFO) is own
    assert fast_handler(isolated, logging.DEBUG) is None  # level off: nothing at all

    user = logging.StreamHandler(io.StringIO())
    isolated.addHandler(user)
    assert fast_handler(isolated, logging.INFO) is None  # a user's handler gets records
    isolated.removeHandler(user)

    isolated.addFilter(lambda record: True)
    assert fast_handler(isolated, logging.INFO) is None  # a filter on the logger
    isolated.filters.clear()

    own.addFilter(lambda record: True)
    assert fast_handler(isolated, logging.INFO) is None  # a filter on the handler
    own.filters.clear()

    own.setFormatter(logging.Formatter("%(message)s"))
    assert fast_handler(isolated, logging.INFO) is None  # someone else's format
    own.setFormatter(own.own_formatter)

    own.setLevel(logging.WARNING)
    assert fast_handler(isolated, logging.INFO) is None
    own.setLevel(logging.NOTSET)

    only(isolated)
    parent = logging.getLogger("zzz")
    isolated.propagate = True
    saved = parent.handlers[:], parent.propagate
    parent.handlers[:] = [own]
    parent.propagate = False
    try:
        assert fast_handler(isolated, logging.INFO) is own  # found up the hierarchy
        parent.addFilter(lambda record: True)
        assert fast_handler(isolated, logging.INFO) is None
        parent.filters.clear()
    finally:
        parent.handlers[:], parent.propagate = saved


def test_lines_wait_for_size_and_age_then_arrive_whole(tmp_path):
    target = tmp_path / "log"
    with open(target, "w") as stream:
        handler = LineHandler(stream)
        try:
            line = "x" * 99 + "\n"
            handler.write(line)
            assert target.read_text() == ""  # buffered
            deadline = time.monotonic() + AGE_WAIT_S
            while not target.read_text() and time.monotonic() < deadline:
                time.sleep(FLUSH_AGE_S / 4)
            assert target.read_text() == line  # the flusher wrote it: no more traffic needed
            count = FLUSH_SIZE // len(line) + 1
            for _ in range(count):
                handler.write(line)
            assert target.read_text().count("\n") >= count  # the size bound wrote at once
        finally:
            handler.close()
    assert target.read_text() == line * (count + 1)


def test_emit_writes_after_the_buffered_lines(tmp_path):
    target = tmp_path / "log"
    with open(target, "w") as stream:
        handler = LineHandler(stream)
        logger = logging.getLogger("zzz.t")
        saved = logger.handlers[:], logger.propagate, logger.level
        logger.propagate = False
        only(logger, handler)
        logger.setLevel(logging.INFO)
        try:
            handler.write("first\n")
            logger.warning("second")
            text = target.read_text()  # the record was written at once, the line before it
            assert text.startswith("first\n") and text.rstrip().endswith("WARNING zzz.t: second")
        finally:
            logger.handlers[:], logger.propagate, logger.level = saved
            handler.close()


def test_pipe_writes_are_whole_lines_of_at_most_pipe_buf(monkeypatch):
    read_fd, write_fd = os.pipe()
    writes: list[bytes] = []
    real_write = os.write

    def recording_write(fd: int, data: Any) -> int:
        if fd == write_fd:
            writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(lines_module.os, "write", recording_write)
    with os.fdopen(write_fd, "w") as stream, os.fdopen(read_fd, "rb") as reader:
        handler = LineHandler(stream)
        try:
            lines = [f"line {n} " + "y" * (n % 97) + "\n" for n in range(120)]
            for line in lines:
                handler.write(line)
            handler.flush()
        finally:
            handler.close()
        stream.close()
        assert reader.read().decode() == "".join(lines)
    assert len(writes) > 1
    assert all(len(chunk) <= PIPE_CHUNK and chunk.endswith(b"\n") for chunk in writes)


def test_forked_child_does_not_repeat_the_parents_lines(tmp_path):
    target = tmp_path / "log"
    with open(target, "a") as stream:
        handler = LineHandler(stream)
        handler.write("parent\n")
        pid = os.fork()
        if pid == 0:  # child: its own line only, then out without cleanup
            try:
                handler.write("child\n")
                handler.flush()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        handler.close()
    assert sorted(target.read_text().splitlines()) == ["child", "parent"]


def test_generated_request_ids_are_hex_unique_and_differ_after_fork():
    ids = {new_request_id() for _ in range(20000)}
    assert len(ids) == 20000
    assert all(len(i) == GENERATED_ID_BYTES * 2 and int(i, 16) >= 0 for i in ids)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write_fd, new_request_id().encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd, "rb") as reader:
        child_id = reader.read().decode()
    assert len(child_id) == GENERATED_ID_BYTES * 2
    assert child_id != new_request_id()  # reseeded at fork, not the parent's sequence


def test_configure_logging_again_after_its_stream_was_closed(monkeypatch):
    """The CLI configures logging once per run; a second call replaces (and closes) the
    first handler even when the stream it wrote to is gone (pytest's capture, say)."""
    from zzz.observability.logs import configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    first_stream = io.TextIOWrapper(io.BytesIO())  # like pytest's capture: flush() fails once closed
    monkeypatch.setattr("sys.stderr", first_stream)
    try:
        configure_logging("info", "text")
        first = [h for h in root.handlers if isinstance(h, LineHandler)]
        first_stream.close()
        monkeypatch.setattr("sys.stderr", io.StringIO())
        configure_logging("info", "json")
        ours = [h for h in root.handlers if isinstance(h, LineHandler)]
        assert len(ours) == 1 and ours[0].json and ours[0] is not first[0]
    finally:
        for handler in root.handlers:
            if isinstance(handler, LineHandler):
                handler.close()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
