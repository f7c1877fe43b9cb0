"""Hypothesis strategies: valid HTTP/1.1 requests built from the RFC 9112 grammar.

:func:`requests` draws one request as a :class:`Built`: its wire bytes, what a
correct parser must report (method, target, version, fields, body) and the
*features* it used. Features name the places where RFC 9112/9110 leaves a
server a choice or where parsers are known to differ; the h11 differential
test uses them to say which side is right when the two disagree.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from hypothesis import strategies as st

TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
#: Methods with a meaning of their own to the engine, left out of "any token".
SPECIAL_METHODS = frozenset({"CONNECT", "PRI"})
#: Field names the generator adds itself (framing, routing, or refused when repeated).
RESERVED_FIELDS = frozenset({"host", "content-length", "transfer-encoding", "expect",
                             "connection", "upgrade", "content-type", "te", "trailer"})
PCHAR = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"
#: field-vchar / SP / HTAB / obs-text (a value's inside; its ends are not whitespace).
VALUE_INNER = [chr(c) for c in range(0x21, 0x7F)] + [" ", "\t"] + [chr(c) for c in (0x80, 0xE9, 0xFF)]
VALUE_END = [chr(c) for c in range(0x21, 0x7F)] + [chr(0xE9)]

token = st.text(alphabet=TCHAR, min_size=1, max_size=10)
methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PURGE",
                     "REPORT", "MKCALENDAR", "LINK", "FROB", "DESCRIBE", "M-SEARCH"]),
    token.filter(lambda t: t not in SPECIAL_METHODS),
)
percent = st.integers(1, 255).map(lambda b: f"%{b:02X}")
segment = st.lists(st.one_of(st.text(alphabet=PCHAR, min_size=1, max_size=6), percent),
                   max_size=3).map("".join)
paths = st.lists(segment, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
queries = st.one_of(st.just(""), st.text(alphabet=PCHAR + "/?", max_size=12))
values = st.one_of(
    st.just(""),
    st.tuples(st.sampled_from(VALUE_END),
              st.text(alphabet=VALUE_INNER, max_size=12),
              st.sampled_from(VALUE_END)).map(lambda t: t[0] + t[1] + t[2]),
    st.sampled_from(VALUE_END),
)
ows = st.sampled_from(["", " ", "  ", "\t", " \t"])
names = token.filter(lambda n: n.lower() not in RESERVED_FIELDS)
#: Trailer fields RFC 9110 §6.5.1 allows.
trailer_names = st.sampled_from(["X-Checksum", "Server-Timing", "X-T"])


#: Generated inputs llhttp refuses although RFC 9112 allows them (the engine
#: follows llhttp there; see test_fuzz_h11.py). A HTAB in the OWS after
#: ``Transfer-Encoding: chunked`` is refused ("invalid Transfer-Encoding"),
#: a SP is not.
LLHTTP_REFUSES = frozenset({"te_trailing_htab"})


@dataclass
class Built:
    """One generated request: the bytes and what a parser must make of them."""

    wire: bytes
    method: str
    target: str
    version: str
    fields: list[tuple[str, str]]
    body: bytes
    keep_alive: bool
    features: set[str] = field(default_factory=set)


@st.composite
def chunked_body(draw: st.DrawFn, body: bytes, features: set[str]) -> bytes:
    """``body`` as chunks, with optional extensions (BWS too), hex case and trailers."""
    out = []
    pos = 0
    while pos < len(body):
        size = draw(st.integers(1, max(1, len(body) - pos)))
        hexsize = f"{size:x}"
        if draw(st.booleans()):
            hexsize = hexsize.upper()
        if draw(st.integers(0, 5)) == 0:
            hexsize = "00" + hexsize
            features.add("chunk_size_leading_zeros")
        out.append(hexsize.encode() + draw(chunk_ext(features)) + b"\r\n")
        out.append(body[pos : pos + size] + b"\r\n")
        pos += size
    out.append(b"0" + draw(chunk_ext(features)) + b"\r\n")
    for _ in range(draw(st.integers(0, 2))):
        features.add("trailer")
        name = draw(trailer_names)
        out.append(f"{name}: {draw(values)}\r\n".encode("latin-1"))
    out.append(b"\r\n")
    return b"".join(out)


@st.composite
def chunk_ext(draw: st.DrawFn, features: set[str]) -> bytes:
    if draw(st.integers(0, 3)):
        return b""
    parts = []
    for _ in range(draw(st.integers(1, 2))):
        bws1, bws2 = draw(st.sampled_from(["", " ", "\t"])), draw(st.sampled_from(["", " "]))
        if bws1 or bws2:
            features.add("chunk_ext_bws")
        ext = f"{bws1};{bws2}{draw(token)}"
        if draw(st.booleans()):
            value = draw(st.one_of(token, st.text(alphabet=PCHAR + " ", max_size=6).map(
                lambda v: '"' + v + '"')))
            ext += f"={value}"
        parts.append(ext)
    return "".join(parts).encode("latin-1")


@st.composite
def requests(draw: st.DrawFn, last: bool = True) -> Built:
    """One valid request (``last``: it may ask to close the connection)."""
    features: set[str] = set()
    method = draw(methods)
    if method not in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
        features.add("extension_method")
    path, query = draw(paths), draw(queries)
    target = path + ("?" + query if query else "")
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    fields: list[tuple[str, str]] = []
    lines: list[str] = []

    def add(name: str, value: str, pad: bool = True) -> None:
        before, after = (draw(ows), draw(ows)) if pad else ("", "")
        if before or after:
            features.add("ows")
        if name.lower() == "transfer-encoding" and "\t" in after:
            features.add("te_trailing_htab")
        lines.append(f"{name}:{before}{value}{after}")
        fields.append((name, value))

    if version == "1.1" or draw(st.booleans()):
        add(draw(st.sampled_from(["Host", "host", "HOST"])), draw(st.sampled_from(
            ["example.com", "x", "127.0.0.1:8080", "[::1]"])))
    elif version == "1.0":
        features.add("http10_no_host")
    for _ in range(draw(st.integers(0, 4))):
        value = draw(values)
        if any(ord(c) > 0x7F for c in value):
            features.add("obs_text")
        if not value:
            features.add("empty_value")
        add(draw(names), value)
    if draw(st.integers(0, 4)) == 0:
        add("Content-Type", "text/plain")
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    if version == "1.0" and framing == "chunked":
        framing = "length"
    if framing == "none" and body:
        body = b""
    keep_alive = version == "1.1"
    if version == "1.0" and (not last or draw(st.booleans())):
        add("Connection", "keep-alive")
        keep_alive = True
    elif version == "1.1" and last and draw(st.integers(0, 3)) == 0:
        add("Connection", "close")
        keep_alive = False
    wire_body = body
    if framing == "length":
        length = str(len(body))
        if draw(st.integers(0, 5)) == 0:
            length = "0" + length
            features.add("content_length_leading_zero")
        add("Content-Length", length)
    elif framing == "chunked":
        add("Transfer-Encoding", draw(st.sampled_from(["chunked", "Chunked", "CHUNKED"])))
        wire_body = draw(chunked_body(body, features))
    head = f"{method} {target} HTTP/{version}\r\n" + "".join(f"{line}\r\n" for line in lines)
    wire = head.encode("latin-1") + b"\r\n" + wire_body
    return Built(wire, method, target, version, fields, body, keep_alive, features)


@st.composite
def pipelines(draw: st.DrawFn) -> list[Built]:
    """One to three requests sent back to back on one connection."""
    count = draw(st.integers(1, 3))
    return [draw(requests(last=i == count - 1)) for i in range(count)]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A generated pipeline with a few bytes flipped, inserted, deleted or duplicated."""
    data = bytearray(b"".join(r.wire for r in draw(pipelines())))
    interesting = st.sampled_from(list(b"\r\n :;\t\x00\x7f\xff0123456789aAfF-/?%#,\""))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.integers(0, 4))
        byte = draw(st.one_of(interesting, st.integers(0, 255)))
        if kind == 0 and pos < len(data):
            data[pos] = byte
        elif kind == 1:
            data[pos:pos] = bytes([byte]) * draw(st.sampled_from([1, 2, 300]))
        elif kind == 2:
            del data[pos : pos + draw(st.integers(1, 4))]
        elif kind == 3:
            del data[pos:]
        else:
            end = min(len(data), pos + draw(st.integers(1, 30)))
            data[pos:pos] = data[pos:end]
    return bytes(data)
