"""zzz: a production HTTP/1.1 + WebSocket server framework with pluggable backends.

This module only re-exports the public API; see the submodules for the code.
"""

from typing import TYPE_CHECKING, Any

from zzz.config import (
    Config,
    ConfigError,
    EventLoopConfig,
    NativeConfig,
    ObservabilityConfig,
    TlsConfig,
)
from zzz.context import Context
from zzz.errors import HTTPError, StartupError
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.http.response import Response
from zzz.lifecycle import State
from zzz.middleware.compress import compress
from zzz.middleware.error_handler import error_handler
from zzz.middleware.health import health
from zzz.middleware.request_id import request_id
from zzz.middleware.static_files import static_files
from zzz.middleware.telemetry import telemetry
from zzz.observability.middleware import metrics, structured_logger
from zzz.routing import Router, delete, get, head, options, patch, post, put, route, scope, ws
from zzz.server import Server
from zzz.timers import Timer

if TYPE_CHECKING:
    from zzz.websocket import WebSocket

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "Context",
    "EventLoopConfig",
    "HTTPError",
    "Headers",
    "NativeConfig",
    "ObservabilityConfig",
    "Request",
    "Response",
    "Router",
    "Server",
    "StartupError",
    "State",
    "Timer",
    "TlsConfig",
    "WebSocket",
    "__version__",
    "compress",
    "delete",
    "error_handler",
    "get",
    "head",
    "health",
    "metrics",
    "options",
    "patch",
    "post",
    "put",
    "request_id",
    "route",
    "scope",
    "static_files",
    "structured_logger",
    "telemetry",
    "ws",
]


def __getattr__(name: str) -> Any:
    # zzz.WebSocket on first use only: it imports the websockets package, which
    # applications without WebSocket routes need not load.
    if name == "WebSocket":
        from zzz.websocket import WebSocket

        return WebSocket
    raise AttributeError(f"module 'zzz' has no attribute {name!r}")
