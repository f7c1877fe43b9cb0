"""Request IDs: reuse the caller's ``X-Request-ID`` when sane, else make one; echo it back.

A generated ID is 128 bits from a per-process ``random.Random`` seeded from
``os.urandom`` (and reseeded in a forked child, so two workers never share a
sequence): 32 hex characters, unique with overwhelming probability, and not
guessable from outside without collecting many of them. That is what a correlation
ID needs; it is not a secret (never use it as a token). ``secrets.token_hex`` asks the
kernel for randomness per request, which cost a few percent of a hello request.
"""

from __future__ import annotations

import os
import random
import re

from zzz.context import Context, check_header
from zzz.middleware._chain import Hooks

#: Longest incoming request ID reused; longer ones are replaced (they end up in logs).
MAX_REQUEST_ID_LENGTH = 128
#: Random bytes in a generated ID (hex-encoded: twice as many characters).
GENERATED_ID_BYTES = 16

_SAFE_ID = re.compile(rf"[A-Za-z0-9._:@/+=-]{{1,{MAX_REQUEST_ID_LENGTH}}}")
#: Bytes of os.urandom seeding the ID generator.
_SEED_BYTES = 32
_random = random.Random(os.urandom(_SEED_BYTES))


def _reseed() -> None:
    _random.seed(os.urandom(_SEED_BYTES))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


_ID_BITS = GENERATED_ID_BYTES * 8
_ID_FORMAT = f"%0{GENERATED_ID_BYTES * 2}x"


def new_request_id() -> str:
    """A fresh request ID: :data:`GENERATED_ID_BYTES` random bytes, hex-encoded."""
    return _ID_FORMAT % _random.getrandbits(_ID_BITS)


class RequestId(Hooks):
    """Put the request ID in ``ctx.assigns[assign]`` and the response header ``header``.

    An incoming ID made of other characters or too long is replaced, so a
    client cannot smuggle arbitrary text into logs or responses.
    """

    __slots__ = ("_lowered", "assign", "header")

    def __init__(self, header: str = "X-Request-ID", assign: str = "request_id") -> None:
        check_header(header, "x")  # a bad name fails here, once, not on every request
        if header.lower() == "content-type":
            raise ValueError("request_id: the header cannot be Content-Type")
        self.header = header
        self._lowered = header.lower().encode("latin-1")
        self.assign = assign

    def enter(self, ctx: Context) -> bool:
        incoming = ctx.request.headers.first(self._lowered)
        if incoming is not None and _SAFE_ID.fullmatch(incoming):
            request_id = incoming
        else:
            request_id = new_request_id()
        ctx.assigns[self.assign] = request_id
        # Checked already: the name in __init__, the value is hex or matched _SAFE_ID.
        ctx._put_header(self.header, request_id)
        return False


def request_id(header_name: str = "X-Request-Id", assign: str = "request_id") -> RequestId:
    """Middleware giving every request an ID (the caller's when well-formed, see
    :class:`RequestId`), kept in ``ctx.assigns[assign]`` and echoed in ``header_name``."""
    return RequestId(header_name, assign)
