"""The documented middleware factories on both backends, sync and async handlers alike."""

from __future__ import annotations

import threading

import pytest

import zzz
from zzz.middleware.request_id import MAX_REQUEST_ID_LENGTH
from zzz.middleware.telemetry import TelemetryEvent

from .rawhttp import httpx_client


def make_app(events: list[TelemetryEvent], show_details: bool = False) -> zzz.Router:
    lock = threading.Lock()

    def record(event: TelemetryEvent) -> None:
        with lock:
            events.append(event)

    router = zzz.Router()
    router.use(zzz.health(path="/healthz"))
    router.use(zzz.request_id())
    router.use(zzz.telemetry(on_event=record))
    router.use(zzz.error_handler(show_details=show_details))

    @router.get("/users/:id")
    def user(ctx: zzz.Context) -> None:
        ctx.json(200, {"id": ctx.path_param("id"), "rid": ctx.assigns["request_id"]})

    @router.get("/async/:id")
    async def auser(ctx: zzz.Context) -> None:
        ctx.json(200, {"id": ctx.path_param("id")})

    @router.get("/boom")
    def boom(ctx: zzz.Context) -> None:
        raise RuntimeError("kaput-detail")

    @router.get("/aboom")
    async def aboom(ctx: zzz.Context) -> None:
        raise zzz.HTTPError(409, "conflict here")

    return router


def test_health_answers_before_routing(serve):
    srv = serve(make_app([]))
    with httpx_client(srv) as client:
        r = client.get(f"{srv.url}/healthz")
        assert r.status_code == 200 and r.text == "ok\n"
        assert r.headers["cache-control"] == "no-store"
        assert "x-request-id" not in r.headers  # answered in front of the rest


def test_request_id_reused_or_generated(serve):
    srv = serve(make_app([]))
    with httpx_client(srv) as client:
        mine = client.get(f"{srv.url}/users/1", headers={"X-Request-Id": "abc-123"})
        assert mine.headers["x-request-id"] == "abc-123" and mine.json()["rid"] == "abc-123"
        for bad in ("a" * (MAX_REQUEST_ID_LENGTH + 1), "has space", "<script>", ""):
            r = client.get(f"{srv.url}/users/1", headers={"X-Request-Id": bad})
            generated = r.headers["x-request-id"]
            assert generated != bad and len(generated) == 32
            int(generated, 16)
        assert (client.get(f"{srv.url}/users/1").headers["x-request-id"]
                != client.get(f"{srv.url}/users/1").headers["x-request-id"])


def test_telemetry_start_and_end_with_route_pattern(serve):
    events: list[TelemetryEvent] = []
    srv = serve(make_app(events))
    with httpx_client(srv) as client:
        client.get(f"{srv.url}/users/7", headers={"X-Request-Id": "t-1"})
        client.get(f"{srv.url}/async/8")
        client.get(f"{srv.url}/nowhere")
        client.get(f"{srv.url}/boom")
    kinds = [(e.kind, e.route, e.status) for e in events]
    assert kinds == [
        ("start", "/users/:id", 0), ("end", "/users/:id", 200),
        ("start", "/async/:id", 0), ("end", "/async/:id", 200),
        ("start", None, 0), ("end", None, 404),
        ("start", "/boom", 0), ("end", "/boom", 500),
    ]
    end = events[1]
    assert end.request_id == "t-1" and end.method == "GET" and end.path == "/users/7"
    assert end.duration_s >= 0.0 and end.started_at == events[0].started_at
    assert events[7].error is None  # error_handler (inside) answered it: a plain 500


@pytest.mark.parametrize("show_details", [False, True])
def test_error_handler_text_and_json(serve, show_details):
    srv = serve(make_app([], show_details=show_details))
    with httpx_client(srv) as client:
        text = client.get(f"{srv.url}/boom", headers={"X-Request-Id": "e-1"})
        assert text.status_code == 500
        assert text.headers["x-request-id"] == "e-1"  # headers set before the failure stay
        assert ("kaput-detail" in text.text) is show_details
        as_json = client.get(f"{srv.url}/boom", headers={"Accept": "application/json"})
        assert as_json.status_code == 500 and as_json.json()["status"] == 500
        assert ("details" in as_json.json()) is show_details
        conflict = client.get(f"{srv.url}/aboom", headers={"Accept": "application/json"})
        assert conflict.status_code == 409
        assert conflict.json() == {"error": "conflict here", "status": 409}
