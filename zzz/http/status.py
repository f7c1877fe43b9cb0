"""Status codes and their reason phrases, with pre-encoded status lines."""

from __future__ import annotations

from http import HTTPStatus

#: Reason phrase for every registered status code.
REASONS: dict[int, str] = {s.value: s.phrase for s in HTTPStatus}

#: ``HTTP/1.1 <code> <reason>\r\n`` pre-encoded for every known code (hot path).
STATUS_LINES: dict[int, bytes] = {
    code: f"HTTP/1.1 {code} {reason}\r\n".encode("latin-1") for code, reason in REASONS.items()
}


def status_line(code: int) -> bytes:
    """The encoded status line for ``code`` (unknown codes get an empty reason)."""
    line = STATUS_LINES.get(code)
    if line is None:
        line = f"HTTP/1.1 {code} \r\n".encode("latin-1")
    return line


def reason(code: int) -> str:
    return REASONS.get(code, "")


#: Statuses whose responses never carry a body (RFC 9110 §6.4.1).
NO_BODY_STATUSES = frozenset({204, 304}) | frozenset(range(100, 200))
