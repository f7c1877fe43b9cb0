"""TLS material and clients for the HTTPS tests: certificates made at run time with trustme.

Also the application the TLS tests serve (``tls_app``; the CLI loads it as
``tests.integration.tls_helpers:tls_app``), so this module imports only zzz,
trustme and the standard library at module level.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path

import trustme

import zzz

#: Every socket in the TLS tests gets this timeout: nothing may hang the suite.
TLS_SOCKET_TIMEOUT_S = 5.0
#: Host name in the server certificates (the tests connect by IP, as curl and wrk do).
SERVER_NAMES = ("127.0.0.1", "localhost")

tls_app = zzz.Router()


@tls_app.get("/")
def _index(ctx: zzz.Context) -> None:
    ctx.text(200, "hello")


@tls_app.get("/whoami")
def _whoami(ctx: zzz.Context) -> None:
    client = ctx.client
    ctx.json(200, {
        "scheme": ctx.request.scheme,
        "subject": ctx.tls_peer_subject,
        "has_cert": ctx.tls_peer_cert is not None,
        "port": client[1] if client else None,
    })


@dataclass
class TlsFiles:
    """One CA and a server certificate it issued, written to files."""

    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context

    def issue_client(self, directory: Path, common_name: str) -> tuple[Path, Path]:
        """A client certificate (cert file, key file) for mutual TLS, signed by this CA."""
        leaf = self.ca.issue_cert(f"{common_name}@example.test", common_name=common_name)
        cert_file = directory / f"client-{common_name}.pem"
        key_file = directory / f"client-{common_name}.key"
        for blob in leaf.cert_chain_pems:
            with cert_file.open("ab") as handle:
                handle.write(blob.bytes())
        leaf.private_key_pem.write_to_path(str(key_file))
        return cert_file, key_file


def make_tls_files(directory: Path, name: str = "a") -> TlsFiles:
    """A fresh CA and server certificate under ``directory`` (files named after ``name``)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name=f"zzz test CA {name}")
    leaf = ca.issue_cert(*SERVER_NAMES)
    files = TlsFiles(ca, directory / f"ca-{name}.pem", directory / f"cert-{name}.pem",
                     directory / f"key-{name}.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    with files.cert_file.open("wb") as handle:
        for blob in leaf.cert_chain_pems:
            handle.write(blob.bytes())
    leaf.private_key_pem.write_to_path(str(files.key_file))
    return files


def tls_connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS client socket to 127.0.0.1:port, handshake done."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=TLS_SOCKET_TIMEOUT_S)
    try:
        return context.wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise


def client_hello() -> bytes:
    """The bytes of a real TLS ClientHello (for truncated-handshake tests)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the ServerHello
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16", "not a TLS handshake record"
    return hello


def legacy_client_context() -> ssl.SSLContext:
    """A client that offers only TLS 1.0/1.1 (OpenSSL's security level lowered so it does)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # TLSv1_1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context
