"""Descriptor exhaustion on the event loop: one warning per episode, one line when it ends.

When the process runs out of file descriptors (``RLIMIT_NOFILE``, ``EMFILE``; or
the system's table, ``ENFILE``), ``accept()`` fails. Each event loop hides that
in its own way:

* uvloop (libuv) never reports it: ``uv__server_io`` answers ``EMFILE`` with its
  "emfile trick": it closes a reserve descriptor it keeps open, accepts every
  waiting connection and closes it at once (so clients are refused rather than
  left hanging), reopens the reserve, and calls nobody. Only when the reserve
  cannot be reopened does the listen callback get the error, and uvloop's
  ``UVStreamServer._fatal_error`` then closes the listener without a word for an
  ``OSError``.
* asyncio's selector loop reports it through the loop's exception handler
  ("socket.accept() out of system resource"), stops accepting for a second and
  reports it again at each retry: one error with a traceback per second.

So the backend watches for itself with a probe: duplicate the listening socket's
descriptor and close the copy (two system calls). ``EMFILE``/``ENFILE`` there means
the next connection cannot be accepted. The probe runs

* every ``CHECK_INTERVAL_S`` on the loop (exhaustion caused by anything, and the
  end of an episode), and
* at each accepted connection once the loop holds more than ``NEAR_FRACTION`` of
  the descriptors it may use (``accepted()``, called by the backend): the
  connection that takes the last descriptor is seen at once, so even an episode
  shorter than the interval (a burst refused by libuv in a millisecond) is logged.
  Below that mark an accept costs one comparison.

The first failure of an episode logs one warning naming the limit; the first
success after it logs that descriptors are available again. On asyncio loops the
exception handler is taken over for that one message, which becomes part of the
same episode instead of a traceback a second; every other context goes to the
loop's default handler. Connections the server already has keep being served
throughout (nothing here touches them).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
import sys
from collections.abc import Callable, Sized
from typing import Any

log = logging.getLogger("zzz.eventloop")

#: How often the loop checks for a free descriptor: an episode shorter than this may
#: go unlogged (the connections it refused were refused all the same); two system
#: calls per check cost nothing at this rate.
CHECK_INTERVAL_S = 0.25
#: The interval while the loop has no connection (and no episode): an idle worker
#: should not wake four times a second; a refusal then is logged within this.
IDLE_CHECK_INTERVAL_S = 5.0
#: Share of the descriptors a loop may use (the soft limit less those open at start,
#: split between the loops) above which every accepted connection probes at once.
NEAR_FRACTION = 0.75
#: Errors of ``dup()``/``accept()`` that mean "out of descriptors".
EXHAUSTED_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
#: The message asyncio's selector loop passes to the exception handler when accept fails
#: for lack of resources (asyncio/selector_events.py).
ASYNCIO_ACCEPT_MESSAGE = "socket.accept() out of system resource"


class DescriptorWatch:
    """Watches one loop's listener; ``exhausted`` is True during an episode."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: Sized = ()) -> None:
        self.loop = loop
        #: The loop's open connections (only their number is read: idle → slow checks).
        self.connections = connections
        self.listener: socket.socket | None = None
        #: Connections of this loop from which each accept probes (see NEAR_FRACTION);
        #: none before ``start``.
        self.near = sys.maxsize
        self.exhausted = False
        #: Episodes seen (a gauge for tests and metrics).
        self.episodes = 0
        self._previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None

    def start(self, listener: socket.socket, loops: int = 1) -> None:
        """Watch ``listener`` (one of ``loops`` loops sharing the process's descriptors).
        Call on the loop's thread, once the server listens."""
        self.listener = listener
        self._previous = self.loop.get_exception_handler()  # the application's, if any
        self.loop.set_exception_handler(self._exception_handler)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            room = soft - len(os.listdir("/proc/self/fd"))
        except OSError:  # no /proc: probe at every accept
            room = 0
        self.near = int(max(0, room) * NEAR_FRACTION) // max(1, loops)
        self.loop.call_later(CHECK_INTERVAL_S, self._check)

    def accepted(self, connections: int) -> None:
        """A connection was accepted; ``connections`` are open on this loop now."""
        if connections >= self.near:
            self._probe()

    def _check(self) -> None:
        if self._probe():
            busy = self.exhausted or len(self.connections) > 0
            self.loop.call_later(CHECK_INTERVAL_S if busy else IDLE_CHECK_INTERVAL_S,
                                 self._check)

    def _probe(self) -> bool:
        """Update the episode from one dup(); False once the listener is closed."""
        if self.listener is None:
            return False
        try:
            fd = self.listener.fileno()
            if fd < 0:
                return False  # the listener is closed: the server stopped
            os.close(os.dup(fd))
        except OSError as exc:
            if exc.errno not in EXHAUSTED_ERRNOS:
                return False  # EBADF: the listener was closed under us
            self._exhausted(exc)
        else:
            self._available()
        return True

    def _exhausted(self, exc: OSError) -> None:
        if self.exhausted:
            return
        self.exhausted = True
        self.episodes += 1
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        log.warning(
            "out of file descriptors (%s, RLIMIT_NOFILE %d): connections already open "
            "are still served; new ones wait in the backlog or are refused until "
            "descriptors free up", exc.strerror or exc, soft)

    def _available(self) -> None:
        if self.exhausted:
            self.exhausted = False
            log.info("file descriptors available again: accepting connections")

    def _exception_handler(self, loop: asyncio.AbstractEventLoop,
                           context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if (context.get("message") == ASYNCIO_ACCEPT_MESSAGE and isinstance(exc, OSError)
                and exc.errno in EXHAUSTED_ERRNOS):
            self._exhausted(exc)
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

