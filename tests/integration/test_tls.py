"""HTTPS on both backends over real sockets: clients, mutual TLS, reload, bad input.

Certificates are made at run time with trustme. Clients: httpx (``verify=`` the
test CA), ``curl --cacert``, ``openssl s_client`` and the standard ``ssl`` module.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from zzz.config import ConfigError, EventLoopConfig, TlsConfig

from .procs import ServerProcess
from .tls_helpers import (
    TLS_SOCKET_TIMEOUT_S,
    TlsFiles,
    client_hello,
    legacy_client_context,
    make_tls_files,
    tls_app,
    tls_connect,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Read timeout of the bad-input tests: also the TLS handshake deadline.
SHORT_READ_TIMEOUT_MS = 1000
#: Slack on top of a deadline before a test calls the server late.
DEADLINE_SLACK_S = 2.0
#: Longest a test waits for an expected log line (eventloop logs abandoned
#: handshakes when the SSL object is freed, which a reference cycle may delay).
LOG_WAIT_S = 5.0
#: Longest wait for the CLI subprocess to print its ready line or exit.
PROCESS_TIMEOUT_S = 15.0


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "a", "a")


@pytest.fixture
def serve_tls(serve: Callable[..., Any], tls_files: TlsFiles) -> Callable[..., Any]:
    """``serve_tls(app=tls_app, tls=None, **config)`` → a running HTTPS server (``.https``)."""

    def start(app: Any = tls_app, tls: TlsConfig | None = None, **overrides: Any) -> Any:
        config = tls or TlsConfig(str(tls_files.cert_file), str(tls_files.key_file))
        srv = serve(app, tls=config, **overrides)
        srv.https = f"https://127.0.0.1:{srv.port}"
        return srv

    return start


@pytest.fixture
def tls_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def _https_get(url: str, ca_file: Path, cert: tuple[str, str] | None = None) -> httpx.Response:
    """GET ``url`` trusting only ``ca_file``; ``cert`` = (cert file, key file) for mutual TLS."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        context.load_cert_chain(*cert)
    with httpx.Client(verify=context, timeout=TLS_SOCKET_TIMEOUT_S) as client:
        return client.get(url)


def _assert_serving(srv: Any, files: TlsFiles) -> None:
    response = _https_get(f"{srv.https}/", files.ca_file)
    assert response.status_code == 200
    assert response.text == "hello"


def _assert_one_line_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing logged with a traceback, nothing from asyncio above debug."""
    for record in caplog.records:
        assert not record.exc_info and not record.exc_text, (
            f"traceback logged: {record.name}: {record.getMessage()}")
        if record.name.startswith("asyncio"):
            assert record.levelno <= logging.DEBUG, record.getMessage()


def _wait_for_log(caplog: pytest.LogCaptureFixture, pattern: str) -> list[str]:
    """Messages of zzz log records matching ``pattern`` (waiting up to LOG_WAIT_S)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        found = [r.getMessage() for r in caplog.records
                 if r.name.startswith("zzz") and regex.search(r.getMessage())]
        if found or time.monotonic() >= deadline:
            return found
        gc.collect()  # an abandoned handshake's SSL object may sit in a cycle
        time.sleep(0.05)


