"""Files as HTTP responses: ``zzz.static_files`` and ``ctx.send_file`` share this module.

Two steps, kept apart so each can be reasoned about alone:

1. **Confinement** (:func:`resolve`, static files only). The *raw* request path
   below the prefix is split on ``/`` before any percent-decoding, and each
   segment is then decoded on its own. A segment that decodes to ``.``/``..``,
   contains ``/`` (``%2F``), ``\\`` or NUL, or is empty, is refused; so is a
   dotfile unless allowed. The joined path is finally resolved with
   ``os.path.realpath`` (which follows every symlink) and must still lie inside
   the real directory: a symlink pointing out is refused like ``..``. The file
   is then opened with ``O_NOFOLLOW``. Every refusal is a plain 404, so a
   probe learns nothing about what exists outside.
2. **Answering** (:func:`file_response`, both). The file is opened once and
   everything comes from ``fstat`` of that descriptor (size, mtime), so the
   headers and the bytes describe the same file even if it is replaced
   meanwhile. It sets ``Content-Type`` (``mimetypes``), a strong ``ETag``
   (inode, size and mtime in ns), ``Last-Modified``, ``Accept-Ranges`` and
   ``Cache-Control: public, max-age=N``; answers ``304`` to a matching
   ``If-None-Match`` (weak comparison, as RFC 9110 §13.1.2 requires) or, without
   one, to an ``If-Modified-Since`` not older than the file; and honours one
   ``Range`` (``206`` + ``Content-Range``; ``416`` with ``bytes */size`` when
   unsatisfiable; ``If-Range`` with a stale validator means the whole file).
   **Multiple ranges** (``bytes=0-1,5-6``) are answered with the whole file
   as a ``200``: RFC 9110 §14.2 allows ignoring ``Range``, and a multipart/
   byteranges body could not be sent zero-copy. Invalid ``Range`` syntax is
   ignored the same way.

The body is a :class:`~zzz.http.response.FileBody` (sent with ``sendfile`` by
the backends), except for files up to ``INLINE_FILE_MAX`` which are read and
sent with the head in one write.
"""

from __future__ import annotations

import io
import mimetypes
import os
import re
import stat
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.http.response import FileBody, Response

#: Files up to this size are read and sent with the head in one write: for
#: them a ``sendfile`` after the head costs an extra syscall and saves nothing.
INLINE_FILE_MAX = 16 * 1024
#: Type sent when ``mimetypes`` does not know the extension.
DEFAULT_CONTENT_TYPE = "application/octet-stream"
#: Text types get an explicit charset (browsers otherwise guess).
TEXT_CHARSET = "utf-8"
#: Longest ``Range`` header parsed; a longer one (hostile) is ignored like a bad one.
MAX_RANGE_HEADER = 1024

_O_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_SINGLE_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_BAD_SEGMENT_CHARS = re.compile(rb"[/\\\x00]")


def resolve(root: str, raw_subpath: str, *, dotfiles: bool = False) -> str | None:
    """The real path of ``raw_subpath`` (raw, percent-encoded) inside real dir ``root``.

    ``None`` when the path could name anything outside ``root`` or is malformed.
    ``root`` itself (the empty sub-path) is returned for index lookups.
    """
    parts: list[str] = []
    if raw_subpath:
        for raw in raw_subpath.split("/"):
            try:
                segment = unquote_to_bytes(raw)
                text = segment.decode("utf-8")
            except UnicodeDecodeError:
                return None
            if not segment or segment in (b".", b"..") or _BAD_SEGMENT_CHARS.search(segment):
                return None
            if text.startswith(".") and not dotfiles:
                return None
            parts.append(text)
    candidate = os.path.realpath(os.path.join(root, *parts))
    if candidate != root and not candidate.startswith(root.rstrip(os.sep) + os.sep):
        return None
    return candidate


def content_type_for(path: str) -> str:
    guessed, encoding = mimetypes.guess_type(path)
    if guessed is None or encoding is not None:  # .gz, .br: the bytes are what they are
        return DEFAULT_CONTENT_TYPE
    if guessed.startswith("text/") or guessed in ("application/javascript", "image/svg+xml"):
        return f"{guessed}; charset={TEXT_CHARSET}"
    return guessed


