"""``zzz.compress()`` on both backends: httpx and ``curl --compressed`` decode what it sends."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import brotli
import pytest
import zstandard

import zzz

from .rawhttp import RawClient, httpx_client

#: A 100 KiB-ish JSON document: compresses well.
DOC = json.dumps([{"id": i, "name": f"user {i}", "active": i % 2 == 0} for i in range(2500)])
#: Pieces the streamed route yields (each flushed on its own).
PIECES = [f"line {i} " * 40 + "\n" for i in range(50)]
#: Longest a curl invocation may take.
CURL_TIMEOUT_S = 10


def make_app(tmp_path: Path) -> zzz.Router:
    (tmp_path / "big.json").write_text(DOC)
    (tmp_path / "photo.png").write_bytes(b"\x89PNG" + b"\0" * 50_000)
    router = zzz.Router()
    router.use(zzz.compress(min_size=256))
    router.use(zzz.static_files(tmp_path, prefix="/files"))

    @router.get("/doc")
    def doc(ctx: zzz.Context) -> None:
        ctx.respond(200, "application/json", DOC)

    @router.get("/tiny")
    def tiny(ctx: zzz.Context) -> None:
        ctx.text(200, "short")

    @router.get("/random")
    def random_bytes(ctx: zzz.Context) -> None:
        ctx.respond(200, "text/plain", os.urandom(4096))  # does not get smaller

    @router.get("/png")
    def png(ctx: zzz.Context) -> None:
        ctx.respond(200, "image/png", b"\0" * 10_000)

    @router.get("/encoded")
    def encoded(ctx: zzz.Context) -> None:
        ctx.set_header("Content-Encoding", "gzip")
        ctx.respond(200, "text/plain", gzip.compress(b"x" * 10_000))

    @router.get("/stream")
    def stream(ctx: zzz.Context) -> None:
        ctx.stream(200, "text/plain", iter(PIECES))

    @router.get("/astream")
    async def astream(ctx: zzz.Context) -> None:
        async def gen():
            for piece in PIECES:
                await asyncio.sleep(0)
                yield piece

        ctx.stream(200, "text/plain", gen())

    @router.get("/notmodified")
    def notmodified(ctx: zzz.Context) -> None:
        ctx.status = 304

    return router


@pytest.mark.parametrize("coding,decode", [
    ("gzip", gzip.decompress),
    ("br", brotli.decompress),
    ("zstd", lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)),
])
def test_each_coding_round_trips(serve, tmp_path, coding, decode):
    srv = serve(make_app(tmp_path))
    with RawClient(srv) as client:
        r = client.request("GET", "/doc", headers={"Accept-Encoding": coding})
    assert r.header("content-encoding") == coding
    assert r.header("vary") == "Accept-Encoding"
    assert int(r.header("content-length")) == len(r.body) < len(DOC)
    assert decode(r.body) == DOC.encode()


def test_q_values_choose_or_refuse(serve, tmp_path):
    srv = serve(make_app(tmp_path))
    cases = {
        "gzip;q=0.5, br;q=0.9": "br",
        "gzip, br;q=0": "gzip",
        "*;q=0.1, gzip;q=0.8": "gzip",
        "*": "br",
        "br;q=0, zstd;q=0, *": "gzip",
        "gzip;q=0, *;q=0": None,
        "identity": None,
        "deflate": None,
        "x-gzip": "gzip",
    }
    with RawClient(srv) as client:
        for accept, expected in cases.items():
            r = client.request("GET", "/doc", headers={"Accept-Encoding": accept})
            assert r.header("content-encoding") == expected, accept
            assert r.header("vary") == "Accept-Encoding"
        plain = client.request("GET", "/doc")
        assert plain.header("content-encoding") is None and plain.body == DOC.encode()


def test_skips_small_incompressible_encoded_and_bodiless(serve, tmp_path):
    srv = serve(make_app(tmp_path))
    with RawClient(srv) as client:
        for path in ("/tiny", "/random", "/png", "/files/photo.png"):
            r = client.request("GET", path, headers={"Accept-Encoding": "gzip"})
            assert r.header("content-encoding") is None, path
        r = client.request("GET", "/encoded", headers={"Accept-Encoding": "br"})
        assert r.header("content-encoding") == "gzip"
        assert gzip.decompress(r.body) == b"x" * 10_000
        r = client.request("GET", "/notmodified", headers={"Accept-Encoding": "gzip"})
        assert r.status == 304 and r.header("content-encoding") is None and r.body == b""
        ranged = client.request("GET", "/files/big.json",
                                headers={"Accept-Encoding": "gzip", "Range": "bytes=0-99"})
        assert ranged.status == 206 and ranged.header("content-encoding") is None
        assert ranged.body == DOC.encode()[:100]


def test_head_matches_get(serve, tmp_path):
    srv = serve(make_app(tmp_path))
    with RawClient(srv) as client:
        get = client.request("GET", "/doc", headers={"Accept-Encoding": "gzip"})
        head = client.request("HEAD", "/doc", headers={"Accept-Encoding": "gzip"})
    assert head.header("content-encoding") == "gzip"
    assert head.header("content-length") == get.header("content-length")
    assert head.body == b""


@pytest.mark.parametrize("path", ["/stream", "/astream", "/files/big.json"])
def test_streams_are_compressed_piece_by_piece(serve, tmp_path, path):
    srv = serve(make_app(tmp_path))
    expected = "".join(PIECES).encode() if "stream" in path else DOC.encode()
    with RawClient(srv) as client:
        r = client.request("GET", path, headers={"Accept-Encoding": "gzip"})
    assert r.header("content-encoding") == "gzip"
    assert r.header("transfer-encoding") == "chunked"
    assert zlib.decompress(r.body, 31) == expected
    if path == "/files/big.json":
        assert r.header("etag").startswith('W/"')


def test_each_streamed_piece_is_decodable_on_arrival(serve, tmp_path):
    """Flushed per piece: the first piece decodes before the stream has ended."""
    srv = serve(make_app(tmp_path))
    with httpx_client(srv) as client, client.stream(
        "GET", f"{srv.url}/stream", headers={"Accept-Encoding": "gzip"}
    ) as r:
        decoder = zlib.decompressobj(31)
        first = next(r.iter_raw())
        assert decoder.decompress(first).startswith(PIECES[0].encode())


def test_httpx_decodes_transparently(serve, tmp_path):
    srv = serve(make_app(tmp_path))
    with httpx_client(srv) as client:
        r = client.get(f"{srv.url}/doc")  # httpx offers gzip, deflate, br, zstd
    assert r.headers["content-encoding"] in ("br", "zstd", "gzip")
    assert r.json() == json.loads(DOC)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_compressed(serve, tmp_path):
    srv = serve(make_app(tmp_path))
    out = subprocess.run(
        ["curl", "-sS", "--compressed", "-D", "-", "-H", "Accept-Encoding: gzip",
         f"{srv.url}/doc"],
        capture_output=True, timeout=CURL_TIMEOUT_S, check=True)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower()
    assert body == DOC.encode()
