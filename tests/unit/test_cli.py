"""The command line: flags derived from Config, env precedence, app loading, one-line errors.

Nothing here needs a real backend: serving is exercised with a fake backend
module registered for the test.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import subprocess
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zzz import backends, cli
from zzz.config import (
    Config,
    ConfigError,
    EventLoopConfig,
    NativeConfig,
    ObservabilityConfig,
    TlsConfig,
)

SUBPROCESS_TIMEOUT_S = 20
APP = "somemodule:app"

#: Every derived flag and the field it sets.
EXPECTED_FLAGS = {
    "host": "host",
    "port": "port",
    "max-body-size": "max_body_size",
    "max-stream-body-size": "max_stream_body_size",
    "max-header-size": "max_header_size",
    "read-timeout-ms": "read_timeout_ms",
    "write-timeout-ms": "write_timeout_ms",
    "keepalive-timeout-ms": "keepalive_timeout_ms",
    "worker-threads": "worker_threads",
    "max-connections": "max_connections",
    "max-requests-per-connection": "max_requests_per_connection",
    "kernel-backlog": "kernel_backlog",
    "sync-handlers": "sync_handlers",
    "interface": "interface",
    "root-path": "root_path",
    "lifespan": "lifespan",
    "loop-block-warn-ms": "loop_block_warn_ms",
    "drain-timeout-ms": "drain_timeout_ms",
    "ws-max-message-size": "ws_max_message_size",
    "ws-ping-interval-ms": "ws_ping_interval_ms",
    "ws-ping-timeout-ms": "ws_ping_timeout_ms",
    "ws-write-buffer-high": "ws_write_buffer_high",
    "fd": "fd",
    "uds": "uds",
    "uds-mode": "uds_mode",
    "max-requests": "max_requests",
    "max-requests-jitter": "max_requests_jitter",
    "proxy-headers": "proxy_headers",
    "forwarded-allow-ips": "forwarded_allow_ips",
    "proxy-protocol": "proxy_protocol",
    "so-rcvbuf": "so_rcvbuf",
    "so-sndbuf": "so_sndbuf",
    "read-size": "read_size",
    "malloc-mmap-threshold": "malloc_mmap_threshold",
    "malloc-trim-threshold": "malloc_trim_threshold",
    "tcp-nodelay": "tcp_nodelay",
    "tcp-defer-accept-s": "tcp_defer_accept_s",
    "tcp-fastopen": "tcp_fastopen",
    "reuse-port": "reuse_port",
    "tls-cert": "tls.cert_file",
    "tls-key": "tls.key_file",
    "tls-ca": "tls.ca_file",
    "tls-require-client-cert": "tls.require_client_cert",
    "tls-min-version": "tls.min_version",
    "tls-ciphers": "tls.ciphers",
    "tls-profile": "tls.profile",
    "tls-key-password": "tls.key_password",
    "native-pool-size": "native.pool_size",
    "native-queue-capacity": "native.queue_capacity",
    "eventloop-loop": "eventloop.loop",
    "eventloop-event-loop-count": "eventloop.event_loop_count",
    "eventloop-blocking-threads": "eventloop.blocking_threads",
    "eventloop-max-pipelined": "eventloop.max_pipelined",
    "eventloop-write-buffer-high": "eventloop.write_buffer_high",
    "eventloop-write-buffer-low": "eventloop.write_buffer_low",
    "access-log": "observability.access_log",
    "log-format": "observability.log_format",
    "log-config": "observability.log_config",
    "metrics-port": "observability.metrics_port",
    "metrics-path": "observability.metrics_path",
    "health-path": "observability.health_path",
    "ready-path": "observability.ready_path",
    "drain-delay-ms": "observability.drain_delay_ms",
}

#: A valid non-default value for each non-int option (ints use default + 1).
SAMPLES: dict[str, tuple[str, Any]] = {
    "host": ("0.0.0.0", "0.0.0.0"),
    "tls-cert": ("other-cert.pem", "other-cert.pem"),
    "tls-key": ("other-key.pem", "other-key.pem"),
    "tls-ca": ("ca.pem", "ca.pem"),
    "tls-require-client-cert": ("yes", True),
    "tls-min-version": ("TLSv1.3", "TLSv1.3"),
    "tls-ciphers": ("ECDHE+AESGCM", "ECDHE+AESGCM"),
    "tls-profile": ("modern", "modern"),
    "tls-key-password": ("s3cret pass", "s3cret pass"),
    "eventloop-loop": ("asyncio", "asyncio"),
    "sync-handlers": ("threadpool", "threadpool"),
    "interface": ("wsgi", "wsgi"),
    "root-path": ("/api", "/api"),
    "lifespan": ("off", "off"),
    "access-log": ("on", True),
    "log-format": ("json", "json"),
    "log-config": ("logging.json", "logging.json"),
    "metrics-port": ("9100", 9100),
    "metrics-path": ("/metrics", "/metrics"),
    "health-path": ("/livez", "/livez"),
    "ready-path": ("/readyz", "/readyz"),
    "fd": ("7", 7),
    "uds": ("/run/zzz.sock", "/run/zzz.sock"),
    "uds-mode": ("600", "600"),
    "proxy-headers": ("yes", True),
    "proxy-protocol": ("yes", True),
    "forwarded-allow-ips": ("10.0.0.0/8,unix", "10.0.0.0/8,unix"),
    "read-size": ("4096", 4096),
    "malloc-mmap-threshold": ("1048576", 1048576),
    "malloc-trim-threshold": ("2097152", 2097152),
    "tcp-nodelay": ("no", False),
    "reuse-port": ("yes", True),
}
#: TLS options need a certificate and key (and client certs a CA) to build a TlsConfig.
TLS_BASE = ["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-ca", "base-ca.pem"]
TLS_BASE_ENV = {"ZZZ_TLS_CERT": "c.pem", "ZZZ_TLS_KEY": "k.pem", "ZZZ_TLS_CA": "base-ca.pem"}


def build(*args: str, env: dict[str, str] | None = None) -> tuple[str, str, Config]:
    return cli.build_config(["run", APP, *args], env or {})


def build_error(*args: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(cli.CliError) as info:
        build(*args, env=env)
    message = str(info.value)
    assert "\n" not in message
    return message


def field_value(config: Config, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def option(flag: str) -> cli.ConfigOption:
    return next(o for o in cli.config_options() if o.flag == flag)


def sample(flag: str) -> tuple[str, Any]:
    if flag in SAMPLES:
        return SAMPLES[flag]
    opt = option(flag)
    assert opt.kind is int
    return str(opt.default + 1), opt.default + 1


def tls_base_for(flag: str) -> list[str]:
    return TLS_BASE if flag.startswith("tls-") else []


# --------------------------------------------------------------------------- derivation


def test_flags_are_derived_from_every_config_field() -> None:
    derived = {o.flag: o.name for o in cli.config_options()}
    assert derived == EXPECTED_FLAGS


def test_every_scalar_field_of_every_config_class_has_a_flag() -> None:
    names = {o.name for o in cli.config_options()}
    for cls, prefix in (
        (Config, ""),
        (TlsConfig, "tls."),
        (NativeConfig, "native."),
        (EventLoopConfig, "eventloop."),
        (ObservabilityConfig, "observability."),
    ):
        for f in dataclasses.fields(cls):
            if f.name not in ("tls", "native", "eventloop", "observability"):
                assert prefix + f.name in names


def test_env_names_are_derived_from_flags() -> None:
    envs = {o.flag: o.env for o in cli.config_options()}
    assert envs["max-body-size"] == "ZZZ_MAX_BODY_SIZE"
    assert envs["tls-cert"] == "ZZZ_TLS_CERT"
    assert envs["native-pool-size"] == "ZZZ_NATIVE_POOL_SIZE"
    assert envs["eventloop-event-loop-count"] == "ZZZ_EVENTLOOP_EVENT_LOOP_COUNT"
    assert all(env == "ZZZ_" + flag.upper().replace("-", "_") for flag, env in envs.items())


def test_help_text_comes_from_field_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--help"], {}) == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's wrapping
    for opt in cli.config_options():
        assert f"{opt.help} [env {opt.env}; default: " in text, opt.flag


@dataclasses.dataclass(frozen=True)
class _Inner:
    port: int = dataclasses.field(default=1, metadata={"help": "x", "cli": "port"})


@dataclasses.dataclass(frozen=True)
class _Outer:
    """A config whose nested field derives a flag that clashes with a top-level one."""

    port: int = dataclasses.field(default=1, metadata={"help": "x"})
    inner: _Inner = dataclasses.field(default_factory=_Inner, metadata={"help": "inner"})


@dataclasses.dataclass(frozen=True)
class _Odd:
    ratio: float = 1.0


def test_clashing_flags_are_rejected_at_derivation() -> None:
    with pytest.raises(TypeError, match="--port"):
        cli.derive_groups(_Outer)


def test_unsupported_field_types_are_rejected_at_derivation() -> None:
    with pytest.raises(TypeError, match="ratio"):
        cli.derive_groups(_Odd)


# --------------------------------------------------------------------------- argv → Config


def test_defaults() -> None:
    assert build() == (APP, "native", Config())


@pytest.mark.parametrize("flag", sorted(EXPECTED_FLAGS))
def test_each_flag_sets_its_field(flag: str) -> None:
    text, expected = sample(flag)
    args = [*tls_base_for(flag), f"--{flag}", text]
    if option(flag).kind is bool:
        args = [*tls_base_for(flag), f"--{flag}" if expected else f"--no-{flag}"]
    _, _, config = build(*args)
    assert field_value(config, EXPECTED_FLAGS[flag]) == expected


@pytest.mark.parametrize("flag", sorted(EXPECTED_FLAGS))
def test_each_env_var_sets_its_field(flag: str) -> None:
    text, expected = sample(flag)
    base = TLS_BASE_ENV if flag.startswith("tls-") else {}
    _, _, config = build(env={**base, option(flag).env: text})
    assert field_value(config, EXPECTED_FLAGS[flag]) == expected


def test_flag_beats_env_beats_default() -> None:
    assert build()[2].port == 8888
    assert build(env={"ZZZ_PORT": "9000"})[2].port == 9000
    assert build("--port", "9001", env={"ZZZ_PORT": "9000"})[2].port == 9001
    _, _, config = build("--native-pool-size", "3", env={"ZZZ_NATIVE_POOL_SIZE": "9"})
    assert config.native.pool_size == 3
    assert config.native_workers == 3


def test_env_only_fills_what_flags_leave_out() -> None:
    _, _, config = build(
        "--port", "1", env={"ZZZ_PORT": "2", "ZZZ_MAX_BODY_SIZE": "10", "ZZZ_HOST": "::1"}
    )
    assert (config.port, config.max_body_size, config.host) == (1, 10, "::1")


def test_empty_env_var_counts_as_unset() -> None:
    assert build(env={"ZZZ_PORT": "", "ZZZ_BACKEND": " "}) == (APP, "native", Config())


def test_unrelated_env_vars_are_ignored() -> None:
    assert build(env={"ZZZ_NOT_A_SETTING": "x", "PORT": "1"})[2] == Config()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("true", True), ("YES", True), ("on", True),
     ("0", False), ("false", False), ("No", False), ("off", False)],
)
def test_bool_env_values(text: str, expected: bool) -> None:
    _, _, config = build(*TLS_BASE, env={"ZZZ_TLS_REQUIRE_CLIENT_CERT": text})
    assert config.tls is not None
    assert config.tls.require_client_cert is expected


def test_bool_flag_overrides_env_both_ways() -> None:
    env = {"ZZZ_TLS_REQUIRE_CLIENT_CERT": "true"}
    tls = build(*TLS_BASE, "--no-tls-require-client-cert", env=env)[2].tls
    assert tls is not None and tls.require_client_cert is False
    env = {"ZZZ_TLS_REQUIRE_CLIENT_CERT": "0"}
    tls = build(*TLS_BASE, "--tls-require-client-cert", env=env)[2].tls
    assert tls is not None and tls.require_client_cert is True


def test_bad_bool_env_value() -> None:
    message = build_error(*TLS_BASE, env={"ZZZ_TLS_REQUIRE_CLIENT_CERT": "maybe"})
    assert message.startswith("tls.require_client_cert: must be a boolean")
    assert "ZZZ_TLS_REQUIRE_CLIENT_CERT" in message


def test_empty_optional_string_flag_means_none() -> None:
    _, _, config = build("--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-ca", "")
    assert config.tls == TlsConfig(cert_file="c.pem", key_file="k.pem", ca_file=None)


def test_worker_threads_zero_means_one_native_worker() -> None:
    assert build("--worker-threads", "0")[2].native_workers == 1


# --------------------------------------------------------------------------- TLS


def test_no_tls_without_cert_and_key() -> None:
    assert build()[2].tls is None


def test_tls_from_flags() -> None:
    _, _, config = build("--tls-cert", "c.pem", "--tls-key", "k.pem")
    assert config.tls == TlsConfig(cert_file="c.pem", key_file="k.pem")


def test_tls_from_env() -> None:
    env = {"ZZZ_TLS_CERT": "c.pem", "ZZZ_TLS_KEY": "k.pem", "ZZZ_TLS_MIN_VERSION": "TLSv1.3"}
    _, _, config = build(env=env)
    assert config.tls == TlsConfig(cert_file="c.pem", key_file="k.pem", min_version="TLSv1.3")


def test_tls_cert_without_key_names_the_key() -> None:
    message = build_error("--tls-cert", "c.pem")
    assert message.startswith("tls.key_file: ")
    assert "--tls-key" in message and "ZZZ_TLS_KEY" in message


def test_tls_key_without_cert_names_the_cert() -> None:
    message = build_error(env={"ZZZ_TLS_KEY": "k.pem"})
    assert message.startswith("tls.cert_file: ")
    assert "--tls-cert" in message


def test_other_tls_option_without_cert_and_key_is_an_error() -> None:
    assert build_error("--tls-ca", "ca.pem").startswith("tls.cert_file: ")


def test_tls_validation_error_names_the_field() -> None:
    message = build_error("--tls-cert", "c", "--tls-key", "k", "--tls-require-client-cert")
    assert message.startswith("tls.require_client_cert: ")
    assert build_error(
        "--tls-cert", "c", "--tls-key", "k", "--tls-min-version", "TLSv1.0"
    ).startswith("tls.min_version: ")


# --------------------------------------------------------------------------- backend, log level


def test_backend_from_flag_and_env() -> None:
    assert build("--backend", "eventloop")[1] == "eventloop"
    assert build(env={"ZZZ_BACKEND": "eventloop"})[1] == "eventloop"
    assert build("--backend", "native", env={"ZZZ_BACKEND": "eventloop"})[1] == "native"


def test_unknown_backend() -> None:
    message = build_error("--backend", "gevent")
    assert message.startswith("backend: unknown backend 'gevent'")
    assert "native" in message and "eventloop" in message
    assert "ZZZ_BACKEND" in build_error(env={"ZZZ_BACKEND": "gevent"})


def test_log_level() -> None:
    assert cli.parse_run(["run", APP], {}).log_level == "info"
    assert cli.parse_run(["run", APP, "--log-level", "DEBUG"], {}).log_level == "debug"
    assert cli.parse_run(["run", APP], {"ZZZ_LOG_LEVEL": "warning"}).log_level == "warning"
    assert build_error("--log-level", "loud").startswith("log_level: ")


# --------------------------------------------------------------------------- errors


def test_range_error_is_the_config_message() -> None:
    assert build_error("--port", "70000") == "port: must be <= 65535, got 70000"


def test_range_error_from_env_names_the_variable() -> None:
    assert build_error(env={"ZZZ_PORT": "70000"}) == (
        "port: must be <= 65535, got 70000 (from ZZZ_PORT)"
    )


def test_nested_range_error_names_the_field() -> None:
    assert build_error("--native-pool-size", "-1").startswith("native.pool_size: ")
    assert build_error("--eventloop-loop", "trio").startswith("eventloop.loop: ")
    assert build_error(env={"ZZZ_EVENTLOOP_EVENT_LOOP_COUNT": "0"}).endswith(
        "(from ZZZ_EVENTLOOP_EVENT_LOOP_COUNT)"
    )


@pytest.mark.parametrize("text", ["abc", "1.5", "", "0x10", "ten"])
def test_non_integer_values(text: str) -> None:
    assert build_error("--max-body-size", text) == (
        f"max_body_size: must be an integer, got {text!r}"
    )


def test_non_integer_env_value_names_the_variable() -> None:
    assert build_error(env={"ZZZ_PORT": "abc"}) == (
        "port: must be an integer, got 'abc' (from ZZZ_PORT)"
    )


def test_invalid_host() -> None:
    assert build_error("--host", "").startswith("host: ")


@pytest.mark.parametrize("spec", ["app", "mod:", ":app", "mod::app", "a b:app", "mod:a-b",
                                  "mod:app.", "1mod:app", "mod.:app"])
def test_bad_app_spec(spec: str) -> None:
    with pytest.raises(cli.CliError, match=r"^app: expected MODULE:ATTR"):
        cli.build_config(["run", spec], {})


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", APP, "--no-such-flag"], "unrecognized arguments"),
        (["run"], "MODULE:ATTR"),
        ([], "COMMAND"),
        (["serve", APP], "invalid choice"),
        (["run", APP, "--port"], "expected one argument"),
        (["run", APP, "--max-body"], "unrecognized arguments"),  # no abbreviations
    ],
)
def test_usage_errors(argv: list[str], needle: str) -> None:
    with pytest.raises(cli.CliError, match=needle):
        cli.build_config(argv, {})


def test_good_app_specs() -> None:
    assert cli.parse_app_spec("pkg.mod:obj.router") == ("pkg.mod", "obj.router")
    assert cli.parse_app_spec("m:app") == ("m", "app")


# --------------------------------------------------------------------------- main() in-process


def run_main(capsys: pytest.CaptureFixture[str], *argv: str,
             env: dict[str, str] | None = None) -> tuple[int, str, str]:
    code = cli.main(list(argv), env or {})
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, start: str = "zzz: error: ") -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(start), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (["run", APP, "--port", "70000"], "zzz: error: port: must be <= 65535, got 70000"),
        (["run", APP, "--max-body-size", "abc"], "zzz: error: max_body_size: "),
        (["run", APP, "--backend", "nope"], "zzz: error: backend: "),
        (["run", APP, "--tls-key", "k.pem"], "zzz: error: tls.cert_file: "),
        (["run", APP, "--so-rcvbuf", "-1"], "zzz: error: so_rcvbuf: must be >= 0, got -1"),
        (["run", APP, "--read-size", "100"], "zzz: error: read_size: must be 0 (backend "),
        (["run", APP, "--eventloop-write-buffer-low", "65536"],
         "zzz: error: eventloop.write_buffer_low: must be below write_buffer_high"),
        (["run", "no_colon"], "zzz: error: app: "),
        (["run", APP, "--what"], "zzz: error: unrecognized arguments"),
        ([], "zzz: error: "),
    ],
)
def test_main_errors_print_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], start: str
) -> None:
    code, out, err = run_main(capsys, *argv)
    assert code == 2
    assert out == ""
    assert_one_error_line(err, start)


def test_main_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["run", "--help"]):
        code, out, _ = run_main(capsys, *argv)
        assert code == 0
        for flag in (*EXPECTED_FLAGS, "backend", "log-level"):
            assert f"--{flag}" in out, (argv, flag)
        assert "--no-tls-require-client-cert" in out


# --------------------------------------------------------------------------- loading the app


class FakeApp:
    """The smallest thing the server accepts as an application."""

    def handle(self, request: Any, server: Any) -> Any:
        raise NotImplementedError

    def check_continue(self, request: Any) -> Any:
        return None


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Write a uniquely named module into a fresh cwd; returns its module name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    written: list[str] = []

    def write(source: str) -> str:
        name = f"zzz_cli_app_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


APP_SOURCE = """
class App:
    def handle(self, request, server):
        raise NotImplementedError
    def check_continue(self, request):
        return None

