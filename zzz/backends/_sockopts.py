"""Socket tuning: the operator's knobs, each applied where the kernel reads it.

``Config`` carries the knobs (``so_rcvbuf``, ``so_sndbuf``, ``read_size``,
``tcp_nodelay``, ``tcp_defer_accept_s``, ``tcp_fastopen``, ``reuse_port`` and the
event loop's ``write_buffer_high``/``write_buffer_low``); this module is the one
place that turns them into ``setsockopt`` calls, so both backends tune alike.

Where each option lives on Linux (checked by tests/integration/test_socket_options.py):

============================  ==================================  ======================
option                        set on                              inherited by accept()
============================  ==================================  ======================
``SO_REUSEPORT``              listener, before ``bind()``         (listener only)
``SO_RCVBUF`` / ``SO_SNDBUF``  listener, before ``listen()``: the  yes
                              window scale a SYN-ACK announces
                              is derived from the receive buffer
``TCP_NODELAY``               listener                            yes
``TCP_DEFER_ACCEPT``          listener                            (listener only)
``TCP_FASTOPEN``              listener (queue of pending TFO)     (listener only)
============================  ==================================  ======================

So on Linux :func:`tune_listener` sets everything once and ``accept()`` costs no
further syscall (the native backend used to set ``TCP_NODELAY`` per connection).
Elsewhere inheritance is not promised, so :func:`accepted_options` lists what each
accepted socket must be given by hand. Two things are per connection on every OS:
uvloop and asyncio switch ``TCP_NODELAY`` *on* for each accepted socket
themselves (so ``tcp_nodelay=False`` is applied again after them), and the write
watermarks belong to the transport, not the socket (:func:`transport_tuner`).

A knob at its default sets nothing (the kernel's autotuning stays in charge), a
knob the platform lacks is skipped with a debug line, and an option the kernel
refuses or caps is logged with the field's name: the server still serves.

The read size: the native backend passes it to ``recv()``. The event loops read
into their own 256 KiB buffer and hand ``data_received`` a copy; an explicit
``read_size`` wraps each protocol in an ``asyncio.BufferedProtocol`` reading into a
buffer of that size (:func:`sized_reads`), which both uvloop and asyncio honour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from zzz.config import Config, EventLoopConfig

log = logging.getLogger("zzz.sockopts")

#: ``(level, option, value)`` as ``setsockopt`` takes it.
Option = tuple[int, int, int]
P = TypeVar("P", bound=asyncio.BaseProtocol)

#: Linux: the kernel whose behaviour (doubling, caps, sysctls) this module checks.
LINUX = sys.platform.startswith("linux")
#: Platforms whose accepted sockets inherit the listener's buffer sizes and
#: TCP_NODELAY (Linux clones the listening socket's state into each child).
INHERITS_LISTENER_OPTIONS = LINUX
#: The event loops' write-buffer high-water mark when nobody sets one (asyncio and
#: uvloop alike); the low-water mark then defaults to a quarter of it.
LOOP_DEFAULT_WRITE_BUFFER_HIGH = 64 * 1024
#: Linux's switch for server-side TCP Fast Open.
FASTOPEN_SYSCTL = "/proc/sys/net/ipv4/tcp_fastopen"
#: The bit of that sysctl that lets a listener with TCP_FASTOPEN accept data in the SYN.
TFO_SERVER_ENABLE = 0x2
_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def _named_listener_options(config: Config) -> list[tuple[str, int, int, int]]:
    """``(field, level, option, value)`` for the listener, platform gaps skipped."""
    options = [("tcp_nodelay", socket.IPPROTO_TCP, socket.TCP_NODELAY, int(config.tcp_nodelay))]
    if config.so_rcvbuf:
        options.append(("so_rcvbuf", socket.SOL_SOCKET, socket.SO_RCVBUF, config.so_rcvbuf))
    if config.so_sndbuf:
        options.append(("so_sndbuf", socket.SOL_SOCKET, socket.SO_SNDBUF, config.so_sndbuf))
    for name, option_name, value in (("tcp_defer_accept_s", "TCP_DEFER_ACCEPT",
                                      config.tcp_defer_accept_s),
                                     ("tcp_fastopen", "TCP_FASTOPEN", config.tcp_fastopen)):
        if not value:
            continue
        option = getattr(socket, option_name, None)
        if option is None:
            log.debug("%s: %s is not available on %s; skipped", name, option_name, sys.platform)
            continue
        options.append((name, socket.IPPROTO_TCP, option, value))
    return options


def tune_listener(sock: socket.socket, config: Config, *, before_bind: bool) -> None:
    """Apply the listener options of ``config`` to the TCP socket ``sock``.

    ``before_bind``: the socket is fresh (``SO_REUSEPORT`` can still be set and
    the kernel's answer is checked); False for an inherited, already listening
    socket (``--fd``, systemd), whose launcher decided the rest.
    """
    if sock.family not in _TCP_FAMILIES:
        return
    if before_bind and config.reuse_port:
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        else:
            log.warning("reuse_port: SO_REUSEPORT is not available on %s; ignored",
                        sys.platform)
    for name, level, option, value in _named_listener_options(config):
        try:
            sock.setsockopt(level, option, value)
        except OSError as exc:
            log.warning("%s: the kernel refused %d: %s", name, value, exc)
    if before_bind:
        _report_kernel_caps(sock, config)


def _report_kernel_caps(sock: socket.socket, config: Config) -> None:
    """Warn when Linux silently capped a buffer size or ignores TCP Fast Open."""
    if not LINUX:
        return
    for name, option, asked, limit in (
        ("so_rcvbuf", socket.SO_RCVBUF, config.so_rcvbuf, "net.core.rmem_max"),
        ("so_sndbuf", socket.SO_SNDBUF, config.so_sndbuf, "net.core.wmem_max"),
    ):
        # Linux doubles the figure for its own bookkeeping and caps it at the sysctl.
        if asked and sock.getsockopt(socket.SOL_SOCKET, option) < 2 * asked:
            got = sock.getsockopt(socket.SOL_SOCKET, option) // 2
            log.warning("%s: the kernel capped %d to %d bytes (raise %s)", name, asked, got, limit)
    if config.tcp_fastopen:
        try:
            with open(FASTOPEN_SYSCTL, encoding="ascii") as f:
                mode = int(f.read().strip())
        except (OSError, ValueError):
            return
        if not mode & TFO_SERVER_ENABLE:
            log.warning("tcp_fastopen: ignored by the kernel until net.ipv4.tcp_fastopen "
                        "has bit 2 set (it is %d)", mode)


def accepted_options(config: Config, *, loop_sets_nodelay: bool) -> tuple[Option, ...]:
    """Options each accepted socket must be given by hand (empty: none, the fast path).

    ``loop_sets_nodelay``: the caller's event loop turns TCP_NODELAY on for every
    accepted socket itself (uvloop and asyncio do).
    """
    options: list[Option] = []
    nodelay = (socket.IPPROTO_TCP, socket.TCP_NODELAY, int(config.tcp_nodelay))
    if INHERITS_LISTENER_OPTIONS:
        if loop_sets_nodelay and not config.tcp_nodelay:
            options.append(nodelay)
        return tuple(options)
    if config.so_rcvbuf:
        options.append((socket.SOL_SOCKET, socket.SO_RCVBUF, config.so_rcvbuf))
    if config.so_sndbuf:
        options.append((socket.SOL_SOCKET, socket.SO_SNDBUF, config.so_sndbuf))
    if not (loop_sets_nodelay and config.tcp_nodelay):
        options.append(nodelay)
    return tuple(options)


def apply_options(sock: socket.socket, options: tuple[Option, ...]) -> None:
    """Set ``options`` on an accepted socket; a refusal (a Unix socket has no
    TCP_NODELAY, a peer already gone) leaves the connection as it is."""
    for level, option, value in options:
        with contextlib.suppress(OSError):
            sock.setsockopt(level, option, value)


def write_buffer_limits(config: EventLoopConfig) -> tuple[int, int | None] | None:
    """``(high, low)`` for ``transport.set_write_buffer_limits``; None at the loop's
    defaults (nothing to set). ``low`` None: the loop's quarter of ``high``."""
    if config.write_buffer_high == LOOP_DEFAULT_WRITE_BUFFER_HIGH and not config.write_buffer_low:
        return None
    return config.write_buffer_high, config.write_buffer_low or None


def transport_tuner(config: Config) -> Callable[[asyncio.Transport], None] | None:
    """What the event loop's ``connection_made`` applies to each new transport, or
    None when every knob is at the loop's default (the per-connection fast path)."""
    options = accepted_options(config, loop_sets_nodelay=True)
    limits = write_buffer_limits(config.eventloop)
    if not options and limits is None:
        return None

    def tune(transport: asyncio.Transport) -> None:
        if limits is not None:
            transport.set_write_buffer_limits(high=limits[0], low=limits[1])
        if options:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                apply_options(sock, options)

    return tune


def sized_reads(factory: Callable[[], P], read_size: int) -> Callable[[], asyncio.BaseProtocol]:
    """``factory``'s protocols reading into a ``read_size`` buffer (0: ``factory`` itself).

    Each protocol is wrapped in an ``asyncio.BufferedProtocol`` that forwards the
    other callbacks: the loop ``recv_into()``s the buffer and each read reaches
    ``data_received`` as ``bytes``, as before. A wrapper rather than a subclass,
    because uvloop treats anything that is an ``asyncio.Protocol`` as unbuffered.
    Call it once per loop: the buffer is shared by that loop's connections, which
    is safe because a loop fills it and hands it on within one callback. An
    upgrade (``transport.set_protocol``) replaces the wrapper with the new protocol.
    """
    if not read_size:
        return factory
    view = memoryview(bytearray(read_size))

    class SizedReads(asyncio.BufferedProtocol):
        __slots__ = ("feed", "inner")

        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.feed: Callable[[bytes], None] = inner.data_received

        def get_buffer(self, sizehint: int) -> memoryview:
            return view

        def buffer_updated(self, nbytes: int) -> None:
            self.feed(view[:nbytes].tobytes())

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.inner.connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            self.inner.connection_lost(exc)

        def eof_received(self) -> bool | None:
            result: bool | None = self.inner.eof_received()
            return result

        def pause_writing(self) -> None:
            self.inner.pause_writing()

        def resume_writing(self) -> None:
            self.inner.resume_writing()

    return lambda: SizedReads(factory())
