"""Real frameworks served by zzz on every backend: Starlette, FastAPI (ASGI), Flask
(WSGI) and Django (both), with httpx, curl and the ``websockets`` client."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
from typing import Any

import httpx
import pytest

from .frameworks import FRAMEWORKS, STARTUP_MARK, STREAM_PIECES, random_body
from .rawhttp import SOCKET_TIMEOUT_S

#: Upload size of the framework tests (several times the streaming buffer).
UPLOAD_BYTES = 2 * 1024 * 1024 + 11


@pytest.fixture(params=sorted(FRAMEWORKS))
def framework(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    module = {"django-wsgi": "django", "django-asgi": "django"}.get(name, name)
    pytest.importorskip(module)
    return name


def served(serve: Any, name: str, **config: Any) -> Any:
    factory, _interface, *_ = FRAMEWORKS[name]
    return serve(factory(), **config)


def test_json(serve, framework):
    srv = served(serve, framework)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.get(f"{srv.url}/json")
    assert response.status_code == 200, response.text
    assert response.json()["hello"] == "world"
    assert response.json()["path"] == "/json"


def test_streamed_upload(serve, framework):
    srv = served(serve, framework)
    body = random_body(UPLOAD_BYTES)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S * 4) as client:
        response = client.post(f"{srv.url}/upload", content=body)
        assert response.status_code == 200, response.text
        assert response.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        if framework == "django-wsgi":
            return  # Django's WSGI handler reads CONTENT_LENGTH only: no chunked bodies
        chunked = client.post(f"{srv.url}/upload", content=iter([body[:1000], body[1000:5000]]))
        assert chunked.json()["size"] == 5000


def test_streamed_response(serve, framework):
    srv = served(serve, framework)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client, \
            client.stream("GET", f"{srv.url}/stream") as response:
        assert response.status_code == 200
        body = b"".join(response.iter_bytes())
    assert body == b"".join(b"piece-%02d\n" % i for i in range(STREAM_PIECES))


def test_curl(serve, framework):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    srv = served(serve, framework)
    out = subprocess.run([curl, "-sS", "--max-time", "10", "-H", "Expect:",
                          "--data-binary", "hello curl", f"{srv.url}/upload"],
                         capture_output=True, text=True, timeout=20, check=True)
    assert '"size":10' in out.stdout.replace(" ", "")


def test_lifespan_state(serve, framework):
    _, _interface, _, has_state, _ = FRAMEWORKS[framework]
    if not has_state:
        pytest.skip(f"{framework} has no lifespan state")
    srv = served(serve, framework)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        assert client.get(f"{srv.url}/state").json() == {"mark": STARTUP_MARK}


def test_multipart_form(serve, framework):
    if not FRAMEWORKS[framework][4]:
        pytest.skip(f"{framework} app has no /form")
    srv = served(serve, framework)
    data = random_body(300_000)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.post(f"{srv.url}/form", files={"file": ("data.bin", data)})
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "data.bin", "size": len(data)}


def test_websocket_echo(serve, framework):
    if not FRAMEWORKS[framework][2]:
        pytest.skip(f"{framework} app has no WebSocket")
    import websockets

    srv = served(serve, framework)
    url = srv.url.replace("http", "ws", 1) + "/ws"

    async def talk() -> list[str]:
        async with websockets.connect(url, open_timeout=SOCKET_TIMEOUT_S) as ws:
            answers = []
            for text in ("one", "two", "ü" * 1000):
                await ws.send(text)
                answers.append(str(await asyncio.wait_for(ws.recv(), SOCKET_TIMEOUT_S)))
            return answers

    assert asyncio.run(talk()) == ["echo: one", "echo: two", "echo: " + "ü" * 1000]


def test_root_path(serve, framework):
    """Behind a proxy that mounts the app under /api: the app routes /api/json to its
    /json view and knows its mount point (ASGI root_path, WSGI SCRIPT_NAME)."""
    srv = served(serve, framework, root_path="/api")
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.get(f"{srv.url}/api/json")
    assert response.status_code == 200, response.text
    assert response.json()["root_path"] == "/api"