def _closed_within(sock: socket.socket, limit_s: float) -> float:
    """Seconds until the server closed ``sock`` (asserting it did within ``limit_s``)."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    except TimeoutError:
        pytest.fail(f"server kept the connection open for more than {limit_s}s")
    return time.monotonic() - started


# ---------------------------------------------------------------------- clients


def test_httpx_over_https(serve_tls, tls_files, backend):
    srv = serve_tls()
    with httpx.Client(verify=ssl.create_default_context(cafile=str(tls_files.ca_file)),
                      timeout=TLS_SOCKET_TIMEOUT_S) as client:
        for _ in range(3):  # keep-alive over one TLS connection
            response = client.get(f"{srv.https}/whoami")
            assert response.status_code == 200
            assert response.http_version == "HTTP/1.1"
            body = response.json()
            assert body["scheme"] == "https"
            assert body["subject"] is None and body["has_cert"] is False


def test_untrusted_client_refuses_the_certificate(serve_tls, tmp_path):
    srv = serve_tls()
    stranger = make_tls_files(tmp_path / "other", "other")
    with pytest.raises(httpx.ConnectError):
        _https_get(f"{srv.https}/", stranger.ca_file)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_with_cacert(serve_tls, tls_files):
    srv = serve_tls()
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--cacert", str(tls_files.ca_file),
         "-w", "\n%{http_version} %{http_code}", f"{srv.https}/"],
        capture_output=True, text=True, timeout=10, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n1.1 200"


def _s_client(port: int, ca_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca_file),
         "-verify_return_error", *args],
        input="", capture_output=True, text=True, timeout=10, check=False,
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_s_client_alpn_and_version(serve_tls, tls_files):
    srv = serve_tls()
    result = _s_client(srv.port, tls_files.ca_file, "-alpn", "h2,http/1.1")
    assert result.returncode == 0, result.stderr
    assert "ALPN protocol: http/1.1" in result.stdout
    assert "Verify return code: 0 (ok)" in result.stdout
    assert "New, TLSv1.3, Cipher is " in result.stdout
    tls12 = _s_client(srv.port, tls_files.ca_file, "-tls1_2", "-alpn", "http/1.1")
    assert tls12.returncode == 0, tls12.stderr
    assert "New, TLSv1.2, Cipher is " in tls12.stdout
    assert "Compression: NONE" in tls12.stdout


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_tls11_client_is_refused(serve_tls, tls_files, tls_log):
    srv = serve_tls()
    result = _s_client(srv.port, tls_files.ca_file, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert result.returncode != 0
    assert "Cipher is (NONE)" in result.stdout or "Cipher    : 0000" in result.stdout \
        or "no protocols available" in result.stderr or "alert" in result.stderr
    # The same with Python's client: the refusal is the server's, not OpenSSL's client policy.
    with pytest.raises(ssl.SSLError):
        tls_connect(srv.port, legacy_client_context()).close()
    assert _wait_for_log(tls_log, r"TLS handshake .*failed: .*UNSUPPORTED_PROTOCOL")
    _assert_serving(srv, tls_files)
    _assert_one_line_logs(tls_log)


def test_min_version_tls13_refuses_tls12(serve_tls, tls_files):
    srv = serve_tls(tls=TlsConfig(str(tls_files.cert_file), str(tls_files.key_file),
                                  min_version="TLSv1.3"))
    context = tls_files.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        tls_connect(srv.port, context).close()
    with tls_connect(srv.port, tls_files.client_context()) as sock:
        assert sock.version() == "TLSv1.3"


def test_ciphers_option_is_applied(serve_tls, tls_files):
    # Without the option the server prefers AES-256; either key type of trustme works.
    allowed = ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256")
    srv = serve_tls(tls=TlsConfig(str(tls_files.cert_file), str(tls_files.key_file),
                                  ciphers=":".join(allowed)))
    context = tls_files.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with tls_connect(srv.port, context) as sock:
        assert sock.cipher()[0] in allowed


# ---------------------------------------------------------------------- mutual TLS


def test_mutual_tls_with_and_without_a_client_certificate(serve_tls, tls_files, tmp_path,
                                                           tls_log):
    srv = serve_tls(tls=TlsConfig(str(tls_files.cert_file), str(tls_files.key_file),
                                  ca_file=str(tls_files.ca_file), require_client_cert=True))
    cert, key = tls_files.issue_client(tmp_path, "alice")
    response = _https_get(f"{srv.https}/whoami", tls_files.ca_file, cert=(str(cert), str(key)))
    assert response.status_code == 200
    body = response.json()
    assert body["has_cert"] is True
    assert body["subject"]["commonName"] == "alice"
    with pytest.raises(httpx.TransportError):  # TLS 1.3: refused at the first read
        _https_get(f"{srv.https}/whoami", tls_files.ca_file)
    stranger = make_tls_files(tmp_path / "x", "x")
    other_cert, other_key = stranger.issue_client(tmp_path, "mallory")
    with pytest.raises(httpx.TransportError):
        _https_get(f"{srv.https}/whoami", tls_files.ca_file,
                   cert=(str(other_cert), str(other_key)))
    assert _wait_for_log(tls_log, r"TLS handshake .*failed")
    _assert_one_line_logs(tls_log)


def test_optional_client_certificate(serve_tls, tls_files, tmp_path):
    srv = serve_tls(tls=TlsConfig(str(tls_files.cert_file), str(tls_files.key_file),
                                  ca_file=str(tls_files.ca_file)))
    anonymous = _https_get(f"{srv.https}/whoami", tls_files.ca_file).json()
    assert anonymous["has_cert"] is False and anonymous["subject"] is None
    cert, key = tls_files.issue_client(tmp_path, "bob")
    known = _https_get(f"{srv.https}/whoami", tls_files.ca_file,
                       cert=(str(cert), str(key))).json()
    assert known["subject"]["commonName"] == "bob"


# ---------------------------------------------------------------------- reload


def _install(source: TlsFiles, target: TlsFiles) -> None:
    """Overwrite ``target``'s certificate and key files with ``source``'s."""
    shutil.copyfile(source.cert_file, target.cert_file)
    shutil.copyfile(source.key_file, target.key_file)


def test_reload_new_connections_use_the_new_certificate(serve_tls, tls_files, tmp_path):
    srv = serve_tls()
    b_files = make_tls_files(tmp_path / "b", "b")
    old = httpx.Client(verify=tls_files.client_context(), timeout=TLS_SOCKET_TIMEOUT_S)
    try:
        first_port = old.get(f"{srv.https}/whoami").json()["port"]
        _install(b_files, tls_files)
        srv.server.reload_tls()
        # A new connection verifies against B's CA, and no longer against A's.
        assert _https_get(f"{srv.https}/", b_files.ca_file).text == "hello"
        with pytest.raises(httpx.ConnectError):
            _https_get(f"{srv.https}/", tls_files.ca_file)
        with tls_connect(srv.port, b_files.client_context()) as sock:
            assert sock.selected_alpn_protocol() is None  # nothing offered, nothing chosen
        context = b_files.client_context()
        context.set_alpn_protocols(["http/1.1"])
        with tls_connect(srv.port, context) as sock:
            assert sock.selected_alpn_protocol() == "http/1.1"
        # The keep-alive connection made with certificate A is untouched.
        again = old.get(f"{srv.https}/whoami").json()
        assert again["port"] == first_port
    finally:
        old.close()


def test_failed_reload_keeps_the_old_certificate(serve_tls, tls_files):
    srv = serve_tls()
    tls_files.key_file.write_text("not a key\n")
    with pytest.raises(ConfigError, match=r"tls\.key_file"):
        srv.server.reload_tls()
    _assert_serving(srv, tls_files)


def test_reload_applies_to_mutual_tls(serve_tls, tls_files, tmp_path):
    srv = serve_tls(tls=TlsConfig(str(tls_files.cert_file), str(tls_files.key_file),
                                  ca_file=str(tls_files.ca_file), require_client_cert=True))
    b_files = make_tls_files(tmp_path / "b", "b")
    _install(b_files, tls_files)
    shutil.copyfile(b_files.ca_file, tls_files.ca_file)  # clients of CA B are now trusted
    srv.server.reload_tls()
    cert, key = b_files.issue_client(tmp_path, "carol")
    body = _https_get(f"{srv.https}/whoami", b_files.ca_file, cert=(str(cert), str(key))).json()
    assert body["subject"]["commonName"] == "carol"


@pytest.fixture
def cli_server(backend: str, tls_files: TlsFiles) -> Iterator[ServerProcess]:
    """``python -m zzz run`` over TLS in a subprocess (killed at the end)."""
    server = ServerProcess(backend, "--tls-cert", str(tls_files.cert_file),
                           "--tls-key", str(tls_files.key_file), "--drain-timeout-ms", "2000",
                           app="tests.integration.tls_helpers:tls_app")
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_reloads_and_a_bad_reload_keeps_serving(cli_server, tls_files, tmp_path):
    port = cli_server.wait_ready()
    url = f"https://127.0.0.1:{port}/"
    assert _https_get(url, tls_files.ca_file).text == "hello"
    b_files = make_tls_files(tmp_path / "b", "b")
    _install(b_files, tls_files)
    cli_server.proc.send_signal(signal.SIGHUP)
    assert cli_server.wait_log("TLS certificate reloaded"), "".join(cli_server.lines)
    assert _https_get(url, b_files.ca_file).text == "hello"
    tls_files.cert_file.write_text("garbage\n")
    cli_server.proc.send_signal(signal.SIGHUP)
    assert cli_server.wait_log("TLS reload failed, keeping the old certificate")
    failure = [line for line in cli_server.lines if "TLS reload failed" in line]
    assert len(failure) == 1 and "tls.cert_file" in failure[0]
    assert _https_get(url, b_files.ca_file).text == "hello"
    assert cli_server.stop() == 0
    assert "Traceback" not in "".join(cli_server.lines)


@pytest.mark.parametrize("problem", ["missing", "mismatch", "encrypted", "not-pem"])
def test_cli_start_up_errors_exit_2_with_one_line(problem, tls_files, tmp_path):
    cert, key = str(tls_files.cert_file), str(tls_files.key_file)
    if problem == "missing":
        cert, expected = str(tmp_path / "nope.pem"), "tls.cert_file: no such file"
    elif problem == "mismatch":
        key = str(make_tls_files(tmp_path / "o", "o").key_file)
        expected = "tls.key_file: key does not match the certificate"
    elif problem == "encrypted":
        key_path = tmp_path / "encrypted.pem"
        key_path.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"
                            "-----END ENCRYPTED PRIVATE KEY-----\n")
        key, expected = str(key_path), "tls.key_file: key is encrypted; set tls.key_password"
    else:
        der = tmp_path / "cert.der"
        der.write_bytes(ssl.PEM_cert_to_DER_cert(tls_files.cert_file.read_text()))
        cert, expected = str(der), "tls.cert_file: not a PEM certificate"
    result = subprocess.run(
        [sys.executable, "-m", "zzz", "run", "tests.integration.tls_helpers:tls_app",
         "--port", "0", "--tls-cert", cert, "--tls-key", key],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("zzz: error: ") and expected in lines[0]


# ---------------------------------------------------------------------- bad input


def _bad_client(port: int, payload: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TLS_SOCKET_TIMEOUT_S)
    if payload:
        sock.sendall(payload)
    return sock


@pytest.mark.parametrize(("payload", "logged"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", r"plain HTTP sent to the HTTPS port"),
    (b"\x00\xff garbage \r\n\r\n" * 8, r"TLS handshake .*failed"),
], ids=["plain-http", "garbage"])
def test_non_tls_bytes_are_dropped_with_one_log_line(serve_tls, tls_files, tls_log,
                                                     payload, logged):
    srv = serve_tls(read_timeout_ms=SHORT_READ_TIMEOUT_MS)
    with _bad_client(srv.port, payload) as sock:
        # Closed without an answer (both backends): no TLS record is sent back in plain text.
        _closed_within(sock, SHORT_READ_TIMEOUT_MS / 1000 + DEADLINE_SLACK_S)
    assert len(_wait_for_log(tls_log, logged)) == 1
    _assert_serving(srv, tls_files)
    _assert_one_line_logs(tls_log)


@pytest.mark.parametrize("payload", ["nothing", "half-hello"])
def test_stalled_handshake_is_dropped_within_read_timeout(serve_tls, tls_files, tls_log,
                                                          payload):
    srv = serve_tls(read_timeout_ms=SHORT_READ_TIMEOUT_MS)
    data = b"" if payload == "nothing" else client_hello()[:40]
    with _bad_client(srv.port, data) as sock:
        waited = _closed_within(sock, SHORT_READ_TIMEOUT_MS / 1000 + DEADLINE_SLACK_S)
    assert waited >= SHORT_READ_TIMEOUT_MS / 1000 * 0.5
    assert len(_wait_for_log(tls_log, r"TLS handshake .*timed out")) == 1
    _assert_serving(srv, tls_files)
    _assert_one_line_logs(tls_log)


def test_truncated_handshake_is_dropped_with_one_log_line(serve_tls, tls_files, tls_log):
    srv = serve_tls(read_timeout_ms=SHORT_READ_TIMEOUT_MS)
    with _bad_client(srv.port, client_hello()[:40]):
        time.sleep(0.1)  # let the server start the handshake, then hang up
    assert len(_wait_for_log(tls_log, r"TLS handshake .*(failed|timed out)")) == 1
    _assert_serving(srv, tls_files)
    _assert_one_line_logs(tls_log)


def test_stalled_handshakes_do_not_block_other_clients(serve_tls, tls_files, backend):
    """With one worker (native) four silent TLS clients must not delay a real one."""
    srv = serve_tls(read_timeout_ms=10_000, worker_threads=1)
    hello = client_hello()
    stalled = [_bad_client(srv.port, hello[:40] if i % 2 else b"") for i in range(4)]
    try:
        time.sleep(0.2)  # the stalled handshakes have reached the server
        started = time.monotonic()
        _assert_serving(srv, tls_files)
        elapsed = time.monotonic() - started
        assert elapsed < DEADLINE_SLACK_S, f"{backend}: served after {elapsed:.2f}s"
    finally:
        for sock in stalled:
            sock.close()


def test_whoami_payload_is_json(serve_tls, tls_files):
    """The helper app answers JSON the other tests parse (guards the helper itself)."""
    srv = serve_tls()
    body = _https_get(f"{srv.https}/whoami", tls_files.ca_file).text
    assert json.loads(body)["scheme"] == "https"


def test_bad_input_on_the_plain_asyncio_loop(serve_tls, tls_files, tls_log, backend):
    """The event-loop backend without uvloop: same drops, same one-line logs."""
    if backend != "eventloop":
        pytest.skip("asyncio loop choice applies to the eventloop backend only")
    srv = serve_tls(read_timeout_ms=SHORT_READ_TIMEOUT_MS,
                    eventloop=EventLoopConfig(loop="asyncio"))
    with _bad_client(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") as sock:
        _closed_within(sock, DEADLINE_SLACK_S)
    with _bad_client(srv.port, b"") as sock:
        _closed_within(sock, SHORT_READ_TIMEOUT_MS / 1000 + DEADLINE_SLACK_S)
    with _bad_client(srv.port, client_hello()[:40]):
        time.sleep(0.1)
    assert len(_wait_for_log(tls_log, r"plain HTTP sent to the HTTPS port")) == 1
    assert len(_wait_for_log(tls_log, r"TLS handshake timed out")) == 1
    assert len(_wait_for_log(tls_log, r"client closed the connection")) == 1
    _assert_serving(srv, tls_files)
    _assert_one_line_logs(tls_log)
