"""The one ``ssl.SSLContext`` both backends serve HTTPS with, built from :class:`TlsConfig`."""

from __future__ import annotations

import ssl

from zzz.config import ConfigError, TlsConfig


def build_context(tls: TlsConfig) -> ssl.SSLContext:
    """A server context: TLS 1.2+ by default, ALPN ``http/1.1``, compression off."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if tls.min_version == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
    )
    context.options |= ssl.OP_NO_COMPRESSION
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=tls.key_password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("tls.cert_file", f"cannot load certificate/key: {exc}") from exc
    if tls.ciphers:
        context.set_ciphers(tls.ciphers)
    if tls.ca_file:
        context.load_verify_locations(tls.ca_file)
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    context.set_alpn_protocols(["http/1.1"])
    return context
