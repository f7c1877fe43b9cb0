"""Raw ASGI benchmark app (uvicorn httptools+uvloop, granian asgi): no framework in the way."""

from collections.abc import Awaitable, Callable
from typing import Any

HELLO = b"Hello, World!"
#: One piece of the streamed download (bench/throughput.py): the same as zzz's knobs_app.
PIECE = b"d" * 65536
#: Pieces of the download: 256 x 64 KiB = 16 MiB.
DOWNLOAD_PIECES = 256

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _reply(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        # Acknowledge start-up and shutdown so servers don't log lifespan errors.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    method, path = scope["method"], scope["path"]
    if path == "/" and method == "GET":
        await _reply(send, 200, b"text/plain", HELLO)
    elif path == "/echo" and method == "POST":
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        await _reply(send, 200, b"application/octet-stream", b"".join(chunks))
    elif path == "/upload" and method == "POST":
        # Read the whole body, answer its length (the same work as knobs_app's /upload).
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        await _reply(send, 200, b"text/plain", str(len(b"".join(chunks))).encode())
    elif path == "/download" and method == "GET":
        # 16 MiB streamed in 64 KiB pieces, no Content-Length: chunked, like ctx.stream().
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for _ in range(DOWNLOAD_PIECES):
            await send({"type": "http.response.body", "body": PIECE, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await _reply(send, 404, b"text/plain", b"Not Found")
