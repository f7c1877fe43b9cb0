"""Application interfaces: the zzz Router, ASGI 3 and WSGI, as peers.

A backend knows one contract, :class:`zzz.server.Application`: ``handle(request,
server)`` returns a :class:`~zzz.http.response.Response` (or an awaitable of one,
whose ``stream`` may carry the rest of the body), ``check_continue(request)``,
``stream_body(request)`` (stream this body rather than buffer it?) and, when the
app has a lifecycle, ``startup(server)`` / ``shutdown(server)`` coroutines the
backend runs on the loop its coroutines share. The Router implements it
natively; :mod:`zzz.interfaces.asgi` and :mod:`zzz.interfaces.wsgi` adapt the two
standard Python server interfaces to it. So limits, timeouts, TLS, streaming
bodies, graceful shutdown and every server-level feature apply to all three
without a line of per-interface code in the backends.

Interfaces are resolved once, at start-up, like backends: by name from
:data:`INTERFACES` (imported lazily), or detected from the object (``auto``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

#: Registered interfaces: name → module path (each module has ``adapt(app, config)``).
INTERFACES: dict[str, str] = {
    "asgi": "zzz.interfaces.asgi",
    "wsgi": "zzz.interfaces.wsgi",
}
#: Values ``Config.interface`` accepts.
INTERFACE_CHOICES = ("auto", "zzz", "asgi", "wsgi")


#: Request bodies up to this size, announced by Content-Length, are buffered before an
#: ASGI or WSGI app runs (they arrive with the head in one read: no flow-control
#: machinery per request, the fast path); larger or chunked bodies are streamed.
SMALL_BODY_BYTES = 64 * 1024


def streams_body(request: Any) -> bool:
    """The ASGI/WSGI adapters' ``stream_body``: stream unless the body is small and sized."""
    length = request.headers.get("content-length")
    return length is None or not length.isdigit() or int(length) > SMALL_BODY_BYTES


class InterfaceError(ValueError):
    """The object cannot be served as the requested (or any) interface."""


def is_native(app: object) -> bool:
    """Already a zzz application (a Router, or anything with its contract)."""
    return callable(getattr(app, "handle", None)) and callable(
        getattr(app, "check_continue", None))


def _is_async_callable(obj: object) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(type(obj), "__call__", None)  # noqa: B004 - the class's, not the instance's
    return call is not None and not inspect.isfunction(obj) and inspect.iscoroutinefunction(call)


def _positional_count(obj: object) -> int | None:
    """How many positional parameters ``obj`` takes, or None when it cannot be told."""
    try:
        signature = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    count = 0
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY,
                              inspect.Parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def detect(app: object) -> str:
    """``zzz``, ``asgi`` or ``wsgi`` for ``app``; InterfaceError when it is none of them."""
    if is_native(app):
        return "zzz"
    if not callable(app):
        raise InterfaceError(
            f"app: {app!r} is a {type(app).__name__}, not an application (expected a zzz.Router, "
            "an ASGI 3 callable `async (scope, receive, send)` or a WSGI callable "
            "`(environ, start_response)`)")
    if _is_async_callable(app):
        return "asgi"
    count = _positional_count(app)
    if count == 2:
        return "wsgi"
    if count == 1:
        raise InterfaceError(
            f"app: {app!r} takes one argument: an ASGI 2 (double-callable) app is not "
            "supported; wrap it as ASGI 3 (asgiref.compatibility.guarantee_single_callable)")
    raise InterfaceError(
        f"app: cannot tell the interface of {app!r}: pass --interface asgi or wsgi")


def adapt(app: object, interface: str = "auto", config: Any = None) -> Any:
    """``app`` as a zzz Application, for ``interface`` (``auto`` detects it)."""
    if interface not in INTERFACE_CHOICES:
        raise InterfaceError(
            f"interface: unknown interface {interface!r} (known: {', '.join(INTERFACE_CHOICES)})")
    name = detect(app) if interface == "auto" else interface
    if name == "zzz":
        if not is_native(app):
            raise InterfaceError(
                f"interface: {app!r} is not a zzz application (no handle()/check_continue())")
        return app
    if interface != "auto":
        try:
            found = detect(app)
        except InterfaceError:
            found = name  # cannot tell: trust the explicit choice
        if found != name:
            raise InterfaceError(
                f"interface: {type(app).__name__} looks like {found}, not {name}")
    module = importlib.import_module(INTERFACES[name])
    return module.adapt(app, config)
