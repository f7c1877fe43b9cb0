"""How handlers run, on every backend (issue: one app, either backend, no sharp edges).

* Every coroutine of a process shares one event loop, so loop-bound objects made
  once (a module-level ``asyncio.Lock``, an ``httpx.AsyncClient``) work from every
  request, and a suspended coroutine holds no worker thread.
* On the event loop, ``blocking=True`` routes (or ``sync_handlers=threadpool``)
  run on the blocking pool, and a handler that holds the loop is named in a warning.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time

import httpx
import pytest

import zzz

from .rawhttp import SOCKET_TIMEOUT_S

#: Concurrent sleeping requests of the concurrency test, and the sleep.
CONCURRENT_SLEEPERS = 200
SLEEP_S = 1.0
#: Generous bound for them all (serialised on 4 workers they would take 50 s).
SLEEPERS_BOUND_S = 8.0


def sleepy_app() -> zzz.Router:
    app = zzz.Router()

    @app.get("/sleep")
    async def sleep(ctx: zzz.Context) -> None:
        await asyncio.sleep(SLEEP_S)
        ctx.text(200, "rested")

    @app.get("/sync")
    def sync(ctx: zzz.Context) -> None:
        ctx.text(200, threading.current_thread().name)

    return app


def test_suspended_coroutines_do_not_hold_workers(serve):
    """200 concurrent ``await asyncio.sleep(1)`` with 4 workers: about 1 s, not 50."""
    srv = serve(sleepy_app(), worker_threads=4, max_connections=1024)

    def one(client: httpx.Client) -> int:
        return client.get(f"{srv.url}/sleep").status_code

    limits = httpx.Limits(max_connections=CONCURRENT_SLEEPERS)
    with httpx.Client(timeout=SLEEPERS_BOUND_S * 2, limits=limits) as client, \
            concurrent.futures.ThreadPoolExecutor(CONCURRENT_SLEEPERS) as pool:
        started = time.monotonic()
        statuses = list(pool.map(lambda _: one(client), range(CONCURRENT_SLEEPERS)))
        elapsed = time.monotonic() - started
        # Meanwhile plain handlers keep their thread-pool semantics.
        assert client.get(f"{srv.url}/sync").status_code == 200
    assert statuses == [200] * CONCURRENT_SLEEPERS
    assert elapsed < SLEEPERS_BOUND_S, f"{CONCURRENT_SLEEPERS} sleepers took {elapsed:.1f}s"


def test_loop_bound_objects_are_shared_across_requests(serve):
    """A module-level asyncio.Lock and one httpx.AsyncClient, used by many concurrent
    requests: they only work when every coroutine runs on the same loop."""
    lock = asyncio.Lock()
    holder: dict[str, httpx.AsyncClient] = {}
    loops: set[int] = set()
    app = zzz.Router()

    @app.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, "hello")

    @app.get("/locked")
    async def locked(ctx: zzz.Context) -> None:
        loops.add(id(asyncio.get_running_loop()))
        async with lock:
            await asyncio.sleep(0.001)
        client = holder.get("client")
        if client is None:
            client = holder["client"] = httpx.AsyncClient(timeout=SOCKET_TIMEOUT_S)
        response = await client.get(f"{ctx.server.url}/")
        ctx.text(200, response.text)

    srv = serve(app, worker_threads=4)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S * 2) as client, \
            concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(
            lambda _: client.get(f"{srv.url}/locked").text, range(64)))
    assert statuses == ["hello"] * 64
    assert len(loops) == 1


def blocking_app(release: threading.Event) -> zzz.Router:
    app = zzz.Router()

    @app.get("/block", blocking=True)
    def block(ctx: zzz.Context) -> None:
        release.wait(SOCKET_TIMEOUT_S)
        ctx.text(200, "unblocked")

    @app.get("/fast")
    def fast(ctx: zzz.Context) -> None:
        ctx.text(200, "fast")

    return app


def test_blocking_route_does_not_stall_other_requests(serve):
    release = threading.Event()
    srv = serve(blocking_app(release))
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as slow, \
            httpx.Client(timeout=SOCKET_TIMEOUT_S) as fast, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(slow.get, f"{srv.url}/block")
        time.sleep(0.1)  # the blocking handler is running now
        assert fast.get(f"{srv.url}/fast").text == "fast"
        assert not pending.done()
        release.set()
        assert pending.result().text == "unblocked"


def test_threadpool_mode_runs_plain_handlers_off_the_loop(serve, backend):
    if backend != "eventloop":
        pytest.skip("native runs every plain handler on its worker threads already")
    srv = serve(sleepy_app(), sync_handlers="threadpool")
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        name = client.get(f"{srv.url}/sync").text
    assert name.startswith("zzz-blocking")


def test_watchdog_names_the_route_that_holds_the_loop(serve, backend, caplog):
    if backend != "eventloop":
        pytest.skip("only an event loop can be held by a plain handler")
    app = zzz.Router()

    @app.get("/hog")
    def hog(ctx: zzz.Context) -> None:
        time.sleep(0.4)  # the bug the watchdog exists for
        ctx.text(200, "done")

    srv = serve(app, loop_block_warn_ms=100)
    with caplog.at_level(logging.WARNING, logger="zzz.eventloop"), \
            httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        assert client.get(f"{srv.url}/hog").text == "done"
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not any(
                "blocked" in r.getMessage() for r in caplog.records):
            time.sleep(0.02)
    messages = [r.getMessage() for r in caplog.records if "blocked" in r.getMessage()]
    assert len(messages) == 1, messages
    assert "GET /hog" in messages[0] and "handler" in messages[0] and "hog" in messages[0]
    assert "blocking=True" in messages[0]
