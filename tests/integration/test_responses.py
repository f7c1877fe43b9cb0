"""Response framing and headers: HEAD, 204/304, Date/Server, streaming (httpx and curl)."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from .apps import HELLO, app
from .rawhttp import SOCKET_TIMEOUT_S, RawClient, build

#: Longest a curl invocation may take.
CURL_TIMEOUT_S = 10


def test_head_has_content_length_and_no_body(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        response = client.request("HEAD", "/")
        assert response.status == 200
        assert response.header("content-length") == str(len(HELLO))
        # No body bytes followed the head: the next response parses cleanly.
        following = client.request("GET", "/")
        assert following.status == 200 and following.body == HELLO.encode()


@pytest.mark.parametrize("path,status", [("/nocontent", 204), ("/notmodified", 304)])
def test_no_body_statuses(serve, path, status):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(build("GET", path) + build("GET", "/"))
        response = client.read_response()
        assert response.status == status
        assert response.header("transfer-encoding") is None
        if status == 204:
            assert response.header("content-length") is None
        following = client.read_response()
        assert following.status == 200 and following.body == HELLO.encode()


def test_date_and_server_headers(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        for path in ("/", "/no-such-route"):
            response = client.request("GET", path)
            assert response.header("server") == "zzz"
            date = response.header("date")
            assert date is not None and date.endswith(" GMT")
            parsed = parsedate_to_datetime(date)
            now = datetime.datetime.now(datetime.UTC)
            assert abs((now - parsed).total_seconds()) < 60
            assert len(response.header_all("date")) == 1


def test_error_responses_carry_date_and_server(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(b"GET / HTTP/1.1\r\n\r\n")  # no Host
        response = client.read_response()
        assert response.status == 400
        assert response.header("server") == "zzz"
        assert response.header("date") is not None


def test_streamed_response_is_chunked(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        response = client.request("GET", "/stream?n=4")
        assert response.status == 200
        assert response.chunked
        assert response.header("content-length") is None
        assert response.body == b"".join(b"piece %d\n" % i for i in range(4))
        assert client.request("GET", "/").status == 200


def test_streamed_response_httpx(serve):
    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client, \
            client.stream("GET", f"{srv.url}/stream?n=50") as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        text = "".join(response.iter_text())
    assert text == "".join(f"piece {i}\n" for i in range(50))


def test_async_streamed_response(serve):
    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.get(f"{srv.url}/async-stream")
    assert response.status_code == 200
    assert response.text == "a0a1a2"


def test_streamed_response_to_http10_ends_with_close(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(b"GET /stream?n=3 HTTP/1.0\r\n\r\n")
        response = client.read_response()
        assert response.status == 200
        assert not response.chunked
        assert response.body == b"piece 0\npiece 1\npiece 2\n"


def test_head_of_streamed_route(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        response = client.request("HEAD", "/stream?n=3")
        assert response.status == 200
        assert client.request("GET", "/").body == HELLO.encode()


def test_cookie_and_redirect(serve):
    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.get(f"{srv.url}/cookie")
    assert response.status_code == 302
    assert response.headers["location"] == "/"
    assert response.headers["set-cookie"].startswith("session=abc")


def _curl(srv: Any, *args: str) -> subprocess.CompletedProcess[bytes]:
    """curl against ``srv``, trusting the test CA when it serves TLS (``--next`` resets
    curl's options, so each transfer gets the options again)."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    common = ["--http1.1", "-sS", "--max-time", str(CURL_TIMEOUT_S)]
    if srv.ca_file:
        common += ["--cacert", srv.ca_file]
    argv = [curl, *common]
    for arg in args:
        argv += [arg, *common] if arg == "--next" else [arg]
    return subprocess.run(
        argv,
        capture_output=True, timeout=CURL_TIMEOUT_S + 5, check=False,
    )


def test_curl_streamed_response(serve):
    srv = serve(app)
    done = _curl(srv, "-i", f"{srv.url}/stream?n=20")
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"".join(b"piece %d\n" % i for i in range(20))


def test_curl_post_and_keepalive_reuse(serve):
    srv = serve(app)
    done = _curl(srv, "-v", "--data-binary", "curl body", f"{srv.url}/echo",
                 "--next", f"{srv.url}/users/7")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b'curl body{"id":"7","q":null}'
    assert b"Re-using existing connection" in done.stderr or b"Reusing" in done.stderr
