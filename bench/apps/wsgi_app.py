"""Raw WSGI benchmark app (waitress, gunicorn gthread, cheroot): no framework in the way."""

from collections.abc import Callable, Iterable
from typing import Any

HELLO = b"Hello, World!"
# wrk's echo script sends 1 KiB; refuse anything absurd instead of buffering it.
MAX_ECHO_BYTES = 1024 * 1024
#: One piece of the streamed download (bench/throughput.py): the same as zzz's knobs_app.
PIECE = b"d" * 65536
#: Pieces of the download: 256 x 64 KiB = 16 MiB.
DOWNLOAD_PIECES = 256

StartResponse = Callable[..., Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "")
    if path == "/" and method == "GET":
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]
        )
        return [HELLO]
    if path == "/echo" and method == "POST":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_ECHO_BYTES:
            start_response("413 Content Too Large", [("Content-Length", "0")])
            return [b""]
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
        )
        return [body]
    if path == "/upload" and method == "POST":
        # Read the whole body, answer its length (the same work as knobs_app's /upload).
        length = int(environ.get("CONTENT_LENGTH") or 0)
        size = len(environ["wsgi.input"].read(length)) if length > 0 else 0
        answer = str(size).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(answer)))])
        return [answer]
    if path == "/download" and method == "GET":
        # 16 MiB in 64 KiB pieces without a Content-Length: streamed (chunked).
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (PIECE for _ in range(DOWNLOAD_PIECES))
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"Not Found"]
