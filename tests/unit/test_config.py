"""Config dataclasses: defaults of the original zzz, every validation, derived values."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from zzz.config import (
    KIB,
    LOOP_CHOICES,
    MAX_DEFER_ACCEPT_S,
    MAX_FASTOPEN_QUEUE,
    MAX_MALLOC_MMAP_THRESHOLD,
    MAX_PORT,
    MAX_READ_SIZE,
    MAX_SOCKET_BUFFER,
    MIB,
    MIN_READ_SIZE,
    TLS_VERSIONS,
    Config,
    ConfigError,
    EventLoopConfig,
    NativeConfig,
    TlsConfig,
)


def _raises(field_name: str, factory: Any, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        factory(**kwargs)
    assert info.value.field_name == field_name
    assert str(info.value).startswith(f"{field_name}: ")
    return info.value


#: Fields that must be 0 together (setting one fixes glibc's other threshold too).
_PAIRED = {"malloc_mmap_threshold": "malloc_trim_threshold",
           "malloc_trim_threshold": "malloc_mmap_threshold"}


def _kw(name: str, value: object) -> dict[str, Any]:
    if name in _PAIRED and value == 0:
        return {name: 0, _PAIRED[name]: 0}
    return {name: value}


# --------------------------------------------------------------------------- defaults


def test_defaults_are_those_of_the_original_zzz() -> None:
    config = Config()
    assert config.host == "127.0.0.1"
    assert config.port == 8888
    assert config.max_body_size == 1 * MIB == 1_048_576
    assert config.max_header_size == 16 * KIB == 16_384
    assert config.read_timeout_ms == 30_000
    assert config.write_timeout_ms == 30_000
    assert config.keepalive_timeout_ms == 65_000
    assert config.worker_threads == 4
    assert config.max_connections == 1024
    assert config.max_requests_per_connection == 100
    assert config.kernel_backlog == 128
    assert config.tls is None
    assert config.drain_timeout_ms == 10_000
    assert config.native == NativeConfig()
    assert config.eventloop == EventLoopConfig()


def test_backend_defaults() -> None:
    assert NativeConfig() == NativeConfig(pool_size=0, queue_capacity=0)
    loop = EventLoopConfig()
    assert loop.loop == "auto"
    assert loop.event_loop_count == 1
    assert loop.blocking_threads >= 1
    assert loop.max_pipelined >= 1
    assert loop.write_buffer_high >= 1 * KIB


def test_tls_defaults() -> None:
    tls = TlsConfig(cert_file="c.pem", key_file="k.pem")
    assert tls.ca_file is None
    assert tls.require_client_cert is False
    assert tls.min_version == "TLSv1.2"
    assert tls.ciphers is None
    assert tls.key_password is None


def test_every_field_has_help_text() -> None:
    for cls in (Config, TlsConfig, NativeConfig, EventLoopConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"


def test_configs_are_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]


def test_replace_validates_again() -> None:
    config = Config().replace(port=0)
    assert config.port == 0
    _raises("port", Config().replace, port=-1)


# --------------------------------------------------------------------------- derived values


@pytest.mark.parametrize(
    ("worker_threads", "pool_size", "expected"),
    [(4, 0, 4), (0, 0, 1), (1, 0, 1), (16, 0, 16), (4, 7, 7), (0, 3, 3)],
)
def test_native_workers(worker_threads: int, pool_size: int, expected: int) -> None:
    config = Config(worker_threads=worker_threads, native=NativeConfig(pool_size=pool_size))
    assert config.native_workers == expected


@pytest.mark.parametrize(
    ("max_connections", "queue_capacity", "expected"),
    [(1024, 0, 1024), (1, 0, 1), (10, 5, 5), (10, 50, 50)],
)
def test_native_queue_capacity(max_connections: int, queue_capacity: int, expected: int) -> None:
    config = Config(
        max_connections=max_connections, native=NativeConfig(queue_capacity=queue_capacity)
    )
    assert config.native_queue_capacity == expected


# --------------------------------------------------------------------------- Config validation

#: field → (lowest accepted, highest accepted or None when unbounded)
CONFIG_INT_BOUNDS: dict[str, tuple[int, int | None]] = {
    "port": (0, MAX_PORT),
    "max_body_size": (0, None),
    "max_stream_body_size": (0, None),
    "max_header_size": (256, 64 * MIB),
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
}


@pytest.mark.parametrize("name", sorted(_PAIRED))
def test_malloc_thresholds_are_set_together(name: str) -> None:
    error = _raises(name, Config, **{name: 0})
    assert "only together" in str(error)
    config = Config(**{name: 0, _PAIRED[name]: 0})
    assert (config.malloc_mmap_threshold, config.malloc_trim_threshold) == (0, 0)


def test_bounds_table_covers_every_int_field() -> None:
    ints = {f.name for f in dataclasses.fields(Config) if f.type == "int"}
    assert ints == set(CONFIG_INT_BOUNDS)


@pytest.mark.parametrize("name", sorted(CONFIG_INT_BOUNDS))
def test_config_int_bounds(name: str) -> None:
    lo, hi = CONFIG_INT_BOUNDS[name]
    assert getattr(Config(**_kw(name, lo)), name) == lo
    error = _raises(name, Config, **{name: lo - 1})
    assert f">= {lo}" in str(error)
    if hi is None:
        assert getattr(Config(**_kw(name, lo + 10**9)), name) == lo + 10**9
    else:
        assert getattr(Config(**_kw(name, hi)), name) == hi
        error = _raises(name, Config, **{name: hi + 1})
        assert f"<= {hi}" in str(error)


def test_port_message_names_field_and_value() -> None:
    error = _raises("port", Config, port=70000)
    assert str(error) == "port: must be <= 65535, got 70000"


@pytest.mark.parametrize("name", sorted(CONFIG_INT_BOUNDS))
@pytest.mark.parametrize("bad", ["8080", 1.0, True, None])
def test_config_ints_reject_non_integers(name: str, bad: object) -> None:
    error = _raises(name, Config, **{name: bad})
    assert "must be an integer" in str(error)


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "::1", "localhost", "example.com"])
def test_valid_hosts(host: str) -> None:
    assert Config(host=host).host == host


@pytest.mark.parametrize("host", ["", None, 127, "::zz", "1:2:3", "[::1]"])
def test_invalid_hosts(host: object) -> None:
    _raises("host", Config, host=host)


def test_tls_must_be_a_tls_config() -> None:
    _raises("tls", Config, tls={"cert_file": "c", "key_file": "k"})
    tls = TlsConfig(cert_file="c.pem", key_file="k.pem")
    assert Config(tls=tls).tls is tls


def test_native_must_be_a_native_config() -> None:
    _raises("native", Config, native={"pool_size": 1})
    _raises("native", Config, native=None)


def test_eventloop_must_be_an_eventloop_config() -> None:
    _raises("eventloop", Config, eventloop={"loop": "asyncio"})
    _raises("eventloop", Config, eventloop=None)


# --------------------------------------------------------------------------- backend settings


@pytest.mark.parametrize(
    ("name", "lo", "hi"), [("pool_size", 0, 4096), ("queue_capacity", 0, None)]
)
def test_native_bounds(name: str, lo: int, hi: int | None) -> None:
    assert getattr(NativeConfig(**{name: lo}), name) == lo
    _raises(f"native.{name}", NativeConfig, **{name: lo - 1})
    _raises(f"native.{name}", NativeConfig, **{name: "1"})
    _raises(f"native.{name}", NativeConfig, **{name: False})
    if hi is not None:
        assert getattr(NativeConfig(**{name: hi}), name) == hi
        _raises(f"native.{name}", NativeConfig, **{name: hi + 1})


@pytest.mark.parametrize(
    ("name", "lo", "hi"),
    [
        ("event_loop_count", 1, 256),
        ("blocking_threads", 1, 4096),
        ("max_pipelined", 1, 10_000),
        ("write_buffer_high", 1 * KIB, None),
        ("write_buffer_low", 0, 64 * KIB - 1),
    ],
)
def test_eventloop_bounds(name: str, lo: int, hi: int | None) -> None:
    assert getattr(EventLoopConfig(**_kw(name, lo)), name) == lo
    _raises(f"eventloop.{name}", EventLoopConfig, **{name: lo - 1})
    _raises(f"eventloop.{name}", EventLoopConfig, **{name: "2"})
    _raises(f"eventloop.{name}", EventLoopConfig, **{name: True})
    if hi is not None:
        assert getattr(EventLoopConfig(**_kw(name, hi)), name) == hi
        _raises(f"eventloop.{name}", EventLoopConfig, **{name: hi + 1})


@pytest.mark.parametrize("loop", LOOP_CHOICES)
def test_eventloop_loop_choices(loop: str) -> None:
    assert EventLoopConfig(loop=loop).loop == loop


@pytest.mark.parametrize("loop", ["", "trio", "UVLOOP", None])
def test_eventloop_loop_rejects_others(loop: object) -> None:
    error = _raises("eventloop.loop", EventLoopConfig, loop=loop)
    assert "asyncio" in str(error)


# --------------------------------------------------------------------------- TLS settings


@pytest.mark.parametrize("name", ["cert_file", "key_file"])
@pytest.mark.parametrize("bad", ["", None, 1])
def test_tls_paths_must_be_non_empty(name: str, bad: object) -> None:
    kwargs: dict[str, object] = {"cert_file": "c.pem", "key_file": "k.pem", name: bad}
    _raises(f"tls.{name}", TlsConfig, **kwargs)


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_tls_min_version_choices(version: str) -> None:
    assert TlsConfig(cert_file="c", key_file="k", min_version=version).min_version == version


@pytest.mark.parametrize("version", ["TLSv1.1", "TLSv1", "tlsv1.2", "SSLv3", ""])
def test_tls_min_version_rejects_others(version: str) -> None:
    _raises("tls.min_version", TlsConfig, cert_file="c", key_file="k", min_version=version)


def test_tls_client_cert_requires_ca() -> None:
    _raises(
        "tls.require_client_cert", TlsConfig, cert_file="c", key_file="k", require_client_cert=True
    )
    tls = TlsConfig(cert_file="c", key_file="k", require_client_cert=True, ca_file="ca.pem")
    assert tls.require_client_cert is True


def test_config_error_is_a_value_error() -> None:
    error = ConfigError("port", "bad")
    assert isinstance(error, ValueError)
    assert str(error) == "port: bad"
    assert error.field_name == "port"


# --------------------------------------------------------------------------- socket tuning


def test_socket_tuning_defaults_leave_the_kernel_in_charge() -> None:
    config = Config()
    assert (config.so_rcvbuf, config.so_sndbuf, config.read_size) == (0, 0, 0)
    assert config.tcp_nodelay is True
    assert (config.tcp_defer_accept_s, config.tcp_fastopen, config.reuse_port) == (0, 0, False)
    assert config.eventloop.write_buffer_low == 0


@pytest.mark.parametrize("size", [1, MIN_READ_SIZE - 1])
def test_read_size_is_zero_or_at_least_the_minimum(size: int) -> None:
    error = _raises("read_size", Config, read_size=size)
    assert f">= {MIN_READ_SIZE}" in str(error)
    assert Config(read_size=MIN_READ_SIZE).read_size == MIN_READ_SIZE


@pytest.mark.parametrize("name", ["tcp_nodelay", "reuse_port"])
@pytest.mark.parametrize("bad", [1, "yes", None])
def test_socket_switches_must_be_booleans(name: str, bad: object) -> None:
    _raises(name, Config, **{name: bad})


@pytest.mark.parametrize(("high", "low"), [(64 * KIB, 64 * KIB), (16 * KIB, 32 * KIB)])
def test_write_buffer_low_must_be_below_high(high: int, low: int) -> None:
    error = _raises("eventloop.write_buffer_low", EventLoopConfig,
                    write_buffer_high=high, write_buffer_low=low)
    assert f"below write_buffer_high ({high})" in str(error)
    assert EventLoopConfig(write_buffer_high=high, write_buffer_low=high - 1).write_buffer_low \
        == high - 1
