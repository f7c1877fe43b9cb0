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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zzz.http.connection import Limits

KIB = 1024
MIB = 1024 * KIB

#: Highest TCP port number.
MAX_PORT = 65535
#: TLS versions ``TlsConfig.min_version`` accepts.
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
#: Mozilla server-side TLS profiles zzz's default context follows (see zzz.tls).
TLS_PROFILES = ("intermediate", "modern")
#: Largest file-descriptor number ``Config.fd`` accepts (a sanity bound, not a kernel limit).
MAX_FD = 1 << 20
#: Event-loop implementations ``EventLoopConfig.loop`` accepts.
LOOP_CHOICES = ("auto", "uvloop", "asyncio")
#: Where the event-loop backend runs plain (``def``) handlers.
SYNC_HANDLER_CHOICES = ("inline", "threadpool")
#: Application interfaces (see :mod:`zzz.interfaces`).
INTERFACE_CHOICES = ("auto", "zzz", "asgi", "wsgi")
#: ASGI lifespan modes.
LIFESPAN_CHOICES = ("auto", "on", "off")
#: Log line formats ``ObservabilityConfig.log_format`` accepts.
LOG_FORMATS = ("text", "json")
#: Longest ``drain_delay_ms``: a load balancer notices a failing readiness probe within
#: a few probe periods; a delay of minutes would only hold a shutdown hostage.
MAX_DRAIN_DELAY_MS = 600_000
#: Largest ``so_rcvbuf``/``so_sndbuf``: Linux caps the request at net.core.rmem_max /
#: wmem_max anyway (4 MiB here); a figure beyond 256 MiB is a typo, not a tuning.
MAX_SOCKET_BUFFER = 256 * 1024 * 1024
#: Smallest non-zero ``read_size``: below one page every read is a syscall for a
#: fragment of a request head.
MIN_READ_SIZE = 1024
#: Largest ``read_size``: each read allocates this much before it is trimmed.
MAX_READ_SIZE = 16 * 1024 * 1024
#: Longest ``tcp_defer_accept_s``: a silent client holds a kernel request slot this
#: long; Linux rounds it to SYN-ACK retransmissions (2^n - 1 s) and stops near 2 min.
MAX_DEFER_ACCEPT_S = 600
#: Default ``malloc_mmap_threshold``: above the default 1 MiB body limit, so a whole
#: buffered body and the reads it arrives in come from the heap (bench/README.md,
#: "Streamed download and upload throughput": 1,833 -> 390 µs per 1 MiB upload).
DEFAULT_MALLOC_MMAP_THRESHOLD = 4 * 1024 * 1024
#: Default ``malloc_trim_threshold``: twice the mmap threshold, glibc's own ratio;
#: the most freed heap the process keeps instead of returning it to the kernel.
DEFAULT_MALLOC_TRIM_THRESHOLD = 8 * 1024 * 1024
#: Largest ``malloc_mmap_threshold`` glibc accepts on 64-bit (HEAP_MAX_SIZE / 2).
MAX_MALLOC_MMAP_THRESHOLD = 32 * 1024 * 1024
#: Largest ``tcp_fastopen`` queue (pending TFO handshakes), the listen() backlog's bound.
MAX_FASTOPEN_QUEUE = 65535


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
    profile: str = field(
        default="intermediate",
        metadata=_help("Mozilla TLS profile: intermediate (TLS 1.2+) or modern (TLS 1.3 only)",
                       cli="tls-profile"),
    )
    ciphers: str | None = field(
        default=None,
        metadata=_help("OpenSSL cipher string for TLS <= 1.2 (overrides the profile's)",
                       cli="tls-ciphers"),
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
        if self.profile not in TLS_PROFILES:
            raise ConfigError("tls.profile", f"must be one of {', '.join(TLS_PROFILES)}")
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
    write_buffer_low: int = field(
        default=0,
        metadata=_help("transport write buffer size at which paused writing resumes; "
                       "0 = the loop's default, a quarter of write_buffer_high"),
    )

    def __post_init__(self) -> None:
        if self.loop not in LOOP_CHOICES:
            raise ConfigError("eventloop.loop", f"must be one of {', '.join(LOOP_CHOICES)}")
        _require_int("eventloop.event_loop_count", self.event_loop_count, 1, 256)
        _require_int("eventloop.blocking_threads", self.blocking_threads, 1, 4096)
        _require_int("eventloop.max_pipelined", self.max_pipelined, 1, 10_000)
        _require_int("eventloop.write_buffer_high", self.write_buffer_high, 1 * KIB)
        _require_int("eventloop.write_buffer_low", self.write_buffer_low, 0)
        if self.write_buffer_low >= self.write_buffer_high:
            raise ConfigError("eventloop.write_buffer_low",
                              f"must be below write_buffer_high ({self.write_buffer_high}), "
                              f"got {self.write_buffer_low}")


def _check_http_path(name: str, value: str | None) -> None:
    if value is not None and (not value.startswith("/") or "?" in value or " " in value):
        raise ConfigError(name, f"must be an absolute path such as /healthz, got {value!r}")


@dataclass(frozen=True, slots=True)
class ObservabilityConfig:
    """Access log, log format, Prometheus metrics, health/readiness (see zzz.observability)."""

    access_log: bool = field(
        default=False,
        metadata=_help("one log line per request (logger zzz.access)", cli="access-log"),
    )
    log_format: str = field(
        default="text", metadata=_help("log lines as text or json", cli="log-format")
    )
    log_config: str | None = field(
        default=None,
        metadata=_help("logging.dictConfig file (.json, or .yaml with PyYAML) replacing "
                       "zzz's logging setup", cli="log-config"),
    )
    metrics_port: int | None = field(
        default=None,
        metadata=_help("serve /metrics, health and readiness on this port (own thread)",
                       cli="metrics-port"),
    )
    metrics_path: str | None = field(
        default=None,
        metadata=_help("serve Prometheus metrics on this path of the app port", cli="metrics-path"),
    )
    health_path: str | None = field(
        default=None,
        metadata=_help("liveness path answered before routing: 200 while the process serves",
                       cli="health-path"),
    )
    ready_path: str | None = field(
        default=None,
        metadata=_help("readiness path answered before routing: 503 once a drain starts",
                       cli="ready-path"),
    )
    drain_delay_ms: int = field(
        default=0,
        metadata=_help("on shutdown, keep accepting this long with readiness already 503",
                       cli="drain-delay-ms"),
    )

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ConfigError("observability.log_format",
                              f"must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if self.metrics_port is not None:
            _require_int("observability.metrics_port", self.metrics_port, 0, MAX_PORT)
        _require_int("observability.drain_delay_ms", self.drain_delay_ms, 0, MAX_DRAIN_DELAY_MS)
        for name in ("metrics_path", "health_path", "ready_path"):
            _check_http_path(f"observability.{name}", getattr(self, name))
        paths = [p for p in (self.metrics_path, self.health_path, self.ready_path) if p]
        if len(paths) != len(set(paths)):
            raise ConfigError("observability.ready_path",
                              "metrics, health and ready paths must differ")
        if self.metrics_port is not None or self.metrics_path is not None:
            import importlib.util

            if importlib.util.find_spec("prometheus_client") is None:
                which = "metrics_port" if self.metrics_port is not None else "metrics_path"
                raise ConfigError(f"observability.{which}",
                                  "needs prometheus_client: pip install 'zzz[metrics]'")

    @property
    def metrics_enabled(self) -> bool:
        return self.metrics_port is not None or self.metrics_path is not None


@dataclass(frozen=True, slots=True)
class Config:
    """Server settings. Defaults are those of the original zzz."""

    host: str = field(default="127.0.0.1", metadata=_help("address to bind"))
    port: int = field(default=8888, metadata=_help("TCP port to bind; 0 picks a free one"))
    max_body_size: int = field(
        default=1 * MIB, metadata=_help("largest request body in bytes (413 beyond)")
    )
    max_stream_body_size: int = field(
        default=0,
        metadata=_help("largest streamed request body in bytes (413 mid-stream beyond); "
                       "0 = unbounded (streaming keeps memory bounded whatever the size)"),
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
    interface: str = field(
        default="auto",
        metadata=_help("application interface: auto (detect), zzz (Router), asgi or wsgi"),
    )
    root_path: str = field(
        default="",
        metadata=_help("path prefix the app is mounted under behind a proxy "
                       "(ASGI root_path, WSGI SCRIPT_NAME)"),
    )
    lifespan: str = field(
        default="auto",
        metadata=_help("ASGI lifespan: auto (use it when the app supports it), on "
                       "(an app that refuses it fails start-up) or off"),
    )
    sync_handlers: str = field(
        default="inline",
        metadata=_help("event-loop backend: run plain handlers inline on the loop (fast) or "
                       "on the blocking pool (threadpool: safe for handlers that block)"),
    )
    loop_block_warn_ms: int = field(
        default=100,
        metadata=_help("event-loop backend: warn (naming the route) when one callback holds "
                       "the loop longer than this; 0 disables the watchdog"),
    )
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
        metadata=_help("WebSocket sends wait while more than this many bytes are unsent"),
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
    so_rcvbuf: int = field(
        default=0,
        metadata=_help("SO_RCVBUF of the listener, inherited by accepted connections; "
                       "0 = kernel default with receive autotuning"),
    )
    so_sndbuf: int = field(
        default=0,
        metadata=_help("SO_SNDBUF of the listener, inherited by accepted connections; "
                       "0 = kernel default with send autotuning"),
    )
    read_size: int = field(
        default=0,
        metadata=_help("bytes asked of the kernel per read; 0 = backend default (native "
                       "64 KiB; event loop: the loop's own 256 KiB buffer)"),
    )
    malloc_mmap_threshold: int = field(
        default=DEFAULT_MALLOC_MMAP_THRESHOLD,
        metadata=_help("glibc, set when the event loop starts: blocks at least this large "
                       "are mmap()ed, smaller ones come from the heap, so large bodies do not "
                       "page-fault per request; 0 (with malloc_trim_threshold 0) = glibc's "
                       "dynamic default"),
    )
    malloc_trim_threshold: int = field(
        default=DEFAULT_MALLOC_TRIM_THRESHOLD,
        metadata=_help("glibc: free heap above this is returned to the kernel; the memory "
                       "a burst of large bodies leaves with the process; 0 (with "
                       "malloc_mmap_threshold 0) = glibc's dynamic default"),
    )
    tcp_nodelay: bool = field(
        default=True,
        metadata=_help("TCP_NODELAY: send small responses at once instead of waiting "
                       "for an ACK (Nagle)"),
    )
    tcp_defer_accept_s: int = field(
        default=0,
        metadata=_help("Linux TCP_DEFER_ACCEPT: hand a connection to the server only once "
                       "its first bytes arrived, waiting up to this many seconds; 0 = off"),
    )
    tcp_fastopen: int = field(
        default=0,
        metadata=_help("TCP_FASTOPEN queue length: accept data in the SYN of returning "
                       "clients (needs net.ipv4.tcp_fastopen & 2 on Linux); 0 = off"),
    )
    reuse_port: bool = field(
        default=False,
        metadata=_help("SO_REUSEPORT: let several independent processes bind this port; "
                       "the kernel spreads new connections between them"),
    )
    tls: TlsConfig | None = field(default=None, metadata=_help("HTTPS settings", nested=True))
    native: NativeConfig = field(
        default_factory=NativeConfig, metadata=_help("native backend settings", nested=True)
    )
    eventloop: EventLoopConfig = field(
        default_factory=EventLoopConfig, metadata=_help("event-loop backend settings", nested=True)
    )
    observability: ObservabilityConfig = field(
        default_factory=ObservabilityConfig,
        metadata=_help("observability: access log, metrics, health and readiness", nested=True),
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
                "max_stream_body_size": (0, None),
                "max_header_size": (256, 1 * MIB * 64),
                "read_timeout_ms": (1, None),
                "write_timeout_ms": (1, None),
                "keepalive_timeout_ms": (1, None),
                "worker_threads": (0, 4096),
                "max_connections": (1, None),
                "max_requests_per_connection": (1, None),
                "kernel_backlog": (1, 65535),
                "loop_block_warn_ms": (0, None),
                "drain_timeout_ms": (0, None),
                "ws_max_message_size": (1, None),
                "ws_ping_interval_ms": (0, None),
                "ws_ping_timeout_ms": (1, None),
                "ws_write_buffer_high": (1 * KIB, None),
                "max_requests": (0, None),
                "max_requests_jitter": (0, None),
                "so_rcvbuf": (0, MAX_SOCKET_BUFFER),
                "so_sndbuf": (0, MAX_SOCKET_BUFFER),
                "read_size": (0, MAX_READ_SIZE),
                "tcp_defer_accept_s": (0, MAX_DEFER_ACCEPT_S),
                "tcp_fastopen": (0, MAX_FASTOPEN_QUEUE),
                "malloc_mmap_threshold": (0, MAX_MALLOC_MMAP_THRESHOLD),
                "malloc_trim_threshold": (0, None),
            },
        )
        if bool(self.malloc_mmap_threshold) != bool(self.malloc_trim_threshold):
            # Setting one switches glibc's dynamic adjustment of the other off too.
            raise ConfigError("malloc_trim_threshold" if self.malloc_mmap_threshold
                              else "malloc_mmap_threshold",
                              "0 only together with the other malloc threshold (setting "
                              "one fixes both in glibc)")
        if 0 < self.read_size < MIN_READ_SIZE:
            raise ConfigError("read_size", f"must be 0 (backend default) or >= {MIN_READ_SIZE}, "
                                           f"got {self.read_size}")
        for name in ("tcp_nodelay", "reuse_port"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"must be True or False, got {getattr(self, name)!r}")
        if self.interface not in INTERFACE_CHOICES:
            raise ConfigError(
                "interface", f"must be one of {', '.join(INTERFACE_CHOICES)}, "
                f"got {self.interface!r}")
        if self.lifespan not in LIFESPAN_CHOICES:
            raise ConfigError(
                "lifespan", f"must be one of {', '.join(LIFESPAN_CHOICES)}, got {self.lifespan!r}")
        if not isinstance(self.root_path, str) or (
                self.root_path and not self.root_path.startswith("/")):
            raise ConfigError("root_path", f"must be empty or start with '/', got {self.root_path!r}")
        if self.sync_handlers not in SYNC_HANDLER_CHOICES:
            raise ConfigError(
                "sync_handlers", f"must be one of {', '.join(SYNC_HANDLER_CHOICES)}, "
                f"got {self.sync_handlers!r}")
        self._validate_listener()
        self._validate_proxy()
        if self.tls is not None and not isinstance(self.tls, TlsConfig):
            raise ConfigError("tls", "must be a zzz.TlsConfig or None")
        if not isinstance(self.native, NativeConfig):
            raise ConfigError("native", "must be a zzz.NativeConfig")
        if not isinstance(self.eventloop, EventLoopConfig):
            raise ConfigError("eventloop", "must be a zzz.EventLoopConfig")
        if not isinstance(self.observability, ObservabilityConfig):
            raise ConfigError("observability", "must be a zzz.ObservabilityConfig")

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

    def engine_limits(self) -> Limits:
        """The limits the sans-I/O engine enforces, as the engine's own data type."""
        from zzz.http.connection import Limits

        return Limits(
            max_body_size=self.max_body_size,
            max_header_size=self.max_header_size,
            max_requests=self.max_requests_per_connection,
            max_stream_body_size=self.max_stream_body_size,
        )

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)
