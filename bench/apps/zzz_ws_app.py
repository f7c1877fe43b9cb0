"""zzz WebSocket echo app for bench/ws_echo.py: every message is sent straight back."""

from typing import Any

import zzz

app = zzz.Router()


def _echo(ws: Any, msg: str | bytes) -> None:
    # Text goes back as text, binary as binary, so the client sees exactly what it sent.
    if isinstance(msg, str):
        ws.send(msg)
    else:
        ws.send_binary(msg)


app.ws("/ws", on_message=_echo)
