"""The listening socket, created the same way for every backend."""

from __future__ import annotations

import socket

from zzz.config import Config


def bind_listener(config: Config) -> socket.socket:
    """A bound, listening TCP socket for ``config.host``/``config.port``.

    ``SO_REUSEADDR`` lets a restarted server bind while old connections sit in
    TIME_WAIT. IPv6 literals get an ``AF_INET6`` socket; names are resolved and
    the first address is used.
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
        sock.bind(address)
        sock.listen(config.kernel_backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def bound_address(sock: socket.socket) -> tuple[str, int]:
    """``(host, port)`` the socket is bound to (the real port when port 0 was asked)."""
    name = sock.getsockname()
    return str(name[0]), int(name[1])
