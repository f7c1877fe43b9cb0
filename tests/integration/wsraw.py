"""A raw-socket WebSocket client for what real clients refuse to do: invalid UTF-8,
protocol errors, never answering pings, vanishing without a close frame."""

from __future__ import annotations

import base64
import os
import socket
import struct

#: Every raw WebSocket socket gets this timeout: nothing may hang the suite.
SOCKET_TIMEOUT_S = 5.0
#: Largest head the handshake reader accepts.
MAX_HEAD_BYTES = 16 * 1024

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


def handshake_request(path: str = "/ws", version: str = "13", key: str | None = None,
                      extra: str = "") -> bytes:
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode("latin-1")


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True,
          rsv: int = 0) -> bytes:
    """One client frame (masked unless told otherwise)."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode("utf-8")


class RawWebSocket:
    """A connected, upgraded socket with a frame reader."""

    def __init__(self, port: int, path: str = "/ws") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
        self.buf = b""
        self.sock.sendall(handshake_request(path))
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk or len(self.buf) > MAX_HEAD_BYTES:
                raise AssertionError(f"no handshake response: {self.buf!r}")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_frame(self) -> tuple[int, bytes] | None:
        """``(opcode, payload)`` of the next server frame, or None at EOF."""
        head = self._read(2)
        if head is None:
            return None
        size = head[1] & 0x7F
        if size == 126:
            ext = self._read(2)
            assert ext is not None
            size = struct.unpack("!H", ext)[0]
        elif size == 127:
            ext = self._read(8)
            assert ext is not None
            size = struct.unpack("!Q", ext)[0]
        payload = self._read(size) if size else b""
        assert payload is not None
        return head[0] & 0x0F, payload

    def read_close(self) -> int:
        """Skip data/ping frames up to the server's close frame; its code."""
        while True:
            got = self.read_frame()
            assert got is not None, "connection ended without a close frame"
            opcode, payload = got
            if opcode == OP_CLOSE:
                return int(struct.unpack("!H", payload[:2])[0]) if payload else 1005

    def at_eof(self) -> bool:
        """True when the server closed the TCP connection (after whatever was pending)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()
