"""Slow-client attackers, driven by one asyncio loop so hundreds cost one thread.

Each attacker opens its own connection (TLS when the server serves TLS, except the
silent handshake, which is TCP on purpose), misbehaves in one way and watches for the
server to cut it: an EOF, a reset, or an answer (a 408) followed by EOF all count as
"cut". :func:`run_attackers` returns one :class:`Outcome` per attacker with how long
after its trigger the cut came (``None`` if the phase ended first).

The trigger is the moment the server's deadline starts: the first byte of the
request for slowloris and slow body, the connect for a silent client, the request
for a slow reader, the half-close for a half-open client.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from dataclasses import dataclass

#: Pause between two trickled bytes: far below any deadline, so only the whole-request
#: deadline (not an idle timeout between bytes) can cut the attacker.
TRICKLE_S = 0.1
#: Receive buffer of a slow reader: small, so the server's writes stall soon.
SLOW_READER_RCVBUF = 16384
#: Bytes a slow reader drains at the end before deciding the server never cut it: a
#: cut connection has at most its socket buffers left; an uncut one streams 1 GiB.
SLOW_READER_DRAIN_CAP = 8 * 1024 * 1024
#: Longest the final drain of a slow reader may take.
SLOW_READER_DRAIN_S = 3.0
#: Longest wait for one connect (and TLS handshake) of an attacker.
CONNECT_TIMEOUT_S = 10.0
#: Exceptions that mean the server closed or reset the connection.
CUT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, BrokenPipeError)

#: Every kind of attacker; ``silent`` is a TLS client that never says hello over TLS,
#: and a connection that never sends a byte over TCP.
KINDS = ("slowloris", "slow_body", "slow_reader", "silent", "half_open")

_SLOWLORIS_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\n"
_SLOW_BODY_HEAD = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
_BIG_STREAM = b"GET /big-stream HTTP/1.1\r\nHost: x\r\n\r\n"


@dataclass
class Outcome:
    """What happened to one attacker."""

    kind: str
    #: Seconds from the trigger to the cut; None when the server never cut it.
    cut_after: float | None
    #: Set when the attacker itself failed (could not connect): not a server verdict.
    error: str | None = None


async def _open(port: int, client_ssl: ssl.SSLContext | None,
                rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return await asyncio.open_connection(
            sock=sock, ssl=client_ssl, server_hostname="localhost" if client_ssl else None,
            ssl_handshake_timeout=CONNECT_TIMEOUT_S if client_ssl else None)
    except BaseException:
        sock.close()
        raise


#: Longest wait for one attacker's own socket to close at the end.
CLOSE_TIMEOUT_S = 1.0


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close the attacker's socket now (not at garbage collection: the fd probe)."""
    sock = writer.get_extra_info("socket")
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_S)
    except (TimeoutError, *CUT_ERRORS, OSError):
        pass
    if sock is not None and sock.fileno() != -1:
        writer.transport.abort()


