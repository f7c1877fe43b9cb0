"""What handlers return and answer, over real sockets, once per backend (issue 8 §3).

Returned values are documented sugar (str, bytes, dict, list, Response); any
other value, a body that is not bytes/str, an unsafe header field and a stream
item that is not bytes/str each give a 500 (or, mid-stream, a cut connection)
and one log record naming the method, the path and the handler.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import zzz
from zzz.middleware import RequestId

from .rawhttp import SOCKET_TIMEOUT_S


def returning_app() -> zzz.Router:
    app = zzz.Router()

    @app.get("/str")
    def text(ctx: zzz.Context) -> Any:
        return "héllo"

    @app.get("/bytes")
    async def raw(ctx: zzz.Context) -> Any:
        return b"\x00\x01"

    @app.get("/dict")
    def mapping(ctx: zzz.Context) -> Any:
        ctx.status = 201
        return {"a": 1}

    @app.get("/list")
    async def sequence(ctx: zzz.Context) -> Any:
        return [1, "two"]

    @app.get("/response")
    def response(ctx: zzz.Context) -> Any:
        return zzz.Response(202, [("Content-Type", "text/csv"), ("X-Made", "by hand")], b"a,b\n")

    @app.get("/none")
    def nothing(ctx: zzz.Context) -> Any:
        ctx.text(203, "set on ctx")
        return None

    mw = zzz.Router(middleware=[RequestId()])
    for route in app.routes:
        mw.add_route(route.method, route.pattern, route.handler)

    async def outer(ctx: zzz.Context) -> None:
        ctx.set_header("X-Outer", "1")
        await ctx.next()

    def inner(ctx: zzz.Context) -> Any:
        ctx.set_header("X-Inner", "1")
        return ctx.next()

    nested = zzz.Router(middleware=[outer, inner])
    for route in app.routes:
        if route.pattern in ("/str", "/dict", "/response"):  # the sync handlers
            nested.add_route(route.method, route.pattern, route.handler)
    app.state.with_middleware = mw
    app.state.nested = nested
    return app


EXPECTED = {
    "/str": (200, "text/plain; charset=utf-8", "héllo".encode()),
    "/bytes": (200, "application/octet-stream", b"\x00\x01"),
    "/dict": (201, "application/json", b'{"a":1}'),
    "/list": (200, "application/json", b'[1,"two"]'),
    "/response": (202, "text/csv", b"a,b\n"),
    "/none": (203, "text/plain; charset=utf-8", b"set on ctx"),
}


def check_answers(url: str, paths: list[str]) -> list[httpx.Response]:
    answers = []
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        for path in paths:
            response = client.get(url + path)
            status, content_type, body = EXPECTED[path]
            assert (response.status_code, response.headers.get("content-type"),
                    response.content) == (status, content_type, body), path
            answers.append(response)
    return answers


def test_returned_values_become_the_response(serve: Any) -> None:
    srv = serve(returning_app())
    answers = check_answers(srv.url, list(EXPECTED))
    assert answers[4].headers["x-made"] == "by hand"


def test_returned_values_behind_middleware_keep_its_headers(serve: Any) -> None:
    app = returning_app()
    srv = serve(app.state.with_middleware)
    for response in check_answers(srv.url, list(EXPECTED)):
        assert "x-request-id" in response.headers
    nested = serve(app.state.nested)
    for response in check_answers(nested.url, ["/str", "/dict", "/response"]):
        assert response.headers["x-outer"] == response.headers["x-inner"] == "1"


# ---------------------------------------------------------------------- mistakes


def broken_app() -> zzz.Router:
    app = zzz.Router()

    @app.get("/returns-int")
    def returns_int(ctx: zzz.Context) -> Any:
        return 42

    @app.get("/returns-tuple")
    async def returns_tuple(ctx: zzz.Context) -> Any:
        return "created", 201

    @app.get("/respond-int")
    def respond_int(ctx: zzz.Context) -> None:
        ctx.respond(200, "text/plain", 42)  # type: ignore[arg-type]

    @app.get("/respond-dict")
    async def respond_dict(ctx: zzz.Context) -> None:
        ctx.respond(200, "application/json", {"a": 1})  # type: ignore[arg-type]

    @app.get("/set-int-body")
    def set_int_body(ctx: zzz.Context) -> None:
        ctx.set_response(zzz.Response(200, [], 42))  # type: ignore[arg-type]

    @app.get("/return-none-body")
    def return_none_body(ctx: zzz.Context) -> Any:
        return zzz.Response(200, [], None)  # type: ignore[arg-type]

    @app.get("/crlf-header")
    def crlf_header(ctx: zzz.Context) -> None:
        ctx.response_headers.append(("X-Bad", "a\r\nSet-Cookie: evil=1"))
        ctx.text(200, "never sent")

    @app.get("/crlf-response")
    def crlf_response(ctx: zzz.Context) -> Any:
        return zzz.Response(200, [("X-Bad", "a\r\nb")], b"never sent")

    return app


CASES = [
    ("/returns-int", "returns_int", "returned a int"),
    ("/returns-tuple", "returns_tuple", "returned a tuple"),
    ("/respond-int", "respond_int", "respond() body must be bytes or str, got int"),
    ("/respond-dict", "respond_dict", "got dict (use ctx.json() for JSON)"),
    ("/set-int-body", "set_int_body", "Response body must be bytes or str, got int"),
    ("/return-none-body", "return_none_body", "Response body must be bytes or str, got NoneType"),
    ("/crlf-header", "crlf_header", "value contains CR, LF or NUL"),
    ("/crlf-response", "crlf_response", "value contains CR, LF or NUL"),
]


@pytest.mark.parametrize(("path", "handler", "detail"), CASES, ids=[c[0] for c in CASES])
def test_mistakes_answer_500_and_log_method_path_and_handler(
    serve: Any, caplog: pytest.LogCaptureFixture, path: str, handler: str, detail: str
) -> None:
    caplog.set_level(logging.ERROR, logger="zzz")
    srv = serve(broken_app())
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.get(srv.url + path)
        assert response.status_code == 500
        assert response.text == "500 Internal Server Error\n"
        assert "set-cookie" not in response.headers
        assert client.get(srv.url + "/returns-int").status_code == 500  # still serving
    records = [r for r in caplog.records if path in r.getMessage()]
    assert records, [r.getMessage() for r in caplog.records]
    message = records[0].getMessage()
    assert f"GET {path}" in message
    assert f"broken_app.<locals>.{handler}" in message
    assert detail in message


def test_respond_type_error_points_at_the_callers_line(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="zzz")
    srv = serve(broken_app())
    httpx.get(srv.url + "/respond-int", timeout=SOCKET_TIMEOUT_S)
    (record,) = [r for r in caplog.records if "/respond-int" in r.getMessage()]
    assert record.exc_info is not None
    tb = record.exc_info[2]
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    # The user's frame calls respond(), which raises: the traceback shows the user's line.
    assert frames[frames.index("respond_int") + 1] == "respond"
    assert record.exc_info[1].__traceback__ is not None


def stream_app() -> zzz.Router:
    app = zzz.Router()

    @app.get("/sync")
    def sync_stream(ctx: zzz.Context) -> None:
        def pieces() -> Iterator[Any]:
            yield b"first\n"
            yield 42

        ctx.stream(200, "text/plain", pieces())

    @app.get("/async")
    async def async_stream(ctx: zzz.Context) -> None:
        async def pieces() -> AsyncIterator[Any]:
            yield "first\n"
            yield {"not": "bytes"}

        ctx.stream(200, "text/plain", pieces())

    @app.get("/returned")
    def returned_stream(ctx: zzz.Context) -> Any:
        return zzz.Response(200, [], b"", iter([b"first\n", None, b"never"]))  # type: ignore[list-item]

    return app


@pytest.mark.parametrize(("path", "handler", "kind"), [
    ("/sync", "sync_stream", "int"), ("/async", "async_stream", "dict"),
    ("/returned", "returned_stream", "NoneType"),
])
def test_stream_of_a_non_bytes_item_is_cut_and_logged_with_the_handler(
    serve: Any, caplog: pytest.LogCaptureFixture, path: str, handler: str, kind: str
) -> None:
    caplog.set_level(logging.ERROR, logger="zzz")
    srv = serve(stream_app())
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client, pytest.raises(
        httpx.RemoteProtocolError
    ):
        client.get(srv.url + path)  # the chunked body never ends properly
    logged = [
        (r.getMessage(), r.exc_info[1] if r.exc_info else None) for r in caplog.records
    ]
    wanted = f"GET {path}: the stream of handler "
    assert any(
        exc is not None and str(exc).startswith(wanted) and f".{handler} yielded a {kind}" in str(exc)
        and path in message
        for message, exc in logged
    ), logged
