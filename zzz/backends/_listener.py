"""The listening socket, created the same way for every backend.

Three sources, chosen by the configuration:

- ``fd``: a socket someone else created and left listening, inherited as a file
  descriptor: the worker processes of :mod:`zzz.supervisor`, systemd socket
  activation (``LISTEN_FDS``, see :func:`systemd_listen_fd`) or any launcher;
- ``uds``: a Unix domain socket at a path, its file given ``uds_mode``
  permissions (nginx on the same host connects to it, no TCP port exposed);
- otherwise ``host``/``port`` over TCP.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Mapping

from zzz.backends._sockopts import tune_listener
from zzz.config import Config

#: First descriptor systemd passes (``SD_LISTEN_FDS_START``); fds 0-2 are stdio.
SD_LISTEN_FDS_START = 3


def bind_listener(config: Config) -> socket.socket:
    """A listening socket for ``config``: adopted (``fd``), Unix (``uds``) or TCP."""
    if config.fd is not None:
        sock = adopt_listener(config.fd)
        tune_listener(sock, config, before_bind=False)
        return sock
    if config.uds is not None:
        return bind_unix(config.uds, config.uds_permissions, config.kernel_backlog)
    return bind_tcp(config)


def bind_tcp(config: Config) -> socket.socket:
    """A bound, listening TCP socket for ``config.host``/``config.port``.

    ``SO_REUSEADDR`` lets a restarted server bind while old connections sit in
    TIME_WAIT. IPv6 literals get an ``AF_INET6`` socket; names are resolved and
    the first address is used. The tuning knobs (buffer sizes, TCP_NODELAY,
    SO_REUSEPORT, ...) are set before ``bind()`` (see :mod:`zzz.backends._sockopts`).
    """
    infos = socket.getaddrinfo(
        config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, socktype, proto, _, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        tune_listener(sock, config, before_bind=True)
        sock.bind(address)
        sock.listen(config.kernel_backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_unix(path: str, mode: int, backlog: int) -> socket.socket:
    """A listening Unix domain socket at ``path`` with permissions ``mode``.

    A socket file left by an earlier run is removed (any other file there is an
    error, never deleted). The mode is set before ``listen()``, so no client can
    connect through looser permissions in between.
    """
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"uds: {path} exists and is not a socket")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def adopt_listener(fd: int) -> socket.socket:
    """The inherited listening socket ``fd`` (``OSError`` when it is not one)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise OSError(f"fd: {fd} is not a usable socket: {exc.strerror or exc}") from None
    try:
        if sock.type != socket.SOCK_STREAM:
            raise OSError(f"fd: {fd} is not a stream socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise OSError(f"fd: {fd} is not listening")
    except BaseException:
        sock.detach()  # not ours to close
        raise
    sock.set_inheritable(False)
    return sock


def systemd_listen_fd(environ: Mapping[str, str], pid: int) -> int | None:
    """The socket systemd passed to process ``pid`` (``LISTEN_FDS``/``LISTEN_PID``), or None.

    Only the first socket is used; ``LISTEN_PID`` must name this process (the
    variables may have leaked from a parent that was activated itself).
    """
    try:
        count = int(environ.get("LISTEN_FDS", "0"))
        owner = int(environ.get("LISTEN_PID", "-1"))
    except ValueError:
        return None
    if count < 1 or owner != pid:
        return None
    return SD_LISTEN_FDS_START


def bound_address(sock: socket.socket) -> tuple[str, int]:
    """``(host, port)`` the socket is bound to (the real port when port 0 was asked).

    A Unix socket gives ``(path, 0)``.
    """
    name = sock.getsockname()
    if isinstance(name, str | bytes):
        return os.fsdecode(name), 0
    return str(name[0]), int(name[1])
