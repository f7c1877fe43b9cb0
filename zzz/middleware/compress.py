"""Response compression: gzip always, brotli and zstd when their packages are installed.

Theory of operation. The middleware runs the rest of the chain, then looks at
the response it produced (``ctx.built_response()``) and decides once:

1. **Eligible?** Not for 1xx/204/206/304 (no body, or a byte range of the
   identity representation: compressing a range would corrupt it), not when
   the response already has a ``Content-Encoding`` or a ``Content-Range``,
   not with ``Cache-Control: no-transform``, not for protocol upgrades, and
   not for types that are already compressed (images except SVG, audio,
   video, fonts in WOFF, archives; see :data:`INCOMPRESSIBLE_TYPES`). An
   eligible response always gets ``Vary: Accept-Encoding``, compressed or not,
   because its representation depends on that header.
2. **Which coding?** ``Accept-Encoding`` is parsed with its q-values: an
   explicit ``q=0`` refuses a coding, ``*`` stands for every coding not
   listed, and the highest q wins; ties go to the server's order (br, zstd,
   gzip: best ratio first). No acceptable coding → identity.
3. **How?** A bytes body below ``min_size`` stays as it is; otherwise it is
   compressed once and kept only when smaller. A stream (and a file body, which
   then becomes a stream: sendfile cannot compress) is compressed piece by
   piece with a flush after each piece, so memory stays bounded by one piece
   plus the codec's window and every piece reaches the client when the
   application produced it (server-sent events keep working). A strong
   ``ETag`` becomes weak: the bytes differ from the identity representation.

HEAD needs no special case: the body is compressed as for GET so the headers
(``Content-Encoding``, ``Content-Length``) are the same, and the engine sends
none of it. Codecs are looked up lazily by name (:data:`CODECS`), like backends.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Protocol

from zzz.context import Context
from zzz.http.response import Response

#: Smallest bytes body worth compressing: below it the codec's framing (gzip
#: alone adds 18 bytes) eats the gain and the CPU is wasted.
DEFAULT_MIN_SIZE = 256
#: gzip level: 6 is zlib's own default, most of level 9's ratio at a fraction of its cost.
GZIP_LEVEL = 6
#: brotli quality: 4 compresses better than gzip -6 at a similar speed (11 is for
#: precompressed assets, far too slow per request).
BROTLI_QUALITY = 4
#: zstd level: 3 is zstd's default, faster than gzip -6 with a better ratio.
ZSTD_LEVEL = 3
#: Server preference between equally acceptable codings: best ratio first.
PREFERENCE = ("br", "zstd", "gzip")
#: Coding name → module providing it (``None``: the standard library's zlib).
CODECS: dict[str, str | None] = {"br": "brotli", "zstd": "zstandard", "gzip": None}
#: Media types (or ``type/`` prefixes) whose bytes are already compressed.
INCOMPRESSIBLE_TYPES = (
    "image/", "audio/", "video/", "font/woff", "font/woff2",
    "application/zip", "application/gzip", "application/x-gzip", "application/x-bzip2",
    "application/x-xz", "application/x-7z-compressed", "application/x-rar-compressed",
    "application/zstd", "application/x-zstd", "application/x-brotli",
    "application/octet-stream", "application/pdf", "application/vnd.rar",
    "application/x-tar", "application/wasm",
)
#: Exceptions to the prefixes above: text that happens to live under ``image/``.
COMPRESSIBLE_EXCEPTIONS = ("image/svg+xml", "image/x-icon", "image/bmp")
#: Statuses never compressed: no body, or a range of the identity representation.
SKIPPED_STATUSES = frozenset({204, 206, 304})
#: Longest ``Accept-Encoding`` parsed; a longer (hostile) one means identity.
MAX_ACCEPT_ENCODING = 1024


class Encoder(Protocol):
    """One compression stream: ``compress`` a piece (flushed), then ``finish``;
    or ``whole`` for a body known in full (no intermediate flush)."""

    def compress(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...

    def whole(self, data: bytes) -> bytes: ...


class _Gzip:
    __slots__ = ("_z",)

    def __init__(self) -> None:
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._z.flush(zlib.Z_FINISH)

    def whole(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_FINISH)


class _Brotli:
    __slots__ = ("_c",)

    def __init__(self, module: Any) -> None:
        self._c = module.Compressor(quality=BROTLI_QUALITY)

    def compress(self, data: bytes) -> bytes:
        return bytes(self._c.process(data) + self._c.flush())

    def finish(self) -> bytes:
        return bytes(self._c.finish())

    def whole(self, data: bytes) -> bytes:
        return bytes(self._c.process(data) + self._c.finish())


class _Zstd:
    __slots__ = ("_c", "_flush")

    def __init__(self, module: Any) -> None:
        self._c = module.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
        self._flush = module.COMPRESSOBJ_FLUSH_BLOCK

    def compress(self, data: bytes) -> bytes:
        return bytes(self._c.compress(data) + self._c.flush(self._flush))

    def finish(self) -> bytes:
        return bytes(self._c.flush())

    def whole(self, data: bytes) -> bytes:
        return bytes(self._c.compress(data) + self._c.flush())


def available_codings() -> tuple[str, ...]:
    """Codings usable in this process, in :data:`PREFERENCE` order."""
    found = []
    for name in PREFERENCE:
        module = CODECS[name]
        if module is None:
            found.append(name)
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        found.append(name)
    return tuple(found)


def _factory(name: str) -> Callable[[], Encoder]:
    module = CODECS[name]
    if module is None:
        return _Gzip
    loaded = importlib.import_module(module)
    if name == "br":
        return lambda: _Brotli(loaded)
    return lambda: _Zstd(loaded)


def choose_coding(accept_encoding: str | None, offered: Iterable[str]) -> str | None:
    """The coding to use for ``Accept-Encoding`` among ``offered`` (preference order).

    ``None`` means identity: no header, nothing acceptable, or a malformed header.
    """
    if not accept_encoding or len(accept_encoding) > MAX_ACCEPT_ENCODING:
        return None
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        if name == "x-gzip":
            name = "gzip"
        weights[name] = max(q, weights.get(name, 0.0)) if name in weights else q
    best: str | None = None
    best_q = 0.0
    star = weights.get("*", 0.0)
    for coding in offered:
        q = weights.get(coding, star)
        if q > best_q:
            best, best_q = coding, q
    return best


def _incompressible(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    if media in COMPRESSIBLE_EXCEPTIONS:
        return False
    return media.startswith(INCOMPRESSIBLE_TYPES)


def _header(headers: list[tuple[str, str]], lname: str) -> str | None:
    for name, value in headers:
        if name.lower() == lname:
            return value
    return None


class Compress:
    """Compress eligible responses with the best coding the client accepts."""

    __slots__ = ("_encoders", "_offered", "min_size")

    def __init__(
        self, min_size: int = DEFAULT_MIN_SIZE, codings: Iterable[str] | None = None
    ) -> None:
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
            raise ValueError(f"compress: min_size must be an int >= 0, got {min_size!r}")
        available = available_codings()
        if codings is None:
            offered = available
        else:
            offered = tuple(codings)
            for name in offered:
                if name not in CODECS:
                    raise ValueError(f"compress: unknown coding {name!r}; known: {sorted(CODECS)}")
                if name not in available:
                    raise ValueError(f"compress: coding {name!r} needs the "
                                     f"{CODECS[name]!r} package (pip install 'zzz[{name}]')")
        self.min_size = min_size
        self._offered = offered
        self._encoders = {name: _factory(name) for name in offered}

    def __call__(self, ctx: Context) -> None:
        ctx.next()
        self._apply(ctx)

    async def acall(self, ctx: Context) -> None:
        await ctx.next()
        self._apply(ctx)

    def _apply(self, ctx: Context) -> None:
        response = ctx.built_response()
        headers = response.headers
        status = response.status
        if status < 200 or status in SKIPPED_STATUSES or response.upgrade is not None:
            return
        content_type = _header(headers, "content-type")
        if content_type is None or _incompressible(content_type):
            return
        if _header(headers, "content-encoding") is not None or _header(
            headers, "content-range"
        ) is not None:
            return
        cache_control = _header(headers, "cache-control")
        if cache_control is not None and "no-transform" in cache_control.lower():
            return
        _add_vary(headers)
        coding = choose_coding(ctx.headers.get("accept-encoding"), self._offered)
        if coding is None:
            return
        new = self._encoders[coding]
        if response.file is not None:
            if response.file.count < self.min_size:
                return
            response.stream = _compress_iter(response.file, new())
            response.file = None
        elif response.stream is not None:
            stream = response.stream
            if isinstance(stream, AsyncIterable):
                response.stream = _compress_aiter(stream, new())
            else:
                response.stream = _compress_iter(stream, new())
        else:
            body = response.body
            if len(body) < self.min_size:
                return
            packed = new().whole(body)
            if len(packed) >= len(body):
                return
            response.body = packed
        _mark_encoded(response, coding)


def _add_vary(headers: list[tuple[str, str]]) -> None:
    for index, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            tokens = [t.strip().lower() for t in value.split(",")]
            if "accept-encoding" not in tokens and "*" not in tokens:
                headers[index] = (name, f"{value}, Accept-Encoding")
            return
    headers.append(("Vary", "Accept-Encoding"))


def _mark_encoded(response: Response, coding: str) -> None:
    headers = response.headers
    headers.append(("Content-Encoding", coding))
    for index, (name, value) in enumerate(headers):
        if name.lower() == "etag" and value.startswith('"'):
            headers[index] = (name, f"W/{value}")


def _compress_iter(chunks: Iterable[bytes], encoder: Encoder) -> Iterator[bytes]:
    try:
        for chunk in chunks:
            if chunk:
                packed = encoder.compress(chunk)
                if packed:
                    yield packed
        tail = encoder.finish()
        if tail:
            yield tail
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


async def _compress_aiter(chunks: AsyncIterable[bytes], encoder: Encoder) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            if chunk:
                packed = encoder.compress(chunk)
                if packed:
                    yield packed
        tail = encoder.finish()
        if tail:
            yield tail
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def compress(min_size: int = DEFAULT_MIN_SIZE, *, codings: Iterable[str] | None = None) -> Compress:
    """Middleware compressing responses (see :class:`Compress` and this module's docstring).

    ``codings`` restricts the codings offered (default: every installed one).
    """
    return Compress(min_size, codings)
