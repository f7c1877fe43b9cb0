"""The sans-I/O HTTP/1.1 engine both backends share: bytes in, requests out,
responses in, bytes out. Nothing in this package touches a socket or a thread."""

from zzz.http.connection import HTTPConnection, Limits, ProtocolError
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.http.response import Response

__all__ = ["HTTPConnection", "Headers", "Limits", "ProtocolError", "Request", "Response"]
