"""Per-request log lines at hello-world rates: zzz's own handler and the fast path to it.

A stdlib record costs about as much as a whole hello request: ``LogRecord``
construction, ``Logger.handle`` and its filters, the handler lock, ``Formatter``
and one ``write`` plus ``flush`` (a system call) per line. An access line per
request therefore halved throughput. This module keeps stdlib semantics and
removes that cost where nobody can tell the difference:

* :class:`LineHandler` is the handler ``configure_logging`` installs on the
  root logger (``--log-format text|json``). It is an ordinary
  ``StreamHandler``: every record it is given is formatted by its own
  :class:`~zzz.observability.logs.TextFormatter` / ``JsonFormatter`` and written
  at once. It also keeps a buffer of whole lines (:meth:`LineHandler.write`)
  written with one ``os.write`` when it holds :data:`FLUSH_SIZE` characters or its
  oldest line is :data:`FLUSH_AGE_S` old (a small thread does the latter), before
  any record the handler emits (so a server event never overtakes the access lines
  before it), on ``flush()`` / ``close()`` and so at exit (``logging.shutdown``).
* :class:`LinePath` decides, for one logger and level, whether a line may skip the
  ``LogRecord`` and go straight into that buffer: only when the logger's effective
  configuration is exactly one :class:`LineHandler` with its own formatter, no
  filter on any logger or on the handler, and the level enabled (:func:`fast_handler`).
  The line written is byte for byte what the handler's formatter would write for the
  equivalent record (``tests/unit/test_log_lines.py`` checks it). Anything else — a
  ``--log-config`` file, a user's handler or filter on ``zzz.access`` or on a parent,
  a sampling filter — gets real ``LogRecord`` objects with every field, as before.
  The decision is cached and redone every :data:`RECHECK_S`, so a handler added
  while serving takes effect within that time.

Writes are whole lines only. To a regular file one ``write`` is atomic against the
other processes appending to it; to a pipe or terminal POSIX only promises that for
writes of at most ``PIPE_BUF`` bytes, so those are cut into pieces of at most
:data:`PIPE_CHUNK` bytes at line ends. Worker processes sharing stderr therefore never
interleave mid-line. A line longer than ``PIPE_BUF`` to a pipe goes alone in its own
write (the kernel may then split it, as it would any stdlib write).

What a crash loses: lines younger than :data:`FLUSH_AGE_S` when the process is killed
with ``SIGKILL`` (a graceful exit flushes everything).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import stat
import threading
import time
import weakref
from json import dumps
from json.encoder import encode_basestring
from typing import IO, Any

from zzz.observability.logs import JsonFormatter, TextFormatter

#: Buffered characters that trigger a write: large enough that a write serves hundreds of
#: access lines (one system call per ~500 hello requests), small enough to stay in cache.
FLUSH_SIZE = 64 * 1024
#: Longest a buffered line waits when traffic stops: well below what a person tailing the
#: log notices, and the most a ``SIGKILL`` can lose. At load, FLUSH_SIZE triggers first.
FLUSH_AGE_S = 0.1
#: Longest wait for a full non-blocking stream to take a write before its lines are dropped
#: (a stuck log reader must not stop the server).
WRITE_WAIT_S = 1.0
#: Largest write to a pipe, socket or terminal: POSIX makes pipe writes up to PIPE_BUF atomic,
#: so lines of several processes sharing one pipe never interleave mid-line.
PIPE_CHUNK = getattr(select, "PIPE_BUF", 512)
#: How long a fast-path decision (:class:`LinePath`) holds before it is checked again:
#: a handler or filter added while serving is obeyed within this time.
RECHECK_S = 1.0


#: ``.123`` … the milliseconds part of a timestamp, formatted once.
_MILLIS = tuple(f"{n:03d}" for n in range(1000))
_MILLIS_Z = tuple(f"{n:03d}Z" for n in range(1000))


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` with zzz's text or JSON format and a buffer of whole lines.

    ``emit`` formats the record with the handler's own formatter, appends the line
    to the buffer and writes the buffer at once. :meth:`write` appends a finished
    line (the fast path) and writes only at :data:`FLUSH_SIZE`, or after
    :data:`FLUSH_AGE_S` from the flusher thread.
    """

    def __init__(self, stream: IO[str] | None = None, json: bool = False) -> None:
        super().__init__(stream)
        self.json = json
        self.own_formatter: logging.Formatter = JsonFormatter() if json else TextFormatter()
        self.setFormatter(self.own_formatter)
        self._stamp: tuple[int, str] = (-1, "")
        #: (levelname, logger name) -> the constant middle of a JSON line.
        self._heads: dict[tuple[str, str], str] = {}
        #: The buffer: one list for the handler's life (never swapped), so a line
        #: appended by code a signal handler interrupted is never lost (see _take).
        self._lines: list[str] = []
        self._size = 0
        self._lock = threading.RLock()
        self._ready = threading.Condition(self._lock)  # the flusher waits for a first line
        self._write_lock = threading.RLock()
        self._flushing = 0  # id of the thread inside flush(): a re-entrant emit only buffers
        self._closed = False
        self._flusher_started = False
        self._fd: int | None = None
        self._chunk = 0
        self._encoding = "utf-8"
        self._errors = "backslashreplace"
        self._bind(self.stream)
        _HANDLERS.add(self)

    def _bind(self, stream: IO[str]) -> None:
        """Learn the stream's descriptor and kind (None: not a real file, write through it)."""
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self._errors = getattr(stream, "errors", None) or "backslashreplace"
        try:
            fd = stream.fileno()
            mode = os.fstat(fd).st_mode
        except (AttributeError, OSError, ValueError):
            self._fd = None
            return
        self._fd = fd
        self._chunk = 0 if stat.S_ISREG(mode) else PIPE_CHUNK

    def setStream(self, stream: IO[str]) -> IO[str] | None:
        self.flush()
        old = super().setStream(stream)
        self._bind(self.stream)
        return old

    # ------------------------------------------------------------------ lines

    def stamp(self, now: float) -> str:
        """The formatter's timestamp for ``time.time()`` = ``now``, the date computed
        once per second: local ``2026-12-01 10:00:00,123`` or UTC ``2026-12-01T10:00:00.123Z``."""
        second = int(now)
        cached = self._stamp
        if cached[0] != second:
            if self.json:
                cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)))
            else:
                cached = (second, time.strftime("%Y-%m-%d %H:%M:%S,", time.localtime(second)))
            self._stamp = cached  # one tuple: a thread never sees one second's date with another's
        millis = int((now - second) * 1000)
        return cached[1] + (_MILLIS_Z[millis] if self.json else _MILLIS[millis])

    def line(self, now: float, levelname: str, name: str, message: str, encoded: str,
             quoted: str | None = None) -> str:
        """What the handler's formatter writes for a record of ``name`` at ``levelname``
        with ``message`` and the ``extra`` fields whose :func:`json_fields` is ``encoded``
        (only read in the JSON format), newline included. ``quoted``: the message already
        JSON-quoted by the caller (``json_str(message)``), who may know a cheaper way."""
        if not self.json:
            return f"{self.stamp(now)} {levelname} {name}: {message}\n"
        head = self._heads.get((levelname, name))
        if head is None:
            head = self._heads[levelname, name] = (
                f'", "level": "{levelname.lower()}", "logger": {encode_basestring(name)}, '
                f'"message": ')
        if quoted is None:
            quoted = encode_basestring(message)
        return f'{{"timestamp": "{self.stamp(now)}{head}{quoted}{encoded}}}\n'

    def write(self, line: str) -> None:
        """Buffer one finished line (ending in a newline); written at FLUSH_SIZE or FLUSH_AGE_S.

        No lock: ``list.append`` is atomic, and the writer removes exactly the lines it
        copied (:meth:`_take`), so a line appended meanwhile waits for the next write.
        The size is approximate under threads (a lost increment only delays a write).
        """
        lines = self._lines
        first = not lines
        lines.append(line)
        self._size += len(line)
        if first:
            self._wake()
        if self._size >= FLUSH_SIZE or self._closed:
            self.flush()

    def _wake(self) -> None:
        """A first line after a write: the flusher starts its FLUSH_AGE_S wait. The line is
        appended before this takes the lock, so the flusher either sees it or is waiting."""
        with self._lock:
            if not self._flusher_started:
                self._start_flusher()
            self._ready.notify()

    # ------------------------------------------------------------------ logging.Handler

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        lines = self._lines
        first = not lines
        lines.append(line)  # after every buffered line, then all written now
        if first and self._flushing == threading.get_ident():
            self._wake()  # re-entered from a signal handler: flush() skips, the flusher writes
        self.flush()

    def flush(self) -> None:
        """Write every buffered line now, in order."""
        with self._write_lock:
            me = threading.get_ident()
            if self._flushing == me:
                # Re-entered from a signal handler that interrupted this thread's write: the
                # lines stay buffered for the flusher; writing now could split that write.
                return
            self._flushing = me
            try:
                data = self._take()
                if data:
                    self._write_out(data)
                elif self._fd is None:
                    with contextlib.suppress(ValueError, OSError):  # a stream closed under us
                        super().flush()
            finally:
                self._flushing = 0

    def close(self) -> None:
        with self._lock:
            self._closed = True  # later lines are written at once: nobody flushes at exit anymore
            self._ready.notify()
        self.flush()
        super().close()

    # ------------------------------------------------------------------ writing

    def _take(self) -> str:
        """Empty the buffer into one string (caller holds the write lock). The list is
        copied then cut, never replaced: a line appended meanwhile, by another thread or by
        a signal handler interrupting this one, stays for the next write."""
        lines = self._lines
        taken = lines.copy()
        del lines[:len(taken)]
        self._size = 0
        return "".join(taken)

    def _write_out(self, text: str) -> None:
        fd = self._fd
        if fd is None:
            try:
                self.stream.write(text)
                self.stream.flush()
            except Exception:
                self._dropped()
            return
        data = text.encode(self._encoding, self._errors)
        try:
            self.stream.flush()  # anything print() left in the Python-level buffer goes first
            limit = self._chunk
            start, end = 0, len(data)
            while start < end:
                stop = end
                if limit and end - start > limit:
                    cut = data.rfind(b"\n", start, start + limit) + 1
                    if cut <= start:  # one line longer than the limit: alone, whole
                        cut = data.find(b"\n", start + limit) + 1 or end
                    stop = cut
                start = _write_all(fd, data, start, stop)
        except (OSError, ValueError):
            self._dropped()

    def _dropped(self) -> None:
        """The stream refused the lines: they are lost, as logging.Handler.handleError loses
        a record; say so once per failed write where a developer would see it."""
        if logging.raiseExceptions:
            import sys

            with contextlib.suppress(Exception):
                sys.__stderr__.write(  # type: ignore[union-attr]
                    "--- zzz: log lines dropped: the log stream refused a write\n")

    def _start_flusher(self) -> None:
        """Start the thread writing lines FLUSH_AGE_S after they arrive (again after a fork)."""
        self._flusher_started = True
        thread = threading.Thread(target=self._flush_when_old, name="zzz-log-flush", daemon=True)
        thread.start()

    def _flush_when_old(self) -> None:
        ready = self._ready
        while True:
            with ready:
                while not self._lines and not self._closed:
                    ready.wait()
                if self._closed:
                    return
            time.sleep(FLUSH_AGE_S)
            self.flush()

    def _after_fork(self) -> None:
        """In a forked child: fresh locks, no flusher yet, and none of the parent's lines
        (the parent writes those)."""
        self._lock = threading.RLock()
        self._ready = threading.Condition(self._lock)
        self._write_lock = threading.RLock()
        self._lines.clear()
        self._size = 0
        self._flushing = 0
        self._flusher_started = False


