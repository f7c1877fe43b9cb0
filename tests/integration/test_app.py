"""The application layer over real sockets: params, query, headers, async code."""

from __future__ import annotations

import concurrent.futures

import httpx

from .apps import HELLO, app, middleware_app
from .rawhttp import SOCKET_TIMEOUT_S


def test_path_params_query_and_headers(serve):
    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.get(f"{srv.url}/users/42", params={"q": "a b&c"})
        assert response.json() == {"id": "42", "q": "a b&c"}
        echoed = client.get(f"{srv.url}/header", params={"name": "x-custom"},
                            headers={"X-Custom": "Value 1"})
        assert echoed.text == "Value 1"


def test_async_handler(serve):
    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        for _ in range(3):
            response = client.get(f"{srv.url}/async")
            assert response.status_code == 200
            assert response.text == "async hello"


def test_async_middleware_in_front_of_sync_and_async_handlers(serve):
    srv = serve(middleware_app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        plain = client.get(f"{srv.url}/")
        assert plain.status_code == 200 and plain.text == HELLO
        assert plain.headers["x-middleware"] == "async"
        coro = client.get(f"{srv.url}/async")
        assert coro.status_code == 200 and coro.text == "async behind middleware"
        assert coro.headers["x-middleware"] == "async"
        denied = client.get(f"{srv.url}/async", params={"deny": "1"})
        assert denied.status_code == 403 and denied.text == "denied"
        assert denied.headers["x-middleware"] == "async"
        missing = client.get(f"{srv.url}/missing")
        assert missing.status_code == 404
        assert missing.headers["x-middleware"] == "async"


def test_concurrent_async_requests(serve):
    srv = serve(app)
    def fetch(i: int) -> str:
        with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
            return client.get(f"{srv.url}/async").text

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(fetch, range(16)))
    assert results == ["async hello"] * 16
