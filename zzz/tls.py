"""The one ``ssl.SSLContext`` both backends serve HTTPS with, built from :class:`TlsConfig`.

Start-up problems are found here, before a socket is bound, and reported as a
:class:`~zzz.config.ConfigError` naming the field (the CLI prints it on one
line and exits 2): a missing or unreadable file, a file that is not PEM, a key
that does not match the certificate, an encrypted key without a password.
OpenSSL's own messages ("[SSL] PEM lib") say none of that.

The defaults follow Mozilla's server-side TLS guidelines (v5.7), which
``sslyze --mozilla_config`` checks: the *intermediate* profile (TLS 1.2 and
1.3; for 1.2 only ECDHE/DHE with AES-GCM or ChaCha20-Poly1305; the groups
X25519, P-256 and P-384; the client picks its preferred suite) or, with
``tls.profile = "modern"``, TLS 1.3 only. ``tls.ciphers`` still replaces the
TLS 1.2 list. Python's ``ssl`` module has no call for the key-exchange groups
(OpenSSL's default list adds X448, P-521 and the ffdhe groups, which both
profiles leave out), so :func:`_set_groups` calls OpenSSL's
``SSL_CTX_set1_groups_list`` through ctypes, on the ``SSL_CTX`` of the context
after checking it is the right one; where that is impossible it falls back to
P-256 alone (still compliant; clients that sent an X25519 key share then need
one more round trip).

OpenSSL's read-ahead stays off (Python's default; nothing here turns it on): the
native backend relies on a read with a record-sized buffer leaving no bytes buffered
inside OpenSSL, so that the socket alone says whether a request is waiting
(``NativeBackend._await_next``).

Reloading (SIGHUP, :meth:`zzz.server.Server.reload_tls`) builds a *new*
context and swaps ``server.ssl_context``. The native backend wraps each
accepted socket with whatever ``server.ssl_context`` is at that moment. An
asyncio/uvloop server keeps the context it was created with, so
:func:`follow_reloads` gives that context an SNI callback (OpenSSL calls it for
every ClientHello, with or without a server name) that moves the handshake
onto the current context; connections already established keep theirs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import ssl
import stat
import time
from collections.abc import Callable
from typing import Any

from zzz.config import MIB, ConfigError, TlsConfig

log = logging.getLogger("zzz.tls")

#: The only application protocol offered in ALPN: zzz speaks HTTP/1.1.
ALPN_PROTOCOLS = ("http/1.1",)
#: Mozilla intermediate TLS 1.2 suites (v5.7), in Mozilla's order. (The DHE ones
#: are only used when DH parameters are loaded, which zzz does not do.)
INTERMEDIATE_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
))
#: Key-exchange groups of both Mozilla profiles (OpenSSL names).
PROFILE_GROUPS = "X25519:P-256:P-384"
#: The one group ``ssl.SSLContext.set_ecdh_curve`` can restrict to when the
#: groups list cannot be set: in both profiles and offered by every client.
FALLBACK_CURVE = "prime256v1"
#: OpenSSL's ``SSL_CTRL_SET_GROUPS_LIST`` (``SSL_CTX_set1_groups_list`` is a macro for it).
_SSL_CTRL_SET_GROUPS_LIST = 92
#: A certificate chain, key or CA bundle larger than this is not what the user meant.
MAX_PEM_FILE_SIZE = 4 * MIB
#: ``TlsConfig.min_version`` names → ``ssl.TLSVersion``.
_TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}

_CERT_BEGIN = re.compile(rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----")
_KEY_BEGIN = re.compile(rb"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----")
_LEGACY_ENCRYPTED = re.compile(rb"Proc-Type:\s*4,\s*ENCRYPTED")

#: OpenSSL reasons of failed handshakes → what the log line says about the client.
_HANDSHAKE_HINTS = {
    "HTTP_REQUEST": "plain HTTP sent to the HTTPS port",
    "WRONG_VERSION_NUMBER": "not a TLS client hello",
    "UNSUPPORTED_PROTOCOL": "client offers only TLS versions below the minimum",
    "NO_SHARED_CIPHER": "no cipher in common with the client",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common with the client",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "client sent no certificate (mutual TLS required)",
    "CERTIFICATE_VERIFY_FAILED": "client certificate not trusted by tls.ca_file",
}


class _PasswordMissing(Exception):
    """Raised from the password callback so OpenSSL never prompts on the terminal."""


def build_context(tls: TlsConfig) -> ssl.SSLContext:
    """A server context: TLS 1.2+ by default, ALPN ``http/1.1``, compression off.

    Raises :class:`ConfigError` naming the ``tls.*`` field at fault.
    """
    cert_pem = _read_pem("tls.cert_file", tls.cert_file)
    key_pem = cert_pem if tls.key_file == tls.cert_file else _read_pem("tls.key_file",
                                                                      tls.key_file)
    _check_certificates("tls.cert_file", tls.cert_file, cert_pem)
    encrypted = _check_key(tls.key_file, key_pem)
    if encrypted and tls.key_password is None:
        raise ConfigError("tls.key_file", "key is encrypted; set tls.key_password")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    minimum = _TLS_VERSIONS[tls.min_version]
    if tls.profile == "modern":
        minimum = ssl.TLSVersion.TLSv1_3
    context.minimum_version = minimum
    # CRIME: TLS compression leaks secrets; client renegotiation is a CPU DoS lever.
    # No server cipher preference: every suite of the profile is strong, so the
    # client's order wins (Mozilla: e.g. ChaCha20 on phones without AES hardware).
    context.options |= ssl.OP_NO_COMPRESSION
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    _load_cert_chain(context, tls, encrypted)
    try:
        context.set_ciphers(tls.ciphers or INTERMEDIATE_CIPHERS)
    except ssl.SSLError:
        raise ConfigError("tls.ciphers", f"no cipher matches {tls.ciphers!r}") from None
    if not _set_groups(context, PROFILE_GROUPS):
        context.set_ecdh_curve(FALLBACK_CURVE)
    if tls.ca_file:
        ca_pem = _read_pem("tls.ca_file", tls.ca_file)
        _check_certificates("tls.ca_file", tls.ca_file, ca_pem)
        try:
            context.load_verify_locations(cadata=ca_pem.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError("tls.ca_file", f"cannot load CA certificates from "
                                             f"{tls.ca_file}: {_reason(exc)}") from None
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    return context


def _set_groups(context: ssl.SSLContext, groups: str) -> bool:
    """``SSL_CTX_set1_groups_list(ctx, groups)`` on ``context``; False when not possible.

    The ``SSL_CTX *`` is the first field after the object header of CPython's
    ``PySSLContext``. It is used only after ``SSL_CTX_get_options`` on it returns
    exactly ``context.options`` (set just before to a value unlikely by chance),
    so a different layout or another OpenSSL is detected, never written to.
    """
    try:
        lib = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]
        get_options = lib.SSL_CTX_get_options
        ctrl = lib.SSL_CTX_ctrl
    except (OSError, AttributeError):
        return False
    get_options.restype = ctypes.c_uint64
    get_options.argtypes = [ctypes.c_void_p]
    ctrl.restype = ctypes.c_long
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer or get_options(pointer) != context.options:
        log.debug("cannot reach the SSL_CTX of %r; groups fall back to %s", context,
                  FALLBACK_CURVE)
        return False
    return bool(ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode("ascii")))


def _read_pem(field_name: str, path: str) -> bytes:
    """The bytes of ``path``, or a ConfigError saying why they cannot be had."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(field_name, f"no such file: {path}") from None
    except OSError as exc:
        raise ConfigError(field_name, f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(field_name, f"not a regular file: {path}")
    if info.st_size > MAX_PEM_FILE_SIZE:
        raise ConfigError(field_name, f"too large for a PEM file ({info.st_size} bytes): {path}")
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_PEM_FILE_SIZE + 1)
    except OSError as exc:
        raise ConfigError(field_name, f"cannot read {path}: {exc.strerror}") from None


