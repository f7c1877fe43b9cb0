"""Router: patterns, dispatch, chains, errors — without sockets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from urllib.parse import unquote

import pytest

import zzz
from zzz import Context, Response, Router
from zzz.http.headers import Headers
from zzz.http.request import Request


def make_request(
    method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> Request:
    raw_path, _, query = target.partition("?")
    return Request(
        method,
        raw_path,
        query,
        Headers([("Host", "test"), *(headers or [])]),
        path=unquote(raw_path),
        body=body,
    )


SERVER = zzz.Server(Router(), zzz.Config(port=0))


def call(app: Router, method: str, target: str, **kwargs: object) -> Response:
    result = app.handle(make_request(method, target, **kwargs), SERVER)  # type: ignore[arg-type]
    if isinstance(result, Response):
        return result
    return asyncio.run(_await(result))


async def _await(result: Awaitable[Response]) -> Response:
    return await result


def echo_params(ctx: Context) -> None:
    ctx.json(200, {"route": ctx.route.pattern if ctx.route else None, **ctx.params})


# ---------------------------------------------------------------------- matching


def test_static_route_returns_response_directly() -> None:
    app = Router()

    @app.get("/")
    def index(ctx: Context) -> None:
        ctx.text(200, "Hello, World!")

    result = app.handle(make_request("GET", "/"), SERVER)
    assert isinstance(result, Response)
    assert result.status == 200
    assert result.body == b"Hello, World!"
    assert ("Content-Type", "text/plain; charset=utf-8") in result.headers


def test_param_route_captures_decoded_segment() -> None:
    app = Router(routes=[zzz.get("/users/:id/posts/:post", echo_params)])
    response = call(app, "GET", "/users/a%20b/posts/7")
    assert response.status == 200
    assert response.body == b'{"route":"/users/:id/posts/:post","id":"a b","post":"7"}'


def test_param_does_not_match_empty_segment() -> None:
    app = Router(routes=[zzz.get("/users/:id", echo_params)])
    assert call(app, "GET", "/users/").status == 404
    assert call(app, "GET", "/users").status == 404


def test_wildcard_captures_rest_including_slashes_and_empty() -> None:
    app = Router(routes=[zzz.get("/files/*path", echo_params)])
    assert call(app, "GET", "/files/a/b/c.txt").body.endswith(b'"path":"a/b/c.txt"}')
    assert call(app, "GET", "/files/").body.endswith(b'"path":""}')
    assert call(app, "GET", "/files").body.endswith(b'"path":""}')
    assert call(app, "GET", "/other").status == 404


def test_root_wildcard_catches_everything() -> None:
    app = Router(routes=[zzz.get("/*rest", echo_params)])
    assert call(app, "GET", "/").body.endswith(b'"rest":""}')
    assert call(app, "GET", "/x/y").body.endswith(b'"rest":"x/y"}')


def test_static_beats_param_beats_wildcard() -> None:
    app = Router(
        routes=[
            zzz.get("/items/*rest", echo_params),
            zzz.get("/items/:id", echo_params),
            zzz.get("/items/new", echo_params),
        ]
    )
    assert b'"route":"/items/new"' in call(app, "GET", "/items/new").body
    assert b'"route":"/items/:id"' in call(app, "GET", "/items/42").body
    assert b'"route":"/items/*rest"' in call(app, "GET", "/items/42/more").body


def test_backtracks_from_static_to_param() -> None:
    app = Router(routes=[zzz.get("/a/new/edit", echo_params), zzz.get("/a/:id/view", echo_params)])
    response = call(app, "GET", "/a/new/view")
    assert response.status == 200
    assert b'"id":"new"' in response.body


def test_static_route_for_other_method_does_not_hide_param_route() -> None:
    app = Router(routes=[zzz.post("/users/new", echo_params), zzz.get("/users/:id", echo_params)])
    assert b'"id":"new"' in call(app, "GET", "/users/new").body
    assert b'"route":"/users/new"' in call(app, "POST", "/users/new").body


def test_trailing_slash_is_significant() -> None:
    app = Router(routes=[zzz.get("/a", echo_params)])
    assert call(app, "GET", "/a").status == 200
    assert call(app, "GET", "/a/").status == 404


# ---------------------------------------------------------------------- 404 / 405 / HEAD


def test_unknown_path_is_404() -> None:
    app = Router(routes=[zzz.get("/", echo_params)])
    response = call(app, "GET", "/missing")
    assert response.status == 404
    assert response.body == b"404 Not Found\n"


def test_wrong_method_is_405_with_sorted_allow() -> None:
    app = Router(
        routes=[
            zzz.route(["POST", "GET"], "/thing/:id", echo_params),
            zzz.options("/thing/:id", echo_params),
            zzz.delete("/thing/*rest", echo_params),
        ]
    )
    response = call(app, "PUT", "/thing/1")
    assert response.status == 405
    assert dict(response.headers)["Allow"] == "DELETE, GET, HEAD, OPTIONS, POST"


def test_405_allow_for_static_path_without_get() -> None:
    app = Router(routes=[zzz.post("/upload", echo_params)])
    response = call(app, "GET", "/upload")
    assert response.status == 405
    assert dict(response.headers)["Allow"] == "POST"


def test_head_runs_get_handler() -> None:
    calls: list[str] = []

    def handler(ctx: Context) -> None:
        calls.append(ctx.method)
        ctx.text(200, "body")

    app = Router(routes=[zzz.get("/", handler), zzz.get("/p/:x", handler)])
    assert call(app, "HEAD", "/").status == 200
    assert call(app, "HEAD", "/p/1").status == 200
    assert calls == ["HEAD", "HEAD"]


def test_explicit_head_route_wins_over_get() -> None:
    app = Router()

    @app.get("/r")
    def get_r(ctx: Context) -> None:
        ctx.text(200, "get")

    @app.head("/r")
    def head_r(ctx: Context) -> None:
        ctx.set_header("X-Head", "yes")

    assert dict(call(app, "HEAD", "/r").headers).get("X-Head") == "yes"
    assert call(app, "GET", "/r").body == b"get"


def test_non_slash_path_is_404() -> None:
    app = Router(routes=[zzz.get("/*rest", echo_params)])
    assert call(app, "OPTIONS", "*").status == 404


# ---------------------------------------------------------------------- registration


@pytest.mark.parametrize(
    ("first", "second"),
    [("/a", "/a"), ("/u/:id", "/u/:name"), ("/f/*a", "/f/*b"), ("/x/:a/*b", "/x/:c/*d")],
)
def test_duplicate_route_is_refused(first: str, second: str) -> None:
    app = Router()
    app.add_route("GET", first, echo_params)
    with pytest.raises(ValueError, match="duplicate route"):
        app.add_route("GET", second, echo_params)
    app.add_route("POST", second, echo_params)  # another method is fine


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("users", "must start with '/'"),
        ("", "must start with '/'"),
        ("/a/:id/b/:id", "duplicate parameter name"),
        ("/a/*rest/b", "must be the last segment"),
        ("/a/:", "identifier"),
        ("/a/:1x", "identifier"),
    ],
)
def test_bad_pattern_is_refused(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Router().add_route("GET", pattern, echo_params)


def test_bad_method_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid method"):
        Router().add_route("GE T", "/", echo_params)


def test_refused_multi_method_route_registers_nothing() -> None:
    app = Router(routes=[zzz.post("/x", echo_params)])
    with pytest.raises(ValueError, match="duplicate route"):
        app.add_route(["GET", "POST"], "/x", echo_params)
    assert [r.method for r in app.routes] == ["POST"]


def test_decorators_register_every_method() -> None:
    app = Router()
    for method in ("get", "post", "put", "patch", "delete", "head", "options"):
        getattr(app, method)("/m")(echo_params)
    app.route(["PROPFIND"], "/m")(echo_params)
    assert sorted(r.method for r in app.routes) == [
        "DELETE",
        "GET",
        "HEAD",
        "OPTIONS",
        "PATCH",
        "POST",
        "PROPFIND",
        "PUT",
    ]
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"):
        assert call(app, method, "/m").status == 200


def test_decorator_returns_the_function() -> None:
    app = Router()

    def handler(ctx: Context) -> None:
        pass

    assert app.get("/")(handler) is handler


def test_handler_setting_nothing_gives_empty_200() -> None:
    app = Router(routes=[zzz.get("/", lambda ctx: None)])
    response = call(app, "GET", "/")
    assert (response.status, response.body, response.headers) == (200, b"", [])


# ---------------------------------------------------------------------- scopes, names


def test_nested_scopes_join_prefixes_and_stack_middleware() -> None:
    order: list[str] = []

    def tag(label: str) -> zzz.routing.Middleware:
        def middleware(ctx: Context) -> None:
            order.append(label)
            ctx.next()

        return middleware

    def handler(ctx: Context) -> None:
        order.append("handler")
        ctx.text(200, ctx.path)

    app = Router(
        middleware=[tag("router")],
        routes=[
            zzz.scope(
                "/api",
                [tag("api")],
                [
                    zzz.get("/", handler),
                    zzz.scope(
                        "/v1/", [tag("v1")], [zzz.get("/x", handler, middleware=[tag("route")])]
                    ),
                ],
            )
        ],
    )
    assert call(app, "GET", "/api/v1/x").body == b"/api/v1/x"
    assert order == ["router", "api", "v1", "route", "handler"]
    order.clear()
    assert call(app, "GET", "/api").status == 200
    assert order == ["router", "api", "handler"]


def test_path_for_fills_and_quotes_params() -> None:
    app = Router(
        routes=[
            zzz.get("/", echo_params, name="home"),
            zzz.get("/users/:id/files/*path", echo_params, name="file"),
        ]
    )
    assert app.path_for("home") == "/"
    assert (
        app.path_for("file", id="a b/c", path="x y/z.txt") == "/users/a%20b%2Fc/files/x%20y/z.txt"
    )
    assert app.path_for("file", id=7, path="") == "/users/7/files/"


def test_path_for_errors() -> None:
    app = Router(routes=[zzz.get("/users/:id", echo_params, name="user")])
    with pytest.raises(KeyError, match="no route named"):
        app.path_for("nope")
    with pytest.raises(ValueError, match="missing parameter"):
        app.path_for("user")
    with pytest.raises(ValueError, match="unknown parameter"):
        app.path_for("user", id=1, extra=2)


def test_route_name_reused_for_other_pattern_is_refused() -> None:
    app = Router(routes=[zzz.get("/a", echo_params, name="n")])
    app.add_route("POST", "/a", echo_params, name="n")  # same pattern: fine
    with pytest.raises(ValueError, match="already used"):
        app.add_route("GET", "/b", echo_params, name="n")


def test_routes_list_must_hold_specs() -> None:
    with pytest.raises(TypeError, match="routes must hold"):
        Router(routes=["/a"])  # type: ignore[list-item]


# ---------------------------------------------------------------------- errors


def test_handler_exception_is_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    def boom(ctx: Context) -> None:
        raise RuntimeError("secret detail")

    app = Router(routes=[zzz.get("/boom/:id", boom)])
    with caplog.at_level(logging.ERROR, logger="zzz.app"):
        response = call(app, "GET", "/boom/1")
    assert response.status == 500
    assert b"secret" not in response.body
    assert b"Traceback" not in response.body
    records = [r for r in caplog.records if r.name == "zzz.app"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert "/boom/:id" in records[0].getMessage()


def test_async_handler_exception_is_500() -> None:
    async def boom(ctx: Context) -> None:
        await asyncio.sleep(0)
        raise ValueError("nope")

    app = Router(routes=[zzz.get("/", boom)])
    result = app.handle(make_request("GET", "/"), SERVER)
    assert not isinstance(result, Response)
    assert asyncio.run(_await(result)).status == 500


def test_http_error_becomes_its_status() -> None:
    def teapot(ctx: Context) -> None:
        raise zzz.HTTPError(418, "short and stout", headers=[("X-Tea", "1")])

    response = call(Router(routes=[zzz.get("/", teapot)]), "GET", "/")
    assert response.status == 418
    assert response.body == b"short and stout"
    assert ("X-Tea", "1") in response.headers


def test_http_error_needs_error_status() -> None:
    with pytest.raises(ValueError):
        zzz.HTTPError(200)


def test_failing_router_middleware_on_404_is_500() -> None:
    def broken(ctx: Context) -> None:
        raise RuntimeError("x")

    app = Router(middleware=[broken])
    assert call(app, "GET", "/nothing").status == 500


# ---------------------------------------------------------------------- chains


def test_middleware_short_circuits() -> None:
    ran: list[str] = []

    def gate(ctx: Context) -> None:
        ctx.text(401, "no")

    def handler(ctx: Context) -> None:
        ran.append("handler")

    app = Router(routes=[zzz.get("/", handler, middleware=[gate])])
    assert call(app, "GET", "/").status == 401
    assert ran == []


def test_middleware_runs_after_next() -> None:
    def wrap(ctx: Context) -> None:
        ctx.next()
        ctx.set_header("X-Status-Seen", str(ctx.status))

    app = Router(middleware=[wrap], routes=[zzz.get("/", lambda ctx: ctx.text(201, "x"))])
    response = call(app, "GET", "/")
    assert ("X-Status-Seen", "201") in response.headers
    assert call(app, "GET", "/missing").status == 404


def test_sync_middleware_in_front_of_async_handler_is_refused() -> None:
    def sync_mw(ctx: Context) -> None:
        ctx.next()

    async def async_handler(ctx: Context) -> None:
        pass

    with pytest.raises(ValueError, match=r"sync_mw.*async_handler.*async def"):
        Router(routes=[zzz.get("/", async_handler, middleware=[sync_mw])])


def test_use_refuses_sync_middleware_for_async_routes_and_rolls_back() -> None:
    async def async_handler(ctx: Context) -> None:
        ctx.text(200, "ok")

    def sync_mw(ctx: Context) -> None:
        ctx.next()

    app = Router(routes=[zzz.get("/", async_handler)])
    with pytest.raises(ValueError, match="sync_mw"):
        app.use(sync_mw)
    assert app.middleware == []
    assert call(app, "GET", "/").body == b"ok"


def test_use_after_routes_applies_to_them() -> None:
    def stamp(ctx: Context) -> None:
        ctx.set_header("X-Stamp", "1")
        ctx.next()

    app = Router(routes=[zzz.get("/", lambda ctx: ctx.text(200, "x"))])
    app.use(stamp)
    assert ("X-Stamp", "1") in call(app, "GET", "/").headers


def test_async_middleware_with_sync_handler() -> None:
    async def outer(ctx: Context) -> None:
        await asyncio.sleep(0)
        await ctx.next()
        ctx.set_header("X-Outer", "after")

    def inner(ctx: Context) -> None:
        ctx.set_header("X-Inner", "1")
        ctx.next()

    app = Router(
        routes=[zzz.get("/", lambda ctx: ctx.text(200, "sync"), middleware=[outer, inner])]
    )
    result = app.handle(make_request("GET", "/"), SERVER)
    assert not isinstance(result, Response)
    response = asyncio.run(_await(result))
    assert response.body == b"sync"
    assert ("X-Inner", "1") in response.headers
    assert ("X-Outer", "after") in response.headers


class Dual:
    """A middleware usable in both kinds of chain."""

    def __init__(self) -> None:
        self.used: list[str] = []

    def __call__(self, ctx: Context) -> None:
        self.used.append("sync")
        ctx.next()

    async def acall(self, ctx: Context) -> None:
        self.used.append("async")
        await ctx.next()


def test_dual_middleware_picks_acall_for_async_chains() -> None:
    dual = Dual()

    async def async_handler(ctx: Context) -> None:
        ctx.text(200, "a")

    app = Router(
        middleware=[dual],
        routes=[zzz.get("/s", lambda ctx: ctx.text(200, "s")), zzz.get("/a", async_handler)],
    )
    assert call(app, "GET", "/s").body == b"s"
    assert call(app, "GET", "/a").body == b"a"
    assert dual.used == ["sync", "async"]
    assert isinstance(app.handle(make_request("GET", "/s"), SERVER), Response)


def test_callable_object_with_async_call_is_async() -> None:
    class Handler:
        async def __call__(self, ctx: Context) -> None:
            ctx.text(200, "obj")

    app = Router(routes=[zzz.get("/", Handler())])
    result = app.handle(make_request("GET", "/"), SERVER)
    assert not isinstance(result, Response)
    assert asyncio.run(_await(result)).body == b"obj"


def test_async_router_middleware_makes_404_async() -> None:
    async def mw(ctx: Context) -> None:
        await ctx.next()

    app = Router(middleware=[mw])
    result = app.handle(make_request("GET", "/none"), SERVER)
    assert not isinstance(result, Response)
    response = asyncio.run(_await(result))
    assert response.status == 404


def test_405_through_router_middleware_keeps_allow() -> None:
    def mw(ctx: Context) -> None:
        ctx.next()

    app = Router(middleware=[mw], routes=[zzz.get("/x", echo_params)])
    response = call(app, "DELETE", "/x")
    assert response.status == 405
    assert dict(response.headers)["Allow"] == "GET, HEAD"


# ---------------------------------------------------------------------- 100-continue


def test_check_continue() -> None:
    ran: list[int] = []

    def handler(ctx: Context) -> None:
        ran.append(1)

    app = Router(routes=[zzz.post("/upload/:id", handler)])
    assert app.check_continue(make_request("POST", "/upload/1")) is None
    not_found = app.check_continue(make_request("POST", "/elsewhere"))
    assert not_found is not None and not_found.status == 404
    not_allowed = app.check_continue(make_request("PUT", "/upload/1"))
    assert not_allowed is not None and not_allowed.status == 405
    assert dict(not_allowed.headers)["Allow"] == "POST"
    assert ran == []


def test_check_continue_defers_to_router_middleware() -> None:
    app = Router(middleware=[lambda ctx: ctx.next()])
    assert app.check_continue(make_request("POST", "/anything")) is None


def test_public_api_exports() -> None:
    assert zzz.__version__ == "0.1.0"
    for name in (
        "Router",
        "Context",
        "Server",
        "Config",
        "TlsConfig",
        "NativeConfig",
        "EventLoopConfig",
        "ConfigError",
        "Request",
        "Response",
        "Headers",
        "Timer",
        "get",
        "post",
        "put",
        "patch",
        "delete",
        "head",
        "options",
        "route",
        "scope",
        "HTTPError",
    ):
        assert hasattr(zzz, name), name
