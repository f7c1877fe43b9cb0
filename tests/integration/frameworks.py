"""Real framework apps (Starlette, FastAPI, Flask, Django) the interface tests serve.

Each app offers the same small surface, so one test drives all of them:
``GET /json`` → ``{"hello": "world", "path": ...}``, ``POST /upload`` → the size and
SHA-256 of the body read as a stream, ``GET /stream`` → ``STREAM_PIECES`` pieces
streamed, ``GET /state`` → what start-up put in the app's state (ASGI lifespan),
and a WebSocket echo at ``/ws`` (ASGI frameworks).
"""


import contextlib
import hashlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

#: Pieces of the streamed response, each ``b"piece-NN\\n"``.
STREAM_PIECES = 20
#: What the lifespan start-up stores (and /state reports).
STARTUP_MARK = "started-by-lifespan"
#: Shutdown writes here (a list the tests can look at after the server stopped).
SHUTDOWN_LOG: list[str] = []


def _stream_pieces() -> Iterator[bytes]:
    for i in range(STREAM_PIECES):
        yield b"piece-%02d\n" % i


async def _astream_pieces() -> AsyncIterator[bytes]:
    for piece in _stream_pieces():
        yield piece


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    async def json_view(request: Request) -> JSONResponse:
        return JSONResponse({"hello": "world", "path": request.url.path,
                             "root_path": request.scope.get("root_path", "")})

    async def upload(request: Request) -> JSONResponse:
        digest = hashlib.sha256()
        size = 0
        async for piece in request.stream():
            digest.update(piece)
            size += len(piece)
        return JSONResponse({"size": size, "sha256": digest.hexdigest()})

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(_astream_pieces(), media_type="text/plain")

    async def state(request: Request) -> JSONResponse:
        return JSONResponse({"mark": request.state.mark})

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol=None)
        with contextlib.suppress(Exception):
            while True:
                message = await websocket.receive_text()
                await websocket.send_text(f"echo: {message}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, str]]:
        yield {"mark": STARTUP_MARK}
        SHUTDOWN_LOG.append("starlette")

    return Starlette(routes=[
        Route("/json", json_view), Route("/upload", upload, methods=["POST"]),
        Route("/stream", stream), Route("/state", state), WebSocketRoute("/ws", echo),
    ], lifespan=lifespan)


def fastapi_app() -> Any:
    from fastapi import FastAPI, Request, UploadFile, WebSocket, WebSocketDisconnect
    from fastapi.responses import StreamingResponse

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, str]]:
        yield {"mark": STARTUP_MARK}
        SHUTDOWN_LOG.append("fastapi")

    app = FastAPI(lifespan=lifespan)

    @app.get("/json")
    async def json_view(request: Request) -> dict[str, str]:
        return {"hello": "world", "path": request.url.path,
                "root_path": request.scope.get("root_path", "")}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        async for piece in request.stream():
            digest.update(piece)
            size += len(piece)
        return {"size": size, "sha256": digest.hexdigest()}

    @app.post("/form")
    async def form(file: UploadFile) -> dict[str, Any]:
        data = await file.read()
        return {"name": file.filename, "size": len(data)}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(_astream_pieces(), media_type="text/plain")

    @app.get("/state")
    async def state(request: Request) -> dict[str, str]:
        return {"mark": request.state.mark}

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await websocket.receive_text()
                await websocket.send_text(f"echo: {message}")

    return app


def flask_app() -> Any:
    from flask import Flask, Response, jsonify, request

    app = Flask("zzz_flask_test")

    @app.get("/json")
    def json_view() -> Any:
        return jsonify(hello="world", path=request.path, root_path=request.root_path)

    @app.post("/upload")
    def upload() -> Any:
        digest = hashlib.sha256()
        size = 0
        stream = request.stream
        while piece := stream.read(65536):
            digest.update(piece)
            size += len(piece)
        return jsonify(size=size, sha256=digest.hexdigest())

    @app.post("/form")
    def form() -> Any:
        upload = request.files["file"]
        data = upload.read()
        return jsonify(name=upload.filename, size=len(data))

    @app.get("/stream")
    def stream() -> Any:
        return Response(_stream_pieces(), mimetype="text/plain")

    return app


def _django_setup() -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="zzz-tests-only",
        ROOT_URLCONF=__name__ + "_django_urls",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATA_UPLOAD_MAX_MEMORY_SIZE=None,
        USE_TZ=True,
    )
    module = type(sys)(__name__ + "_django_urls")
    from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    def json_view(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"hello": "world", "path": request.path,
                             "root_path": request.META.get("SCRIPT_NAME", "")})

    @csrf_exempt
    def upload(request: HttpRequest) -> JsonResponse:
        digest = hashlib.sha256()
        size = 0
        while piece := request.read(65536):
            digest.update(piece)
            size += len(piece)
        return JsonResponse({"size": size, "sha256": digest.hexdigest()})

    def stream(request: HttpRequest) -> StreamingHttpResponse:
        return StreamingHttpResponse(_stream_pieces(), content_type="text/plain")

    module.urlpatterns = [  # type: ignore[attr-defined]
        path("json", json_view), path("upload", upload), path("stream", stream),
    ]
    sys.modules[module.__name__] = module
    django.setup()


def django_wsgi_app() -> Any:
    _django_setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def django_asgi_app() -> Any:
    _django_setup()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


#: name → (factory, interface, has WebSocket, has lifespan state, has multipart /form)
FRAMEWORKS: dict[str, tuple[Any, str, bool, bool, bool]] = {
    "starlette": (starlette_app, "asgi", True, True, False),
    "fastapi": (fastapi_app, "asgi", True, True, True),
    "flask": (flask_app, "wsgi", False, False, True),
    "django-wsgi": (django_wsgi_app, "wsgi", False, False, False),
    "django-asgi": (django_asgi_app, "asgi", False, False, False),
}


def random_body(size: int) -> bytes:
    return os.urandom(size)
