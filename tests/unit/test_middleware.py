"""Built-in middleware in sync and async chains — without sockets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import pytest

import zzz
from zzz import Context, Response, Router
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.middleware import Cors, Health, Hooks, Logger, RequestId
from zzz.middleware.request_id import MAX_REQUEST_ID_LENGTH


def make_request(method: str, path: str, headers: list[tuple[str, str]] | None = None) -> Request:
    return Request(
        method, path, "", Headers([("Host", "t"), *(headers or [])]), client=("10.0.0.9", 1)
    )


async def _await(result: Awaitable[Response]) -> Response:
    return await result


def call(
    app: Router,
    method: str,
    path: str,
    headers: list[tuple[str, str]] | None = None,
    server: zzz.Server | None = None,
) -> Response:
    server = server or zzz.Server(app, zzz.Config(port=0))
    result = app.handle(make_request(method, path, headers), server)
    return result if isinstance(result, Response) else asyncio.run(_await(result))


def sync_ok(ctx: Context) -> None:
    ctx.text(200, "sync")


async def async_ok(ctx: Context) -> None:
    await asyncio.sleep(0)
    ctx.text(200, "async")


def boom(ctx: Context) -> None:
    raise RuntimeError("boom")


def teapot(ctx: Context) -> None:
    raise zzz.HTTPError(418)


def app_with(middleware: list[zzz.routing.Middleware]) -> Router:
    return Router(
        middleware=middleware,
        routes=[
            zzz.get("/sync", sync_ok),
            zzz.get("/async", async_ok),
            zzz.get("/boom", boom),
            zzz.get("/teapot", teapot),
        ],
    )


# ---------------------------------------------------------------------- Logger


@pytest.mark.parametrize(("path", "status"), [("/sync", 200), ("/async", 200), ("/nope", 404)])
def test_logger_logs_one_line(caplog: pytest.LogCaptureFixture, path: str, status: int) -> None:
    app = app_with([Logger()])
    with caplog.at_level(logging.INFO, logger="zzz.access"):
        assert call(app, "GET", path).status == status
    lines = [r.getMessage() for r in caplog.records if r.name == "zzz.access"]
    assert len(lines) == 1
    assert lines[0].startswith(f'10.0.0.9 "GET {path} HTTP/1.1" {status} ')
    assert lines[0].endswith("ms")


@pytest.mark.parametrize(("path", "status"), [("/boom", 500), ("/teapot", 418)])
def test_logger_logs_failures_and_lets_router_answer(
    caplog: pytest.LogCaptureFixture, path: str, status: int
) -> None:
    app = app_with([Logger()])
    with caplog.at_level(logging.INFO):
        assert call(app, "GET", path).status == status
    lines = [r.getMessage() for r in caplog.records if r.name == "zzz.access"]
    assert len(lines) == 1 and f'" {status} ' in lines[0]


def test_logger_disabled_level_still_continues(caplog: pytest.LogCaptureFixture) -> None:
    app = app_with([Logger(level=logging.DEBUG)])
    with caplog.at_level(logging.INFO, logger="zzz.access"):
        assert call(app, "GET", "/sync").body == b"sync"
        assert call(app, "GET", "/async").body == b"async"
    assert not [r for r in caplog.records if r.name == "zzz.access"]


# ---------------------------------------------------------------------- RequestId


def echo_id(ctx: Context) -> None:
    ctx.text(200, ctx.assigns["request_id"])


async def aecho_id(ctx: Context) -> None:
    ctx.text(200, ctx.assigns["request_id"])


@pytest.mark.parametrize("handler", [echo_id, aecho_id])
def test_request_id_generated(handler: zzz.routing.Handler) -> None:
    app = Router(middleware=[RequestId()], routes=[zzz.get("/", handler)])
    first = call(app, "GET", "/")
    second = call(app, "GET", "/")
    rid = dict(first.headers)["X-Request-ID"]
    assert first.body.decode() == rid
    assert len(rid) == 32 and int(rid, 16) >= 0
    assert dict(second.headers)["X-Request-ID"] != rid


def test_request_id_reused_when_sane() -> None:
    app = Router(middleware=[RequestId()], routes=[zzz.get("/", echo_id)])
    response = call(app, "GET", "/", [("x-request-id", "abc-123.def")])
    assert dict(response.headers)["X-Request-ID"] == "abc-123.def"
    assert response.body == b"abc-123.def"


@pytest.mark.parametrize(
    "incoming", ["", "has space", 'quote"d', "x" * (MAX_REQUEST_ID_LENGTH + 1), "é"]
)
def test_request_id_replaced_when_unsafe(incoming: str) -> None:
    app = Router(middleware=[RequestId()], routes=[zzz.get("/", echo_id)])
    response = call(app, "GET", "/", [("X-Request-ID", incoming)])
    rid = dict(response.headers)["X-Request-ID"]
    assert rid != incoming and len(rid) == 32


def test_request_id_custom_header_and_assign() -> None:
    app = Router(
        middleware=[RequestId(header="X-Trace", assign="trace")],
        routes=[zzz.get("/", lambda ctx: ctx.text(200, ctx.assigns["trace"]))],
    )
    response = call(app, "GET", "/", [("X-Trace", "t1")])
    assert (response.body, dict(response.headers)["X-Trace"]) == (b"t1", "t1")


# ---------------------------------------------------------------------- Health


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_health_short_circuits_without_route(method: str) -> None:
    app = app_with([Health()])
    response = call(app, method, "/healthz")
    assert (response.status, response.body) == (200, b"ok\n")
    assert ("Cache-Control", "no-store") in response.headers


def test_health_passes_other_requests_on() -> None:
    app = app_with([Health()])
    assert call(app, "POST", "/healthz").status == 404
    assert call(app, "GET", "/sync").body == b"sync"
    assert call(app, "GET", "/async").body == b"async"


def test_health_is_503_while_shutting_down() -> None:
    app = app_with([Health(path="/live", body="up")])
    server = zzz.Server(app, zzz.Config(port=0))
    assert call(app, "GET", "/live", server=server).body == b"up"
    server.shutdown()
    assert call(app, "GET", "/live", server=server).status == 503


def test_health_in_async_chain() -> None:
    async def outer(ctx: Context) -> None:
        await ctx.next()

    app = Router(middleware=[outer, Health()])
    result = app.handle(make_request("GET", "/healthz"), zzz.Server(app, zzz.Config(port=0)))
    assert not isinstance(result, Response)
    assert asyncio.run(_await(result)).status == 200


def test_health_path_must_be_absolute() -> None:
    with pytest.raises(ValueError):
        Health(path="healthz")


# ---------------------------------------------------------------------- CORS

PREFLIGHT = [
    ("Origin", "https://app.example"),
    ("Access-Control-Request-Method", "PUT"),
    ("Access-Control-Request-Headers", "content-type, x-custom"),
]


@pytest.mark.parametrize("path", ["/sync", "/async", "/unrouted"])
def test_cors_preflight_answered_without_handler(path: str) -> None:
    app = app_with([Cors()])
    response = call(app, "OPTIONS", path, PREFLIGHT)
    headers = dict(response.headers)
    assert response.status == 204
    assert response.body == b""
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "GET, HEAD, POST, PUT, PATCH, DELETE"
    assert headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
    assert headers["Access-Control-Max-Age"] == "600"
    assert "Content-Type" not in headers


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_cors_simple_request_any_origin(path: str) -> None:
    app = app_with([Cors(expose_headers=["X-Total"])])
    response = call(app, "GET", path, [("Origin", "https://x.example")])
    headers = dict(response.headers)
    assert response.status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Expose-Headers"] == "X-Total"
    assert "Vary" not in headers


def test_cors_listed_origins_echo_and_vary() -> None:
    app = app_with([Cors(["https://app.example"], allow_credentials=True)])
    allowed = call(app, "GET", "/sync", [("Origin", "https://app.example")])
    headers = dict(allowed.headers)
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert ("Vary", "Origin") in allowed.headers

    refused = call(app, "GET", "/sync", [("Origin", "https://evil.example")])
    assert "Access-Control-Allow-Origin" not in dict(refused.headers)
    assert ("Vary", "Origin") in refused.headers
    assert refused.body == b"sync"


def test_cors_refused_preflight_goes_on_to_router() -> None:
    app = app_with([Cors(["https://app.example"])])
    evil = [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "GET")]
    response = call(app, "OPTIONS", "/sync", evil)
    assert response.status == 405
    assert "Access-Control-Allow-Origin" not in dict(response.headers)


def test_cors_without_origin_is_untouched() -> None:
    response = call(app_with([Cors()]), "GET", "/sync")
    assert response.headers == [("Content-Type", "text/plain; charset=utf-8")]


def test_cors_reflects_requested_headers_with_credentials_and_star() -> None:
    app = app_with([Cors(["https://app.example"], allow_headers="*", allow_credentials=True)])
    headers = dict(call(app, "OPTIONS", "/sync", PREFLIGHT).headers)
    assert headers["Access-Control-Allow-Headers"] == "content-type, x-custom"


def test_cors_refuses_credentials_with_any_origin() -> None:
    with pytest.raises(ValueError, match="allow_credentials"):
        Cors("*", allow_credentials=True)
    with pytest.raises(ValueError, match="max_age"):
        Cors(max_age=-1)


def test_builtin_middleware_stack_in_async_route() -> None:
    app = Router(
        middleware=[Logger(), RequestId(), Health(), Cors()],
        routes=[zzz.get("/a", async_ok)],
    )
    response = call(app, "GET", "/a", [("Origin", "https://x.example")])
    headers = dict(response.headers)
    assert response.body == b"async"
    assert "X-Request-ID" in headers and headers["Access-Control-Allow-Origin"] == "*"


# ---------------------------------------------------------------------- hook middleware, fused


class _Recorder(Hooks):
    """A hook middleware writing what it sees to a shared journal."""

    def __init__(self, name: str, journal: list[str], answer: bool = False,
                 fail: bool = False) -> None:
        self.name, self.journal, self.answer, self.fail = name, journal, answer, fail

    def enter(self, ctx: Context) -> bool:
        self.journal.append(f"enter {self.name}")
        if self.answer:
            ctx.text(204, "")
        return self.answer

    def leave(self, ctx: Context, status: int, duration_ns: int) -> None:
        assert duration_ns >= 0
        self.journal.append(f"leave {self.name} {status}")
        if self.fail:
            raise RuntimeError(f"{self.name} broke")


@pytest.mark.parametrize("handler", [sync_ok, async_ok, teapot])
def test_adjacent_hooks_become_one_layer_and_run_like_nested_wrappers(
        handler: zzz.routing.Handler) -> None:
    journal: list[str] = []
    app = app_with([_Recorder("a", journal), _Recorder("b", journal)])
    app.add_route(["GET"], "/h", handler)
    route = next(r for r in app.routes if r.pattern == "/h")
    first = getattr(route.chain[0], "__self__", route.chain[0])  # async chains: its acall
    assert repr(first) == "Fused(_Recorder, _Recorder)"
    status = call(app, "GET", "/h").status
    assert status == (418 if handler is teapot else 200)
    assert journal == ["enter a", "enter b", f"leave b {status}", f"leave a {status}"]


@pytest.mark.parametrize("handler", [sync_ok, async_ok])
def test_a_hook_answering_stops_the_chain_and_only_earlier_hooks_leave(
        handler: zzz.routing.Handler) -> None:
    journal: list[str] = []
    app = app_with([_Recorder("a", journal), _Recorder("b", journal, answer=True),
                    _Recorder("c", journal)])
    app.add_route(["GET"], "/h", handler)
    assert call(app, "GET", "/h").status == 204
    assert journal == ["enter a", "enter b", "leave a 204"]


def test_a_failing_leave_hook_is_logged_and_the_others_still_run(
        caplog: pytest.LogCaptureFixture) -> None:
    journal: list[str] = []
    app = app_with([_Recorder("a", journal), _Recorder("b", journal, fail=True)])
    app.add_route(["GET"], "/h", sync_ok)
    with caplog.at_level(logging.ERROR, logger="zzz.app"):
        response = call(app, "GET", "/h")
    assert response.status == 200 and response.body == b"sync"
    assert journal == ["enter a", "enter b", "leave b 200", "leave a 200"]
    assert "middleware _Recorder failed after GET /h" in caplog.text


def test_hooks_split_by_other_middleware_stay_in_order() -> None:
    journal: list[str] = []

    def plain(ctx: Context) -> None:
        journal.append("plain")
        ctx.next()

    app = Router(middleware=[_Recorder("a", journal), plain, _Recorder("b", journal)])
    app.add_route(["GET"], "/h", sync_ok)
    assert call(app, "GET", "/h").status == 200
    assert journal == ["enter a", "plain", "enter b", "leave b 200", "leave a 200"]


def test_a_hook_called_alone_behaves_as_a_wrapper() -> None:
    journal: list[str] = []
    hook = _Recorder("a", journal)

    def outer(ctx: Context) -> None:
        hook(ctx)  # middleware composing another by hand

    app = Router(middleware=[outer])
    app.add_route(["GET"], "/h", sync_ok)
    assert call(app, "GET", "/h").status == 200
    assert journal == ["enter a", "leave a 200"]


def test_request_id_read_from_the_received_bytes() -> None:
    app = app_with([RequestId()])
    app.add_route(["GET"], "/h", sync_ok)
    raw = [(b"Host", b"t"), (b"x-REQUEST-id", b"from-proxy-1")]
    request = Request("GET", "/h", "", Headers(None, raw), client=("10.0.0.9", 1))
    response = app.handle(request, zzz.Server(app, zzz.Config(port=0)))
    assert isinstance(response, Response)
    assert ("X-Request-ID", "from-proxy-1") in response.headers
