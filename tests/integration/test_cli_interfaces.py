"""``zzz run`` serves a Flask app, a Django project (WSGI and ASGI) and a FastAPI app as a
user would start them, on every backend, and exits 0 on SIGTERM after running the
ASGI lifespan shutdown. A wrong ``--interface`` is one line and exit status 2."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import pytest

from .rawhttp import SOCKET_TIMEOUT_S

READY = re.compile(r"serving http://127\.0\.0\.1:(\d+) \(backend=(\w+)")
#: Longest wait for a subprocess server to be ready, and to exit after SIGTERM.
PROCESS_TIMEOUT_S = 30.0

FLASK_APP = """
from flask import Flask, request
app = Flask(__name__)

@app.post("/echo")
def echo():
    return request.get_data()

@app.get("/")
def index():
    return "hello from flask"
"""

DJANGO_SETTINGS = """
SECRET_KEY = "zzz-tests-only"
ROOT_URLCONF = "myproject.urls"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = []
MIDDLEWARE = []
USE_TZ = True
"""
DJANGO_URLS = """
from django.http import HttpResponse
from django.urls import path
urlpatterns = [path("", lambda request: HttpResponse("hello from django"))]
"""
DJANGO_ASGI = """
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
from django.core.asgi import get_asgi_application
application = get_asgi_application()
"""
DJANGO_WSGI = DJANGO_ASGI.replace("asgi", "wsgi").replace("ASGI", "WSGI")

FASTAPI_APP = """
import contextlib, sys
from fastapi import FastAPI

@contextlib.asynccontextmanager
async def lifespan(app):
    print("lifespan: started", file=sys.stderr, flush=True)
    yield {"greeting": "hello from fastapi"}
    print("lifespan: stopped", file=sys.stderr, flush=True)

app = FastAPI(lifespan=lifespan)

@app.get("/")
async def index(request: __import__("fastapi").Request):
    return request.state.greeting
"""


def write_project(root: Path) -> None:
    (root / "flaskapp.py").write_text(textwrap.dedent(FLASK_APP))
    (root / "fastapiapp.py").write_text(textwrap.dedent(FASTAPI_APP))
    package = root / "myproject"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(DJANGO_SETTINGS)
    (package / "urls.py").write_text(DJANGO_URLS)
    (package / "asgi.py").write_text(DJANGO_ASGI)
    (package / "wsgi.py").write_text(DJANGO_WSGI)


class Process:
    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zzz", "run", *args, "--port", "0"],
            cwd=cwd, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.port = 0
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = READY.search(line)
            if match:
                self.port = int(match.group(1))
                self.ready.set()
        self.ready.set()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(PROCESS_TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(PROCESS_TIMEOUT_S)
            self.reader.join(5)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    pytest.importorskip("flask")
    pytest.importorskip("django")
    pytest.importorskip("fastapi")
    write_project(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("spec", "expected"), [
    ("flaskapp:app", "hello from flask"),
    ("myproject.asgi:application", "hello from django"),
    ("myproject.wsgi:application", "hello from django"),
    ("fastapiapp:app", '"hello from fastapi"'),
])
def test_zzz_run_serves_the_app(project: Path, backend: str, spec: str, expected: str) -> None:
    process = Process(project, spec, "--backend", backend)
    try:
        assert process.ready.wait(PROCESS_TIMEOUT_S) and process.port, "".join(process.lines)
        with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
            response = client.get(f"http://127.0.0.1:{process.port}/")
            assert response.status_code == 200, response.text
            assert response.text == expected
            if spec.startswith("flask"):
                echoed = client.post(f"http://127.0.0.1:{process.port}/echo", content=b"x" * 5000)
                assert echoed.content == b"x" * 5000
    finally:
        code = process.stop()
    assert code == 0, "".join(process.lines)
    if spec.startswith("fastapi"):
        log = "".join(process.lines)
        assert "lifespan: started" in log and "lifespan: stopped" in log


def test_wrong_interface_is_one_line_and_exit_2(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zzz", "run", "flaskapp:app", "--interface", "asgi", "--port", "0"],
        cwd=project, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "interface" in lines[0] and "wsgi" in lines[0]


def test_failed_lifespan_startup_exits_2(project: Path, backend: str) -> None:
    (project / "badlife.py").write_text(textwrap.dedent("""
        async def app(scope, receive, send):
            assert scope["type"] == "lifespan"
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})
    """))
    result = subprocess.run(
        [sys.executable, "-m", "zzz", "run", "badlife:app", "--port", "0", "--backend", backend],
        cwd=project, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)
    assert result.returncode == 2, result.stderr
    assert "no database" in result.stderr
