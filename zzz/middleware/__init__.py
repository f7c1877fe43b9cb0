"""Built-in middleware. Each works in sync and async chains alike: it is an object
with a sync ``__call__(ctx)`` and an ``async acall(ctx)``, and the router picks
the one that fits the route."""

from zzz.middleware.cors import Cors
from zzz.middleware.health import Health
from zzz.middleware.logger import Logger
from zzz.middleware.request_id import RequestId

__all__ = ["Cors", "Health", "Logger", "RequestId"]
