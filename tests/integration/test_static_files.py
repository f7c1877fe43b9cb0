"""``zzz.static_files`` and ``ctx.send_file`` over real sockets, on both backends.

Confinement is attacked with raw request targets (httpx would normalise them);
ranges are checked byte for byte; ``sendfile`` use is proven with a spy on
``os.sendfile`` / ``loop.sendfile`` and with the RSS staying flat while a
512 MiB sparse file is served.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

import zzz
from zzz.backends import _sendfile

from .rawhttp import RawClient, build, httpx_client

#: The secret outside the served directory that no request may ever read.
SECRET = b"TOP-SECRET-OUTSIDE-ROOT"
#: Size of the large file: above ``INLINE_FILE_MAX``, so it goes through sendfile.
LARGE_SIZE = 300_000
#: Size of the sparse file served to check that memory stays flat.
SPARSE_SIZE = 512 * 1024 * 1024
#: Most the server process's RSS may grow while serving the sparse file: a
#: whole-file read would add 512 MiB; bounded pieces add at most a few MiB.
MAX_RSS_GROWTH = 64 * 1024 * 1024
#: Pieces the test client reads the sparse body in.
CLIENT_READ = 1024 * 1024

#: Request targets that try to leave the directory (or smuggle a separator).
TRAVERSALS = [
    "/static/../secret.txt",
    "/static/..%2fsecret.txt",
    "/static/..%2Fsecret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/.%2e/secret.txt",
    "/static/%2e./secret.txt",
    "/static/sub/../../secret.txt",
    "/static/sub/%2e%2e/%2e%2e/secret.txt",
    "/static/..\\secret.txt",
    "/static/..%5csecret.txt",
    "/static/..%5Csecret.txt",
    "/static/%2e%2e%5csecret.txt",
    "/static/%2fetc%2fpasswd",
    "/static//etc/passwd",
    "/static/%00../secret.txt",
    "/static/index.html%00.txt",
    "/static/..%00/secret.txt",
    "/static/%252e%252e/secret.txt",
    "/static/..;/secret.txt",
    "/static/escape/secret.txt",
    "/static/escape",
    "/static/link-out.txt",
    "/static/.hidden",
    "/static/sub/..%2f..%2fsecret.txt",
    "/static/%c0%ae%c0%ae/secret.txt",
    "/static/..%c0%afsecret.txt",
    "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/./../secret.txt",
]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """``tmp/secret.txt`` outside, ``tmp/site`` served: small, large, index, symlinks out."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "hello.txt").write_bytes(b"hello static\n")
    (root / "index.html").write_bytes(b"<h1>index</h1>")
    (root / "sub" / "index.html").write_bytes(b"<h1>sub</h1>")
    (root / "large.bin").write_bytes(os.urandom(LARGE_SIZE))
    (root / "style.css").write_bytes(b"body{color:red}")
    (root / ".hidden").write_bytes(SECRET)
    (root / "link-out.txt").symlink_to(tmp_path / "secret.txt")
    (root / "escape").symlink_to(tmp_path)
    return root


def make_app(root: Path) -> zzz.Router:
    router = zzz.Router()
    router.use(zzz.static_files(root, prefix="/static", max_age=60))

    @router.get("/download/:name")
    def download(ctx: zzz.Context) -> None:
        ctx.set_header("X-Handler", "yes")
        ctx.send_file(root / ctx.path_param("name").replace("/", ""))

    return router


