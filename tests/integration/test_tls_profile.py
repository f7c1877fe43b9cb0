"""The default TLS context against Mozilla's server-side TLS profiles, on each backend.

sslyze (the dev extra installs it) scans the running server with the scan
commands its Mozilla checker needs and checks the result against the
intermediate profile (the default) and the modern one (``tls.profile``). The
only findings allowed are the test certificate's own (a private CA, trustme's
key type and lifetime), which a deployment's real certificate decides.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from zzz.config import TlsConfig

from .tls_helpers import make_tls_files, tls_app, tls_connect

sslyze = pytest.importorskip("sslyze", reason="sslyze is in the dev extra")
checker = pytest.importorskip("sslyze.mozilla_tls_profile.tls_config_checker")

#: Findings about the certificate itself, not about the server's TLS configuration.
CERTIFICATE_FINDINGS = frozenset({
    "certificate_path_validation", "certificate_curves", "rsa_key_size",
    "maximum_certificate_lifespan", "certificate_types", "certificate_signatures",
})  # fmt: skip


def scan(port: int) -> Any:
    request = sslyze.ServerScanRequest(
        server_location=sslyze.ServerNetworkLocation("127.0.0.1", port),
        scan_commands=checker.SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    )
    scanner = sslyze.Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    return result


def findings(result: Any, profile: Any) -> dict[str, str]:
    config = checker.MozillaTlsConfiguration.get(profile)
    try:
        checker.check_server_against_tls_configuration(result, config)
    except checker.ServerNotCompliantWithTlsConfiguration as exc:
        return {k: v for k, v in exc.issues.items() if k not in CERTIFICATE_FINDINGS}
    return {}


@pytest.mark.parametrize("profile", ["intermediate", "modern"])
def test_default_context_is_mozilla_compliant(serve, tmp_path, profile):
    files = make_tls_files(tmp_path, "profile")
    srv = serve(tls_app, tls=TlsConfig(str(files.cert_file), str(files.key_file),
                                       profile=profile))
    result = scan(srv.port)
    enum = checker.TlsConfigurationEnum
    wanted = enum.MOZILLA_MODERN if profile == "modern" else enum.MOZILLA_INTERMEDIATE
    assert findings(result, wanted) == {}


def test_tls_ciphers_still_overrides_the_profile(serve, tmp_path):
    """A CBC suite the profile leaves out is served when tls.ciphers asks for it."""
    files = make_tls_files(tmp_path, "ciphers")
    cbc = "ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA256"
    srv = serve(tls_app, tls=TlsConfig(str(files.cert_file), str(files.key_file), ciphers=cbc))
    context = files.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(cbc)
    with tls_connect(srv.port, context) as tls:
        cipher = tls.cipher()
        assert cipher is not None and cipher[0].endswith("AES128-SHA256")
    default = serve(tls_app, tls=TlsConfig(str(files.cert_file), str(files.key_file)))
    with pytest.raises(ssl.SSLError):
        tls_connect(default.port, context).close()
