"""Configuration as data: frozen dataclasses validated at construction.

The CLI flags and ``ZZZ_*`` environment variables are derived from these fields
(see :mod:`zzz.cli`), so a new setting is added here once and nowhere else.
Every field carries a ``help`` string in its metadata; it is both the one-line
reason for the limit and the ``--help`` text of its flag.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any

KIB = 1024
MIB = 1024 * KIB

#: Highest TCP port number.
MAX_PORT = 65535
#: TLS versions ``TlsConfig.min_version`` accepts.
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
#: Largest file-descriptor number ``Config.fd`` accepts (a sanity bound, not a kernel limit).
MAX_FD = 1 << 20
#: Event-loop implementations ``EventLoopConfig.loop`` accepts.
LOOP_CHOICES = ("auto", "uvloop", "asyncio")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field_name = field_name


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


def _require_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(name, f"must be <= {maximum}, got {value}")


def _validate_ints(obj: object, bounds: dict[str, tuple[int, int | None]]) -> None:
    for name, (lo, hi) in bounds.items():
        _require_int(name, getattr(obj, name), lo, hi)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """HTTPS settings; see :mod:`zzz.tls` for how the context is built."""

    cert_file: str = field(metadata=_help("PEM certificate chain file", cli="tls-cert"))
    key_file: str = field(metadata=_help("PEM private key file", cli="tls-key"))
    ca_file: str | None = field(
        default=None, metadata=_help("PEM CA bundle used to verify client certificates", cli="tls-ca")
    )
    require_client_cert: bool = field(
        default=False,
        metadata=_help("require a client certificate signed by ca_file (mutual TLS)",
                       cli="tls-require-client-cert"),
    )
    min_version: str = field(
        default="TLSv1.2", metadata=_help("lowest TLS version offered", cli="tls-min-version")
    )
    ciphers: str | None = field(
        default=None, metadata=_help("OpenSSL cipher string for TLS <= 1.2", cli="tls-ciphers")
    )
    key_password: str | None = field(
        default=None, metadata=_help("password of an encrypted key_file", cli="tls-key-password")
    )

    def __post_init__(self) -> None:
        for name in ("cert_file", "key_file"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"tls.{name}", "must be a non-empty path")
        if self.min_version not in TLS_VERSIONS:
            raise ConfigError("tls.min_version", f"must be one of {', '.join(TLS_VERSIONS)}")
        if self.require_client_cert and not self.ca_file:
            raise ConfigError("tls.require_client_cert", "needs tls.ca_file to verify clients")


@dataclass(frozen=True, slots=True)
class NativeConfig:
    """Settings only the native (thread pool) backend reads."""

    pool_size: int = field(
        default=0, metadata=_help("worker threads; 0 uses Config.worker_threads")
    )
    queue_capacity: int = field(
        default=0, metadata=_help("connection queue capacity; 0 uses Config.max_connections")
    )

    def __post_init__(self) -> None:
        _require_int("native.pool_size", self.pool_size, 0, 4096)
        _require_int("native.queue_capacity", self.queue_capacity, 0)


@dataclass(frozen=True, slots=True)
class EventLoopConfig:
    """Settings only the event-loop backend reads."""

    loop: str = field(
        default="auto", metadata=_help("event loop: auto (uvloop if installed), uvloop or asyncio")
    )
    event_loop_count: int = field(
        default=1, metadata=_help("event loops, each on its own thread, sharing the listener")
    )
    blocking_threads: int = field(
        default=8, metadata=_help("threads behind ctx.run_blocking(); bounds blocking work")
    )
    max_pipelined: int = field(
        default=16,
        metadata=_help("requests queued on one connection before reading from it pauses"),
    )
    write_buffer_high: int = field(
        default=64 * KIB,
        metadata=_help("transport write buffer size at which writing pauses (flow control)"),
    )

    def __post_init__(self) -> None:
        if self.loop not in LOOP_CHOICES:
            raise ConfigError("eventloop.loop", f"must be one of {', '.join(LOOP_CHOICES)}")
        _require_int("eventloop.event_loop_count", self.event_loop_count, 1, 256)
        _require_int("eventloop.blocking_threads", self.blocking_threads, 1, 4096)
        _require_int("eventloop.max_pipelined", self.max_pipelined, 1, 10_000)
        _require_int("eventloop.write_buffer_high", self.write_buffer_high, 1 * KIB)


@dataclass(frozen=True, slots=True)
class Config:
    """Server settings. Defaults are those of the original zzz."""

    host: str = field(default="127.0.0.1", metadata=_help("address to bind"))
    port: int = field(default=8888, metadata=_help("TCP port to bind; 0 picks a free one"))
    max_body_size: int = field(
        default=1 * MIB, metadata=_help("largest request body in bytes (413 beyond)")
    )
    max_header_size: int = field(
        default=16 * KIB,
        metadata=_help("largest request head in bytes (431 beyond; 414 for the request line)"),
    )
    read_timeout_ms: int = field(
        default=30_000,
        metadata=_help("deadline to receive a whole request once its first byte arrived (408)"),
    )
    write_timeout_ms: int = field(
        default=30_000, metadata=_help("a client that stops reading for this long is dropped")
    )
    keepalive_timeout_ms: int = field(
        default=65_000, metadata=_help("idle time between requests before a quiet close")
    )
    worker_threads: int = field(
        default=4, metadata=_help("native backend worker threads (0 means one)")
    )
    max_connections: int = field(
        default=1024, metadata=_help("native backend connection queue capacity")
    )
    max_requests_per_connection: int = field(
        default=100,
        metadata=_help("requests served on one connection; the last carries Connection: close"),
    )
    kernel_backlog: int = field(default=128, metadata=_help("listen() backlog"))
    drain_timeout_ms: int = field(
        default=10_000, metadata=_help("graceful shutdown: wait this long for in-flight work")
    )
    ws_max_message_size: int = field(
        default=1 * MIB, metadata=_help("largest WebSocket message in bytes (close 1009 beyond)")
    )
    ws_ping_interval_ms: int = field(
        default=30_000,
        metadata=_help("WebSocket heartbeat ping interval, both backends (0 disables)"),
    )
    ws_ping_timeout_ms: int = field(
        default=20_000, metadata=_help("close a WebSocket whose pong is this late")
    )
    ws_write_buffer_high: int = field(
        default=4 * MIB,
        metadata=_help("close a WebSocket whose unsent data exceeds this many bytes"),
    )
    fd: int | None = field(
        default=None,
        metadata=_help("serve an inherited, already listening socket with this file descriptor "
                       "instead of binding host/port (systemd's LISTEN_FDS sets it by itself)"),
    )
    uds: str | None = field(
        default=None,
        metadata=_help("listen on this Unix domain socket path instead of host/port "
                       "(a stale socket file there is replaced)"),
    )
    uds_mode: str = field(
        default="660",
        metadata=_help("octal permissions of the --uds socket file (660: owner and group, "
                       "e.g. nginx's group, may connect)"),
    )
    max_requests: int = field(
        default=0,
        metadata=_help("a worker that served this many requests drains and is replaced "
                       "(memory-leak insurance; 0 disables)"),
    )
    max_requests_jitter: int = field(
        default=0,
        metadata=_help("add 0..J at random to max_requests per worker, so workers do not "
                       "all restart at once"),
    )
    proxy_headers: bool = field(
        default=False,
        metadata=_help("trust Forwarded / X-Forwarded-For/Proto/Host from forwarded_allow_ips "
                       "peers for the client address and scheme"),
    )
    forwarded_allow_ips: str = field(
        default="127.0.0.1,unix",
        metadata=_help("comma-separated IPs/CIDRs whose proxy headers are trusted; 'unix' "
                       "means the Unix socket, '*' everyone"),
    )
    proxy_protocol: bool = field(
        default=False,
        metadata=_help("expect a PROXY protocol v1/v2 header (HAProxy, AWS NLB) before each "
                       "connection's first request; the client address comes from it"),
    )
    tls: TlsConfig | None = field(default=None, metadata=_help("HTTPS settings", nested=True))
    native: NativeConfig = field(
        default_factory=NativeConfig, metadata=_help("native backend settings", nested=True)
    )
    eventloop: EventLoopConfig = field(
        default_factory=EventLoopConfig, metadata=_help("event-loop backend settings", nested=True)
    )

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("host", "must be a non-empty host name or address")
        if self.host not in ("localhost",) and ":" in self.host:
            try:
                ipaddress.ip_address(self.host)
            except ValueError as exc:
                raise ConfigError("host", f"not a valid address: {self.host!r}") from exc
        _validate_ints(
            self,
            {
                "port": (0, MAX_PORT),
                "max_body_size": (0, None),
                "max_header_size": (256, 1 * MIB * 64),
                "read_timeout_ms": (1, None),
                "write_timeout_ms": (1, None),
                "keepalive_timeout_ms": (1, None),
                "worker_threads": (0, 4096),
                "max_connections": (1, None),
                "max_requests_per_connection": (1, None),
                "kernel_backlog": (1, 65535),
                "drain_timeout_ms": (0, None),
                "ws_max_message_size": (1, None),
                "ws_ping_interval_ms": (0, None),
                "ws_ping_timeout_ms": (1, None),
                "ws_write_buffer_high": (1 * KIB, None),
                "max_requests": (0, None),
                "max_requests_jitter": (0, None),
            },
        )
        self._validate_listener()
        self._validate_proxy()
        if self.tls is not None and not isinstance(self.tls, TlsConfig):
            raise ConfigError("tls", "must be a zzz.TlsConfig or None")
        if not isinstance(self.native, NativeConfig):
            raise ConfigError("native", "must be a zzz.NativeConfig")
        if not isinstance(self.eventloop, EventLoopConfig):
            raise ConfigError("eventloop", "must be a zzz.EventLoopConfig")

    def _validate_listener(self) -> None:
        if self.fd is not None:
            _require_int("fd", self.fd, 0, MAX_FD)
            if self.uds is not None:
                raise ConfigError("fd", "give either fd or uds, not both")
        if self.uds is not None and (not isinstance(self.uds, str) or not self.uds):
            raise ConfigError("uds", "must be a non-empty socket path")
        try:
            mode = int(self.uds_mode, 8)
        except (TypeError, ValueError):
            raise ConfigError("uds_mode", f"must be octal permissions such as 660, "
                                          f"got {self.uds_mode!r}") from None
        if not 0 <= mode <= 0o777:
            raise ConfigError("uds_mode", f"must be between 000 and 777, got {self.uds_mode!r}")

    def _validate_proxy(self) -> None:
        from zzz.proxy import parse_trusted

        try:
            parse_trusted(self.forwarded_allow_ips)
        except ValueError as exc:
            raise ConfigError("forwarded_allow_ips", str(exc)) from None
        if self.proxy_protocol and self.tls is not None:
            raise ConfigError("proxy_protocol", "is not supported together with tls yet "
                                                "(the PROXY header precedes the TLS handshake)")

    @property
    def uds_permissions(self) -> int:
        """``uds_mode`` as a number for ``os.chmod``."""
        return int(self.uds_mode, 8)

    # Derived values the backends share -------------------------------------------------

    @property
    def native_workers(self) -> int:
        """Worker thread count of the native backend (``worker_threads=0`` means one)."""
        return self.native.pool_size or max(1, self.worker_threads)

    @property
    def native_queue_capacity(self) -> int:
        """Connection queue capacity of the native backend."""
        return self.native.queue_capacity or self.max_connections

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)
