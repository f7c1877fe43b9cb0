"""Forms and uploads (``ctx.form_value``, ``ctx.file``) on both backends: httpx and ``curl -F``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest

import zzz
from zzz import forms

from .rawhttp import RawClient, httpx_client

#: Longest a curl invocation may take.
CURL_TIMEOUT_S = 10
#: An upload big enough to spill from memory to a temporary file.
BIG_UPLOAD = forms.SPOOL_MAX_SIZE + 12345


def make_app() -> zzz.Router:
    router = zzz.Router()

    @router.post("/upload")
    def upload(ctx: zzz.Context) -> None:
        doc = ctx.file("doc")
        result: dict[str, object] = {
            "title": ctx.form_value("title"),
            "tags": ctx.form().get_all("tag"),
            "param": ctx.param("title"),
        }
        if doc is not None:
            data = doc.read()
            result["file"] = {
                "filename": doc.filename, "type": doc.content_type, "size": doc.size,
                "sha256": hashlib.sha256(data).hexdigest(), "in_memory": doc.in_memory,
            }
        ctx.json(200, result)

    @router.post("/async-upload")
    async def async_upload(ctx: zzz.Context) -> None:
        doc = ctx.file("doc")
        ctx.json(200, {"title": ctx.form_value("title"),
                       "size": doc.size if doc is not None else None})

    return router


def test_urlencoded_and_multipart_fields(serve):
    srv = serve(make_app())
    with httpx_client(srv) as client:
        r = client.post(f"{srv.url}/upload", data={"title": "héllo", "tag": ["a", "b"]})
        assert r.json() == {"title": "héllo", "tags": ["a", "b"], "param": "héllo"}
        r = client.post(f"{srv.url}/upload", data={"title": "x", "tag": ["a", "b"]},
                        files={"doc": ("notes.txt", b"some notes", "text/plain")})
        body = r.json()
        assert body["title"] == "x" and body["tags"] == ["a", "b"] and body["param"] == "x"
        assert body["file"]["filename"] == "notes.txt" and body["file"]["type"] == "text/plain"
        assert body["file"]["size"] == 10 and body["file"]["in_memory"] is True
        r = client.post(f"{srv.url}/async-upload", data={"title": "t"},
                        files={"doc": ("a.bin", b"\0" * 1000)})
        assert r.json() == {"title": "t", "size": 1000}


def test_large_upload_spools_to_disk(serve):
    payload = os.urandom(BIG_UPLOAD)
    srv = serve(make_app(), max_body_size=4 * BIG_UPLOAD)
    with httpx_client(srv) as client:
        r = client.post(f"{srv.url}/upload", files={"doc": ("big.bin", payload)})
    info = r.json()["file"]
    assert info["size"] == BIG_UPLOAD
    assert info["sha256"] == hashlib.sha256(payload).hexdigest()
    assert info["in_memory"] is False


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_upload(serve, tmp_path):
    source = tmp_path / "report.csv"
    source.write_bytes(b"a,b\n1,2\n" * 5000)
    srv = serve(make_app())
    out = subprocess.run(
        ["curl", "-sS", "-F", "title=quarterly", "-F", f"doc=@{source};type=text/csv",
         f"{srv.url}/upload"],
        capture_output=True, timeout=CURL_TIMEOUT_S, check=True)
    body = json.loads(out.stdout)
    assert body["title"] == "quarterly"
    assert body["file"]["filename"] == "report.csv" and body["file"]["type"] == "text/csv"
    assert body["file"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


@pytest.mark.parametrize("content_type,body,message", [
    ("multipart/form-data", b"--x\r\n\r\n", b"without a boundary"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; "
     b'name="a"\r\n\r\nvalue', b"ends before the closing"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\nNo-Colon-Here\r\n\r\nv\r\n--xyz--\r\n",
     b"malformed form body"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Type: text/plain\r\n\r\nv\r\n"
     b"--xyz--\r\n", b"Content-Disposition"),
    ("multipart/form-data; boundary=xyz", b"garbage without any boundary", b"malformed"),
])
def test_malformed_multipart_is_400(serve, content_type, body, message):
    srv = serve(make_app())
    with RawClient(srv) as client:
        r = client.request("POST", "/upload", headers={"Content-Type": content_type}, body=body)
    assert r.status == 400, r.body
    assert message in r.body


def test_form_bounded_by_body_limit(serve):
    srv = serve(make_app(), max_body_size=10_000)
    with httpx_client(srv) as client:
        r = client.post(f"{srv.url}/upload", files={"doc": ("big.bin", b"x" * 20_000)})
    assert r.status_code == 413