def test_serves_files_with_types_and_validators(serve, site):
    srv = serve(make_app(site))
    with httpx_client(srv) as client:
        r = client.get(f"{srv.url}/static/hello.txt")
        assert r.status_code == 200 and r.content == b"hello static\n"
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.headers["cache-control"] == "public, max-age=60"
        assert r.headers["accept-ranges"] == "bytes"
        etag = r.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"')
        assert client.get(f"{srv.url}/static/style.css").headers["content-type"].startswith(
            "text/css")
        big = client.get(f"{srv.url}/static/large.bin")
        assert big.content == (site / "large.bin").read_bytes()
        assert big.headers["content-length"] == str(LARGE_SIZE)
        assert big.headers["content-type"] == "application/octet-stream"
        assert client.get(f"{srv.url}/static/").content == b"<h1>index</h1>"
        assert client.get(f"{srv.url}/static/sub/").content == b"<h1>sub</h1>"
        redirect = client.get(f"{srv.url}/static/sub")
        assert redirect.status_code == 301 and redirect.headers["location"] == "/static/sub/"
        assert client.get(f"{srv.url}/static/missing.txt").status_code == 404
        assert client.post(f"{srv.url}/static/hello.txt").status_code == 404


def test_conditional_requests_get_304(serve, site):
    srv = serve(make_app(site))
    with httpx_client(srv) as client:
        first = client.get(f"{srv.url}/static/large.bin")
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        for headers in ({"If-None-Match": etag}, {"If-None-Match": f'"x", W/{etag}'},
                        {"If-None-Match": "*"}, {"If-Modified-Since": modified}):
            r = client.get(f"{srv.url}/static/large.bin", headers=headers)
            assert r.status_code == 304, headers
            assert r.content == b"" and r.headers["etag"] == etag
        stale = client.get(f"{srv.url}/static/large.bin", headers={"If-None-Match": '"other"'})
        assert stale.status_code == 200 and len(stale.content) == LARGE_SIZE
        old = client.get(f"{srv.url}/static/large.bin",
                         headers={"If-Modified-Since": "Mon, 01 Jan 1990 00:00:00 GMT"})
        assert old.status_code == 200


@pytest.mark.tls_transport
@pytest.mark.parametrize("spec,start,end", [
    ("bytes=0-0", 0, 0), ("bytes=100-199", 100, 199), ("bytes=-500", LARGE_SIZE - 500,
                                                       LARGE_SIZE - 1),
    ("bytes=299000-", 299_000, LARGE_SIZE - 1), ("bytes=5-99999999", 5, LARGE_SIZE - 1),
    ("bytes=20000-250000", 20_000, 250_000),
])
def test_single_range_byte_for_byte(serve, site, spec, start, end):
    data = (site / "large.bin").read_bytes()
    srv = serve(make_app(site))
    with RawClient(srv) as client:
        r = client.request("GET", "/static/large.bin", headers={"Range": spec})
        assert r.status == 206
        assert r.body == data[start : end + 1]
        assert r.header("content-range") == f"bytes {start}-{end}/{LARGE_SIZE}"
        assert r.header("content-length") == str(end - start + 1)
        # The connection stays usable: the body was framed exactly.
        again = client.request("GET", "/static/hello.txt")
        assert again.status == 200 and again.body == b"hello static\n"


def test_unsatisfiable_multi_and_if_range(serve, site):
    data = (site / "large.bin").read_bytes()
    srv = serve(make_app(site))
    with httpx_client(srv) as client:
        bad = client.get(f"{srv.url}/static/large.bin", headers={"Range": f"bytes={LARGE_SIZE}-"})
        assert bad.status_code == 416
        assert bad.headers["content-range"] == f"bytes */{LARGE_SIZE}"
        multi = client.get(f"{srv.url}/static/large.bin", headers={"Range": "bytes=0-1,5-6"})
        assert multi.status_code == 200 and multi.content == data  # documented choice
        junk = client.get(f"{srv.url}/static/large.bin", headers={"Range": "lines=1-2"})
        assert junk.status_code == 200 and junk.content == data
        etag = multi.headers["etag"]
        fresh = client.get(f"{srv.url}/static/large.bin",
                           headers={"Range": "bytes=0-9", "If-Range": etag})
        assert fresh.status_code == 206 and fresh.content == data[:10]
        stale = client.get(f"{srv.url}/static/large.bin",
                           headers={"Range": "bytes=0-9", "If-Range": '"old"'})
        assert stale.status_code == 200 and stale.content == data