app = App()

class Holder:
    router = App()

holder = Holder()
not_an_app = 42
"""


def test_load_app_imports_from_the_cwd(app_dir: Callable[[str], str]) -> None:
    name = app_dir(APP_SOURCE)
    app = cli.load_app(f"{name}:app")
    assert type(app).__name__ == "App"
    assert sys.path[0] == os.getcwd()


def test_load_app_dotted_attribute(app_dir: Callable[[str], str]) -> None:
    name = app_dir(APP_SOURCE)
    assert cli.load_app(f"{name}:holder.router") is sys.modules[name].holder.router


def test_load_app_missing_module(app_dir: Callable[[str], str]) -> None:
    with pytest.raises(cli.CliError, match=r"^app: cannot import 'zzz_no_such_module_x': "):
        cli.load_app("zzz_no_such_module_x:app")


def test_load_app_missing_attribute(app_dir: Callable[[str], str]) -> None:
    name = app_dir(APP_SOURCE)
    with pytest.raises(cli.CliError, match=r"^app: module '.*' has no attribute 'nope'"):
        cli.load_app(f"{name}:nope")
    with pytest.raises(cli.CliError, match=r"has no attribute 'holder.nope'"):
        cli.load_app(f"{name}:holder.nope")


def test_load_app_rejects_non_applications(app_dir: Callable[[str], str]) -> None:
    name = app_dir(APP_SOURCE)
    with pytest.raises(cli.CliError, match=r"^app: .* is a int, not an application"):
        cli.load_app(f"{name}:not_an_app")


def test_load_app_import_error_inside_the_module(app_dir: Callable[[str], str]) -> None:
    name = app_dir("import zzz_definitely_missing_dependency\napp = None\n")
    with pytest.raises(cli.CliError, match="zzz_definitely_missing_dependency"):
        cli.load_app(f"{name}:app")


def test_load_app_syntax_error(app_dir: Callable[[str], str]) -> None:
    name = app_dir("def broken(:\n")
    with pytest.raises(cli.CliError, match=r"^app: cannot import"):
        cli.load_app(f"{name}:app")


# --------------------------------------------------------------------------- serving (fake backend)

FAKE_BACKEND = "zzz_cli_fake_backend"


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Register backend 'fake' whose listen() binds nothing and returns at once."""
    state = types.SimpleNamespace(address=("127.0.0.1", 4321), error=None, servers=[])
    module = types.ModuleType(FAKE_BACKEND)

    def listen(server: Any) -> None:
        state.servers.append(server)
        if state.error is not None:
            raise state.error
        server.address = state.address
        server.ready.set()

    module.listen = listen  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, FAKE_BACKEND, module)
    monkeypatch.setitem(backends.BACKENDS, "fake", FAKE_BACKEND)
    return state


