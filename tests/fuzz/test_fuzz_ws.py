"""Property-based tests of the WebSocket frame path (the sans-I/O Session).

* Any bytes, any split, with and without permessage-deflate:
  :func:`harness.check_ws` (no exception, split-independent messages and
  output, only defined close codes, no message over the limit).
* Valid client frames generated from RFC 6455 (text and binary, fragmented,
  pings between fragments, compressed or not) and split anywhere: exactly the
  messages sent come out, and the pings are answered.
"""

from __future__ import annotations

import harness
from hypothesis import example, given
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import PONG, Frame
from websockets.protocol import OPEN
from websockets.uri import parse_uri


@given(st.binary(max_size=400))
@example(b"\x00\x81\x82\x01\x02\x03\x04ij")  # a masked "hi"
@example(b"\x80\xc1\x80\x00\x00\x00\x00")  # an empty compressed text frame
def test_any_bytes_any_split(data: bytes) -> None:
    harness.check_ws(data)


message = st.one_of(st.text(max_size=80), st.binary(max_size=80))


@given(st.lists(st.tuples(message, st.integers(1, 3), st.booleans()), min_size=1, max_size=4),
       st.booleans(), st.integers(1, 127))
def test_valid_frames_give_exactly_the_messages(
    messages: list[tuple[str | bytes, int, bool]], deflate: bool, seed: int
) -> None:
    peer = ClientProtocol(parse_uri("ws://x/"), state=OPEN, max_size=None)
    if deflate:
        peer.extensions = [PerMessageDeflate(False, False, 12, 12)]
    pings = 0
    for payload, fragments, ping in messages:
        data = payload.encode() if isinstance(payload, str) else payload
        step = max(1, len(data) // fragments)
        pieces = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
        send = peer.send_text if isinstance(payload, str) else peer.send_binary
        send(pieces[0], fin=len(pieces) == 1)
        for index, piece in enumerate(pieces[1:], start=2):
            if ping:
                peer.send_ping(b"p%d" % pings)
                pings += 1
            peer.send_continuation(piece, fin=index == len(pieces))
    wire = b"".join(peer.data_to_send())
    session = harness.ws_session(deflate)
    got: list[str | bytes] = []
    for piece in harness.split(wire, seed):
        got.extend(session.receive(piece))
    assert got == [payload for payload, _, _ in messages]
    assert session.is_open
    out, _ = session.data_to_send()
    peer.receive_data(out)
    pongs = [f for f in peer.events_received() if isinstance(f, Frame) and f.opcode is PONG]
    assert len(pongs) == pings
