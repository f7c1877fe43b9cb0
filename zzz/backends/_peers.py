"""Client addresses as the backends hand them to requests, host strings shared.

Behind a load balancer or proxy, thousands of connections come from a handful of
addresses; each accepted socket still brings its own copy of the host string. One
shared copy per host saves that string (about 60 bytes) on every open connection.
"""

from __future__ import annotations

#: Host strings seen recently: the one copy each connection from that host refers to.
_hosts: dict[str, str] = {}
#: Bound on :data:`_hosts`: emptied when full, so clients from many addresses only
#: stop sharing (dict operations are atomic under the GIL: no lock needed).
MAX_SHARED_HOSTS = 4096


def client_address(peer: object) -> tuple[str, int] | None:
    """``(host, port)`` of a socket's peer name, or None for a Unix socket's."""
    if not isinstance(peer, tuple):
        return None
    host = str(peer[0])
    shared = _hosts.get(host)
    if shared is None:
        if len(_hosts) >= MAX_SHARED_HOSTS:
            _hosts.clear()
        _hosts[host] = shared = host
    return (shared, int(peer[1]))
