"""ASGI WebSocket sessions on zzz's own WebSocket machinery.

The app runs as a task on the coroutine loop and first receives
``websocket.connect``. Its answer decides the HTTP response: ``websocket.accept``
becomes the 101 (with the chosen subprotocol and extra headers) whose upgrade
hands the connection to the backend's WebSocket driver; ``websocket.close``
before accepting (or an app that returns without accepting) becomes a 403, as
the spec says. From then on zzz's callbacks feed ``receive()``
(``websocket.receive``, ``websocket.disconnect``) and the app's sends go to
``ws.send``/``ws.send_binary``/``ws.close``, which are thread-safe and never
block: message size limits, heartbeat and 1001 on shutdown are the driver's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from zzz.http.request import Request
from zzz.http.response import Response

if TYPE_CHECKING:
    from zzz.interfaces.asgi import ASGIApplication, Message
    from zzz.server import Server
    from zzz.websocket import WebSocket

log = logging.getLogger("zzz.asgi")

_FORBIDDEN = Response(403, [("Content-Type", "text/plain; charset=utf-8")], b"403 Forbidden\n")
_INTERNAL_ERROR = Response(500, [("Content-Type", "text/plain; charset=utf-8")],
                           b"500 Internal Server Error\n")


class WebSocketCycle:
    """One ASGI WebSocket session, from ``websocket.connect`` to the disconnect."""

    def __init__(self, adapter: ASGIApplication, request: Request, server: Server) -> None:
        self.adapter = adapter
        self.request = request
        self.server = server
        self.loop: asyncio.AbstractEventLoop | None = None
        self._incoming: asyncio.Queue[Message] = asyncio.Queue()
        self._decision: asyncio.Future[Message] | None = None
        self._ws: WebSocket | None = None
        #: Messages the app sent after accepting, before the socket opened.
        self._early: list[Message] = []
        self._closed = False

    async def run(self) -> Response:
        from zzz.websocket import BadUpgradeError, handshake_headers

        request = self.request
        try:
            key_headers, extensions = handshake_headers(request, compression=True)
        except BadUpgradeError as exc:
            return exc.response()
        self.loop = asyncio.get_running_loop()
        self._decision = self.loop.create_future()
        scope = self.adapter.scope(request, self.server, "websocket")
        offered = request.headers.get_all("sec-websocket-protocol")
        scope["subprotocols"] = [p.strip() for value in offered for p in value.split(",")
                                 if p.strip()]
        await self._incoming.put({"type": "websocket.connect"})
        task = self.loop.create_task(self._call_app(scope))
        try:
            decision = await asyncio.shield(self._decision)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if decision["type"] != "websocket.accept":
            return _INTERNAL_ERROR if decision["type"] == "error" else _FORBIDDEN
        headers = list(key_headers)
        subprotocol = decision.get("subprotocol")
        if subprotocol is not None:
            if subprotocol not in scope["subprotocols"]:
                log.error("ASGI app chose subprotocol %r the client did not offer", subprotocol)
                return _INTERNAL_ERROR
            headers.append(("Sec-WebSocket-Protocol", str(subprotocol)))
        for name, value in decision.get("headers") or ():
            headers.append((bytes(name).decode("latin-1"), bytes(value).decode("latin-1")))
        from zzz.websocket import upgrade_response

        return upgrade_response(self, request, headers, extensions)

    async def _call_app(self, scope: MutableMapping[str, Any]) -> None:
        decision = self._decision
        assert decision is not None
        try:
            await self.adapter.app(scope, self.receive, self.send)
        except Exception:
            log.exception("ASGI WebSocket app raised for %s", self.request.path)
            if not decision.done():
                decision.set_result({"type": "error"})
            elif self._ws is not None:
                self._ws.close(1011, "internal error")
            return
        if not decision.done():
            decision.set_result({"type": "websocket.close"})
        elif self._ws is not None and not self._closed:
            self._ws.close(1000, "")

    # ------------------------------------------------------------------ ASGI side

    async def receive(self) -> Message:
        return await self._incoming.get()

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        decision = self._decision
        assert decision is not None
        if not decision.done():
            if kind in ("websocket.accept", "websocket.close"):
                decision.set_result(message)
                return
            if kind == "websocket.http.response.start":
                decision.set_result({"type": "websocket.close"})
                return
            raise RuntimeError(f"ASGI WebSocket: {kind!r} before websocket.accept")
        if self._closed:
            from zzz.interfaces.asgi import ClientDisconnect

            raise ClientDisconnect("the WebSocket is closed")
        ws = self._ws
        if ws is None:
            self._early.append(message)
            return
        self._deliver(ws, message)

    def _deliver(self, ws: WebSocket, message: Message) -> None:
        kind = message.get("type")
        if kind == "websocket.send":
            text = message.get("text")
            if text is not None:
                ws.send(text)
            else:
                ws.send_binary(message.get("bytes") or b"")
        elif kind == "websocket.close":
            ws.close(int(message.get("code", 1000)), str(message.get("reason") or ""))
        else:
            raise RuntimeError(f"ASGI WebSocket: unexpected message {kind!r}")

    # ------------------------------------------------------------------ zzz callbacks
    # Called by the backend's WebSocket driver (on the loop, or a native thread).

    def _to_app(self, message: Message) -> None:
        loop = self.loop
        assert loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed at shutdown
            loop.call_soon_threadsafe(self._incoming.put_nowait, message)

    def on_open(self, ws: WebSocket) -> None:
        loop = self.loop
        assert loop is not None

        def opened() -> None:
            self._ws = ws
            early, self._early = self._early, []
            for message in early:
                self._deliver(ws, message)

        loop.call_soon_threadsafe(opened)

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        if isinstance(message, str):
            self._to_app({"type": "websocket.receive", "text": message})
        else:
            self._to_app({"type": "websocket.receive", "bytes": message})

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        self._closed = True
        self._to_app({"type": "websocket.disconnect", "code": code, "reason": reason})
