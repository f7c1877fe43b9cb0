"""Proxy headers: whom to believe (zzz.proxy) and the request rewrite (zzz.request_hooks)."""

from __future__ import annotations

import pytest

from zzz.config import Config, ConfigError
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.http.response import Response
from zzz.proxy import apply, parse_forwarded, parse_trusted, resolve
from zzz.request_hooks import request_limit

DEFAULT = parse_trusted("127.0.0.1,unix")


def make(peer: tuple[str, int] | None, *fields: tuple[str, str]) -> Request:
    return Request("GET", "/", "", Headers([("Host", "internal:8000"), *fields]),
                   client=peer, scheme="http")


def test_parse_trusted() -> None:
    trusted = parse_trusted(" 10.0.0.0/8 , ::1, unix ")
    assert trusted.trusts("10.1.2.3") and trusted.trusts("::1") and trusted.trusts(None)
    assert not trusted.trusts("11.0.0.1") and not trusted.trusts("unknown")
    assert trusted.trusts("::ffff:10.0.0.1")  # IPv4-mapped IPv6 peer
    assert parse_trusted("*").trusts("203.0.113.5")
    assert not parse_trusted("127.0.0.1").trusts(None)
    with pytest.raises(ValueError, match="nonsense"):
        parse_trusted("127.0.0.1,nonsense")


def test_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        Config(forwarded_allow_ips="10.0.0.0/33")


def test_x_forwarded_from_a_trusted_peer() -> None:
    request = make(("127.0.0.1", 5000), ("X-Forwarded-For", "203.0.113.9"),
                   ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "example.com"))
    apply(request, DEFAULT)
    assert request.client == ("203.0.113.9", 0)
    assert request.scheme == "https"
    assert request.headers.get("host") == "example.com"
    assert request.headers.get_all("host") == ["example.com"]
    assert request.extensions["proxy_peer"] == ("127.0.0.1", 5000)


def test_spoofed_headers_from_an_untrusted_peer_are_ignored() -> None:
    request = make(("198.51.100.4", 5000), ("X-Forwarded-For", "1.2.3.4"),
                   ("X-Forwarded-Proto", "https"), ("Forwarded", "for=1.2.3.4;proto=https"))
    apply(request, DEFAULT)
    assert request.client == ("198.51.100.4", 5000)
    assert request.scheme == "http"
    assert request.headers.get("host") == "internal:8000"


def test_right_most_untrusted_hop() -> None:
    trusted = parse_trusted("127.0.0.1,10.0.0.0/8")
    # The client forged "6.6.6.6"; our edge proxy 10.0.0.5 appended the real peer.
    request = make(("127.0.0.1", 1), ("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.0.0.5"))
    apply(request, trusted)
    assert request.client == ("203.0.113.9", 0)
    all_trusted = make(("127.0.0.1", 1), ("X-Forwarded-For", "10.0.0.7, 10.0.0.5"))
    apply(all_trusted, trusted)
    assert all_trusted.client == ("10.0.0.7", 0)


def test_several_x_forwarded_for_fields_form_one_list() -> None:
    request = make(("127.0.0.1", 1), ("X-Forwarded-For", "6.6.6.6"),
                   ("X-Forwarded-For", "203.0.113.9"))
    apply(request, DEFAULT)
    assert request.client == ("203.0.113.9", 0)


def test_forwarded_rfc7239_wins_and_gives_proto_and_host() -> None:
    request = make(
        None,
        ("Forwarded", 'for="[2001:db8::9]:4711";proto=https;host="a.example", for=127.0.0.1'),
        ("X-Forwarded-For", "9.9.9.9"),
    )
    apply(request, DEFAULT)  # the unix socket peer is trusted by default
    assert request.client == ("2001:db8::9", 0)
    assert request.scheme == "https"
    assert request.headers.get("host") == "a.example"


def test_forwarded_parsing_with_quotes_and_case() -> None:
    elements = parse_forwarded(['For="1.2.3.4:80";Proto=HTTPS;by=x, for=unknown',
                                'for="a,b;c"'])
    assert elements == [{"for": "1.2.3.4:80", "proto": "HTTPS", "by": "x"},
                        {"for": "unknown"}, {"for": "a,b;c"}]
    request = make(("127.0.0.1", 1), ("Forwarded", "for=_hidden;proto=HTTPS"))
    apply(request, DEFAULT)
    assert request.client == ("_hidden", 0)  # an obfuscated identifier is untrusted
    assert request.scheme == "https"


def test_unknown_scheme_is_ignored_and_no_headers_keep_the_peer() -> None:
    request = make(("127.0.0.1", 1), ("X-Forwarded-Proto", "gopher"))
    apply(request, DEFAULT)
    assert request.scheme == "http" and request.client == ("127.0.0.1", 1)
    assert resolve(make(("8.8.8.8", 1)), DEFAULT) is None


def test_request_limit_with_jitter() -> None:
    import random

    rng = random.Random(7)
    limits = {request_limit(100, 10, rng) for _ in range(200)}
    assert limits <= set(range(100, 111)) and len(limits) > 5
    assert request_limit(0, 10) == 0
    assert request_limit(5, 0) == 5


class _App:
    def __init__(self) -> None:
        self.seen: list[tuple[tuple[str, int] | None, str]] = []

    def handle(self, request: Request, server: object) -> Response:
        self.seen.append((request.client, request.scheme))
        return Response(200)

    def check_continue(self, request: Request) -> Response | None:
        return None


def test_server_applies_proxy_headers_and_counts_requests() -> None:
    from zzz.server import Server

    app = _App()
    server = Server(app, Config(proxy_headers=True, max_requests=3))
    for _ in range(2):
        server.handle(make(("127.0.0.1", 9), ("X-Forwarded-For", "203.0.113.1"),
                           ("X-Forwarded-Proto", "https")))
    assert not server.shutting_down.is_set()
    server.handle(make(("127.0.0.1", 9)))
    assert server.shutting_down.is_set()  # the third request reached max_requests
    assert app.seen[0] == (("203.0.113.1", 0), "https")
    assert app.seen[2] == (("127.0.0.1", 9), "http")


def test_default_server_is_not_wrapped() -> None:
    from zzz.server import Server

    server = Server(_App(), Config())
    assert "handle" not in vars(server)
