"""Backend registry. A backend is a module exposing ``listen(server)``.

Backends are imported lazily by name, so running ``native`` never imports the
event-loop backend (or uvloop).
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Registered backends: name → module path. Tests iterate over this.
BACKENDS: dict[str, str] = {
    "native": "zzz.backends.native",
    "eventloop": "zzz.backends.eventloop",
}


class UnknownBackendError(ValueError):
    """Raised for a backend name that is not registered."""


def load(name: str) -> ModuleType:
    """The backend module registered as ``name``."""
    try:
        path = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise UnknownBackendError(f"backend: unknown backend {name!r} (known: {known})") from None
    module = importlib.import_module(path)
    if not callable(getattr(module, "listen", None)):  # pragma: no cover - registry bug
        raise UnknownBackendError(f"backend: {path} has no listen(server)")
    return module
