"""Logging: the text and JSON formats, ``--log-config``, and the access line.

Everything goes through stdlib :mod:`logging`, so an operator routes it with
ordinary handlers. Logger names:

* ``zzz.access`` — one INFO record per request (only with ``access_log``).
  Probe and scrape requests (health, readiness, metrics path) log at DEBUG.
* ``zzz.server`` — server events: start, drain begun, readiness off.
* ``zzz.native`` / ``zzz.eventloop`` — backend events: drained, connections cut
  at the drain deadline, TLS handshake failures, dropped slow clients.
* ``zzz.tls`` — TLS handshakes on the event loop, certificate reloads.
* ``zzz.app`` — application errors (tracebacks).

Every access record carries its fields as attributes (``extra``): ``method``,
``path``, ``status``, ``duration_us``, ``bytes``, ``client``, ``request_id``,
``user_agent``; :class:`JsonFormatter` writes them, plus ``timestamp``,
``level``, ``logger`` and ``message``, as one JSON object per line — any
record with an ``event`` attribute (server events) gets its fields too.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
import time
from typing import Any

#: The access logger's name.
ACCESS_LOGGER = "zzz.access"
#: Text format of every zzz record (the CLI's historical format).
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Name of the stderr handler configure_logging installs (others are left alone).
_HANDLER_NAME = "zzz-stderr"
#: Attributes every ``LogRecord`` has; anything else was passed as ``extra`` and is a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT` with the local time string computed once per second, not per
    record (``time.strftime`` is a visible share of an access line's cost)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (RFC 3339, UTC, ms), level, logger, message,
    the record's ``extra`` fields, and ``exc_info`` as a string when present."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        created = record.created
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        line: dict[str, Any] = {
            "timestamp": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text", log_config: str | None = None) -> None:
    """Set up logging for the CLI: ``log_config`` (dictConfig file) wins over the rest.

    ``.json`` files are read with :mod:`json`; ``.yaml``/``.yml`` need PyYAML
    (a clear error otherwise). Without a file, one stderr handler on the root
    logger with the text or JSON format at ``level``: a
    :class:`~zzz.observability.lines.LineHandler`, which per-request lines reach
    without a ``LogRecord`` while nothing else is configured.
    """
    from zzz.observability.lines import LineHandler

    if log_config:
        logging.config.dictConfig(load_log_config(log_config))
        return
    handler = LineHandler(sys.stderr, json=log_format == "json")
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:  # ours, from an earlier call: replaced
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())


def load_log_config(path: str) -> dict[str, Any]:
    """The dictConfig mapping in ``path``; ``ValueError`` naming the field on any problem."""
    name = "observability.log_config"
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ValueError(f"{name}: cannot read {path!r}: {exc.strerror}") from None
    extension = os.path.splitext(path)[1].lower()
    try:
        if extension in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ValueError(f"{name}: {path!r} is YAML but PyYAML is not installed "
                                 "(pip install pyyaml, or use a .json file)") from None
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (ValueError, TypeError) as exc:
        if str(exc).startswith(name):
            raise
        raise ValueError(f"{name}: {path!r} is not valid: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        raise ValueError(f"{name}: {path!r} is not valid: {exc}") from None
    if not isinstance(data, dict) or "version" not in data:
        raise ValueError(f"{name}: {path!r} must hold a logging.dictConfig mapping with 'version'")
    return data
