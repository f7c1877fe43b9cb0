"""The form parser on its own: fed in chunks of any size, sync and async, with its limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from zzz import HTTPError, forms
from zzz.forms import aparse_form, parse_form

BOUNDARY = "----zzzboundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/x-test\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


BODY = multipart(("title", None, "café".encode()), ("tag", None, b"a"), ("tag", None, b"b"),
                 ("doc", "r.bin", bytes(range(256)) * 40))


@pytest.mark.parametrize("size", [1, 7, 64, 4096, len(BODY)])
def test_multipart_any_chunking(size: int) -> None:
    form = parse_form(CONTENT_TYPE, pieces(BODY, size))
    assert form.get("title") == "café" and form.get_all("tag") == ["a", "b"]
    doc = form.file("doc")
    assert doc is not None and doc.filename == "r.bin" and doc.content_type == "application/x-test"
    assert doc.size == 10240 and doc.read() == bytes(range(256)) * 40
    assert doc.in_memory
    form.close()


def test_async_chunks() -> None:
    async def agen() -> AsyncIterator[bytes]:
        for piece in pieces(BODY, 100):
            await asyncio.sleep(0)
            yield piece

    form = asyncio.run(aparse_form(CONTENT_TYPE, agen()))
    assert form.get("title") == "café" and form.file("doc") is not None


def test_big_upload_spills_to_disk() -> None:
    data = b"z" * (forms.SPOOL_MAX_SIZE + 1)
    form = parse_form(CONTENT_TYPE, pieces(multipart(("f", "big", data)), 65536))
    upload = form.file("f")
    assert upload is not None and not upload.in_memory and upload.size == len(data)
    form.close()


def test_urlencoded_and_other_types() -> None:
    form = parse_form("application/x-www-form-urlencoded; charset=utf-8", [b"a=1&b=", b"2&a=3"])
    assert form.get_all("a") == ["1", "3"] and form.get("b") == "2"
    assert parse_form("text/plain", [b"a=1"]).fields == []
    assert parse_form(None, [b"a=1"]).fields == []


def test_limits() -> None:
    with pytest.raises(HTTPError) as too_big:
        parse_form(CONTENT_TYPE, [multipart(("v", None, b"x" * (forms.MAX_FIELD_SIZE + 1)))])
    assert too_big.value.status == 413
    many = multipart(*[("f", None, b"") for _ in range(10_001)])
    with pytest.raises(HTTPError) as too_many:
        parse_form(CONTENT_TYPE, [many])
    assert too_many.value.status == 400 and "too many" in too_many.value.detail


@pytest.mark.parametrize("body", [
    BODY[:-5],  # cut before the closing boundary
    BODY.replace(b"Content-Disposition: form-data", b"Content-Disposition: attachment", 1),
    b"not multipart at all",
])
def test_malformed_is_400(body: bytes) -> None:
    with pytest.raises(HTTPError) as error:
        parse_form(CONTENT_TYPE, [body])
    assert error.value.status == 400 and "malformed form body" in error.value.detail
