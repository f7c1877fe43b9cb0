"""WebSocket interop fixes of issue 12 §2 on the sans-I/O Session and the handshake:
the size limit on decompressed messages, messages before a failure in the same
read, a close frame between fragments, subprotocols and the Origin allow-list."""

from __future__ import annotations

import os
import tracemalloc
import zlib

import pytest
from test_websocket import client, server_frames, to_server, upgrade_request
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import CLOSE as OP_CLOSE
from websockets.frames import TEXT as OP_TEXT
from websockets.frames import Close

from zzz import Router
from zzz.http.response import Response
from zzz.websocket import Session, Upgrade, WebSocketEndpoint, negotiate_extensions

#: What Router.handle reads of a server, for calls made without one.
NO_SERVER = __import__('types').SimpleNamespace(offload_sync=False, offload_all_sync=False)

LIMIT = 64 * 1024
#: Decompressed size of the zip bomb: far beyond the limit, a small compressed frame.
BOMB_BYTES = 16 * 1024 * 1024


def deflate_session(limit: int = LIMIT) -> tuple[Session, object]:
    _, extensions = negotiate_extensions(["permessage-deflate"])
    return Session(limit, extensions), client([PerMessageDeflate(False, False, 12, 12)])


def test_incompressible_message_of_exactly_the_limit_passes_with_deflate() -> None:
    session, peer = deflate_session()
    blob = os.urandom(LIMIT)
    peer.send_binary(blob)  # type: ignore[attr-defined]
    wire = to_server(peer)  # type: ignore[arg-type]
    assert len(wire) > LIMIT  # the compressed frame is larger than the message
    assert session.receive(wire) == [blob]
    assert session.is_open


def test_one_byte_over_the_limit_is_1009_with_deflate() -> None:
    session, peer = deflate_session()
    peer.send_binary(b"a" * (LIMIT + 1))  # type: ignore[attr-defined]
    assert session.receive(to_server(peer)) == []  # type: ignore[arg-type]
    assert session.close_info()[0] == 1009


