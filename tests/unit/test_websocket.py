"""WebSocket without sockets: the handshake endpoint through the router, and the
sans-I/O :class:`zzz.websocket.Session` driven by the ``websockets`` client protocol."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import BINARY as OP_BINARY
from websockets.frames import CLOSE as OP_CLOSE
from websockets.frames import PING as OP_PING
from websockets.frames import PONG as OP_PONG
from websockets.frames import TEXT as OP_TEXT
from websockets.frames import Close, Frame
from websockets.protocol import OPEN
from websockets.uri import parse_uri
from websockets.utils import accept_key

import zzz
from zzz import Router
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.http.response import Response
from zzz.websocket import (
    Session,
    Upgrade,
    WebSocketEndpoint,
    check_close,
    negotiate_extensions,
)

#: What Router.handle reads of a server, for calls made without one.
NO_SERVER = __import__('types').SimpleNamespace(offload_sync=False, offload_all_sync=False)

KEY = base64.b64encode(b"0123456789abcdef").decode()
MIB = 1024 * 1024


def upgrade_request(
    target: str = "/ws", *, method: str = "GET", version: str = "1.1", **overrides: str | None
) -> Request:
    fields = {
        "Host": "example.com",
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    for name, value in overrides.items():
        header = name.replace("_", "-")
        if value is None:
            fields.pop(header, None)
        else:
            fields[header] = value
    path, _, query = target.partition("?")
    request = Request(method, path, query, Headers(list(fields.items())), version)
    request.upgrade = True
    return request


def handle(app: Router, request: Request) -> Response:
    result = app.handle(request, NO_SERVER)  # type: ignore[arg-type]
    assert isinstance(result, Response)
    return result


def nothing(ws: Any, msg: Any) -> None:
    """A callback that does nothing (the handshake does not run callbacks)."""


# ---------------------------------------------------------------------- handshake


def test_valid_upgrade_answers_101_with_accept_and_upgrade():
    app = Router()
    app.ws("/chat/:room", on_message=nothing)
    response = handle(app, upgrade_request("/chat/lobby?user=ann"))
    assert response.status == 101
    headers = dict(response.headers)
    assert headers["Sec-WebSocket-Accept"] == accept_key(KEY)
    assert headers["Upgrade"] == "websocket"
    assert "Sec-WebSocket-Extensions" not in headers
    upgrade = response.upgrade
    assert isinstance(upgrade, Upgrade)
    assert upgrade.params == {"room": "lobby"}
    assert upgrade.query.get("user") == "ann"


@pytest.mark.parametrize(
    ("overrides", "method", "version"),
    [
        ({"Sec_WebSocket_Key": None}, "GET", "1.1"),
        ({"Sec_WebSocket_Key": "c2hvcnQ="}, "GET", "1.1"),
        ({"Sec_WebSocket_Key": "not base64!!"}, "GET", "1.1"),
        ({"Upgrade": None}, "GET", "1.1"),
        ({"Upgrade": "h2c"}, "GET", "1.1"),
        ({"Connection": "keep-alive"}, "GET", "1.1"),
        ({}, "GET", "1.0"),
    ],
    ids=["no-key", "short-key", "bad-key", "no-upgrade", "other-upgrade", "no-connection",
         "http10"],
)
def test_bad_upgrades_get_400(overrides, method, version):
    app = Router()
    app.ws("/ws", on_message=nothing)
    response = handle(app, upgrade_request(method=method, version=version, **overrides))
    assert response.status == 400
    assert response.upgrade is None


@pytest.mark.parametrize("version", ["8", "14", None])
def test_wrong_version_gets_426_naming_13(version):
    app = Router()
    app.ws("/ws", on_message=nothing)
    response = handle(app, upgrade_request(Sec_WebSocket_Version=version))
    assert response.status == 426
    assert ("Sec-WebSocket-Version", "13") in response.headers


def test_upgrade_tokens_are_case_insensitive_lists():
    app = Router()
    app.ws("/ws", on_message=nothing)
    response = handle(app, upgrade_request(Upgrade="WebSocket", Connection="UPGRADE"))
    assert response.status == 101


def test_middleware_runs_before_the_upgrade_and_its_assigns_are_copied():
    def auth(ctx: zzz.Context) -> None:
        if ctx.headers.get("authorization") != "yes":
            ctx.text(401, "no")
            return
        ctx.assigns["user"] = "ann"
        ctx.next()

    app = Router()
    app.ws("/ws", on_message=nothing, middleware=[auth])
    assert handle(app, upgrade_request()).status == 401
    response = handle(app, upgrade_request(Authorization="yes"))
    assert response.status == 101
    assert response.upgrade.assigns == {"user": "ann"}


def test_async_middleware_in_front_of_a_websocket_route():
    async def mw(ctx: zzz.Context) -> None:
        ctx.assigns["a"] = 1
        await ctx.next()

    import asyncio

    app = Router()
    app.ws("/ws", on_message=nothing, middleware=[mw])
    result = app.handle(upgrade_request(), NO_SERVER)  # type: ignore[arg-type]
    assert not isinstance(result, Response)
    response = asyncio.run(_await(result))
    assert response.status == 101 and response.upgrade.assigns == {"a": 1}


async def _await(awaitable: Any) -> Any:
    return await awaitable


def test_declarative_class_form_and_scope():
    class Chat:
        def on_message(self, ws: Any, msg: Any) -> None:
            ws.send(msg)

    app = Router(routes=[zzz.scope("/api", routes=[zzz.ws("/chat", Chat)])])
    response = handle(app, upgrade_request("/api/chat"))
    assert response.status == 101
    endpoint = response.upgrade.endpoint
    assert isinstance(endpoint, WebSocketEndpoint)
    assert endpoint.on_message is not None and endpoint.on_open is None


def test_a_websocket_route_needs_a_callback():
    with pytest.raises(TypeError):
        Router().ws("/ws")


def test_other_methods_on_a_websocket_path_get_405():
    app = Router()
    app.ws("/ws", on_message=nothing)
    request = upgrade_request(method="POST")
    request.upgrade = False
    assert handle(app, request).status == 405


def test_permessage_deflate_negotiation():
    header, extensions = negotiate_extensions(
        ["permessage-deflate; client_max_window_bits, x-webkit-deflate-frame"]
    )
    assert header is not None and header.startswith("permessage-deflate")
    assert len(extensions) == 1
    assert negotiate_extensions(["x-other"]) == (None, [])
    app = Router()
    app.ws("/ws", on_message=nothing, compression=False)
    response = handle(
        app, upgrade_request(Sec_WebSocket_Extensions="permessage-deflate")
    )
    assert "Sec-WebSocket-Extensions" not in dict(response.headers)


def test_check_close_refuses_reserved_codes_and_long_reasons():
    check_close(1000, "")
    check_close(4999, "ok")
    for code in (999, 1005, 1006, 1015, 2999, 5000):
        with pytest.raises(ValueError):
            check_close(code, "")
    with pytest.raises(ValueError):
        check_close(1000, "x" * 124)


# ---------------------------------------------------------------------- session


def client(extensions: list[Any] | None = None) -> ClientProtocol:
    proto = ClientProtocol(parse_uri("ws://example.com/"), state=OPEN, max_size=None)
    if extensions:
        proto.extensions = extensions
    return proto


def to_server(proto: ClientProtocol) -> bytes:
    return b"".join(proto.data_to_send())


def server_frames(session: Session, peer: ClientProtocol) -> list[Frame]:
    data, _ = session.data_to_send()
    peer.receive_data(data)
    return [f for f in peer.events_received() if isinstance(f, Frame)]


def test_session_delivers_text_and_binary():
    session = Session(MIB)
    peer = client()
    peer.send_text("héllo".encode())
    peer.send_binary(b"\x00\xff")
    assert session.receive(to_server(peer)) == ["héllo", b"\x00\xff"]


def test_session_reassembles_fragments_split_inside_a_character():
    session = Session(MIB)
    peer = client()
    euro = "€".encode()
    peer.send_text(b"a" + euro[:2], fin=False)
    peer.send_ping(b"p")
    peer.send_continuation(euro[2:] + b"b", fin=True)
    data = to_server(peer)
    out: list[str | bytes] = []
    for i in range(len(data)):  # byte by byte: splitting must not matter
        out += session.receive(data[i : i + 1])
    assert out == ["a€b"]
    assert [f.opcode for f in server_frames(session, peer)] == [OP_PONG]


def test_session_sends_text_binary_and_close():
    session = Session(MIB)
    peer = client()
    assert session.send_text("hi") and session.send_binary(b"\x01")
    assert session.close(1000, "bye")
    frames = server_frames(session, peer)
    assert [(f.opcode, bytes(f.data)) for f in frames[:2]] == [(OP_TEXT, b"hi"), (OP_BINARY, b"\x01")]
    assert frames[2].opcode == OP_CLOSE
    assert not session.send_text("too late")
    assert session.closing and not session.finished
    session.receive(to_server(peer))  # the client protocol echoed our close
    assert session.finished
    assert session.data_to_send() == (b"", True)  # our side: half-close TCP
    assert session.close_info() == (1000, "bye")


def test_session_echoes_a_client_close():
    session = Session(MIB)
    peer = client()
    peer.send_close(4001, "done")
    session.receive(to_server(peer))
    data, eof = session.data_to_send()
    assert eof
    assert Close.parse(data[2:]) == Close(4001, "done")  # unmasked server frame
    assert session.finished and session.close_info() == (4001, "done")


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b"\xff\xfe", 1007), (b"\xed\xa0\x80", 1007)],  # garbage, a UTF-16 surrogate
)
def test_session_invalid_utf8_fails_1007(payload, code):
    session = Session(MIB)
    peer = client()
    peer.send_text(payload)
    assert session.receive(to_server(peer)) == []
    assert session.finished and session.close_info()[0] == code


def test_session_bad_utf8_in_a_fragment_fails_before_the_message_ends():
    session = Session(MIB)
    peer = client()
    peer.send_text(b"ok", fin=False)
    peer.send_continuation(b"\xff", fin=False)
    session.receive(to_server(peer))
    assert session.close_info()[0] == 1007


def test_session_message_limit_fails_1009_across_fragments():
    session = Session(1000)
    peer = client()
    peer.send_binary(b"x" * 600, fin=False)
    peer.send_continuation(b"x" * 600, fin=True)
    assert session.receive(to_server(peer)) == []
    assert session.close_info()[0] == 1009
    exact = Session(1000)
    peer = client()
    peer.send_binary(b"x" * 1000)
    assert exact.receive(to_server(peer)) == [b"x" * 1000]


def test_session_protocol_error_fails_1002():
    session = Session(MIB)
    session.receive(bytes([0x81, 0x02]) + b"hi")  # unmasked client frame
    assert session.close_info()[0] == 1002


def test_session_eof_without_close_frame_is_1006():
    session = Session(MIB)
    session.receive_eof()
    assert session.finished and session.close_info() == (1006, "")


def test_session_permessage_deflate_round_trip():
    header, extensions = negotiate_extensions(["permessage-deflate"])
    assert header is not None
    session = Session(MIB, extensions)
    peer = client([PerMessageDeflate(False, False, 12, 12)])
    text = "compressible " * 1000
    peer.send_text(text.encode())
    wire = to_server(peer)
    assert len(wire) < len(text) // 10
    assert session.receive(wire) == [text]
    session.send_text(text)
    frames = server_frames(session, peer)
    assert bytes(frames[0].data).decode() == text


def test_session_heartbeat_pings_then_times_out():
    session = Session(MIB, ping_interval=10.0, ping_timeout=5.0, now=100.0)
    assert session.heartbeat(100.0) == 110.0  # nothing due yet
    peer = client()
    due = session.heartbeat(110.0)
    assert due == 115.0
    frames = server_frames(session, peer)
    assert [f.opcode for f in frames] == [OP_PING]
    # The pong arrives: the next check is the next ping.
    peer.receive_data(b"")
    pong = [d for d in peer.data_to_send() if d]
    session.receive(b"".join(pong))
    assert session.heartbeat(115.0) == 120.0
    session.heartbeat(120.0)  # second ping, never answered
    assert not session.timed_out
    assert session.heartbeat(125.0) is None
    assert session.timed_out and session.finished
    assert session.close_info() == (1011, "keepalive ping timeout")


def test_session_heartbeat_off_when_interval_is_zero():
    session = Session(MIB, ping_interval=0.0, ping_timeout=1.0)
    assert session.heartbeat(1e9) is None
    assert session.data_to_send() == (b"", False)


def test_ping_from_the_application():
    session = Session(MIB)
    peer = client()
    assert session.ping(b"app")
    frames = server_frames(session, peer)
    assert [(f.opcode, bytes(f.data)) for f in frames] == [(OP_PING, b"app")]