def test_worker_count() -> None:
    config = Config(worker_threads=6, eventloop=EventLoopConfig(event_loop_count=3))
    assert cli.worker_count("native", config) == 6
    assert cli.worker_count("eventloop", config) == 3
    assert cli.worker_count("native", Config(worker_threads=0)) == 1


def test_main_serves_and_logs_one_ready_line(
    app_dir: Callable[[str], str],
    fake_backend: types.SimpleNamespace,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="zzz")
    name = app_dir(APP_SOURCE)
    code, _, err = run_main(
        capsys, "run", f"{name}:app", "--backend", "fake", "--worker-threads", "0",
        "--port", "0",
    )
    assert code == 0, err
    (server,) = fake_backend.servers
    assert server.config.port == 0
    assert type(server.app).__name__ == "App"
    ready = [r.getMessage() for r in caplog.records if "serving" in r.getMessage()]
    assert ready == ["serving http://127.0.0.1:4321 (backend=fake, workers=1)"]
    assert all(r.name == "zzz" for r in caplog.records if "serving" in r.getMessage())


def test_main_reports_app_errors_in_one_line(
    app_dir: Callable[[str], str],
    fake_backend: types.SimpleNamespace,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = app_dir(APP_SOURCE)
    code, _, err = run_main(capsys, "run", f"{name}:not_an_app", "--backend", "fake")
    assert code == 2
    assert_one_error_line(err, "zzz: error: app: ")
    assert fake_backend.servers == []


def test_listen_failure_before_ready_is_one_line(
    fake_backend: types.SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_backend.error = OSError(98, "Address already in use")
    options = cli.parse_run(["run", APP, "--backend", "fake"], {})
    server = cli.make_server(FakeApp(), options)
    assert cli.serve(server, "fake") == cli.EXIT_STARTUP_FAILURE
    assert_one_error_line(capsys.readouterr().err, "zzz: error: cannot listen on ")


def test_tls_file_problems_are_one_line(
    fake_backend: types.SimpleNamespace, tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing.pem")
    options = cli.parse_run(
        ["run", APP, "--backend", "fake", "--tls-cert", missing, "--tls-key", missing], {}
    )
    with pytest.raises(cli.CliError) as info:
        cli.make_server(FakeApp(), options)
    assert str(info.value).startswith("tls")
    assert "\n" not in str(info.value)


def test_server_constructor_errors_become_cli_errors(
    fake_backend: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zzz.server

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConfigError("tls.cert_file", "cannot read 'x.pem'")

    monkeypatch.setattr(zzz.server, "Server", refuse)
    options = cli.parse_run(["run", APP, "--backend", "fake"], {})
    with pytest.raises(cli.CliError, match=r"^tls.cert_file: cannot read"):
        cli.make_server(FakeApp(), options)


# --------------------------------------------------------------------------- subprocesses


def run_zzz(cwd: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ZZZ_")}
    return subprocess.run(
        [sys.executable, "-m", "zzz", *argv],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )


@pytest.mark.parametrize(
    ("argv", "env", "start"),
    [
        (["run", APP, "--port", "70000"], {}, "zzz: error: port: must be <= 65535, got 70000"),
        (["run", APP, "--max-body-size", "abc"], {}, "zzz: error: max_body_size: "),
        (["run", APP], {"ZZZ_PORT": "abc"}, "zzz: error: port: "),
        (["run", APP], {"ZZZ_TCP_DEFER_ACCEPT_S": "9999"},
         "zzz: error: tcp_defer_accept_s: must be <= 600, got 9999"),
        (["run", APP, "--tls-cert", "c.pem"], {}, "zzz: error: tls.key_file: "),
        (["run", "zzz_no_such_module_y:app"], {}, "zzz: error: app: cannot import"),
        (["run", "nocolon"], {}, "zzz: error: app: expected MODULE:ATTR"),
        (["run", APP], {"ZZZ_BACKEND": "gevent"}, "zzz: error: backend: unknown backend"),
        (["run", "appmod:missing"], {}, "zzz: error: app: module 'appmod' has no attribute"),
        (["run", "appmod:not_an_app"], {}, "zzz: error: app: appmod:not_an_app is a int"),
    ],
)
def test_subprocess_errors_exit_2_with_one_line(
    tmp_path: Path, argv: list[str], env: dict[str, str], start: str
) -> None:
    (tmp_path / "appmod.py").write_text(APP_SOURCE)
    result = run_zzz(tmp_path, *argv, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert_one_error_line(result.stderr, start)


def test_subprocess_help_lists_every_flag(tmp_path: Path) -> None:
    result = run_zzz(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    for flag in EXPECTED_FLAGS:
        assert f"--{flag}" in result.stdout


def test_workers_and_reload_are_cli_options() -> None:
    options = cli.parse_run(["run", "m:app", "--workers", "3"], {})
    assert options.workers == 3 and options.supervised and not options.reload
    assert cli.parse_run(["run", "m:app"], {"ZZZ_WORKERS": "0"}).workers == 0
    assert not cli.parse_run(["run", "m:app"], {}).supervised
    assert cli.parse_run(["run", "m:app", "--max-requests", "5"], {}).supervised
    with pytest.raises(cli.CliError, match=r"^workers: must be an integer"):
        cli.parse_run(["run", "m:app", "--workers", "x"], {})
    with pytest.raises(cli.CliError, match=r"^workers: must be between"):
        cli.parse_run(["run", "m:app", "--workers", "-1"], {})
    with pytest.raises(cli.CliError, match=r"^reload: development only"):
        cli.parse_run(["run", "m:app", "--workers", "2", "--reload"], {})
    assert cli.parse_run(["run", "m:app", "--reload"], {}).reload
