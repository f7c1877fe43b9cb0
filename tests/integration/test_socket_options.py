"""The socket tuning knobs reach the kernel, on both backends.

The servers under test run in this process, so the kernel's view of their
sockets is read directly: every socket descriptor of the process is duplicated
and asked ``getsockname``/``getpeername``; the one bound to the server's port and
listening is the listener, the one whose peer is a test client's address is the
server side of that client's connection. ``getsockopt`` on those duplicates
reads what the backend really set (Linux: the listener's options are inherited
by accepted sockets, see zzz/backends/_sockopts.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import zzz
from zzz.backends import _sockopts
from zzz.backends._sockopts import accepted_options, transport_tuner, tune_listener
from zzz.config import MAX_SOCKET_BUFFER, Config, EventLoopConfig
from zzz.http.connection import HTTPConnection

from .apps import app
from .rawhttp import RawClient, build

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the process's sockets through /proc/self/fd")

TCP = socket.IPPROTO_TCP
SOL = socket.SOL_SOCKET


def _own_sockets() -> Iterator[socket.socket]:
    """A duplicate of every socket descriptor of this process (closed after use)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            yield sock
        finally:
            sock.close()


def _opt(sock: socket.socket, level: int, option: int) -> int:
    return sock.getsockopt(level, option)


def listener_options(port: int, *options: tuple[int, int]) -> list[int]:
    """``getsockopt`` of the server's listening socket on ``port``."""
    for sock in _own_sockets():
        try:
            listening = _opt(sock, SOL, socket.SO_ACCEPTCONN)
            name = sock.getsockname()
        except OSError:
            continue
        if listening and isinstance(name, tuple) and name[1] == port:
            return [_opt(sock, level, option) for level, option in options]
    raise AssertionError(f"no listening socket on port {port}")


def server_side_options(client: socket.socket, *options: tuple[int, int]) -> list[int]:
    """``getsockopt`` of the server's end of ``client``'s connection."""
    want = client.getsockname()
    for sock in _own_sockets():
        try:
            if sock.type != socket.SOCK_STREAM or sock.getpeername() != want:
                continue
        except OSError:
            continue
        return [_opt(sock, level, option) for level, option in options]
    raise AssertionError(f"no server-side socket connected to {want}")


def _served(client: RawClient, body: bytes = b"") -> None:
    """One request answered on ``client`` (so the server has accepted it)."""
    if body:
        client.send(build("POST", "/echo", {"Content-Length": str(len(body))}, body))
    else:
        client.send(build("GET", "/"))
    response = client.read_response()
    assert response.status == 200
    assert response.body == body or not body


def _fresh_default(option: int) -> int:
    with socket.socket() as probe:
        return _opt(probe, SOL, option)


def test_defaults_leave_the_kernel_in_charge(serve):
    srv = serve(app)
    nodelay, rcv, snd, reuse, defer, tfo = listener_options(
        srv.port, (TCP, socket.TCP_NODELAY), (SOL, socket.SO_RCVBUF), (SOL, socket.SO_SNDBUF),
        (SOL, socket.SO_REUSEPORT), (TCP, socket.TCP_DEFER_ACCEPT), (TCP, socket.TCP_FASTOPEN))
    assert nodelay == 1
    # Untouched buffer sizes are the kernel's defaults (autotuning stays on).
    assert (rcv, snd) == (_fresh_default(socket.SO_RCVBUF), _fresh_default(socket.SO_SNDBUF))
    assert (reuse, defer, tfo) == (0, 0, 0)
    with RawClient(srv) as client:
        _served(client)
        assert server_side_options(client.sock, (TCP, socket.TCP_NODELAY)) == [1]


def test_buffer_sizes_reach_listener_and_accepted_sockets(serve):
    srv = serve(app, so_rcvbuf=96 * 1024, so_sndbuf=48 * 1024)
    # Linux reports twice the figure asked (the other half is its bookkeeping).
    assert listener_options(srv.port, (SOL, socket.SO_RCVBUF), (SOL, socket.SO_SNDBUF)) == [
        2 * 96 * 1024, 2 * 48 * 1024]
    with RawClient(srv) as client:
        _served(client, os.urandom(300_000))
        assert server_side_options(client.sock, (SOL, socket.SO_RCVBUF),
                                   (SOL, socket.SO_SNDBUF)) == [2 * 96 * 1024, 2 * 48 * 1024]


def test_tcp_nodelay_can_be_turned_off(serve):
    """The event loops switch TCP_NODELAY on for every accepted socket themselves;
    ``tcp_nodelay=False`` must still win on both backends."""
    srv = serve(app, tcp_nodelay=False)
    assert listener_options(srv.port, (TCP, socket.TCP_NODELAY)) == [0]
    with RawClient(srv) as client:
        _served(client)
        assert server_side_options(client.sock, (TCP, socket.TCP_NODELAY)) == [0]


