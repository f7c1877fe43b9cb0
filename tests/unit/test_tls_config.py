"""zzz.tls.build_context: the context's settings and its start-up errors (no sockets)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from zzz.config import ConfigError, TlsConfig
from zzz.context import Context
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.tls import build_context, describe_handshake_error, follow_reloads


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    leaf = ca.issue_cert("localhost")
    paths = {name: tmp_path / f"{name}.pem" for name in ("cert", "key", "ca", "both")}
    leaf.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    ca.cert_pem.write_to_path(str(paths["ca"]))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(paths["both"]))
    return paths


def _config(files: dict[str, Path], **changes: object) -> TlsConfig:
    values: dict[str, object] = {"cert_file": str(files["cert"]), "key_file": str(files["key"])}
    values.update(changes)
    return TlsConfig(**values)  # type: ignore[arg-type]


def _error(config: TlsConfig) -> str:
    with pytest.raises(ConfigError) as info:
        build_context(config)
    return str(info.value)


def test_defaults(files):
    context = build_context(_config(files))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False


def test_tls13_minimum_and_mutual_tls(files):
    context = build_context(_config(files, min_version="TLSv1.3", ca_file=str(files["ca"]),
                                    require_client_cert=True))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_REQUIRED
    optional = build_context(_config(files, ca_file=str(files["ca"])))
    assert optional.verify_mode == ssl.CERT_OPTIONAL


def test_key_and_certificate_in_one_file(files):
    build_context(_config(files, cert_file=str(files["both"]), key_file=str(files["both"])))


def test_missing_file(files, tmp_path):
    assert _error(_config(files, cert_file=str(tmp_path / "x.pem"))) == (
        f"tls.cert_file: no such file: {tmp_path / 'x.pem'}")
    assert _error(_config(files, key_file=str(tmp_path / "k.pem"))).startswith(
        "tls.key_file: no such file")
    assert _error(_config(files, ca_file=str(tmp_path / "c.pem"))).startswith(
        "tls.ca_file: no such file")


def test_directory_is_not_a_file(files, tmp_path):
    assert _error(_config(files, key_file=str(tmp_path))) == (
        f"tls.key_file: not a regular file: {tmp_path}")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads files whatever their mode")
def test_unreadable_file(files):
    files["key"].chmod(0)
    assert "tls.key_file: cannot read" in _error(_config(files))


def test_key_that_does_not_match(files, ca, tmp_path):
    other = tmp_path / "other.key"
    ca.issue_cert("other").private_key_pem.write_to_path(str(other))
    assert _error(_config(files, key_file=str(other))) == (
        "tls.key_file: key does not match the certificate")


def _encrypted_key(files: dict[str, Path], tmp_path: Path, password: bytes) -> Path:
    key = serialization.load_pem_private_key(files["key"].read_bytes(), None)
    path = tmp_path / "encrypted.pem"
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password)))
    return path


def test_encrypted_key(files, tmp_path):
    path = _encrypted_key(files, tmp_path, b"s3cret")
    assert _error(_config(files, key_file=str(path))) == (
        "tls.key_file: key is encrypted; set tls.key_password")
    assert _error(_config(files, key_file=str(path), key_password="wrong")) == (
        f"tls.key_password: does not decrypt {path}")
    build_context(_config(files, key_file=str(path), key_password="s3cret"))


def test_not_pem(files, tmp_path):
    der = tmp_path / "cert.der"
    der.write_bytes(ssl.PEM_cert_to_DER_cert(files["cert"].read_text()))
    assert _error(_config(files, cert_file=str(der))) == (
        f"tls.cert_file: not a PEM certificate: {der}")
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
    assert _error(_config(files, cert_file=str(broken))) == (
        f"tls.cert_file: not a valid PEM certificate: {broken}")
    assert _error(_config(files, key_file=str(files["cert"]))) == (
        f"tls.key_file: no PEM private key in {files['cert']}")
    assert _error(_config(files, ca_file=str(files["key"]))) == (
        f"tls.ca_file: not a PEM certificate: {files['key']}")


def test_unknown_ciphers(files):
    assert _error(_config(files, ciphers="NO-SUCH-CIPHER")) == (
        "tls.ciphers: no cipher matches 'NO-SUCH-CIPHER'")


def test_follow_reloads_installs_the_handshake_hooks(files):
    context = build_context(_config(files))
    assert follow_reloads(context, lambda: context, 5.0) is context
    assert context.sni_callback is not None
    assert issubclass(context.sslobject_class, ssl.SSLObject)
    assert context.sslobject_class.handshake_timeout == 5.0  # type: ignore[attr-defined]


def test_describe_handshake_error():
    http = ssl.SSLError(1, "[SSL: HTTP_REQUEST] http request")
    http.reason = "HTTP_REQUEST"  # type: ignore[misc]
    assert describe_handshake_error(http) == "plain HTTP sent to the HTTPS port (HTTP_REQUEST)"
    assert describe_handshake_error(ConnectionResetError()) == "client closed the connection"
    assert "\n" not in describe_handshake_error(ValueError("x"))


def _context_with(extensions: dict[str, object]) -> Context:
    request = Request("GET", "/", "", Headers(), scheme="https")
    request.extensions.update(extensions)
    return Context(request, server=None)  # type: ignore[arg-type]


def test_context_peer_certificate_accessors():
    assert _context_with({}).tls_peer_cert is None
    assert _context_with({}).tls_peer_subject is None
    cert = {"subject": ((("organizationName", "Example"),),
                        (("commonName", "outer"),), (("commonName", "alice"),))}
    ctx = _context_with({"tls_peer_cert": cert})
    assert ctx.tls_peer_cert is cert
    assert ctx.tls_peer_subject == {"organizationName": "Example", "commonName": "alice"}


def _offered_tls12_ciphers(context: ssl.SSLContext) -> set[str]:
    return {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}


def test_intermediate_profile_is_the_default(files):
    context = build_context(_config(files))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    offered = _offered_tls12_ciphers(context)
    assert offered and all("GCM" in name or "CHACHA20" in name for name in offered)
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_modern_profile_is_tls13_only(files):
    context = build_context(_config(files, profile="modern"))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_unknown_profile_names_the_field(files):
    with pytest.raises(ConfigError) as info:
        _config(files, profile="old")
    assert str(info.value).startswith("tls.profile: must be one of intermediate, modern")


def test_groups_are_limited_to_the_profile(files):
    """A TLS 1.3 client offering only a group the profiles leave out (P-521) fails;
    one offering X25519 succeeds (checked on a memory BIO, no sockets)."""
    server = build_context(_config(files))

    def handshake(groups_curve: str | None) -> bool:
        client = ssl.create_default_context(cafile=str(files["ca"]))
        if groups_curve is not None:
            client.set_ecdh_curve(groups_curve)
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
        s = server.wrap_bio(s_in, s_out, server_side=True)
        for _ in range(10):
            for side in (c, s):
                try:
                    side.do_handshake()
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except ssl.SSLError:
                    return False
            s_in.write(c_out.read())
            c_in.write(s_out.read())
            if c.cipher() is not None and s.cipher() is not None:
                try:
                    c.do_handshake()
                    s.do_handshake()
                    return True
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                except ssl.SSLError:
                    return False
        return False

    assert handshake(None)
    assert handshake("prime256v1")
    assert not handshake("secp521r1")
