"""Form bodies: ``application/x-www-form-urlencoded`` and ``multipart/form-data``.

Theory of operation. :class:`FormParser` is push-based: ``feed(chunk)`` as the
body arrives, then ``finish()``. It never needs the whole body at once, so the
same parser serves the buffered body of today (``ctx.raw_body()``, one chunk)
and a streamed request body (an iterator or async iterator of chunks:
:func:`parse_form` / :func:`aparse_form`). Multipart parsing is delegated to
``python-multipart`` (the streaming parser Starlette and FastAPI use): it
finds boundaries and part headers; this module decides what each part becomes.

* A part without ``filename`` is a field: its value is kept in memory, at most
  ``MAX_FIELD_SIZE`` bytes (413 beyond), decoded as UTF-8.
* A part with a ``filename`` is an :class:`UploadFile`: its bytes go to a
  ``SpooledTemporaryFile`` that stays in memory up to ``SPOOL_MAX_SIZE`` and
  moves to a temporary file on disk beyond, so a large upload costs disk, not
  memory. Closing the :class:`FormData` (or dropping it) deletes those files.
* The whole body is already bounded by the server's body limit; the number of
  parts by ``zzz.context.MAX_FORM_FIELDS`` (400 beyond), like query strings.
* Anything malformed (no boundary, a broken part header, a body that ends
  before the closing boundary, a part without ``Content-Disposition: form-data;
  name=...``) is the client's error: ``HTTPError(400)`` with a message saying
  what was wrong.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterable, Iterable
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from zzz.context import MAX_FORM_FIELDS, Query
from zzz.errors import HTTPError

#: Uploaded files up to this size stay in memory; larger ones spill to a temp file.
SPOOL_MAX_SIZE = 1024 * 1024
#: Largest value of a plain (non-file) multipart field kept in memory.
MAX_FIELD_SIZE = 1024 * 1024
#: Most header fields in one part (Content-Disposition, Content-Type and a few spare).
MAX_PART_HEADERS = 8
#: Longest header block of one part.
MAX_PART_HEADER_SIZE = 8 * 1024

FORM_URLENCODED = "application/x-www-form-urlencoded"
MULTIPART_FORM = "multipart/form-data"


class UploadFile:
    """One uploaded file: ``filename``, ``content_type``, ``size`` and its bytes in ``file``."""

    __slots__ = ("content_type", "file", "filename", "headers", "name", "size")

    def __init__(self, name: str, filename: str, content_type: str,
                 headers: dict[str, str]) -> None:
        self.name = name
        #: The name the client gave (never trust it as a path: it may hold ``../``).
        self.filename = filename
        self.content_type = content_type
        self.headers = headers
        self.size = 0
        # Owned by this object: closed by close() (or FormData.close, or the GC).
        self.file: Any = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_SIZE)  # noqa: SIM115

    def read(self) -> bytes:
        """All the bytes (from the start, whatever was read before)."""
        self.file.seek(0)
        data: bytes = self.file.read()
        return data

    @property
    def in_memory(self) -> bool:
        """False once the upload spilled to a temporary file on disk."""
        return not bool(getattr(self.file, "_rolled", False))

    def close(self) -> None:
        self.file.close()

    def __repr__(self) -> str:
        return f"<UploadFile {self.name}={self.filename!r} {self.size} bytes>"


class FormData:
    """Parsed form: ``fields`` (name → values) and ``files`` (name → uploads), in order."""

    __slots__ = ("fields", "files")

    def __init__(self) -> None:
        self.fields: list[tuple[str, str]] = []
        self.files: list[UploadFile] = []

    def get(self, name: str) -> str | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]

    def file(self, name: str) -> UploadFile | None:
        for upload in self.files:
            if upload.name == name:
                return upload
        return None

    def close(self) -> None:
        for upload in self.files:
            upload.close()


def _bad(detail: str) -> HTTPError:
    return HTTPError(400, f"malformed form body: {detail}")


class FormParser:
    """Push parser for one form body of ``content_type`` (see the module docstring)."""

    def __init__(self, content_type: str | None) -> None:
        media, options = parse_options_header(content_type or "")
        self.kind = media.decode("latin-1").lower()
        self.form = FormData()
        self._urlencoded: list[bytes] | None = None
        self._multipart: MultipartParser | None = None
        self._ended = False
        if self.kind == FORM_URLENCODED:
            self._urlencoded = []
        elif self.kind == MULTIPART_FORM:
            boundary = options.get(b"boundary")
            if not boundary:
                raise _bad("multipart/form-data without a boundary parameter")
            self._start_multipart(boundary)

    # -- multipart state, driven by python-multipart's callbacks
    def _start_multipart(self, boundary: bytes) -> None:
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._field: bytearray | None = None
        self._field_name = ""
        self._upload: UploadFile | None = None
        callbacks: Any = {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_name.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        self._multipart = MultipartParser(
            boundary, callbacks, max_header_count=MAX_PART_HEADERS,
            max_header_size=MAX_PART_HEADER_SIZE)

    def _part_begin(self) -> None:
        if len(self.form.fields) + len(self.form.files) >= MAX_FORM_FIELDS:
            raise HTTPError(400, "too many fields")
        self._headers = {}
        self._field = None
        self._upload = None

    def _header_end(self) -> None:
        name = self._header_name.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("utf-8", "replace").strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition"))
        if disposition.lower() != b"form-data" or b"name" not in options:
            raise _bad("a part lacks 'Content-Disposition: form-data; name=...'")
        name = options[b"name"].decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            self._field = bytearray()
            self._field_name = name
        else:
            content_type = self._headers.get("content-type", "application/octet-stream")
            self._upload = UploadFile(name, filename.decode("utf-8", "replace"),
                                      content_type, dict(self._headers))
            self.form.files.append(self._upload)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._upload is not None:
            self._upload.file.write(data[start:end])
            self._upload.size += end - start
        elif self._field is not None:
            if len(self._field) + end - start > MAX_FIELD_SIZE:
                raise HTTPError(413, f"form field {self._field_name!r} is larger than "
                                     f"{MAX_FIELD_SIZE} bytes")
            self._field.extend(data[start:end])

    def _part_end(self) -> None:
        if self._field is not None:
            self.form.fields.append((self._field_name, self._field.decode("utf-8", "replace")))
            self._field = None
        elif self._upload is not None:
            self._upload.file.seek(0)
            self._upload = None

    def _end(self) -> None:
        self._ended = True

    # -- public
    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        try:
            if self._multipart is not None:
                self._multipart.write(chunk)
            elif self._urlencoded is not None:
                self._urlencoded.append(chunk)
        except MultipartParseError as exc:
            self.form.close()
            raise _bad(str(exc) or "invalid multipart framing") from None
        except HTTPError:
            self.form.close()
            raise

    def finish(self) -> FormData:
        if self._multipart is not None:
            if not self._ended:
                self.form.close()
                raise _bad("the body ends before the closing multipart boundary")
        elif self._urlencoded is not None:
            text = b"".join(self._urlencoded).decode("utf-8", "replace")
            self.form.fields = Query.parse(text).items()
        return self.form


def parse_form(content_type: str | None, chunks: Iterable[bytes]) -> FormData:
    """Parse a form body arriving as ``chunks`` (any other type: an empty form)."""
    parser = FormParser(content_type)
    for chunk in chunks:
        parser.feed(chunk)
    return parser.finish()


async def aparse_form(content_type: str | None, chunks: AsyncIterable[bytes]) -> FormData:
    """:func:`parse_form` for a body arriving as an async iterator (a streamed request)."""
    parser = FormParser(content_type)
    async for chunk in chunks:
        parser.feed(chunk)
    return parser.finish()
