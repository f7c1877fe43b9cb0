"""A chat room served by zzz: one HTML page, one WebSocket route, broadcast per room.

    python -m zzz run examples.chat:app --backend eventloop     (or --backend native)
    open http://localhost:8888/ in two browser tabs

Every tab joins ``/ws/<room>?name=<name>``; each message is sent as JSON to
everyone in the room (the sender included), so all tabs show the same log.
``ws.send`` is thread-safe and never blocks, so broadcasting from the callback
is fine on both backends; a peer that stops reading is cut off by the server
(``ws_write_buffer_high``) instead of slowing the room down.
"""

from __future__ import annotations

import json
import threading

import zzz

#: Longest chat line and name kept (longer ones are cut): a room is for chatting.
MAX_TEXT_CHARS = 2000
MAX_NAME_CHARS = 32
#: Name used when the page sends none.
ANONYMOUS = "anonymous"


class Rooms:
    """Open sockets by room; callbacks on any thread may use it."""

    def __init__(self) -> None:
        self._rooms: dict[str, set[zzz.WebSocket]] = {}
        self._lock = threading.Lock()

    def join(self, room: str, ws: zzz.WebSocket) -> None:
        with self._lock:
            self._rooms.setdefault(room, set()).add(ws)

    def leave(self, room: str, ws: zzz.WebSocket) -> None:
        with self._lock:
            members = self._rooms.get(room)
            if members is not None:
                members.discard(ws)
                if not members:
                    del self._rooms[room]

    def broadcast(self, room: str, event: dict[str, str]) -> None:
        text = json.dumps(event)
        with self._lock:
            members = list(self._rooms.get(room, ()))
        for member in members:
            member.send(text)  # False for a socket that is closing: nothing to do


rooms = Rooms()


def _name(ws: zzz.WebSocket) -> str:
    return (ws.query.get("name") or ANONYMOUS).strip()[:MAX_NAME_CHARS] or ANONYMOUS


class Chat:
    """The WebSocket route's callbacks (the class form of ``app.ws``)."""

    def on_open(self, ws: zzz.WebSocket) -> None:
        room = ws.path_param("room")
        rooms.join(room, ws)
        rooms.broadcast(room, {"type": "join", "from": _name(ws), "text": ""})

    def on_message(self, ws: zzz.WebSocket, msg: str | bytes) -> None:
        if isinstance(msg, bytes):
            ws.close(1003, "text only")
            return
        text = msg[:MAX_TEXT_CHARS]
        rooms.broadcast(ws.path_param("room"), {"type": "say", "from": _name(ws), "text": text})

    def on_close(self, ws: zzz.WebSocket, code: int, reason: str) -> None:
        room = ws.path_param("room")
        rooms.leave(room, ws)
        rooms.broadcast(room, {"type": "leave", "from": _name(ws), "text": ""})


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>zzz chat</title>
<style>
  body { font: 15px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
  #log { list-style: none; padding: 0; height: 20rem; overflow-y: auto;
         border: 1px solid #ccc; border-radius: 4px; }
  #log li { padding: .2rem .5rem; }
  #log li.note { color: #777; font-style: italic; }
  form { display: flex; gap: .5rem; margin-top: .5rem; }
  #text { flex: 1; }
</style>
</head>
<body>
<h1>Room <span id="room"></span></h1>
<p id="status">connecting…</p>
<ul id="log"></ul>
<form id="form">
  <input id="text" autocomplete="off" placeholder="Say something" maxlength="2000">
  <button>Send</button>
</form>
<script>
const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby";
const name = params.get("name") || "guest-" + Math.floor(Math.random() * 1000);
document.getElementById("room").textContent = room;
const log = document.getElementById("log");
const status = document.getElementById("status");
const scheme = location.protocol === "https:" ? "wss" : "ws";
const url = scheme + "://" + location.host + "/ws/" + encodeURIComponent(room)
  + "?name=" + encodeURIComponent(name);
const sock = new WebSocket(url);
function show(text, note) {
  const li = document.createElement("li");
  li.textContent = text;
  if (note) li.className = "note";
  log.appendChild(li);
  log.scrollTop = log.scrollHeight;
}
sock.onopen = () => { status.textContent = "connected as " + name; };
sock.onclose = (e) => { status.textContent = "disconnected (" + e.code + ")"; };
sock.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.type === "say") show(m.from + ": " + m.text, false);
  else show(m.from + (m.type === "join" ? " joined" : " left"), true);
};
document.getElementById("form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  if (input.value && sock.readyState === WebSocket.OPEN) sock.send(input.value);
  input.value = "";
});
</script>
</body>
</html>
"""


def page(ctx: zzz.Context) -> None:
    ctx.html(200, PAGE)


app = zzz.Router(routes=[zzz.get("/", page), zzz.ws("/ws/:room", Chat)])


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    zzz.Server(app, zzz.Config(port=8888), backend="eventloop").listen()