def test_defer_accept_and_fast_open_are_set_on_the_listener(serve):
    srv = serve(app, tcp_defer_accept_s=5, tcp_fastopen=32)
    defer, tfo = listener_options(srv.port, (TCP, socket.TCP_DEFER_ACCEPT),
                                  (TCP, socket.TCP_FASTOPEN))
    assert defer >= 5  # Linux rounds up to whole SYN-ACK retransmissions (7 s)
    assert tfo == 32
    with RawClient(srv) as client:  # a client that speaks at once is served as usual
        for _ in range(3):
            _served(client)


def test_reuse_port_lets_another_socket_bind_the_port(serve):
    srv = serve(app, reuse_port=True)
    assert listener_options(srv.port, (SOL, socket.SO_REUSEPORT)) == [1]
    with socket.socket() as other:
        other.setsockopt(SOL, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", srv.port))  # EADDRINUSE without SO_REUSEPORT on both


def test_without_reuse_port_the_port_is_exclusive(serve):
    srv = serve(app)
    with socket.socket() as other:
        other.setsockopt(SOL, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError):
            other.bind(("127.0.0.1", srv.port))


@pytest.mark.tls_transport
@pytest.mark.parametrize(("read_size", "loop"), [(4096, "auto"), (4096, "asyncio"), (0, "auto")])
def test_read_size_bounds_every_read(serve, backend, monkeypatch, read_size, loop):
    """Each read the backend hands the engine is at most ``read_size`` bytes (the
    event loops, uvloop and asyncio, honour it through a BufferedProtocol); the
    body arrives whole."""
    if loop != "auto" and backend != "eventloop":
        pytest.skip("the loop implementation is the event-loop backend's setting")
    seen: list[int] = []
    feed = HTTPConnection.feed

    def recording_feed(self: HTTPConnection, data: bytes) -> Any:
        seen.append(len(data))
        return feed(self, data)

    monkeypatch.setattr(HTTPConnection, "feed", recording_feed)
    srv = serve(app, read_size=read_size, eventloop=EventLoopConfig(loop=loop))
    body = os.urandom(512 * 1024)
    with RawClient(srv) as client:
        for _ in range(2):
            _served(client, body)
    assert sum(seen) > 2 * len(body)  # decrypted bytes over TLS
    if read_size:
        assert max(seen) <= read_size
    else:  # the backend's own size: reads well beyond 4 KiB on loopback
        assert max(seen) > 4096


#: The streamed response of the watermark test: 4 MiB in 64 KiB pieces, many times
#: the 16 KiB high-water mark and the 32 KiB send buffer, so writing pauses often.
STREAM_PIECE = b"z" * 65536
STREAM_PIECES = 64
streaming = zzz.Router()


@streaming.get("/stream")
def _stream(ctx: zzz.Context) -> None:
    ctx.stream(200, "application/octet-stream", (STREAM_PIECE for _ in range(STREAM_PIECES)))


def test_write_buffer_watermarks_are_accepted(serve):
    """Custom watermarks leave streamed responses whole (the event loop sets them on
    each transport; the native backend's bound is the kernel's send buffer)."""
    srv = serve(streaming, eventloop=EventLoopConfig(write_buffer_high=16 * 1024,
                                                     write_buffer_low=4 * 1024),
                so_sndbuf=32 * 1024)
    with RawClient(srv) as client:
        for _ in range(2):
            client.send(build("GET", "/stream"))
            response = client.read_response()
            assert response.status == 200
            assert response.body == STREAM_PIECE * STREAM_PIECES


def test_websocket_upgrade_with_a_read_size(serve):
    """The upgrade replaces the event loop's read-size wrapper with the WebSocket
    protocol; messages larger than the read size still arrive whole."""
    from websockets.sync.client import connect

    echo = zzz.Router()
    echo.ws("/ws", on_message=lambda ws, msg: ws.send_binary(msg) if isinstance(msg, bytes)
            else ws.send(msg))
    srv = serve(echo, read_size=4096)
    blob = os.urandom(200_000)
    with connect(f"ws://127.0.0.1:{srv.port}/ws", open_timeout=5, close_timeout=5,
                 proxy=None, compression=None) as client:
        client.send("hi")
        assert client.recv(timeout=5) == "hi"
        client.send(blob)
        assert client.recv(timeout=5) == blob


# ------------------------------------------------------------------ _sockopts without a server


def test_a_capped_buffer_size_is_logged_with_its_field(caplog):
    """Linux caps SO_RCVBUF at net.core.rmem_max silently; the operator hears of it."""
    with open("/proc/sys/net/core/rmem_max", encoding="ascii") as f:
        rmem_max = int(f.read())
    asked = min(2 * rmem_max, MAX_SOCKET_BUFFER)
    if asked <= rmem_max:
        pytest.skip(f"net.core.rmem_max {rmem_max} leaves nothing to cap")
    with socket.socket() as sock, caplog.at_level(logging.WARNING, "zzz.sockopts"):
        tune_listener(sock, Config(so_rcvbuf=asked), before_bind=True)
    assert f"so_rcvbuf: the kernel capped {asked} to {rmem_max}" in caplog.text


@pytest.mark.parametrize(("mode", "warned"), [(1, True), (3, False)])
def test_fast_open_without_the_server_sysctl_is_logged(tmp_path, monkeypatch, caplog, mode,
                                                       warned):
    sysctl = tmp_path / "tcp_fastopen"
    sysctl.write_text(f"{mode}\n")
    monkeypatch.setattr(_sockopts, "FASTOPEN_SYSCTL", str(sysctl))
    with socket.socket() as sock, caplog.at_level(logging.WARNING, "zzz.sockopts"):
        tune_listener(sock, Config(tcp_fastopen=8), before_bind=True)
        assert sock.getsockopt(TCP, socket.TCP_FASTOPEN) == 8
    assert ("tcp_fastopen: ignored by the kernel" in caplog.text) is warned


def test_unix_listeners_get_no_tcp_options():
    with socket.socket(socket.AF_UNIX) as sock:
        tune_listener(sock, Config(tcp_nodelay=True, so_rcvbuf=65536, tcp_fastopen=8),
                      before_bind=True)  # no TCP_NODELAY on AF_UNIX: nothing raised


def test_accepted_options_where_accept_does_not_inherit(monkeypatch):
    """Off Linux every knob is set per accepted socket; on Linux only what the loop undoes."""
    config = Config(so_rcvbuf=65536, tcp_nodelay=False)
    assert accepted_options(config, loop_sets_nodelay=False) == ()
    assert accepted_options(config, loop_sets_nodelay=True) == ((TCP, socket.TCP_NODELAY, 0),)
    assert accepted_options(Config(), loop_sets_nodelay=True) == ()
    monkeypatch.setattr(_sockopts, "INHERITS_LISTENER_OPTIONS", False)
    assert accepted_options(config, loop_sets_nodelay=True) == (
        (SOL, socket.SO_RCVBUF, 65536), (TCP, socket.TCP_NODELAY, 0))
    assert accepted_options(Config(), loop_sets_nodelay=True) == ()
    assert accepted_options(Config(), loop_sets_nodelay=False) == ((TCP, socket.TCP_NODELAY, 1),)


@pytest.mark.parametrize(("high", "low", "expected"), [
    (64 * 1024, 0, None),                 # the loop's own defaults: nothing to set
    (16 * 1024, 4 * 1024, (4 * 1024, 16 * 1024)),
    (256 * 1024, 0, (64 * 1024, 256 * 1024)),  # low: the loop's quarter of high
])
def test_transport_tuner_sets_the_watermarks(high, low, expected):
    tune = transport_tuner(Config(eventloop=EventLoopConfig(write_buffer_high=high,
                                                            write_buffer_low=low)))
    if expected is None:
        assert tune is None
        return
    assert tune is not None

    async def limits() -> tuple[int, int]:
        left, right = socket.socketpair()
        with left, right:
            transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
                asyncio.Protocol, left.dup())
            try:
                tune(transport)
                return transport.get_write_buffer_limits()
            finally:
                transport.close()

    assert asyncio.run(limits()) == expected


def test_an_inherited_listener_is_tuned_too():
    """``--fd`` (the supervisor's workers, systemd): the knobs reach the inherited socket."""
    from zzz.backends._listener import bind_listener

    with socket.socket() as launcher:
        launcher.bind(("127.0.0.1", 0))
        launcher.listen(8)
        adopted = bind_listener(Config(fd=launcher.fileno(), tcp_defer_accept_s=3,
                                       tcp_nodelay=False, so_sndbuf=65536))
        try:
            assert adopted.getsockopt(TCP, socket.TCP_DEFER_ACCEPT) >= 3
            assert adopted.getsockopt(TCP, socket.TCP_NODELAY) == 0
            assert adopted.getsockopt(SOL, socket.SO_SNDBUF) == 2 * 65536
        finally:
            adopted.detach()  # the launcher's socket: closed by the with block
