"""Listening sockets: --fd adoption, --uds, systemd socket activation, their config checks."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from zzz.backends._listener import (
    SD_LISTEN_FDS_START,
    adopt_listener,
    bind_listener,
    bound_address,
    systemd_listen_fd,
)
from zzz.config import Config, ConfigError


def test_config_checks_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^fd: give either"):
        Config(fd=3, uds="/tmp/x.sock")
    with pytest.raises(ConfigError, match=r"^fd:"):
        Config(fd=-1)
    with pytest.raises(ConfigError, match=r"^uds_mode:"):
        Config(uds_mode="rw")
    with pytest.raises(ConfigError, match=r"^uds_mode:"):
        Config(uds_mode="1777")
    with pytest.raises(ConfigError, match=r"^max_requests:"):
        Config(max_requests=-1)
    with pytest.raises(ConfigError, match=r"^proxy_protocol:"):
        from zzz.config import TlsConfig

        Config(proxy_protocol=True, tls=TlsConfig("c.pem", "k.pem"))
    assert Config(uds_mode="600").uds_permissions == 0o600


def test_uds_gets_its_mode_and_replaces_a_stale_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "zzz.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, like after a crash
    sock = bind_listener(Config(uds=path, uds_mode="600"))
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert bound_address(sock) == (path, 0)
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        client.close()
    finally:
        sock.close()


def test_uds_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("keep me")
    with pytest.raises(OSError, match="not a socket"):
        bind_listener(Config(uds=str(path)))
    assert path.read_text() == "keep me"


def test_adopt_an_inherited_listening_socket() -> None:
    original = socket.create_server(("127.0.0.1", 0))
    fd = os.dup(original.fileno())
    try:
        sock = bind_listener(Config(fd=fd))
        assert bound_address(sock) == original.getsockname()
        sock.close()
    finally:
        original.close()


def test_adopt_refuses_what_is_not_a_listening_stream_socket() -> None:
    unbound = socket.socket()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r, w = os.pipe()
    try:
        with pytest.raises(OSError, match="not listening"):
            adopt_listener(unbound.fileno())
        with pytest.raises(OSError, match="not a stream socket"):
            adopt_listener(udp.fileno())
        with pytest.raises(OSError, match="not a usable socket"):
            adopt_listener(r)
        assert unbound.fileno() >= 0  # left open for its owner
    finally:
        unbound.close()
        udp.close()
        os.close(r)
        os.close(w)


def test_systemd_listen_fds() -> None:
    pid = os.getpid()
    assert systemd_listen_fd({"LISTEN_FDS": "1", "LISTEN_PID": str(pid)}, pid) == SD_LISTEN_FDS_START
    assert systemd_listen_fd({"LISTEN_FDS": "1", "LISTEN_PID": str(pid + 1)}, pid) is None
    assert systemd_listen_fd({"LISTEN_FDS": "0", "LISTEN_PID": str(pid)}, pid) is None
    assert systemd_listen_fd({"LISTEN_FDS": "x"}, pid) is None
    assert systemd_listen_fd({}, pid) is None
