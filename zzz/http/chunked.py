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

Instead the engine owns the chunk-size line: it already cuts a chunked body at
every line end (so framing is bounded on its own bytes, whatever the reads), and
hands each whole size line to :func:`parse_size_line`, which checks it against
the grammar above (``ValueError`` otherwise, which the engine answers with 400)
and gives the bare size line llhttp sees instead; after the last chunk the
trailer section goes to llhttp as it is. Extensions are thus accepted and
ignored (no server needs them), while a bare CR or LF, a control byte, an
unterminated quoted string or anything else outside the grammar is a 400. The
data bytes are handed on untouched, so llhttp still checks the CRLF after each
chunk and counts the body; the two parsers cannot drift apart because llhttp
only ever sees sizes this module has parsed.

A size line still arriving is buffered by the engine, bounded by
``max_header_size`` like any other framing line.
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

def parse_size_line(line: bytes) -> tuple[int, bytes]:
    """The size of a whole chunk-size line (its CRLF included), and the bare
    ``<hex>\\r\\n`` llhttp should see instead; ``ValueError`` (a 400) when the line is
    outside the grammar above."""
    match = _SIZE_LINE.fullmatch(line)
    if match is None:
        raise ValueError("invalid chunk size line")
    digits = match.group(1)
    if len(digits.lstrip(b"0")) > MAX_SIZE_DIGITS:
        raise ValueError("chunk size too large")
    return int(digits, 16), digits + b"\r\n"
