"""Built-in middleware. Each works in sync and async chains alike: it is an object
with a sync ``__call__(ctx)`` and an ``async acall(ctx)``, and the router picks
the one that fits the route.

The documented API is the lower-case factories re-exported by ``zzz``
(``zzz.health()``, ``zzz.compress()``...); the classes stay importable from here.
"""

from zzz.middleware._chain import Hooks
from zzz.middleware.compress import Compress
from zzz.middleware.cors import Cors
from zzz.middleware.error_handler import ErrorHandler
from zzz.middleware.health import Health
from zzz.middleware.logger import Logger
from zzz.middleware.request_id import RequestId
from zzz.middleware.static_files import StaticFiles
from zzz.middleware.telemetry import Telemetry, TelemetryEvent

__all__ = [
    "Compress",
    "Cors",
    "ErrorHandler",
    "Health",
    "Hooks",
    "Logger",
    "RequestId",
    "StaticFiles",
    "Telemetry",
    "TelemetryEvent",
]
