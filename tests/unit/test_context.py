"""Context: request accessors and response helpers — without sockets."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

import zzz
from zzz import Context, HTTPError, Response, Router
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.http.response import FILE_READ_CHUNK
from zzz.static import INLINE_FILE_MAX

SERVER = zzz.Server(Router(), zzz.Config(port=0))


def make_ctx(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    params: dict[str, str] | None = None,
    server: zzz.Server = SERVER,
) -> Context:
    raw_path, _, query = target.partition("?")
    request = Request(
        method,
        raw_path,
        query,
        Headers([("Host", "test"), *(headers or [])]),
        path=unquote(raw_path),
        body=body,
        client=("127.0.0.1", 5555),
    )
    return Context(request, server, params=params)


def drain(stream: Any) -> bytes:
    if hasattr(stream, "__aiter__"):

        async def collect() -> bytes:
            return b"".join([chunk async for chunk in stream])

        return asyncio.run(collect())
    return b"".join(stream)


# ---------------------------------------------------------------------- request side


def test_request_accessors() -> None:
    ctx = make_ctx("POST", "/a%20b?x=1", headers=[("X-Thing", "v")])
    assert ctx.method == "POST"
    assert ctx.path == "/a b"
    assert ctx.query_string == "x=1"
    assert ctx.headers.get("x-thing") == "v"
    assert ctx.client == ("127.0.0.1", 5555)
    assert ctx.server is SERVER
    assert ctx.request.raw_path == "/a%20b"


def test_query_parsing() -> None:
    ctx = make_ctx(target="/?a=1&a=2&empty=&flag&name=%C3%A9t%C3%A9&sp=a+b")
    query = ctx.query
    assert query.get("a") == "1"
    assert query.get_all("a") == ["1", "2"]
    assert query.get("empty") == ""
    assert query.get("flag") == ""
    assert query.get("name") == "été"
    assert query.get("sp") == "a b"
    assert query.get("missing") is None
    assert query.get("missing", "d") == "d"
    assert query.get_all("missing") == []
    assert "a" in query and "zz" not in query
    assert ctx.query is query  # parsed once


def test_raw_utf8_in_query_string() -> None:
    raw = "q=été".encode().decode("latin-1")  # how the engine hands raw bytes over
    assert make_ctx(target="/?" + raw).query.get("q") == "été"


def test_assigns_are_per_context() -> None:
    ctx = make_ctx()
    ctx.assigns["user"] = "ana"
    assert ctx.assigns == {"user": "ana"}
    assert make_ctx().assigns == {}


def test_path_param() -> None:
    ctx = make_ctx(params={"id": "42"})
    assert ctx.path_param("id") == "42"
    with pytest.raises(KeyError, match="no path parameter 'nope'"):
        ctx.path_param("nope")


def test_param_prefers_path_then_json_body_then_query() -> None:
    headers = [("Content-Type", "application/json; charset=utf-8")]
    body = b'{"id": "body", "n": 5, "b": true, "only": "b"}'
    ctx = make_ctx("POST", "/?id=query&q=1&n=q", headers=headers, body=body, params={"id": "path"})
    assert ctx.param("id") == "path"
    assert ctx.param("only") == "b"
    assert ctx.param("n") == "5"
    assert ctx.param("b") == "true"
    assert ctx.param("q") == "1"
    assert ctx.param("missing") is None


def test_param_reads_form_body_and_skips_bad_json() -> None:
    form = make_ctx(
        "POST",
        "/?a=q",
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
        body=b"a=form&b=2",
    )
    assert form.param("a") == "form"
    bad_json = make_ctx("POST", "/?a=q", headers=[("Content-Type", "application/json")], body=b"{")
    assert bad_json.param("a") == "q"


def test_json_body() -> None:
    ctx = make_ctx("POST", body=b'{"a": [1, 2]}')
    assert ctx.json_body() == {"a": [1, 2]}
    assert make_ctx("POST", body=b"null").json_body() is None


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe\x00", b"[" * 100_000])
def test_invalid_json_body_is_400(body: bytes) -> None:
    with pytest.raises(HTTPError) as info:
        make_ctx("POST", body=body).json_body()
    assert info.value.status == 400


def test_invalid_json_through_router_is_400() -> None:
    app = Router(routes=[zzz.post("/", lambda ctx: ctx.json(200, ctx.json_body()))])
    request = Request("POST", "/", "", Headers([("Host", "t")]), body=b"{oops")
    response = app.handle(request, SERVER)
    assert isinstance(response, Response)
    assert response.status == 400


def test_form_value_only_for_urlencoded() -> None:
    form = make_ctx(
        "POST",
        headers=[("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
        body=b"name=J%C3%BCrgen&x=1&x=2&e=",
    )
    assert form.form_value("name") == "Jürgen"
    assert form.form_value("x") == "1"
    assert form.form_value("e") == ""
    assert form.form_value("nope") is None
    other = make_ctx("POST", headers=[("Content-Type", "text/plain")], body=b"name=x")
    assert other.form_value("name") is None


def test_too_many_form_fields_is_400() -> None:
    ctx = make_ctx(target="/?" + "&".join(["a=1"] * 20_000))
    with pytest.raises(HTTPError) as info:
        _ = ctx.query
    assert info.value.status == 400


def test_raw_body() -> None:
    assert make_ctx("POST", body=b"\x00bytes").raw_body() == b"\x00bytes"


def test_cookies() -> None:
    ctx = make_ctx(
        headers=[("Cookie", 'session=abc123; theme="dark"; bad; =x'), ("Cookie", "lang=en")]
    )
    assert ctx.cookie("session") == "abc123"
    assert ctx.cookie("theme") == "dark"
    assert ctx.cookie("lang") == "en"
    assert ctx.cookie("bad") is None
    assert make_ctx().cookie("session") is None


# ---------------------------------------------------------------------- response side


def test_text_json_html_respond() -> None:
    ctx = make_ctx()
    ctx.text(201, "héllo")
    response = ctx.build_response()
    assert response.status == 201
    assert response.body == "héllo".encode()
    assert response.headers == [("Content-Type", "text/plain; charset=utf-8")]

    ctx = make_ctx()
    ctx.json(200, {"a": [1, "é"], "b": None})
    response = ctx.build_response()
    assert response.body == b'{"a":[1,"\\u00e9"],"b":null}'
    assert response.headers == [("Content-Type", "application/json")]

    ctx = make_ctx()
    ctx.html(200, "<p>x</p>")
    assert ctx.build_response().headers == [("Content-Type", "text/html; charset=utf-8")]

    ctx = make_ctx()
    ctx.respond(202, "application/x-thing", "ü")
    response = ctx.build_response()
    assert (response.status, response.body) == (202, "ü".encode())
    assert response.headers == [("Content-Type", "application/x-thing")]


def test_last_helper_wins_and_content_type_is_single() -> None:
    ctx = make_ctx()
    ctx.text(200, "a")
    ctx.json(404, [])
    response = ctx.build_response()
    assert response.status == 404
    assert response.headers == [("Content-Type", "application/json")]


@pytest.mark.parametrize("status", [99, 600, "200", True])
def test_invalid_status_is_refused(status: Any) -> None:
    with pytest.raises(ValueError, match="status"):
        make_ctx().text(status, "x")


def test_redirect() -> None:
    ctx = make_ctx()
    ctx.redirect("/new/place?x=1")
    response = ctx.build_response()
    assert response.status == 302
    assert ("Location", "/new/place?x=1") in response.headers
    ctx = make_ctx()
    ctx.redirect("/café", status=308)
    assert ("Location", "/caf%C3%A9") in ctx.build_response().headers
    with pytest.raises(ValueError):
        make_ctx().redirect("/x", status=200)
    with pytest.raises(ValueError):
        make_ctx().redirect("/x\r\nSet-Cookie: a=b")


def test_set_header_replaces_and_add_header_appends() -> None:
    ctx = make_ctx()
    ctx.set_header("X-A", "1")
    ctx.set_header("x-a", "2")
    ctx.add_header("Vary", "Origin")
    ctx.add_header("Vary", "Accept")
    ctx.set_header("Content-Type", "text/csv")
    response = ctx.build_response()
    assert response.headers == [
        ("x-a", "2"),
        ("Vary", "Origin"),
        ("Vary", "Accept"),
        ("Content-Type", "text/csv"),
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-A", "a\r\nInjected: 1"),
        ("X-A", "a\nb"),
        ("X-A", "a\rb"),
        ("X-A", "a\x00b"),
        ("X-A\r\nInjected", "1"),
        ("Bad Name", "1"),
        ("Bad:Name", "1"),
        ("", "1"),
        ("X-A", "emoji 😀"),
    ],
)
def test_set_header_refuses_injection(name: str, value: str) -> None:
    ctx = make_ctx()
    with pytest.raises(ValueError):
        ctx.set_header(name, value)
    with pytest.raises(ValueError):
        ctx.add_header(name, value)


def test_set_cookie() -> None:
    ctx = make_ctx()
    ctx.set_cookie("sid", "abc", max_age=3600, domain="example.com", secure=True)
    ctx.set_cookie("pref", "1", path=None, http_only=False, same_site=None)
    cookies = [v for n, v in ctx.build_response().headers if n == "Set-Cookie"]
    assert cookies == [
        "sid=abc; Max-Age=3600; Path=/; Domain=example.com; Secure; HttpOnly; SameSite=Lax",
        "pref=1",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "s id", "value": "x"},
        {"name": "sid", "value": "a;b"},
        {"name": "sid", "value": "a b"},
        {"name": "sid", "value": "a\r\nb"},
        {"name": "sid", "value": "x", "path": "/a;b"},
        {"name": "sid", "value": "x", "same_site": "lax"},
        {"name": "sid", "value": "x", "same_site": "None"},
    ],
)
def test_set_cookie_refuses_bad_input(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_ctx().set_cookie(**kwargs)


def test_status_setter() -> None:
    ctx = make_ctx()
    ctx.status = 204
    assert ctx.build_response().status == 204
    with pytest.raises(ValueError):
        ctx.status = 1000


def test_set_response_replaces_everything() -> None:
    ctx = make_ctx()
    ctx.set_header("X-A", "1")
    ready = Response(101, [("Upgrade", "websocket")])
    ctx.set_response(ready)
    assert ctx.status == 101
    assert ctx.build_response() is ready
    with pytest.raises(TypeError):
        ctx.set_response("nope")  # type: ignore[arg-type]


def test_stream_sync_encodes_str() -> None:
    def chunks() -> Iterator[bytes | str]:
        yield "é"
        yield b"\x00"

    ctx = make_ctx()
    ctx.stream(200, "text/plain", chunks())
    response = ctx.build_response()
    assert response.body == b""
    assert response.stream is not None
    assert drain(response.stream) == "é".encode() + b"\x00"
    assert response.headers == [("Content-Type", "text/plain")]


def test_stream_async() -> None:
    async def chunks() -> AsyncIterator[str]:
        for part in ("a", "b"):
            await asyncio.sleep(0)
            yield part

    ctx = make_ctx()
    ctx.stream(200, "text/plain", chunks())
    assert drain(ctx.build_response().stream) == b"ab"


def test_stream_needs_iterable() -> None:
    with pytest.raises(TypeError):
        make_ctx().stream(200, "text/plain", 42)  # type: ignore[arg-type]


def test_send_file_small(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_bytes(b"<h1>hi</h1>")
    ctx = make_ctx()
    ctx.send_file(path)
    response = ctx.build_response()
    assert (response.status, response.body, response.stream) == (200, b"<h1>hi</h1>", None)
    assert ("Content-Type", "text/html; charset=utf-8") in response.headers


def test_send_file_large_is_a_file_body(tmp_path: Path) -> None:
    data = bytes(range(256)) * (INLINE_FILE_MAX // 256 * 2 + 3)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    ctx = make_ctx()
    ctx.set_header("X-Before", "1")
    ctx.send_file(str(path), content_type="application/x-blob")
    ctx.set_header("X-After", "2")
    response = ctx.build_response()
    assert response.file is not None and response.file.count == len(data)
    chunks = list(response.file)
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= FILE_READ_CHUNK
    headers = dict(response.headers)
    assert headers["Content-Type"] == "application/x-blob"
    assert headers["X-Before"] == "1" and headers["X-After"] == "2"


def test_send_file_unknown_type_is_octet_stream(tmp_path: Path) -> None:
    path = tmp_path / "noext"
    path.write_bytes(b"x")
    ctx = make_ctx()
    ctx.send_file(path)
    assert ("Content-Type", "application/octet-stream") in ctx.build_response().headers


def test_send_file_conditionals_only_for_get_and_head(tmp_path: Path) -> None:
    path = tmp_path / "page.txt"
    path.write_bytes(b"x" * 100)
    etag = dict(make_ctx_sent(path, "GET").headers)["ETag"]
    for method, status in (("GET", 304), ("HEAD", 304), ("POST", 200)):
        response = make_ctx_sent(path, method, [("If-None-Match", etag), ("Range", "bytes=0-0")])
        assert response.status == status, method
    ranged = make_ctx_sent(path, "GET", [("Range", "bytes=0-0")])
    assert (ranged.status, ranged.body) == (206, b"x")
    assert make_ctx_sent(path, "POST", [("Range", "bytes=0-0")]).status == 200


def make_ctx_sent(path: Path, method: str,
                  headers: list[tuple[str, str]] | None = None) -> Response:
    ctx = make_ctx(method, headers=headers)
    ctx.send_file(path)
    return ctx.build_response()


def test_send_file_missing_or_directory_is_404(tmp_path: Path) -> None:
    for target in (tmp_path / "missing.txt", tmp_path, tmp_path / "missing" / "deeper"):
        ctx = make_ctx()
        ctx.send_file(target)
        assert ctx.build_response().status == 404


# ---------------------------------------------------------------------- flow


def test_next_past_the_end_is_harmless() -> None:
    assert make_ctx().next() is None


def test_run_blocking_without_executor_runs_inline() -> None:
    ctx = make_ctx()
    result = asyncio.run(ctx.run_blocking(lambda a, b: (a + b, threading.get_ident()), 1, 2))
    assert result == (3, threading.get_ident())


def test_run_blocking_uses_server_executor() -> None:
    server = zzz.Server(Router(), zzz.Config(port=0))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        server.blocking_executor = executor
        ctx = make_ctx(server=server)
        ident = asyncio.run(ctx.run_blocking(threading.get_ident))
    assert ident != threading.get_ident()
