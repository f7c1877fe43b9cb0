"""WebSocket interop fixes of issue 12 §2 over real sockets, once per backend:
the decompressed size limit with a default (compressing) client, subprotocols,
the Origin allow-list, a valid message before an invalid frame in the same
read, and a close frame between fragments."""

from __future__ import annotations

import os
import socket
import struct

import pytest
from websockets.exceptions import InvalidStatus

import zzz

from .test_websocket import MIB, WAIT_S, Events, make_app, open_client, ws_url
from .wsraw import OP_CLOSE, OP_CONT, OP_TEXT, RawWebSocket, close_payload, frame


def test_incompressible_message_of_the_default_limit_passes_with_compression(serve):
    """A default websockets client offers permessage-deflate; 1 MiB of random
    bytes compresses to a frame larger than 1 MiB, which must not be a 1009."""
    events = Events()
    running = serve(make_app(events))
    blob = os.urandom(MIB)
    with open_client(ws_url(running, "/ws"), max_size=2 * MIB) as client:
        client.send(blob)
        assert client.recv(timeout=WAIT_S) == blob
    assert events.wait_for("close")[1] == 1000


def protocol_app(events: Events) -> zzz.Router:
    app = zzz.Router()

    def on_open(ws: zzz.WebSocket) -> None:
        ws.send(f"protocol={ws.subprotocol}")

    app.ws("/proto", on_open=on_open, subprotocols=["chat.v2", "chat.v1"],
           allowed_origins=["https://app.example"])
    return app


def test_subprotocol_is_negotiated(serve):
    running = serve(protocol_app(Events()))
    with open_client(ws_url(running, "/proto"), subprotocols=["chat.v1", "chat.v2"]) as client:
        assert client.subprotocol == "chat.v2"
        assert client.recv(timeout=WAIT_S) == "protocol=chat.v2"
    with open_client(ws_url(running, "/proto")) as client:
        assert client.subprotocol is None
        assert client.recv(timeout=WAIT_S) == "protocol=None"


def test_origin_outside_the_allow_list_gets_403(serve):
    running = serve(protocol_app(Events()))
    with pytest.raises(InvalidStatus) as info:
        open_client(ws_url(running, "/proto"), origin="https://evil.example")
    assert info.value.response.status_code == 403
    with open_client(ws_url(running, "/proto"), origin="https://app.example") as client:
        assert client.recv(timeout=WAIT_S) == "protocol=None"


def test_valid_message_before_an_invalid_frame_is_echoed_then_1002(serve):
    events = Events()
    running = serve(make_app(events))
    raw = RawWebSocket(running.port, "/ws")
    try:
        raw.send(frame(OP_TEXT, b"first") + frame(OP_TEXT, b"bad", mask=False))
        assert raw.read_frame() == (OP_TEXT, b"first")
        assert raw.read_close() == 1002
    finally:
        raw.close()
    assert events.wait_for("close")[1] == 1002


def test_close_between_fragments_closes_cleanly_1000(serve):
    """Autobahn 7.1.5."""
    events = Events()
    running = serve(make_app(events))
    raw = RawWebSocket(running.port, "/ws")
    try:
        raw.send(frame(OP_TEXT, b"frag", fin=False) + frame(OP_CLOSE, close_payload(1000))
                 + frame(OP_CONT, b"ment"))
        got = raw.read_frame()
        assert got is not None and got[0] == OP_CLOSE
        assert struct.unpack("!H", got[1][:2])[0] == 1000
        assert raw.at_eof()
    finally:
        raw.close()
    assert events.wait_for("close")[1] == 1000


# ---------------------------------------------------------------------- back-pressure

#: Write-buffer mark of the back-pressure tests: far below the messages they send.
SMALL_HIGH = 16 * 1024
#: Receive buffer of the back-pressure clients: small, so the server's unsent
#: bytes pile up in its own buffers while the client reads at its own pace.
CLIENT_RCVBUF = 16 * 1024
#: Messages of the burst a callback sends on the connection's own thread.
#: Together (16 MiB) more than the kernel's socket buffers take (tcp_wmem max is 4 MiB
#: by default), so the backlog really builds up in the server.
BURST_MESSAGES = 32
BURST_MESSAGE = b"b" * (512 * 1024)
#: One message larger than the kernel's send buffer and far larger than the mark.
BIG_MESSAGE = b"B" * (8 * MIB)


def burst_app(events: Events) -> zzz.Router:
    app = make_app(events)

    def on_message(ws: zzz.WebSocket, msg: str | bytes) -> None:
        sent = sum(1 for _ in range(BURST_MESSAGES) if ws.send_binary(BURST_MESSAGE))
        events.put("burst-sent", sent)

    app.ws("/burst", on_message=on_message)
    app.ws("/big", on_message=lambda ws, msg: ws.send_binary(BIG_MESSAGE))
    return app


def slow_client(running, path: str, **kwargs):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    sock.settimeout(WAIT_S)
    sock.connect(("127.0.0.1", running.port))
    return open_client(ws_url(running, path), sock=sock, compression=None, **kwargs)


def test_reading_client_gets_a_message_larger_than_the_write_mark(serve):
    events = Events()
    running = serve(burst_app(events), ws_write_buffer_high=SMALL_HIGH)
    with slow_client(running, "/big", max_size=2 * len(BIG_MESSAGE)) as client:
        for _ in range(2):
            client.send("again")
            assert client.recv(timeout=WAIT_S) == BIG_MESSAGE


def test_reading_client_gets_a_whole_flood_from_another_thread(serve):
    from .test_websocket import FLOOD_CHUNK, FLOOD_MAX_CHUNKS

    events = Events()
    running = serve(make_app(events), ws_write_buffer_high=4 * len(FLOOD_CHUNK))
    with slow_client(running, "/flood") as client:
        for _ in range(FLOOD_MAX_CHUNKS):
            assert client.recv(timeout=WAIT_S) == FLOOD_CHUNK
        assert events.wait_for("flood-stopped")[1] == FLOOD_MAX_CHUNKS


def test_reading_client_gets_a_burst_sent_from_its_own_callback(serve):
    events = Events()
    running = serve(burst_app(events), ws_write_buffer_high=SMALL_HIGH)
    with slow_client(running, "/burst") as client:
        client.send("go")
        for _ in range(BURST_MESSAGES):
            assert client.recv(timeout=WAIT_S) == BURST_MESSAGE
        assert events.wait_for("burst-sent")[1] == BURST_MESSAGES
