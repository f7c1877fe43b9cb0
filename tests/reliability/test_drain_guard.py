"""The drain guard (zzz/backends/_drain_guard.py) and how the supervisor reads its
exit status, without sockets: a real event loop on a thread, the exit injected."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import types
from typing import Any

import pytest

import zzz
from zzz.backends import _drain_guard
from zzz.backends._drain_guard import DrainGuard
from zzz.exit_codes import EXIT_DRAIN_CUT
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.supervisor import Supervisor, Worker, describe_exit

#: Drain timeout of the guards under test.
DRAIN_S = 0.1
#: Longest a test waits for the guard to act.
WAIT_S = 5.0


class _Loop:
    """An event loop running on its own thread; ``block(s)`` holds it in a callback
    that has a :class:`Request` in its frame, like a plain handler."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(WAIT_S)
        assert self.thread.ident is not None
        self.thread_id = self.thread.ident
        self.release = threading.Event()

    def _run(self) -> None:
        self.loop.call_soon(self.ready.set)
        self.loop.run_forever()

    def block(self) -> None:
        def handler(request: Request) -> None:
            self.release.wait(WAIT_S)

        request = Request("GET", "/hang", "", Headers())
        self.loop.call_soon_threadsafe(handler, request)

    def close(self) -> None:
        self.release.set()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_S)
        self.loop.close()


@pytest.fixture
def running_loop() -> Any:
    loop = _Loop()
    yield loop
    loop.close()


def _guard(loop: _Loop, exits: list[int]) -> tuple[DrainGuard, threading.Event]:
    """A guard on ``loop`` whose exit is recorded in ``exits`` (and sets the event)."""
    exited = threading.Event()

    def fake_exit(code: int) -> None:
        exits.append(code)
        exited.set()

    guard = DrainGuard(loop.loop, loop.thread_id, DRAIN_S, lambda r: "route /hang, handler h",
                       exit=fake_exit)
    return guard, exited


def test_a_stuck_loop_is_cut_with_its_request_named(running_loop, caplog, monkeypatch):
    monkeypatch.setattr(_drain_guard, "STUCK_GRACE_S", 0.2)
    exits: list[int] = []
    guard, exited = _guard(running_loop, exits)
    running_loop.block()
    guard.arm()
    assert exited.wait(WAIT_S)
    assert exits == [EXIT_DRAIN_CUT]
    lines = [r.getMessage() for r in caplog.records if r.name == "zzz.eventloop"]
    assert any("GET /hang (route /hang, handler h), a handler that never returned" in m
               and "the drain deadline cut it" in m for m in lines), lines


def test_a_turning_loop_is_left_to_its_own_drain(running_loop, monkeypatch):
    monkeypatch.setattr(_drain_guard, "STUCK_GRACE_S", 0.1)
    exits: list[int] = []
    guard, exited = _guard(running_loop, exits)
    guard.arm()
    time.sleep(DRAIN_S + 0.5)  # past the deadline, the loop still runs callbacks
    guard.drained()
    assert not exited.wait(0.3)
    assert exits == []


def test_a_drained_loop_disarms_the_guard(running_loop):
    exits: list[int] = []
    guard, exited = _guard(running_loop, exits)
    guard.drained()
    guard.arm()
    running_loop.block()
    assert not exited.wait(DRAIN_S + 0.5)
    assert exits == []


def test_the_supervisor_counts_a_cut_worker_as_stopped_not_dead():
    supervisor = Supervisor(["m:app"], zzz.Config(), workers=1)
    try:
        process = types.SimpleNamespace(pid=12345)  # _on_exit reads only its pid
        worker = Worker(process=process, notify=-1, generation=0, started=0.0,  # type: ignore[arg-type]
                        ready=True)
        before = time.monotonic()
        supervisor._on_exit(worker, EXIT_DRAIN_CUT)
        assert supervisor._deaths == 0
        assert supervisor._next_spawn <= time.monotonic()
        assert supervisor._next_spawn >= before
        assert "drain deadline cut a handler" in describe_exit(EXIT_DRAIN_CUT)
    finally:
        os.close(supervisor._wake_r)
        os.close(supervisor._wake_w)