def test_head_has_length_and_no_body(serve, site):
    srv = serve(make_app(site))
    with RawClient(srv) as client:
        r = client.request("HEAD", "/static/large.bin")
        assert r.status == 200 and r.header("content-length") == str(LARGE_SIZE)
        follow = client.request("GET", "/static/hello.txt")
        assert follow.body == b"hello static\n"


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_never_leaves_the_directory(serve, site, target):
    srv = serve(make_app(site))
    with RawClient(srv) as client:
        client.send(build("GET", target))
        try:
            r = client.read_response()
        except Exception as exc:  # a refused target may close the connection
            pytest.fail(f"{target}: no answer ({exc!r})")
        assert r.status in (400, 404), (target, r.status)
        assert SECRET not in r.body
        assert b"root:" not in r.body


def test_send_file_shares_the_implementation(serve, site):
    srv = serve(make_app(site))
    with httpx_client(srv) as client:
        r = client.get(f"{srv.url}/download/large.bin", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == (site / "large.bin").read_bytes()[10:20]
        assert r.headers["x-handler"] == "yes"
        assert client.get(f"{srv.url}/download/nope").status_code == 404
        etag = client.get(f"{srv.url}/download/hello.txt").headers["etag"]
        assert client.get(f"{srv.url}/download/hello.txt",
                          headers={"If-None-Match": etag}).status_code == 304


def test_sendfile_is_used_on_plain_tcp(serve, site, monkeypatch):
    calls: list[int] = []
    real_sendfile = os.sendfile
    real_loop_sendfile: Any = None

    def spy(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        calls.append(count)
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", spy)
    import asyncio

    real_loop_sendfile = asyncio.BaseEventLoop.sendfile

    async def loop_spy(self: Any, *args: Any, **kwargs: Any) -> int:
        calls.append(-1)
        result: int = await real_loop_sendfile(self, *args, **kwargs)
        return result

    monkeypatch.setattr(asyncio.BaseEventLoop, "sendfile", loop_spy)
    srv = serve(make_app(site))
    with httpx_client(srv) as client:
        r = client.get(f"{srv.url}/static/large.bin")
    assert r.content == (site / "large.bin").read_bytes()
    assert calls, "the file body did not go through sendfile"


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_large_sparse_file_keeps_memory_flat(serve, tmp_path):
    root = tmp_path / "big"
    root.mkdir()
    subprocess.run(["truncate", "-s", str(SPARSE_SIZE), str(root / "sparse.bin")], check=True)
    srv = serve(make_app(root))
    before = _rss()
    received = 0
    with httpx.Client(timeout=60) as client, client.stream(
        "GET", f"{srv.url}/static/sparse.bin"
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(SPARSE_SIZE)
        for piece in r.iter_raw(CLIENT_READ):
            received += len(piece)
            assert not piece.strip(b"\0")
    assert received == SPARSE_SIZE
    assert _rss() - before < MAX_RSS_GROWTH


def test_sendfile_in_many_small_calls(serve, site, monkeypatch):
    """Partial sendfile progress (here forced by a tiny per-call cap) still adds up."""
    monkeypatch.setattr(_sendfile, "SENDFILE_MAX_PER_CALL", 4096)
    srv = serve(make_app(site))
    with httpx_client(srv) as client:
        r = client.get(f"{srv.url}/static/large.bin", headers={"Range": "bytes=1000-"})
    assert r.status_code == 206
    assert r.content == (site / "large.bin").read_bytes()[1000:]


def test_asyncio_loop_uses_loop_sendfile(serve, site, backend, monkeypatch):
    """On the stdlib asyncio loop the event-loop backend hands the file to ``loop.sendfile``."""
    if backend != "eventloop":
        pytest.skip("loop.sendfile is the event-loop backend's")
    import asyncio

    calls: list[int] = []
    real = asyncio.BaseEventLoop.sendfile

    async def spy(self: Any, transport: Any, file: Any, offset: int = 0,
                  count: int | None = None, *, fallback: bool = True) -> int:
        calls.append(count or 0)
        result: int = await real(self, transport, file, offset, count, fallback=fallback)
        return result

    monkeypatch.setattr(asyncio.BaseEventLoop, "sendfile", spy)
    srv = serve(make_app(site), eventloop=zzz.EventLoopConfig(loop="asyncio"))
    data = (site / "large.bin").read_bytes()
    with RawClient(srv) as client:
        # Pipelined: a file response, a ranged one and a small one, in order.
        client.send(build("GET", "/static/large.bin")
                    + build("GET", "/static/large.bin", {"Range": "bytes=7-70006"})
                    + build("GET", "/static/hello.txt"))
        assert client.read_response().body == data
        assert client.read_response().body == data[7:70007]
        assert client.read_response().body == b"hello static\n"
    assert calls == [LARGE_SIZE, 70000]


@pytest.mark.tls_transport
def test_pipelined_file_responses_stay_in_order(serve, site):
    data = (site / "large.bin").read_bytes()
    srv = serve(make_app(site))
    with RawClient(srv) as client:
        client.send(build("GET", "/static/large.bin") + build("HEAD", "/static/large.bin")
                    + build("GET", "/static/large.bin", {"Range": "bytes=-100"})
                    + build("GET", "/static/hello.txt"))
        assert client.read_response().body == data
        head = client.read_response(head=True)
        assert head.header("content-length") == str(LARGE_SIZE) and head.body == b""
        assert client.read_response().body == data[-100:]
        assert client.read_response().body == b"hello static\n"


#: Size of the file used by the slow/vanishing reader tests: far beyond socket buffers.
STALL_FILE_SIZE = 64 * 1024 * 1024
#: Receive buffer of the client that stops reading (small: buffers fill quickly).
STALLED_RCVBUF = 16 * 1024
#: Longest a test waits for the server to act (drop a client, release descriptors).
SETTLE_S = 10.0


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc")
def test_client_that_stops_reading_is_dropped_and_files_are_closed(serve, tmp_path):
    import time

    from .rawhttp import CLOSED_ERRORS, connect

    root = tmp_path / "stall"
    root.mkdir()
    subprocess.run(["truncate", "-s", str(STALL_FILE_SIZE), str(root / "big.bin")], check=True)
    srv = serve(make_app(root), write_timeout_ms=500)
    baseline = _open_fds()
    stalled = connect(srv, rcvbuf=STALLED_RCVBUF)
    gone = connect(srv)
    try:
        stalled.sendall(build("GET", "/static/big.bin"))
        assert stalled.recv(64).startswith(b"HTTP/1.1 200")
        gone.sendall(build("GET", "/static/big.bin"))
        assert gone.recv(64).startswith(b"HTTP/1.1 200")
        gone.close()  # vanishes mid-body
        # Buffers fill, a blocking sendfile returns short once the 500 ms write timeout
        # passed, and the next call fails without progress: the client is dropped.
        time.sleep(4.0)
        received = 0
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            try:
                data = stalled.recv(1 << 20)
            except CLOSED_ERRORS:
                break
            if not data:
                break
            received += len(data)
        else:
            pytest.fail(f"still receiving after {SETTLE_S} s: client not dropped")
        assert received < STALL_FILE_SIZE // 4
    finally:
        stalled.close()
    with httpx_client(srv) as client:
        ranged = client.get(f"{srv.url}/static/big.bin", headers={"Range": "bytes=0-9"})
        assert ranged.status_code == 206 and ranged.content == b"\0" * 10
    # The files of the abandoned responses are closed (and the sockets): no descriptor
    # is left beyond those open before the test's connections.
    deadline = time.monotonic() + SETTLE_S
    while _open_fds() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _open_fds() <= baseline
