"""Command line: ``zzz run MODULE:ATTR [options]`` (also ``python -m zzz run ...``).

Every configuration flag is *derived* from the dataclass fields of
:class:`zzz.config.Config` and its nested settings (``TlsConfig``,
``NativeConfig``, ``EventLoopConfig``): the flag name, its ``ZZZ_*``
environment variable, its type and its help text all come from the field, so a
new setting is written once, in :mod:`zzz.config`, and appears here by itself.

Precedence is flag, then environment variable, then the dataclass default.
Usage and configuration errors print exactly one line on stderr
(``zzz: error: port: must be <= 65535, got 70000``) and exit with status 2:
an operator reading a service log wants the reason, not a traceback. So do
the application's own failures before it serves: any exception while importing
it (``zzz: error: app: cannot import 'myapp': KeyError: 'DATABASE_URL'
(myapp/settings.py, line 3)``, the location being the deepest frame of the
user's code, not of the standard library or zzz) and a failed start-up hook
or lifespan. ``--debug`` (or ``ZZZ_DEBUG=1``) prints the whole traceback first.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import sys
import sysconfig
import threading
import traceback
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Union, get_args, get_origin, get_type_hints

from zzz import backends
from zzz.config import Config, ConfigError
from zzz.errors import StartupError

if TYPE_CHECKING:
    from zzz.server import Application, Server

PROG = "zzz"
#: Prefix of every environment variable the CLI reads.
ENV_PREFIX = "ZZZ_"
#: Exit status for usage and configuration errors (argparse's convention).
EXIT_USAGE = 2
#: Exit status when a valid configuration still cannot start (e.g. port in use).
EXIT_STARTUP_FAILURE = 1
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
DEFAULT_LOG_LEVEL = "info"
DEFAULT_BACKEND = "native"
#: How often the ready notifier re-checks whether the server stopped before it bound.
READY_POLL_S = 0.1
#: Upper bound on waiting for the ready notifier once ``listen()`` has returned.
NOTIFIER_JOIN_S = 1.0
#: Spellings accepted for booleans in environment variables (case-insensitive).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
#: Field types a derived flag can convert to (``X | None`` of these too).
SCALAR_TYPES: tuple[type, ...] = (int, str, bool)

log = logging.getLogger("zzz")


class CliError(Exception):
    """A usage or configuration error; ``str()`` is the one line shown to the user."""


# --------------------------------------------------------------------------- derived options


@dataclass(frozen=True, slots=True)
class ConfigOption:
    """One command-line flag / environment variable derived from a config field."""

    #: Field path from ``Config``: ``("port",)``, ``("native", "pool_size")``.
    path: tuple[str, ...]
    #: Flag name without the leading dashes: ``"native-pool-size"``.
    flag: str
    #: ``int``, ``str`` or ``bool``.
    kind: type
    #: The annotation allows ``None`` (``str | None``).
    optional: bool
    #: The field has no default, so the option must be given when its group is built.
    required: bool
    default: Any
    help: str

    @property
    def name(self) -> str:
        """Dotted field name, as :class:`ConfigError` messages spell it."""
        return ".".join(self.path)

    @property
    def env(self) -> str:
        return env_name(self.flag)

    @property
    def dest(self) -> str:
        return "cfg__" + "__".join(self.path)


@dataclass(frozen=True, slots=True)
class ConfigGroup:
    """The options of one config dataclass (``Config`` itself or a nested one)."""

    #: ``()`` for ``Config``; ``("tls",)`` for the field that holds a ``TlsConfig``.
    path: tuple[str, ...]
    cls: type
    #: The field may be ``None``: the group is built only when one of its options is given.
    optional: bool
    title: str
    options: tuple[ConfigOption, ...]


def env_name(flag: str) -> str:
    """``max-body-size`` → ``ZZZ_MAX_BODY_SIZE``."""
    return ENV_PREFIX + flag.upper().replace("-", "_")


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` → ``(X, True)``; ``X`` → ``(X, False)``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return rest[0], len(rest) != len(args)
        raise TypeError(f"cannot derive a flag from the union {annotation!r}")
    return annotation, False


def _field_default(f: dataclasses.Field[Any]) -> tuple[bool, Any]:
    """``(required, default)`` of a dataclass field."""
    if f.default is not dataclasses.MISSING:
        return False, f.default
    if f.default_factory is not dataclasses.MISSING:
        return False, f.default_factory()
    return True, None


def _derive_group(
    cls: type, path: tuple[str, ...], optional: bool, title: str
) -> tuple[ConfigGroup, list[tuple[dataclasses.Field[Any], Any, bool]]]:
    """Options of ``cls``'s scalar fields, plus its dataclass-typed fields left to nest."""
    hints = get_type_hints(cls)
    options: list[ConfigOption] = []
    nested: list[tuple[dataclasses.Field[Any], Any, bool]] = []
    for f in dataclasses.fields(cls):
        kind, field_optional = _unwrap_optional(hints[f.name])
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            nested.append((f, kind, field_optional))
            continue
        if kind not in SCALAR_TYPES:
            raise TypeError(f"{cls.__name__}.{f.name}: no flag for type {kind!r}")
        flag = f.metadata.get("cli") or "-".join((*path, f.name)).replace("_", "-")
        required, default = _field_default(f)
        options.append(
            ConfigOption(
                path=(*path, f.name),
                flag=flag,
                kind=kind,
                optional=field_optional,
                required=required,
                default=default,
                help=f.metadata.get("help", ""),
            )
        )
    return ConfigGroup(path, cls, optional, title, tuple(options)), nested


