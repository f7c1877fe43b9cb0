"""Chunk-size lines checked by the engine, so llhttp never sees a chunk extension.

Why this exists: RFC 9112 §7.1.1 lets a chunk carry extensions with optional
whitespace around the separators::

    chunk     = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )

llhttp (in every mode httptools exposes) refuses any whitespace there: ``5 ;a``
only passes with the *dangerous* ``lenient_spaces_after_chunk_size`` flag, and
``5; a`` or ``5;a = b`` are refused whatever the flags. So strict mode is only
half the cause and loosening it is the wrong depth: the flag also loosens
other things and still leaves valid input refused.

Instead the engine owns the chunk-size line. :class:`ChunkLines` follows the
chunked framing alongside llhttp (size line, that many data bytes, CRLF, next
size line; after the last chunk the trailer section is passed through for
llhttp to parse) and rewrites each size line to the bare ``<hex>\\r\\n`` after
checking it against the grammar above (``ValueError`` otherwise, which the
engine answers with 400). Extensions are thus accepted and
ignored (no server needs them), while a bare CR or LF, a control byte, an
unterminated quoted string or anything else outside the grammar is a 400. The
data bytes are handed on untouched, so llhttp still checks the CRLF after each
chunk and counts the body; the two parsers cannot drift apart because llhttp
only ever sees sizes this module has parsed.

A size line still arriving is buffered here; the engine's stall bound (bytes
fed without parser progress) caps it like any other framing bytes.
"""

from __future__ import annotations

import re

#: A chunk size this long (in significant hex digits) overflows 64 bits, as llhttp refuses it.
MAX_SIZE_DIGITS = 16

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
#: quoted-string (RFC 9110 §5.6.4): qdtext / quoted-pair, obs-text allowed.
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_EXT = rb"[ \t]*;[ \t]*" + _TCHAR + rb"+(?:[ \t]*=[ \t]*(?:" + _TCHAR + rb"+|" + _QUOTED + rb"))?"
#: chunk-size [ chunk-ext ] CRLF, capturing the size.
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:" + _EXT + rb")*\r\n")

# What the next byte belongs to.
_SIZE = 0  # a chunk-size line
_DATA = 1  # chunk data (then its CRLF)
_TRAILER = 2  # after the last chunk: trailer fields, handed on to llhttp as they are


class ChunkLines:
    """Rewrites the chunk-size lines of one chunked body for llhttp (see module doc)."""

    __slots__ = ("_line", "_remaining", "_state")

    def __init__(self) -> None:
        self._state = _SIZE
        self._line = b""  # a size line still arriving
        self._remaining = 0  # data bytes (plus their CRLF) still to come

    def feed(self, data: bytes) -> bytes:
        """The bytes llhttp should see for ``data``; raises ``ValueError`` (a 400)."""
        if self._state == _TRAILER:
            return data
        out: list[bytes] = []
        pos = 0
        n = len(data)
        while pos < n:
            if self._state == _DATA:
                stop = min(n, pos + self._remaining)
                out.append(data[pos:stop])
                self._remaining -= stop - pos
                pos = stop
                if not self._remaining:
                    self._state = _SIZE
            elif self._state == _SIZE:
                lf = data.find(b"\n", pos)
                if lf < 0:
                    self._line += data[pos:]
                    break
                line = self._line + data[pos : lf + 1]
                self._line = b""
                pos = lf + 1
                out.append(self._size_line(line))
            else:
                out.append(data[pos:])
                break
        return b"".join(out)

    def _size_line(self, line: bytes) -> bytes:
        match = _SIZE_LINE.fullmatch(line)
        if match is None:
            raise ValueError("invalid chunk size line")
        digits = match.group(1)
        if len(digits.lstrip(b"0")) > MAX_SIZE_DIGITS:
            raise ValueError("chunk size too large")
        size = int(digits, 16)
        if size:
            self._state = _DATA
            self._remaining = size + 2  # the data and the CRLF that ends it
        else:
            self._state = _TRAILER
        return digits + b"\r\n"