def file_response(
    request: Request,
    path: str,
    *,
    content_type: str | None = None,
    max_age: int | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Response:
    """The answer to ``request`` (GET/HEAD) with the file at ``path``.

    404 when it is missing or not a regular file (or a symlink as last
    component), 403 when it cannot be read. ``headers`` go in front of the
    ones set here (the context's own, for ``ctx.send_file``).
    """
    try:
        fd = os.open(path, _O_FLAGS)
    except PermissionError:
        return _plain(403, "403 Forbidden\n", headers)
    except OSError:  # missing, ELOOP (symlink with O_NOFOLLOW), ENOTDIR, name too long
        return _plain(404, "404 Not Found\n", headers)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return _plain(404, "404 Not Found\n", headers)
        file = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    try:
        return _answer(request, file, info, path, content_type, max_age, headers)
    except BaseException:
        file.close()
        raise


def _answer(
    request: Request,
    file: io.FileIO,
    info: os.stat_result,
    path: str,
    content_type: str | None,
    max_age: int | None,
    extra: list[tuple[str, str]] | None,
) -> Response:
    size = info.st_size
    etag = f'"{info.st_ino:x}-{size:x}-{info.st_mtime_ns:x}"'
    last_modified = formatdate(info.st_mtime, usegmt=True)
    headers = list(extra) if extra else []
    headers += [("ETag", etag), ("Last-Modified", last_modified)]
    if max_age is not None:
        headers.append(("Cache-Control", f"public, max-age={max_age}"))
    safe = request.method in ("GET", "HEAD")  # conditionals and ranges: RFC 9110 §13.2.1
    if safe and _not_modified(request.headers, etag, int(info.st_mtime)):
        _close(file)
        return Response(304, headers)
    headers.append(("Content-Type", content_type or content_type_for(path)))
    headers.append(("Accept-Ranges", "bytes"))
    status = 200
    offset, count = 0, size
    wanted = request.headers.get("range")
    if wanted is not None and request.method == "GET" and _if_range_holds(
        request.headers, etag, last_modified
    ):
        try:
            parsed = parse_range(wanted, size)
        except RangeNotSatisfiable:
            _close(file)
            headers = [(n, v) for n, v in headers if n != "Content-Type"]
            headers += [("Content-Range", f"bytes */{size}"),
                        ("Content-Type", "text/plain; charset=utf-8")]
            return Response(416, headers, b"416 Range Not Satisfiable\n")
        if parsed is not None:
            offset, count = parsed
            status = 206
            headers.append(("Content-Range", f"bytes {offset}-{offset + count - 1}/{size}"))
    if count <= INLINE_FILE_MAX:
        fd = file.fileno()
        try:
            data = os.pread(fd, count, offset) if count else b""
        finally:
            _close(file)
        if len(data) != count:  # shrank between fstat and read: describe what was read
            return _plain(503, "503 file changed while being read\n", extra)
        return Response(status, headers, data)
    return Response(status, headers, file=FileBody(file, offset, count))


class RangeNotSatisfiable(Exception):
    """The one range asked for lies beyond the end of the file (→ 416)."""


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``(offset, count)`` of one byte range, or ``None`` to ignore the header.

    Several ranges, another unit or bad syntax give ``None``: the whole file.
    Raises :class:`RangeNotSatisfiable` for a range past the end.
    """
    if len(value) > MAX_RANGE_HEADER:
        return None
    match = _SINGLE_RANGE.fullmatch(value.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        suffix = min(suffix, size)
        return size - suffix, suffix
    start = int(first)
    end = int(last) if last else max(start, size - 1)
    if end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    end = min(end, size - 1)
    return start, end - start + 1


def _etag_matches(header: str, etag: str) -> bool:
    """Weak comparison of ``If-None-Match`` against our (strong) tag."""
    if header.strip() == "*":
        return True
    bare = etag
    return any(
        (tag.strip()[2:] if tag.strip().startswith("W/") else tag.strip()) == bare
        for tag in header.split(",")
    )


def _not_modified(headers: Headers, etag: str, mtime: int) -> bool:
    inm = headers.get("if-none-match")
    if inm is not None:
        return _etag_matches(inm, etag)
    ims = headers.get("if-modified-since")
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims)
    except (TypeError, ValueError, IndexError):
        return False
    if since.tzinfo is None:
        return False
    return mtime <= since.timestamp()


def _if_range_holds(headers: Headers, etag: str, last_modified: str) -> bool:
    """``If-Range`` absent, or naming the current representation (strong comparison)."""
    value = headers.get("if-range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == etag
    return value == last_modified


def _close(file: io.FileIO) -> None:
    file.close()


def _plain(status: int, text: str, extra: list[tuple[str, str]] | None) -> Response:
    headers = list(extra) if extra else []
    headers.append(("Content-Type", "text/plain; charset=utf-8"))
    return Response(status, headers, text.encode("utf-8"))
