"""Backend runtime features, once per backend: timers, run_blocking, flow control,
pipelined async handlers, several event loops."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import zzz
from zzz.config import EventLoopConfig

from .rawhttp import connect

#: Longest a test waits for a timer or a condition.
WAIT_S = 5.0


def wait_for(predicate: Any, timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def hello_app() -> zzz.Router:
    app = zzz.Router()

    @app.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, "hello")

    return app


def test_timers_one_shot_repeat_remove_reset(serve: Any) -> None:
    srv = serve(hello_app())
    server = srv.server
    fired: list[str] = []
    one = server.add_timer(20, lambda: fired.append("one"))
    ticks: list[float] = []
    rep = server.add_timer(20, lambda: ticks.append(time.monotonic()), repeat=True)
    gone = server.add_timer(200, lambda: fired.append("gone"))
    server.remove_timer(gone)
    assert wait_for(lambda: "one" in fired and len(ticks) >= 3)
    server.remove_timer(rep)
    time.sleep(0.1)
    count = len(ticks)
    time.sleep(0.2)
    assert len(ticks) == count, "a removed repeating timer kept firing"
    assert "gone" not in fired
    # reset: re-arms a fired one-shot timer with a new interval
    server.reset_timer(one, 30)
    assert wait_for(lambda: fired.count("one") == 2)


def test_raising_timer_callback_is_logged_and_server_goes_on(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    srv = serve(hello_app())
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("timer boom")

    srv.server.add_timer(10, boom)
    srv.server.add_timer(60, done.set)
    assert done.wait(WAIT_S), "timers stopped after a callback raised"
    assert any("timer boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert httpx.get(srv.url + "/").status_code == 200


def test_timer_added_before_listen_fires(backend: str) -> None:
    server = zzz.Server(hello_app(), zzz.Config(port=0, drain_timeout_ms=500), backend=backend)
    fired = threading.Event()
    server.add_timer(10, fired.set)
    thread = threading.Thread(target=server.listen, daemon=True)
    thread.start()
    try:
        assert fired.wait(WAIT_S)
    finally:
        server.shutdown()
        thread.join(WAIT_S * 2)
    assert not thread.is_alive()


def test_run_blocking_keeps_serving(serve: Any) -> None:
    app = zzz.Router()
    release = threading.Event()

    def blocking_work(n: int) -> int:
        release.wait(WAIT_S)
        return n * 2

    @app.get("/block")
    async def block(ctx: zzz.Context) -> None:
        ctx.text(200, str(await ctx.run_blocking(blocking_work, 21)))

    @app.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, "hello")

    srv = serve(app)
    result: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: result.append(httpx.get(srv.url + "/block", timeout=WAIT_S * 2))
    )
    thread.start()
    time.sleep(0.1)
    # While the blocking call waits, another client is still answered.
    assert httpx.get(srv.url + "/", timeout=WAIT_S).text == "hello"
    release.set()
    thread.join(WAIT_S * 2)
    assert result and result[0].text == "42"


def test_pipelined_async_requests_answered_in_order(serve: Any) -> None:
    app = zzz.Router()

    @app.get("/n/:i")
    async def number(ctx: zzz.Context) -> None:
        i = int(ctx.path_param("i"))
        await asyncio.sleep(0.001 * (i % 3))
        ctx.text(200, f"n={i}")

    srv = serve(app, max_requests_per_connection=1000)
    count = 60  # beyond the event loop's max_pipelined, so reading pauses and resumes
    payload = b"".join(
        f"GET /n/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(count)
    )
    with connect(srv, WAIT_S) as sock:
        sock.sendall(payload)
        data = b""
        deadline = time.monotonic() + WAIT_S * 2
        while data.count(b"HTTP/1.1 200") < count and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    bodies = [part.rsplit(b"\r\n\r\n", 1)[-1] for part in data.split(b"HTTP/1.1 200 OK")[1:]]
    assert [b.decode() for b in bodies] == [f"n={i}" for i in range(count)]


def test_slow_reader_does_not_make_server_buffer_without_bound(serve: Any) -> None:
    chunk = b"x" * 65536
    produced = [0]
    limit_chunks = 4000  # 256 MiB: far more than any sane buffer

    def body() -> Iterator[bytes]:
        for _ in range(limit_chunks):
            produced[0] += 1
            yield chunk

    app = zzz.Router()

    @app.get("/big")
    def big(ctx: zzz.Context) -> None:
        ctx.stream(200, "application/octet-stream", body())

    @app.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, "hello")

    srv = serve(app, write_timeout_ms=2000)
    sock = connect(srv, WAIT_S, rcvbuf=65536)
    try:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)  # read nothing
        first = produced[0]
        time.sleep(0.5)
        # Production stopped (flow control) well below the whole body.
        assert produced[0] == first
        assert produced[0] * len(chunk) < 32 * 1024 * 1024
        # Others are still served meanwhile.
        assert httpx.get(srv.url + "/", timeout=WAIT_S).text == "hello"
    finally:
        sock.close()


def test_several_event_loops_share_the_listener(backend: str, serve: Any) -> None:
    if backend != "eventloop":
        pytest.skip("event_loop_count is an event-loop backend setting")
    app = zzz.Router()
    seen: set[str] = set()

    @app.get("/")
    def index(ctx: zzz.Context) -> None:
        seen.add(threading.current_thread().name)
        ctx.text(200, "hello")

    srv = serve(app, eventloop=EventLoopConfig(event_loop_count=3))
    for _ in range(60):
        with httpx.Client() as client:  # a new connection each time
            assert client.get(srv.url + "/").text == "hello"
    assert seen, "no loop served"
    assert seen <= {"MainThread", "zzz-test-eventloop", "zzz-loop-1", "zzz-loop-2"}


def test_asyncio_loop_choice(backend: str, serve: Any) -> None:
    if backend != "eventloop":
        pytest.skip("loop choice is an event-loop backend setting")
    app = zzz.Router()
    kinds: list[str] = []

    @app.get("/")
    async def index(ctx: zzz.Context) -> None:
        kinds.append(type(asyncio.get_running_loop()).__module__)
        ctx.text(200, "hello")

    srv = serve(app, eventloop=EventLoopConfig(loop="asyncio"))
    assert httpx.get(srv.url + "/").text == "hello"
    assert kinds and not kinds[0].startswith("uvloop")