def test_fragmented_deflate_message_counts_decompressed_bytes() -> None:
    session, peer = deflate_session()
    peer.send_binary(b"a" * (LIMIT // 2), fin=False)  # type: ignore[attr-defined]
    peer.send_continuation(b"a" * (LIMIT // 2), fin=True)  # type: ignore[attr-defined]
    assert session.receive(to_server(peer)) == [b"a" * LIMIT]  # type: ignore[arg-type]
    peer.send_binary(b"a" * (LIMIT // 2), fin=False)  # type: ignore[attr-defined]
    peer.send_continuation(b"a" * (LIMIT // 2 + 1), fin=True)  # type: ignore[attr-defined]
    assert session.receive(to_server(peer)) == []  # type: ignore[arg-type]
    assert session.close_info()[0] == 1009


def test_zip_bomb_is_stopped_without_inflating_it_whole() -> None:
    compressor = zlib.compressobj(wbits=-12)
    payload = compressor.compress(b"\x00" * BOMB_BYTES) + compressor.flush(zlib.Z_SYNC_FLUSH)
    payload = payload[:-4]  # permessage-deflate strips the sync-flush tail
    assert len(payload) < LIMIT
    session, _ = deflate_session()
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    head = bytes([0xC2, 0x80 | 127]) + len(payload).to_bytes(8, "big") + mask  # RSV1 binary
    tracemalloc.start()
    try:
        assert session.receive(head + masked) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert session.close_info()[0] == 1009
    assert peak < 8 * LIMIT + len(masked) * 4  # nowhere near BOMB_BYTES


def test_uncompressed_frame_over_the_limit_is_1009_with_deflate_on() -> None:
    session, _ = deflate_session()
    plain = client()
    plain.send_binary(b"x" * (LIMIT + 1))
    assert session.receive(to_server(plain)) == []
    assert session.close_info()[0] == 1009


def test_message_before_an_invalid_frame_is_delivered_and_answered_first() -> None:
    session = Session(LIMIT)
    peer = client()
    peer.send_text(b"ok")
    data = to_server(peer) + bytes([0x81, 0x02]) + b"hi"  # then an unmasked frame: 1002
    assert session.receive(data) == ["ok"]
    assert session.is_open and not session.finished
    assert session.data_to_send() == (b"", False)  # the failure waits
    assert session.send_text("echo: ok")
    session.release()
    frames = server_frames(session, peer)
    assert [f.opcode for f in frames] == [OP_TEXT, OP_CLOSE]
    assert bytes(frames[0].data) == b"echo: ok"
    assert Close.parse(frames[1].data).code == 1002
    assert session.finished and session.close_info()[0] == 1002


def test_message_then_close_in_one_read_is_answered_before_the_close() -> None:
    session = Session(LIMIT)
    peer = client()
    peer.send_text(b"last")
    peer.send_close(1000, "bye")
    assert session.receive(to_server(peer)) == ["last"]
    assert session.send_text("echo")
    session.release()
    data, eof = session.data_to_send()
    assert eof and data.startswith(b"\x81\x04echo")
    assert session.close_info() == (1000, "bye")


def test_close_between_fragments_closes_cleanly_1000() -> None:
    """Autobahn 7.1.5: fragment, close, fragment → a clean close with 1000."""
    session = Session(LIMIT)
    peer = client()
    peer.send_text(b"frag", fin=False)
    peer.send_close(1000, "")
    data = to_server(peer) + bytes([0x80, 0x80, 0, 0, 0, 0])  # the last fragment after it
    assert session.receive(data) == []
    sent, eof = session.data_to_send()
    assert eof
    assert Close.parse(sent[2:]).code == 1000
    assert session.close_info() == (1000, "")


# ---------------------------------------------------------------------- handshake


def handshake(endpoint: WebSocketEndpoint, **fields: str | None) -> Response:
    app = Router()
    app.add_route("GET", "/ws", endpoint)
    response = app.handle(upgrade_request("/ws", **fields), NO_SERVER)  # type: ignore[arg-type]
    assert isinstance(response, Response)
    return response


def test_subprotocol_negotiation_prefers_the_servers_order() -> None:
    endpoint = WebSocketEndpoint(on_message=lambda ws, m: None, subprotocols=["v2", "v1"])
    response = handshake(endpoint, Sec_WebSocket_Protocol="v1, v2")
    assert response.status == 101
    assert dict(response.headers)["Sec-WebSocket-Protocol"] == "v2"
    assert isinstance(response.upgrade, Upgrade) and response.upgrade.subprotocol == "v2"
    none = handshake(endpoint, Sec_WebSocket_Protocol="v3")
    assert none.status == 101 and "Sec-WebSocket-Protocol" not in dict(none.headers)
    plain = handshake(WebSocketEndpoint(on_message=lambda ws, m: None),
                      Sec_WebSocket_Protocol="v1")
    assert "Sec-WebSocket-Protocol" not in dict(plain.headers)


def test_origin_allow_list() -> None:
    endpoint = WebSocketEndpoint(on_message=lambda ws, m: None,
                                 allowed_origins=["https://app.example"])
    assert handshake(endpoint, Origin="https://app.example").status == 101
    assert handshake(endpoint, Origin="HTTPS://APP.EXAMPLE").status == 101
    assert handshake(endpoint, Origin="https://evil.example").status == 403
    assert handshake(endpoint, Origin="null").status == 403
    assert handshake(endpoint).status == 101  # no Origin: not a browser
    open_to_all = WebSocketEndpoint(on_message=lambda ws, m: None)
    assert handshake(open_to_all, Origin="https://evil.example").status == 101


@pytest.mark.parametrize("bad", [["a b"], "v1", [""], [1]])
def test_invalid_subprotocols_are_refused_at_registration(bad: object) -> None:
    with pytest.raises(ValueError, match="subprotocols"):
        WebSocketEndpoint(on_message=lambda ws, m: None, subprotocols=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("later", [bytes([0x83, 0x80, 0, 0, 0, 0]), "close"])
def test_earliest_error_of_a_read_decides_the_close_code(later: bytes | str) -> None:
    """Found by atheris: bad UTF-8 in one frame and an invalid opcode (or a close)
    in a later frame of the same read gave 1002 (1000) when read at once but 1007
    when read frame by frame; the earlier error must win whatever the split."""
    peer = client()
    peer.send_text(b"\xff\xfe")
    if later == "close":
        peer.send_close(1000, "")
        wire = to_server(peer)
    else:
        assert isinstance(later, bytes)
        wire = to_server(peer) + later
    whole = Session(LIMIT)
    whole.receive(wire)
    split = Session(LIMIT)
    for i in range(len(wire)):
        split.receive(wire[i : i + 1])
    assert whole.close_info()[0] == split.close_info()[0] == 1007
    data, eof = whole.data_to_send()
    assert eof and Close.parse(data[2:]).code == 1007


def test_empty_close_between_fragments_is_echoed_empty() -> None:
    """Found by atheris: the 1005 an empty close frame parses as cannot be sent;
    replacing the library's 1002 with it raised out of receive()."""
    session = Session(LIMIT)
    peer = client()
    peer.send_text(b"frag", fin=False)
    wire = to_server(peer) + bytes([0x88, 0x80, 1, 2, 3, 4])  # empty masked close
    assert session.receive(wire) == []
    sent, eof = session.data_to_send()
    assert eof and sent == b"\x88\x00"
    assert session.close_info() == (1005, "")
