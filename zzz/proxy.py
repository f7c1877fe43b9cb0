"""Running behind a reverse proxy: whom to believe about the client.

A proxy (nginx, a load balancer) connects to zzz itself, so the socket's peer
address is the proxy's, and the scheme is whatever the proxy spoke to zzz. The
proxy reports the original client in headers:

- ``Forwarded`` (RFC 7239): ``Forwarded: for=192.0.2.1;proto=https;host=a.example``,
  one element per proxy, comma-separated, the nearest proxy's element last;
- the de-facto ``X-Forwarded-For`` (a list of addresses, nearest last),
  ``X-Forwarded-Proto`` and ``X-Forwarded-Host``.

Anyone can send these headers, so they are honoured only when the *peer* is a
trusted proxy (``forwarded_allow_ips``: IPs and CIDRs, ``unix`` for the Unix
socket whose peer has no address, ``*`` for everyone). The client is then the
**right-most untrusted hop**: walking the list from the nearest proxy outwards,
every trusted address is another of our proxies, and the first one that is not
is the client as our outermost proxy saw it. Anything left of it was written
by the client and may be forged. When every hop is trusted the left-most is used.
``Forwarded`` wins over the ``X-Forwarded-*`` family when both are present.

:func:`apply` rewrites ``request.client`` (``(address, 0)``: proxies forward no
port), ``request.scheme`` and the ``Host`` header in place, before the
application sees the request, so ``ctx.client``, ``ctx.scheme`` and the
ASGI/WSGI environments built from the request reflect it. The original peer is
kept in ``request.extensions["proxy_peer"]``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from zzz.http.request import Request

#: The ``forwarded_allow_ips`` entry meaning "a peer on the Unix socket" (no address).
UNIX_ENTRY = "unix"
#: The ``forwarded_allow_ips`` entry trusting every peer (only behind a firewall!).
ANY_ENTRY = "*"
#: Schemes accepted from ``proto=`` / ``X-Forwarded-Proto``; anything else is ignored.
SCHEMES = frozenset({"http", "https", "ws", "wss"})
#: Hops examined per request: bounds the work a header with thousands of entries causes.
MAX_HOPS = 32

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The parsed ``forwarded_allow_ips`` setting."""

    networks: tuple[Network, ...]
    unix: bool
    everyone: bool

    def trusts(self, address: str | None) -> bool:
        """Whether a peer (``None``: the Unix socket) or a forwarded hop is one of our proxies."""
        if self.everyone:
            return True
        if address is None:
            return self.unix
        ip = _parse_ip(address)
        if ip is None:
            return False
        return any(ip in net for net in self.networks)


def parse_trusted(text: str) -> TrustedProxies:
    """``"127.0.0.1, 10.0.0.0/8, unix"`` → :class:`TrustedProxies` (``ValueError`` names the entry)."""
    if not isinstance(text, str):
        raise ValueError(f"must be a comma-separated string, got {text!r}")
    networks: list[Network] = []
    unix = everyone = False
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry == UNIX_ENTRY:
            unix = True
        elif entry == ANY_ENTRY:
            everyone = True
        else:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"not an IP address or CIDR: {entry!r}") from None
    return TrustedProxies(tuple(networks), unix, everyone)


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# --------------------------------------------------------------------------- Forwarded


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _node_address(node: str) -> str:
    """``for=`` node → address: ``[2001:db8::1]:80`` → ``2001:db8::1``, ``1.2.3.4:80`` → ``1.2.3.4``."""
    node = _unquote(node)
    if node.startswith("["):
        end = node.find("]")
        return node[1:end] if end > 0 else node
    if node.count(":") == 1:
        return node.partition(":")[0]
    return node


def parse_forwarded(values: list[str]) -> list[dict[str, str]]:
    """The elements of every ``Forwarded`` field, in order, as ``{param: value}`` dicts."""
    elements: list[dict[str, str]] = []
    for value in values:
        for element in _split_outside_quotes(value, ","):
            params: dict[str, str] = {}
            for pair in _split_outside_quotes(element, ";"):
                name, sep, raw = pair.partition("=")
                if sep:
                    params[name.strip().lower()] = _unquote(raw)
            if params:
                elements.append(params)
            if len(elements) >= MAX_HOPS:
                return elements
    return elements


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part for part in (p.strip() for p in parts) if part]


# --------------------------------------------------------------------------- the choice


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What the trusted proxies say about the original request."""

    client: str | None
    scheme: str | None
    host: str | None


def _pick_hop(hops: list[str], trusted: TrustedProxies) -> int | None:
    """Index of the right-most untrusted hop (the left-most when all are trusted)."""
    if not hops:
        return None
    for index in range(len(hops) - 1, -1, -1):
        if not trusted.trusts(hops[index]):
            return index
    return 0


def _list_items(values: list[str]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def resolve(request: Request, trusted: TrustedProxies) -> Forwarded | None:
    """What to believe for ``request``; ``None`` when the peer is not a trusted proxy."""
    peer = request.client[0] if request.client is not None else None
    if not trusted.trusts(peer):
        return None
    headers = request.headers
    forwarded = headers.get_all("forwarded")
    if forwarded:
        elements = parse_forwarded(forwarded)
        hops = [_node_address(e.get("for", "unknown")) for e in elements]
        index = _pick_hop(hops, trusted)
        if index is None:
            return None
        chosen = elements[index]
        proto = chosen.get("proto")
        return Forwarded(hops[index], proto, chosen.get("host"))
    hops = _list_items(headers.get_all("x-forwarded-for"))[-MAX_HOPS:]
    protos = _list_items(headers.get_all("x-forwarded-proto"))[-MAX_HOPS:]
    hosts = _list_items(headers.get_all("x-forwarded-host"))[-MAX_HOPS:]
    index = _pick_hop(hops, trusted)
    if index is None:
        client = None
        proto = protos[-1] if protos else None
        host = hosts[-1] if hosts else None
    else:
        client = _node_address(hops[index])
        # Each proxy appends to every list: aligned lists give the chosen hop's own
        # values; otherwise the nearest proxy's statement is the one we can trust.
        proto = (protos[index] if len(protos) == len(hops) else protos[-1]) if protos else None
        host = (hosts[index] if len(hosts) == len(hops) else hosts[-1]) if hosts else None
    return Forwarded(client, proto, host)


def apply(request: Request, trusted: TrustedProxies) -> None:
    """Rewrite ``request`` from trusted proxy headers (a no-op for an untrusted peer)."""
    forwarded = resolve(request, trusted)
    if forwarded is None:
        return
    request.extensions["proxy_peer"] = request.client
    if forwarded.client:
        request.client = (forwarded.client, 0)
    if forwarded.scheme is not None:
        scheme = forwarded.scheme.strip().lower()
        if scheme in SCHEMES:
            request.scheme = "https" if scheme == "wss" else "http" if scheme == "ws" else scheme
    if forwarded.host:
        request.headers.replace("host", forwarded.host)