async def _closed_within(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True if the server ends the connection (EOF or reset) within ``timeout``; any
    answer it sends first (a 408) is read and dropped."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            data = await asyncio.wait_for(reader.read(65536), left)
            if not data:
                return True
    except TimeoutError:
        return False
    except CUT_ERRORS:
        return True


async def _trickle(port: int, client_ssl: ssl.SSLContext | None, head: bytes,
                   kind: str, phase_s: float) -> Outcome:
    reader, writer = await _open(port, client_ssl)
    try:
        stream = head + b"X-Pad: " + b"a" * 1_000_000
        started = time.monotonic()
        for i in range(len(stream)):
            try:
                writer.write(stream[i:i + 1])
                await writer.drain()
            except CUT_ERRORS:
                return Outcome(kind, time.monotonic() - started)
            if await _closed_within(reader, TRICKLE_S):
                return Outcome(kind, time.monotonic() - started)
            if time.monotonic() - started > phase_s:
                break
        return Outcome(kind, None)
    finally:
        await _close(writer)


async def _slow_reader(port: int, client_ssl: ssl.SSLContext | None, phase_s: float) -> Outcome:
    reader, writer = await _open(port, client_ssl, rcvbuf=SLOW_READER_RCVBUF)
    try:
        started = time.monotonic()
        writer.write(_BIG_STREAM)
        await writer.drain()
        # asyncio's reader stops reading once its buffer holds 2 x 64 KiB: from then
        # on nothing is read and the server's writes stall until its write timeout.
        await asyncio.sleep(phase_s)
        drained = 0
        deadline = time.monotonic() + SLOW_READER_DRAIN_S
        try:
            while drained < SLOW_READER_DRAIN_CAP and time.monotonic() < deadline:
                data = await asyncio.wait_for(reader.read(1 << 20), deadline - time.monotonic())
                if not data:
                    return Outcome("slow_reader", time.monotonic() - started)
                drained += len(data)
        except CUT_ERRORS:
            return Outcome("slow_reader", time.monotonic() - started)
        except TimeoutError:
            pass
        return Outcome("slow_reader", None)
    finally:
        await _close(writer)


async def _silent(port: int, phase_s: float) -> Outcome:
    reader, writer = await _open(port, None)  # no TLS: a handshake that never starts
    try:
        started = time.monotonic()
        if await _closed_within(reader, phase_s):
            return Outcome("silent", time.monotonic() - started)
        return Outcome("silent", None)
    finally:
        await _close(writer)


async def _half_open(port: int, client_ssl: ssl.SSLContext | None, phase_s: float) -> Outcome:
    reader, writer = await _open(port, client_ssl)
    try:
        writer.write(_SLOWLORIS_HEAD)
        await writer.drain()
        started = time.monotonic()
        # FIN on the TCP socket itself (under TLS too: a peer gone without close_notify).
        try:
            writer.get_extra_info("socket").shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise
            # Already reset by the server: on a loaded machine the handshake or the
            # head can outlast the short deadlines of the test. Cut, just earlier.
            return Outcome("half_open", 0.0)
        if await _closed_within(reader, phase_s):
            return Outcome("half_open", time.monotonic() - started)
        return Outcome("half_open", None)
    finally:
        await _close(writer)


async def _one(kind: str, port: int, client_ssl: ssl.SSLContext | None,
               phase_s: float) -> Outcome:
    started = time.monotonic()
    try:
        if kind == "slowloris":
            return await _trickle(port, client_ssl, _SLOWLORIS_HEAD, kind, phase_s)
        if kind == "slow_body":
            return await _trickle(port, client_ssl, _SLOW_BODY_HEAD, kind, phase_s)
        if kind == "slow_reader":
            return await _slow_reader(port, client_ssl, phase_s)
        if kind == "silent":
            return await _silent(port, phase_s)
        if kind == "half_open":
            return await _half_open(port, client_ssl, phase_s)
        raise ValueError(f"unknown attacker kind {kind!r}")
    except CUT_ERRORS:
        # Reset before the attack proper began: with hundreds of TLS handshakes at once
        # on a small machine, some outlast the server's handshake deadline. A cut too,
        # timed from the connect.
        return Outcome(kind, time.monotonic() - started)
    except (OSError, TimeoutError) as exc:
        return Outcome(kind, None, f"{type(exc).__name__}: {exc}")


async def _all(kinds: list[str], port: int, client_ssl: ssl.SSLContext | None,
               phase_s: float) -> list[Outcome]:
    return list(await asyncio.gather(*(_one(k, port, client_ssl, phase_s) for k in kinds)))


def run_attackers(kinds: list[str], port: int, client_ssl: ssl.SSLContext | None,
                  phase_s: float) -> list[Outcome]:
    """Run one attacker per entry of ``kinds`` at once; return their outcomes."""
    return asyncio.run(_all(kinds, port, client_ssl, phase_s))
