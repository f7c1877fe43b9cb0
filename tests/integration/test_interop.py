"""Interop gaps of issue 12 §2 over real sockets, on each backend (and transport).

Chunk extensions with whitespace are served; forbidden trailer fields and a
second Content-Type are 400; extension methods (known to llhttp or not) reach
their routes; a method no route uses is 501, or 405 with ``Allow`` when the
path has routes for other methods.
"""

from __future__ import annotations

import zzz

from .rawhttp import RawClient, assert_still_serving

H = b"Host: x\r\n"
EXTENSION_METHODS = ("PURGE", "REPORT", "MKCALENDAR", "LINK", "FROB")

methods_app = zzz.Router()


@methods_app.get("/")
def index(ctx: zzz.Context) -> None:
    ctx.text(200, "hello")


@methods_app.route(EXTENSION_METHODS, "/res")
def extension(ctx: zzz.Context) -> None:
    ctx.text(200, f"{ctx.request.method} {len(ctx.raw_body())}")


@methods_app.post("/echo")
def echo(ctx: zzz.Context) -> None:
    ctx.respond(200, "application/octet-stream", ctx.raw_body())


def test_extension_methods_are_routed(serve):
    srv = serve(methods_app)
    with RawClient(srv) as client:
        for method in EXTENSION_METHODS:
            client.send(f"{method} /res HTTP/1.1\r\n".encode() + H + b"Content-Length: 2\r\n\r\nab")
            response = client.read_response()
            assert response.status == 200, method
            assert response.body == f"{method} 2".encode()
            assert not response.closes


def test_method_without_route_is_501_or_405(serve):
    srv = serve(methods_app)
    with RawClient(srv) as client:
        client.send(b"BREW /nowhere HTTP/1.1\r\n" + H + b"\r\n")
        assert client.read_response().status == 501
        client.send(b"PURGE /nowhere HTTP/1.1\r\n" + H + b"\r\n")
        assert client.read_response().status == 404  # PURGE has routes elsewhere
        client.send(b"BREW /res HTTP/1.1\r\n" + H + b"\r\n")
        response = client.read_response()
        assert response.status == 405
        allowed = set((response.header("allow") or "").split(", "))
        assert allowed == set(EXTENSION_METHODS)
        client.send(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        assert client.read_response().body == b"hello"
    assert_still_serving(srv)


def test_chunk_extensions_with_whitespace_are_served(serve):
    srv = serve(methods_app)
    body = b'5; name=value\r\nhello\r\n1 ; a ; b="q"\r\n!\r\n0\r\n\r\n'
    with RawClient(srv) as client:
        client.send(b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + body)
        response = client.read_response()
        assert response.status == 200
        assert response.body == b"hello!"


def test_control_byte_in_chunk_extension_is_400(serve):
    srv = serve(methods_app)
    with RawClient(srv) as client:
        client.send(b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                    + b"5;a\x01b\r\nhello\r\n0\r\n\r\n")
        response = client.read_response()
        assert response.status == 400 and response.closes
    assert_still_serving(srv)


def test_forbidden_trailer_and_repeated_content_type_are_400(serve):
    srv = serve(methods_app)
    with RawClient(srv) as client:
        client.send(b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                    + b"3\r\nabc\r\n0\r\nContent-Type: text/evil\r\n\r\n")
        assert client.read_response().status == 400
    with RawClient(srv) as client:
        client.send(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Type: a/b\r\nContent-Type: c/d\r\n"
                    + b"Content-Length: 1\r\n\r\nx")
        assert client.read_response().status == 400
    assert_still_serving(srv)
