"""Sending a :class:`~zzz.http.response.FileBody` from the backends, zero-copy on plain TCP.

The engine has already serialised the head with ``Content-Length: count``
(``HTTPConnection.serialize``); the backend then calls the function named after
it here, which writes the file body and closes the file whatever happens:

* ``native_send_file`` (thread-pool backend): the head is flushed, then
  ``os.sendfile`` on the blocking socket moves the bytes from the page cache to
  the socket without entering Python memory. The socket's ``SO_SNDTIMEO`` (the
  write timeout) bounds each call, exactly as for ``sendall``.
* ``loop_send_file`` (event-loop backend): ``loop.sendfile`` on asyncio's loop.
  uvloop does not implement it, so there the transport is first drained and
  then ``os.sendfile`` runs on its non-blocking socket; when the socket is full
  we wait for writability on a ``dup`` of the descriptor (uvloop refuses
  ``add_writer`` on a descriptor a transport owns; a duplicate is a distinct
  descriptor on the same socket), bounded by the write timeout.
* TLS (both backends): the kernel cannot encrypt, so the file is read in pieces
  of ``FILE_READ_CHUNK`` and written through the normal path with its flow
  control: memory stays bounded by one piece.

A body is never sent for HEAD or a status without a body (the engine framed
none). The head promised ``count`` bytes, so a file that shrank while being sent
(or a write that failed) leaves only one honest option: close the connection;
the functions return ``False`` and the caller does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

from zzz.http.request import Request
from zzz.http.response import FileBody, Response
from zzz.http.status import NO_BODY_STATUSES

#: Most bytes handed to one ``sendfile`` call: a blocking call returns at least
#: this often, and on the event loop one call never monopolises the thread.
SENDFILE_MAX_PER_CALL = 8 * 1024 * 1024


def has_body(request: Request, response: Response) -> bool:
    """Whether the body follows the head (the engine framed one)."""
    return request.method != "HEAD" and response.status not in NO_BODY_STATUSES


def native_send_file(
    conn: Any,
    request: Request,
    response: Response,
    out: list[bytes],
    send: Callable[[Any, bytes], bool],
    close: Callable[[Any], None],
) -> bool:
    """Flush ``out`` (ending with the head) and send ``response.file`` on ``conn``.

    ``send(conn, data)`` / ``close(conn)`` are the native backend's own: ``send``
    closes the connection itself on failure. False: the connection is closed.
    """
    body = response.file
    assert body is not None
    try:
        if not has_body(request, response) or body.count == 0:
            return True
        if not send(conn, b"".join(out)):
            return False
        out.clear()
        if conn.tls:
            sent = 0
            for piece in body:
                if not send(conn, piece):
                    return False
                sent += len(piece)
        else:
            try:
                sent = _sendfile_blocking(conn.sock.fileno(), body)
            except OSError:
                sent = -1
        if sent != body.count:
            close(conn)
            return False
        return True
    finally:
        body.close()


def _sendfile_blocking(out_fd: int, body: FileBody) -> int:
    in_fd = body.fileno()
    offset = body.offset
    end = offset + body.count
    while offset < end:
        sent = os.sendfile(out_fd, in_fd, offset, min(end - offset, SENDFILE_MAX_PER_CALL))
        if sent == 0:  # the file is shorter than it was
            break
        offset += sent
    return offset - body.offset


async def loop_send_file(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    request: Request,
    response: Response,
    write_piece: Callable[[bytes], Awaitable[bool]],
    write_timeout: float,
) -> bool:
    """Send ``response.file`` after the head already written to ``transport``.

    ``write_piece(data)`` is the event-loop backend's flow-controlled write (it
    waits while the transport is paused; False once the connection is gone).
    False: the body could not be sent whole and the connection must be aborted.
    """
    body = response.file
    assert body is not None
    try:
        if not has_body(request, response) or body.count == 0:
            return True
        if transport.get_extra_info("sslcontext") is not None:
            sent = 0
            for piece in body:
                if not await write_piece(piece):
                    return False
                sent += len(piece)
            return sent == body.count
        try:
            sent = await loop.sendfile(transport, body.file, body.offset, body.count,
                                       fallback=False)
            return sent == body.count
        except (NotImplementedError, asyncio.SendfileNotAvailableError):
            pass  # uvloop: no loop.sendfile
        except (OSError, RuntimeError):
            return False
        return await _uvloop_sendfile(loop, transport, body, write_piece, write_timeout)
    finally:
        body.close()


async def _uvloop_sendfile(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    body: FileBody,
    write_piece: Callable[[bytes], Awaitable[bool]],
    write_timeout: float,
) -> bool:
    sock = transport.get_extra_info("socket")
    if sock is None or not await _drained(transport, write_piece):
        return False
    out_fd = sock.fileno()
    in_fd = body.fileno()
    offset = body.offset
    end = offset + body.count
    waiter_fd = -1
    try:
        while offset < end:
            if transport.is_closing():
                return False
            try:
                sent = os.sendfile(out_fd, in_fd, offset, min(end - offset, SENDFILE_MAX_PER_CALL))
            except BlockingIOError:
                if waiter_fd < 0:
                    waiter_fd = os.dup(out_fd)
                if not await _writable(loop, waiter_fd, write_timeout):
                    return False
                continue
            except OSError:
                return False
            if sent == 0:
                return False
            offset += sent
        return True
    finally:
        if waiter_fd >= 0:
            os.close(waiter_fd)


async def _drained(
    transport: asyncio.Transport, write_piece: Callable[[bytes], Awaitable[bool]]
) -> bool:
    """Wait until everything buffered in the transport (the head) reached the socket.

    A high-water mark of 0 makes the transport pause the protocol while any byte
    is buffered and resume it once empty; ``write_piece`` waits for that resume.
    """
    if not transport.get_write_buffer_size():
        return True
    low, high = transport.get_write_buffer_limits()
    transport.set_write_buffer_limits(high=0, low=0)
    try:
        return await write_piece(b"")
    finally:
        if not transport.is_closing():
            transport.set_write_buffer_limits(high=high, low=low)


async def _writable(loop: asyncio.AbstractEventLoop, fd: int, timeout: float) -> bool:
    waiter: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not waiter.done():
            waiter.set_result(None)

    loop.add_writer(fd, ready)
    try:
        await asyncio.wait_for(waiter, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        with contextlib.suppress(Exception):
            loop.remove_writer(fd)
