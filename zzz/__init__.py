"""zzz: a production HTTP/1.1 + WebSocket server framework with pluggable backends.

This module only re-exports the public API; see the submodules for the code.
"""

from zzz.config import Config, ConfigError, EventLoopConfig, NativeConfig, TlsConfig
from zzz.context import Context
from zzz.errors import HTTPError
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.http.response import Response
from zzz.routing import Router, delete, get, head, options, patch, post, put, route, scope
from zzz.server import Server
from zzz.timers import Timer

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "Context",
    "EventLoopConfig",
    "HTTPError",
    "Headers",
    "NativeConfig",
    "Request",
    "Response",
    "Router",
    "Server",
    "Timer",
    "TlsConfig",
    "__version__",
    "delete",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "route",
    "scope",
]