def derive_groups(root: type = Config) -> tuple[ConfigGroup, ...]:
    """The option groups of ``root``: its own fields first, then one group per nested field.

    Nested settings may be one level deep (``Config.native.pool_size``); a
    second level would need a naming rule nobody has asked for yet.
    """
    top, nested = _derive_group(root, (), False, "server options")
    groups = [top]
    for f, kind, optional in nested:
        group, deeper = _derive_group(kind, (f.name,), optional, f.metadata.get("help", f.name))
        if deeper:
            raise TypeError(f"{root.__name__}.{f.name}: nested settings deeper than one level")
        groups.append(group)
    seen: dict[str, str] = {}
    for group in groups:
        for option in group.options:
            if option.flag in RESERVED_FLAGS or option.flag in seen:
                other = seen.get(option.flag, "the CLI itself")
                raise TypeError(f"flag --{option.flag} of {option.name} clashes with {other}")
            seen[option.flag] = option.name
    return tuple(groups)


#: Flags the CLI defines itself; a config field deriving one of these is a bug.
RESERVED_FLAGS = frozenset({"backend", "log-level", "debug", "help", "version", "workers",
                            "reload"})

CONFIG_GROUPS: tuple[ConfigGroup, ...] = derive_groups()


def config_options() -> list[ConfigOption]:
    """Every derived option, in ``--help`` order."""
    return [option for group in CONFIG_GROUPS for option in group.options]


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become :class:`CliError` (one line, exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(message)


def _metavar(option: ConfigOption) -> str:
    return "INT" if option.kind is int else "STR"


def _option_help(option: ConfigOption) -> str:
    default = "none" if option.default is None else option.default
    if option.required:
        default = "required with the other options of this group"
    elif option.kind is bool:
        default = "on" if option.default else "off"
    text = f"{option.help} [env {option.env}; default: {default}]"
    return text.replace("%", "%%")  # argparse %-formats help strings


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "app", metavar="MODULE:ATTR", help="the application, e.g. examples.hello:app"
    )
    known = ",".join(sorted(backends.BACKENDS))
    parser.add_argument(
        "--backend",
        metavar=f"{{{known}}}",
        default=None,
        help=f"I/O backend [env {env_name('backend')}; default: {DEFAULT_BACKEND}]",
    )
    parser.add_argument(
        "--log-level",
        metavar=f"{{{','.join(LOG_LEVELS)}}}",
        default=None,
        help=f"logging level [env {env_name('log-level')}; default: {DEFAULT_LOG_LEVEL}]",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=None,
        help="print the whole traceback when the app cannot be imported or started "
        f"[env {env_name('debug')}; default: off]",
    )
    # Process topology is the supervisor's business, not a server setting: a Server
    # object cannot have workers, so these two are CLI options, not Config fields.
    parser.add_argument(
        "--workers",
        metavar="INT",
        default=None,
        help="worker processes sharing the socket under a supervisor; 0 = one per CPU, "
        f"1 = this process serves [env {env_name('workers')}; default: 1]",
    )
    parser.add_argument(
        "--reload",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="development: restart the worker when a .py file under the working directory "
        f"changes (needs the 'reload' extra: watchfiles) [env {env_name('reload')}; default: off]",
    )
    for group in CONFIG_GROUPS:
        section = parser.add_argument_group(group.title)
        for option in group.options:
            if option.kind is bool:
                section.add_argument(
                    f"--{option.flag}",
                    dest=option.dest,
                    action=argparse.BooleanOptionalAction,
                    default=None,
                    help=_option_help(option),
                )
            else:
                section.add_argument(
                    f"--{option.flag}",
                    dest=option.dest,
                    metavar=_metavar(option),
                    default=None,
                    help=_option_help(option),
                )