def _check_certificates(field_name: str, path: str, pem: bytes) -> None:
    """``pem`` holds at least one certificate that OpenSSL can parse."""
    if not _CERT_BEGIN.search(pem):
        raise ConfigError(field_name, f"not a PEM certificate: {path}")
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cadata=pem.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as exc:
        log.debug("certificate check of %s: %s", path, exc)
        raise ConfigError(field_name, f"not a valid PEM certificate: {path}") from None


def _check_key(path: str, pem: bytes) -> bool:
    """``pem`` holds a PEM private key; True when it is encrypted."""
    match = _KEY_BEGIN.search(pem)
    if match is None:
        raise ConfigError("tls.key_file", f"no PEM private key in {path}")
    return b"ENCRYPTED" in match.group(1) or bool(_LEGACY_ENCRYPTED.search(pem))


def _load_cert_chain(context: ssl.SSLContext, tls: TlsConfig, encrypted: bool) -> None:
    password: str | Callable[[], str] = (
        tls.key_password if tls.key_password is not None else _refuse_password
    )
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=password)
    except _PasswordMissing:
        raise ConfigError("tls.key_file", "key is encrypted; set tls.key_password") from None
    except ssl.SSLError as exc:
        reason = _reason(exc)
        if "KEY_VALUES_MISMATCH" in reason:
            raise ConfigError("tls.key_file", "key does not match the certificate") from None
        if encrypted:
            raise ConfigError("tls.key_password", f"does not decrypt {tls.key_file}") from None
        raise ConfigError("tls.key_file", f"cannot load the key in {tls.key_file}: "
                                          f"{reason}") from None
    except OSError as exc:  # the files changed since they were checked
        raise ConfigError("tls.cert_file", f"cannot load certificate/key: {exc}") from None