#: Every LineHandler alive, for the fork hook.
_HANDLERS: weakref.WeakSet[LineHandler] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for handler in list(_HANDLERS):
        handler._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _write_all(fd: int, data: bytes, start: int, stop: int) -> int:
    """Write ``data[start:stop]`` completely (partial writes, a full non-blocking stream)."""
    view = memoryview(data)
    deadline = 0.0
    while start < stop:
        try:
            start += os.write(fd, view[start:stop])
        except BlockingIOError:
            now = time.monotonic()
            deadline = deadline or now + WRITE_WAIT_S
            if now >= deadline:
                raise
            select.select([], [fd], [], deadline - now)
    return stop


#: A ``str`` as a JSON string, as ``json.dumps(..., ensure_ascii=False)`` writes it.
json_str = encode_basestring


def json_fields(fields: dict[str, Any]) -> str:
    """``, "key": value`` for every field, as ``json.dumps(..., ensure_ascii=False, default=str)``
    writes them inside an object."""
    parts = []
    for key, value in fields.items():
        kind = type(value)
        if kind is str:
            text = encode_basestring(value)
        elif kind is int:
            text = int.__repr__(value)
        elif value is None:
            text = "null"
        else:
            text = dumps(value, default=str, ensure_ascii=False)
        parts.append(f", {encode_basestring(key)}: {text}")
    return "".join(parts)


def fast_handler(logger: logging.Logger, level: int) -> LineHandler | None:
    """The one :class:`LineHandler` every record of ``logger`` at ``level`` would reach
    and nothing else would see, or None (then log through stdlib ``logging``)."""
    if not logger.isEnabledFor(level) or logging.getLogRecordFactory() is not logging.LogRecord:
        return None
    found: LineHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if (found is not None or type(handler) is not LineHandler or handler.filters
                    or level < handler.level or handler.formatter is not handler.own_formatter):
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


class LinePath:
    """Whether lines of ``logger`` at ``level`` may skip the ``LogRecord``: :meth:`handler`
    is the :class:`LineHandler` to write them to, or None. Rechecked every RECHECK_S."""

    __slots__ = ("_due", "_handler", "level", "logger")

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self.logger = logger
        self.level = level
        self._handler: LineHandler | None = None
        self._due = 0.0

    def handler(self, now: float) -> LineHandler | None:
        if now >= self._due:
            self._handler = fast_handler(self.logger, self.level)
            self._due = now + RECHECK_S
        return self._handler
