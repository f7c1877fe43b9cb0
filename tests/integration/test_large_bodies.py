"""Large bodies over real sockets, both backends: uploads the engine keeps without
llhttp (``DIRECT_BODY_MIN`` and above) and streamed pieces written without a
framing copy (``FRAME_COPY_BELOW`` and above), byte-exact and in order."""

from __future__ import annotations

import os

import httpx

import zzz
from zzz.http.connection import DIRECT_BODY_MIN, FRAME_COPY_BELOW

from .apps import app
from .rawhttp import SOCKET_TIMEOUT_S, RawClient, build

#: Above the direct-body threshold, with a tail that does not end on a read boundary.
LARGE = DIRECT_BODY_MIN * 4 + 12345
#: Streamed piece sizes around the framing threshold, each piece a different byte.
PIECE_SIZES = (1, FRAME_COPY_BELOW - 1, FRAME_COPY_BELOW, 65536, 200_000, 7)
PIECES = [bytes([65 + i]) * size for i, size in enumerate(PIECE_SIZES)]

pieces_app = zzz.Router()


@pieces_app.get("/pieces")
def pieces(ctx: zzz.Context) -> None:
    ctx.stream(200, "application/octet-stream", iter(PIECES))


@pieces_app.get("/")
def index(ctx: zzz.Context) -> None:
    ctx.text(200, "ok")


def test_large_upload_then_pipelined_request(serve):
    srv = serve(app, max_body_size=2 * LARGE)
    body = os.urandom(LARGE)
    with RawClient(srv) as client:
        # The GET rides in the same reads as the end of the body.
        client.send(build("POST", "/echo", None, body) + build("GET", "/"))
        response = client.read_response()
        assert response.status == 200
        assert response.body == body
        assert client.read_response().status == 200
        # The connection's parser is a fresh one after the body: still serving.
        again = client.request("POST", "/echo", None, body[:DIRECT_BODY_MIN])
        assert again.status == 200 and again.body == body[:DIRECT_BODY_MIN]


def test_large_upload_in_small_writes(serve):
    srv = serve(app, max_body_size=2 * LARGE)
    body = os.urandom(LARGE)
    message = build("POST", "/echo", None, body)
    with RawClient(srv) as client:
        for start in range(0, len(message), 4093):  # a prime: reads end anywhere
            client.send(message[start:start + 4093])
        response = client.read_response()
        assert response.status == 200
        assert response.body == body


def test_large_upload_with_expect_continue(serve):
    srv = serve(app, max_body_size=2 * LARGE)
    body = os.urandom(LARGE)
    with RawClient(srv) as client:
        client.send(build("POST", "/echo", {"Content-Length": str(len(body)),
                                            "Expect": "100-continue"}))
        assert client.read_response().status == 100
        client.send(body)
        response = client.read_response()
        assert response.status == 200 and response.body == body
        assert client.request("GET", "/").status == 200


def test_large_upload_over_the_limit_is_refused(serve):
    srv = serve(app, max_body_size=LARGE - 1)
    with RawClient(srv) as client:
        client.send(build("POST", "/echo", {"Content-Length": str(LARGE)}))
        response = client.read_response()
        assert response.status == 413
        assert response.closes


def test_streamed_pieces_of_every_size_arrive_in_order(serve):
    srv = serve(pieces_app)
    expected = b"".join(PIECES)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        first = client.get(f"{srv.url}/pieces")
        second = client.get(f"{srv.url}/pieces")  # the same connection, after a stream
    assert first.status_code == second.status_code == 200
    assert first.headers["transfer-encoding"] == "chunked"
    assert first.content == second.content == expected


def test_streamed_pieces_raw_to_http_1_0(serve):
    srv = serve(pieces_app)
    with RawClient(srv) as client:
        client.send(build("GET", "/pieces", version="HTTP/1.0"))
        response = client.read_response()
    assert response.status == 200
    assert response.header("transfer-encoding") is None
    assert response.body == b"".join(PIECES)


def test_malloc_thresholds_are_applied_by_either_backend(serve, backend, monkeypatch):
    """The malloc_* settings are process-wide glibc settings: no backend ignores them."""
    import importlib

    module = importlib.import_module(f"zzz.backends.{backend}")
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(module, "tune_malloc", lambda mmap, trim: calls.append((mmap, trim)))
    serve(app, malloc_mmap_threshold=6 << 20, malloc_trim_threshold=12 << 20)
    assert calls == [(6 << 20, 12 << 20)]