def _refuse_password() -> str:
    raise _PasswordMissing


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else str(exc) or exc.__class__.__name__


def describe_handshake_error(exc: BaseException) -> str:
    """One line for the log about a failed handshake (never a traceback)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        hint = _HANDSHAKE_HINTS.get(reason)
        return f"{hint} ({reason})" if hint else reason
    if isinstance(exc, ssl.SSLEOFError | ConnectionResetError | BrokenPipeError):
        return "client closed the connection"
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__


# ---------------------------------------------------------------------- event loops


class _HandshakeLoggedSSLObject(ssl.SSLObject):
    """The ``SSLObject`` asyncio/uvloop drive; logs how its handshake ended, once.

    asyncio and uvloop log failed or timed-out server handshakes only in debug
    mode (with a traceback), so without this a plain-HTTP client or a port
    scanner leaves no trace. Only the handshake is wrapped: ``read``/``write``
    are inherited untouched.
    """

    #: Set on the per-server subclass made by :func:`follow_reloads`.
    handshake_timeout = 0.0
    #: Called once per failed or timed-out handshake (the server's metrics), if set.
    on_failure: Callable[[], None] | None = None
    _zzz_started: float | None = None
    _zzz_done = False

    def do_handshake(self) -> None:
        if self._zzz_started is None:
            self._zzz_started = time.monotonic()
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except (ssl.SSLError, OSError) as exc:
            self._zzz_done = True
            log.info("TLS handshake failed: %s", describe_handshake_error(exc))
            self._failed()
            raise
        self._zzz_done = True

    def __del__(self) -> None:
        started = self._zzz_started
        if self._zzz_done or started is None:
            return
        try:
            age = time.monotonic() - started
            if age >= self.handshake_timeout * 0.99:
                log.info("TLS handshake timed out after %.1fs", age)
            else:
                log.info("TLS handshake failed: client closed the connection")
            self._failed()
        except Exception:  # interpreter shutdown: logging may be gone
            pass

    def _failed(self) -> None:
        on_failure = type(self).on_failure
        if on_failure is not None:
            on_failure()


def follow_reloads(
    context: ssl.SSLContext, current: Callable[[], ssl.SSLContext | None],
    handshake_timeout: float, on_failure: Callable[[], None] | None = None,
) -> ssl.SSLContext:
    """Prepare ``context`` for a long-lived asyncio/uvloop server (idempotent).

    Each handshake switches to ``current()`` (the server's context after any
    reload) from the SNI callback, and is logged once when it fails or times
    out (and reported to ``on_failure``). Returns ``context``.
    """

    def pick_current(ssl_object: Any, server_name: str | None,
                     served: ssl.SSLContext) -> None:
        latest = current()
        if latest is not None and latest is not served:
            ssl_object.context = latest

    timeout = handshake_timeout

    report = on_failure

    class HandshakeLoggedSSLObject(_HandshakeLoggedSSLObject):
        handshake_timeout = timeout
        on_failure = report

    context.sni_callback = pick_current
    context.sslobject_class = HandshakeLoggedSSLObject
    return context