def build_parser() -> argparse.ArgumentParser:
    """The ``zzz`` parser; its ``--help`` lists every ``run`` flag too."""
    parser = _Parser(
        prog=PROG,
        description="zzz: HTTP/1.1 + WebSocket server with pluggable backends.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="serve MODULE:ATTR (a zzz.Router or any object with handle/check_continue)",
        description="Serve an application. Flags take precedence over ZZZ_* environment "
        "variables, which take precedence over the defaults.",
        allow_abbrev=False,
    )
    _add_run_arguments(run)
    parser.epilog = "`zzz run --help`:\n\n" + run.format_help()
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zzz")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


# --------------------------------------------------------------------------- argv → Config


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything ``zzz run`` needs, parsed and validated, before anything is imported."""

    app: str
    backend: str
    config: Config
    log_level: str
    #: Print whole tracebacks for app import and start-up failures.
    debug: bool = False
    #: Worker processes (``--workers``); 1 serves in this process, without a supervisor.
    workers: int = 1
    #: Restart the worker when a source file changes (``--reload``, development only).
    reload: bool = False

    @property
    def supervised(self) -> bool:
        """Whether a supervisor runs workers (``--workers``, ``--reload``, ``--max-requests``)."""
        return self.workers != 1 or self.reload or self.config.max_requests > 0


def _pick(
    flag_value: Any, environ: Mapping[str, str], env: str
) -> tuple[Any, str | None]:
    """``(raw value, source)``: the flag if given, else a non-empty environment variable."""
    if flag_value is not None:
        return flag_value, "flag"
    text = environ.get(env, "")
    if text.strip():
        return text, env
    return None, None


def _from_env(source: str | None) -> str:
    """Suffix naming the environment variable a bad value came from (flags are visible)."""
    return f" (from {source})" if source not in (None, "flag") else ""


def _convert_bool(name: str, raw: Any, source: str | None) -> bool:
    if isinstance(raw, bool):  # a flag
        return raw
    text = str(raw)
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise CliError(
        f"{name}: must be a boolean (1/0/true/false/yes/no), got {text!r}" + _from_env(source)
    )


def _convert(option: ConfigOption, raw: Any, source: str | None) -> Any:
    if isinstance(raw, bool):  # a BooleanOptionalAction flag
        return raw
    text = str(raw)
    if option.kind is bool:
        return _convert_bool(option.name, raw, source)
    if option.optional and not text.strip():
        return None
    if option.kind is int:
        try:
            return int(text.strip())
        except ValueError:
            raise CliError(
                f"{option.name}: must be an integer, got {text!r}" + _from_env(source)
            ) from None
    return text


def _build_group(
    group: ConfigGroup,
    namespace: argparse.Namespace,
    environ: Mapping[str, str],
    extra: Mapping[str, Any],
    sources: dict[str, str | None],
) -> Any:
    """An instance of ``group.cls`` from flags/env, or ``None`` for an optional group not used."""
    values: dict[str, Any] = dict(extra)
    given: list[ConfigOption] = []
    for option in group.options:
        raw, source = _pick(getattr(namespace, option.dest), environ, option.env)
        if source is None:
            continue
        sources[option.name] = source
        given.append(option)
        values[option.path[-1]] = _convert(option, raw, source)
    if group.optional and not given:
        return None
    missing = [o for o in group.options if o.required and o.path[-1] not in values]
    if missing:
        need = missing[0]
        because = f"when --{given[0].flag} is given" if given else "always"
        raise CliError(f"{need.name}: required {because} (set --{need.flag} or {need.env})")
    try:
        return group.cls(**values)
    except ConfigError as exc:
        raise CliError(str(exc) + _from_env(sources.get(exc.field_name))) from None


def parse_run(argv: Sequence[str], environ: Mapping[str, str]) -> RunOptions:
    """Parse ``run MODULE:ATTR [options]`` (argv without the program name).

    Raises :class:`CliError` for any invalid input; ``SystemExit`` only for
    ``--help`` / ``--version``. Nothing is imported and nothing is served.
    """
    namespace = build_parser().parse_args(list(argv))
    parse_app_spec(namespace.app)

    backend, source = _pick(namespace.backend, environ, env_name("backend"))
    backend = DEFAULT_BACKEND if backend is None else str(backend).strip()
    if backend not in backends.BACKENDS:
        known = ", ".join(sorted(backends.BACKENDS))
        raise CliError(f"backend: unknown backend {backend!r} (known: {known})" + _from_env(source))

    level, source = _pick(namespace.log_level, environ, env_name("log-level"))
    level = DEFAULT_LOG_LEVEL if level is None else str(level).strip().lower()
    if level not in LOG_LEVELS:
        raise CliError(f"log_level: must be one of {', '.join(LOG_LEVELS)}, got {level!r}"
                       + _from_env(source))

    debug_raw, source = _pick(namespace.debug, environ, env_name("debug"))
    debug = False if debug_raw is None else _convert_bool("debug", debug_raw, source)

    sources: dict[str, str | None] = {}
    root, *nested = CONFIG_GROUPS
    parts = {
        group.path[-1]: _build_group(group, namespace, environ, {}, sources) for group in nested
    }
    config = _build_group(root, namespace, environ, parts, sources)
    assert isinstance(config, Config)
    workers, reload = _process_options(namespace, environ)
    return RunOptions(app=namespace.app, backend=backend, config=config, log_level=level,
                      debug=debug, workers=workers, reload=reload)


def _process_options(namespace: argparse.Namespace, environ: Mapping[str, str]) -> tuple[int, bool]:
    """``(workers, reload)`` from flags/env, validated."""
    raw, source = _pick(namespace.workers, environ, env_name("workers"))
    workers = 1
    if raw is not None:
        try:
            workers = int(str(raw).strip())
        except ValueError:
            raise CliError(f"workers: must be an integer, got {raw!r}" + _from_env(source)) from None
        from zzz.supervisor import MAX_WORKERS

        if not 0 <= workers <= MAX_WORKERS:
            raise CliError(f"workers: must be between 0 and {MAX_WORKERS}, got {workers}"
                           + _from_env(source))
    raw, source = _pick(namespace.reload, environ, env_name("reload"))
    reload = False
    if raw is not None:
        option = ConfigOption(("reload",), "reload", bool, False, False, False, "")
        reload = bool(_convert(option, raw, source))
    if reload and workers != 1:
        raise CliError("reload: development only, refused with --workers other than 1 "
                       "(use SIGHUP to reload production workers)")
    if reload:
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            raise CliError("reload: needs watchfiles (pip install 'zzz[reload]')") from None
    return workers, reload


def build_config(
    argv: Sequence[str], environ: Mapping[str, str]
) -> tuple[str, str, Config]:
    """``(app_spec, backend, Config)`` from ``argv`` (``["run", "mod:app", ...]``) and ``environ``."""
    options = parse_run(argv, environ)
    return options.app, options.backend, options.config


# --------------------------------------------------------------------------- application


def parse_app_spec(spec: str) -> tuple[str, str]:
    """``"pkg.mod:obj.attr"`` → ``("pkg.mod", "obj.attr")``, or :class:`CliError`."""
    module, sep, attr = spec.partition(":")

    def dotted(text: str) -> bool:
        return all(part.isidentifier() for part in text.split("."))

    if not sep or not dotted(module) or not dotted(attr):
        raise CliError(f"app: expected MODULE:ATTR such as examples.hello:app, got {spec!r}")
    return module, attr


def load_app(spec: str, search_dir: str | None = None) -> Application:
    """Import ``MODULE:ATTR`` with ``search_dir`` (default: the cwd) first on ``sys.path``.

    The cwd goes first, as uvicorn does, so ``zzz run app:app`` finds ``./app.py``.
    """
    module_name, attr = parse_app_spec(spec)
    directory = os.getcwd() if search_dir is None else search_dir
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # whatever the app's import raises (KeyError from os.environ, ...)
        raise CliError(f"app: cannot import {module_name!r}: {describe_exception(exc)}") from exc
    target: Any = module
    walked: list[str] = []
    for part in attr.split("."):
        walked.append(part)
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(
                f"app: module {module_name!r} has no attribute {'.'.join(walked)!r}"
            ) from None
        except Exception as exc:  # a module __getattr__ or property that fails
            raise CliError(
                f"app: reading {'.'.join(walked)!r} of {module_name!r} failed: "
                f"{describe_exception(exc)}"
            ) from exc
    from zzz.interfaces import InterfaceError, detect

    try:
        detect(target)  # a zzz Router, an ASGI 3 or a WSGI callable (--interface forces)
    except InterfaceError as exc:
        if not callable(target):
            raise CliError(
                f"app: {spec} is a {type(target).__name__}, not an application (expected a "
                "zzz.Router, an ASGI 3 callable or a WSGI callable)") from None
        raise CliError(f"{exc} (from {spec})") from None
    app: Application = target
    return app


def _library_dirs() -> tuple[str, ...]:
    """Directories whose frames are not "the user's code": the standard library,
    installed packages and zzz itself (the first pass of :func:`blame` skips them)."""
    paths = sysconfig.get_paths()
    dirs = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    dirs.add(os.path.dirname(os.path.abspath(__file__)))
    return tuple(os.path.join(os.path.abspath(d), "") for d in dirs)


def blame(exc: BaseException) -> str | None:
    """``"file, line N"`` of the user's code that raised ``exc``, or ``None``.

    A ``SyntaxError`` names the file it is in. Otherwise the deepest frame
    outside the standard library, installed packages and zzz (an app installed
    as a package: outside the standard library and zzz), shown relative to the
    current directory when it is below it.
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_shown(exc.filename)}, line {exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<")]
    libraries = _library_dirs()
    stdlib_and_zzz = tuple(
        d for d in libraries if "-packages" not in d or d.endswith(os.path.join("zzz", ""))
    )
    for skip in (libraries, stdlib_and_zzz):
        for frame in reversed(frames):
            if not os.path.abspath(frame.filename).startswith(skip):
                return f"{_shown(frame.filename)}, line {frame.lineno}"
    return None


def _shown(filename: str) -> str:
    path = os.path.abspath(filename)
    cwd = os.path.join(os.getcwd(), "")
    return path[len(cwd):] if path.startswith(cwd) else path


def describe_exception(exc: BaseException) -> str:
    """``KeyError: 'DATABASE_URL' (settings.py, line 3)``: one line naming cause and place."""
    detail = " ".join(str(exc).split())
    if isinstance(exc, SyntaxError) and exc.msg:
        detail = exc.msg
    text = type(exc).__name__ + (f": {detail}" if detail else "")
    where = blame(exc)
    return f"{text} ({where})" if where else text


# --------------------------------------------------------------------------- serving


def worker_count(backend: str, config: Config) -> int:
    """The concurrency figure the ready line reports for ``backend``."""
    if backend == "eventloop":
        return config.eventloop.event_loop_count
    return config.native_workers


def configure_logging(level: str, config: Config | None = None) -> None:
    """Text or JSON lines on stderr at ``level``, or the ``log_config`` dictConfig file."""
    from zzz.observability.logs import configure_logging as configure

    observability = (config or Config()).observability
    try:
        configure(level, observability.log_format, observability.log_config)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        message = str(exc)
        if not message.startswith("observability.log_config"):
            message = f"observability.log_config: {message}"
        raise CliError(message) from None


def make_server(app: Application, options: RunOptions) -> Server:
    """Construct the server, turning start-up problems (TLS files, backend import) into one line."""
    try:
        backends.load(options.backend)
    except ImportError as exc:
        raise CliError(f"backend: cannot load {options.backend!r}: {exc}") from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    from zzz.interfaces import InterfaceError
    from zzz.server import Server

    try:
        return Server(app, options.config, backend=options.backend)
    except (ConfigError, InterfaceError) as exc:
        raise CliError(str(exc)) from None
    except (ValueError, OSError, ImportError) as exc:
        prefix = "tls: " if options.config.tls is not None else ""
        raise CliError(f"{prefix}{exc}") from None


def _announce_when_ready(server: Server, backend: str, workers: int) -> None:
    """Log the one ready line once the backend has bound (or give up when it stopped)."""
    while True:
        if server.ready.wait(READY_POLL_S):
            log.info("serving %s (backend=%s, workers=%d)", served_at(server), backend, workers,
                     extra={"event": "start", "url": served_at(server), "backend": backend,
                            "workers": workers})
            return
        if server.stopped.is_set():
            return


def served_at(server: Server) -> str:
    """``http://host:port``, or ``unix:/path`` for a Unix domain socket (bound or inherited)."""
    address = server.address
    if address is not None and address[1] == 0 and address[0].startswith(("/", "\0", "@")):
        return f"unix:{address[0]}"
    return server.url


def serve(server: Server, backend: str, debug: bool = False) -> int:
    """Run ``server.listen()`` until a graceful shutdown; the process exit status."""
    workers = worker_count(backend, server.config)
    notifier = threading.Thread(
        target=_announce_when_ready, args=(server, backend, workers),
        name="zzz-ready", daemon=True,
    )
    notifier.start()
    try:
        server.listen()
    except StartupError as exc:
        _print_error(str(exc), exc if debug else None)
        return EXIT_USAGE
    except OSError as exc:
        if server.ready.is_set():
            raise
        _print_error(f"cannot listen on {server.url}: {exc}")
        return EXIT_STARTUP_FAILURE
    finally:
        notifier.join(NOTIFIER_JOIN_S)
    log.info("stopped")
    return 0


def _print_error(message: str, exc: BaseException | None = None) -> None:
    """The one error line; with ``exc`` (``--debug``), the traceback of its cause first."""
    if exc is not None:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        traceback.print_exception(cause, file=sys.stderr)
    one_line = " ".join(message.splitlines())
    print(f"{PROG}: error: {one_line}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of ``zzz`` and ``python -m zzz``; returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    env = os.environ if environ is None else environ
    try:
        options = parse_run(args, env)
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except CliError as exc:
        _print_error(str(exc))
        return EXIT_USAGE
    options = _adopt_systemd_socket(options, env)
    from zzz.supervisor import NOTIFY_ENV, attach_worker

    if options.supervised and NOTIFY_ENV not in env:  # a worker never supervises
        configure_logging(options.log_level, options.config)
        return supervise(options, args, env)
    try:
        configure_logging(options.log_level, options.config)
        app = load_app(options.app)
        server = make_server(app, options)
    except CliError as exc:
        _print_error(str(exc), exc if options.debug and exc.__cause__ is not None else None)
        return EXIT_USAGE
    attach_worker(server, env)
    return serve(server, options.backend, options.debug)


def _adopt_systemd_socket(options: RunOptions, environ: Mapping[str, str]) -> RunOptions:
    """Serve the socket systemd passed (socket activation) unless --fd/--uds say otherwise."""
    from zzz.backends._listener import systemd_listen_fd

    fd = systemd_listen_fd(environ, os.getpid())
    if fd is None or options.config.fd is not None or options.config.uds is not None:
        return options
    return dataclasses.replace(options, config=options.config.replace(fd=fd))


def supervise(options: RunOptions, args: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run the supervisor of ``--workers`` processes (see :mod:`zzz.supervisor`)."""
    from zzz.supervisor import Supervisor, resolve_workers

    run_args = list(args)
    if run_args and run_args[0] == "run":
        run_args = run_args[1:]
    supervisor = Supervisor(run_args, options.config, resolve_workers(options.workers),
                            environ, reload=options.reload)
    try:
        return supervisor.run()
    except OSError as exc:
        _print_error(f"cannot listen: {exc}")
        return EXIT_STARTUP_FAILURE
