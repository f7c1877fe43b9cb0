"""Behind a proxy, on both backends: proxy headers (trusted vs untrusted peers) and the
PROXY protocol v1/v2 header in front of a connection."""

from __future__ import annotations

import ipaddress
import json
import struct
from collections.abc import Callable
from typing import Any

from zzz.http.proxy_protocol import V2_SIGNATURE

from .rawhttp import RawClient, build
from .worker_app import app

Serve = Callable[..., Any]
SPOOF = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
         "X-Forwarded-Host": "shop.example"}


def client_info(srv: Any, headers: dict[str, str], prefix: bytes = b"") -> dict[str, Any]:
    with RawClient(srv) as conn:
        conn.send(prefix + build("GET", "/client", headers))
        response = conn.read_response()
    assert response.status == 200, response
    info: dict[str, Any] = json.loads(response.body)
    return info


def test_trusted_peer_sets_client_scheme_and_host(serve: Serve) -> None:
    srv = serve(app, proxy_headers=True)  # 127.0.0.1 is trusted by default
    assert client_info(srv, SPOOF) == {
        "client": ["203.0.113.7", 0], "scheme": "https", "host": "shop.example"}
    forwarded = {"Forwarded": 'for="[2001:db8::5]:1234";proto=https'}
    assert client_info(srv, forwarded)["client"] == ["2001:db8::5", 0]


def test_untrusted_peer_cannot_spoof(serve: Serve) -> None:
    srv = serve(app, proxy_headers=True, forwarded_allow_ips="10.0.0.0/8")
    info = client_info(srv, SPOOF)
    assert info["client"][0] == "127.0.0.1" and info["client"][1] > 0
    assert info["scheme"] == "http" and info["host"] == "127.0.0.1"


def test_headers_ignored_unless_enabled(serve: Serve) -> None:
    srv = serve(app)
    assert client_info(srv, SPOOF)["client"][0] == "127.0.0.1"


def test_proxy_protocol_v1(serve: Serve) -> None:
    srv = serve(app, proxy_protocol=True)
    header = b"PROXY TCP4 192.0.2.10 127.0.0.1 40123 80\r\n"
    assert client_info(srv, {}, header)["client"] == ["192.0.2.10", 40123]


def test_proxy_protocol_v2_then_keep_alive(serve: Serve) -> None:
    srv = serve(app, proxy_protocol=True)
    body = (ipaddress.ip_address("2001:db8::10").packed + ipaddress.ip_address("::1").packed
            + struct.pack("!HH", 5555, 80))
    header = V2_SIGNATURE + bytes([0x21, 0x21]) + struct.pack("!H", len(body)) + body
    with RawClient(srv) as conn:
        conn.send(header)
        conn.send(build("GET", "/client"))
        first = json.loads(conn.read_response().body)
        conn.send(build("GET", "/client"))  # the same connection: no second header
        second = json.loads(conn.read_response().body)
    assert first["client"] == second["client"] == ["2001:db8::10", 5555]


def test_proxy_protocol_required_when_enabled(serve: Serve) -> None:
    srv = serve(app, proxy_protocol=True)
    with RawClient(srv) as conn:
        conn.send(build("GET", "/client"))
        response = conn.read_response()
        assert response.status == 400
        conn.assert_closed()


def test_proxy_protocol_and_proxy_headers_together(serve: Serve) -> None:
    # The PROXY source becomes the peer whose headers are (not) trusted.
    srv = serve(app, proxy_protocol=True, proxy_headers=True)
    trusted = b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 80\r\n"
    untrusted = b"PROXY TCP4 198.51.100.1 127.0.0.1 40000 80\r\n"
    assert client_info(srv, SPOOF, trusted)["client"] == ["203.0.113.7", 0]
    assert client_info(srv, SPOOF, untrusted)["client"] == ["198.51.100.1", 40000]
