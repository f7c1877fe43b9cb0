"""examples/chat.py in a real browser: two headless Chromium tabs exchange a message.

Chromium is Debian's ``chromium`` package. When it is missing, the set-up installs
it with ``apt-get`` if the tests run as root; the test is skipped (with the reason)
only when it cannot be installed. The browser is driven over the DevTools protocol
with the ``websockets`` client; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

#: The example under test, loaded by path (``examples`` is not an installed package).
CHAT_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chat.py"

#: Where Debian installs Chromium, and the package that provides it.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_PACKAGE = "chromium"
#: Bound of ``apt-get update`` + ``apt-get install`` when Chromium is missing.
INSTALL_TIMEOUT_S = 600
#: Longest wait for the browser to start and for each page-level condition.
BROWSER_START_S = 30.0
PAGE_WAIT_S = 15.0
#: Longest a single DevTools call may take.
CDP_CALL_S = 10.0
POLL_S = 0.1

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--remote-debugging-port=0",
]


def _find_chromium() -> str | None:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Chromium, installed with apt-get when missing and possible."""
    found = _find_chromium()
    if found:
        return found
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("Chromium is not installed and the tests do not run as root "
                    f"(install it with: apt-get install -y {CHROMIUM_PACKAGE})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    errors = []
    for command in (
        ["apt-get", "install", "-y", "--no-install-recommends", CHROMIUM_PACKAGE],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", CHROMIUM_PACKAGE],
    ):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{' '.join(command)}: {exc}")
            continue
        if done.returncode != 0:
            errors.append(f"{' '.join(command)}: exit {done.returncode}: {done.stderr[-300:]}")
        found = _find_chromium()
        if found:
            return found
    pytest.skip(f"Chromium could not be installed: {'; '.join(errors) or 'not found after install'}")


class Browser:
    """A headless Chromium process and its DevTools HTTP endpoint."""

    def __init__(self, path: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="zzz-chromium-")
        self.proc = subprocess.Popen(
            [path, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.port = self._devtools_port()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", trust_env=False,
                                 timeout=CDP_CALL_S)

    def _devtools_port(self) -> int:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + BROWSER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise AssertionError(f"Chromium exited with {self.proc.returncode}: {err[-800:]}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(marker.read_text().splitlines()[0])
            time.sleep(POLL_S)
        raise AssertionError(f"Chromium did not open DevTools within {BROWSER_START_S}s")

    def new_tab(self, url: str) -> Tab:
        # A blank tab, then Page.navigate: /json/new?<url> would cut the URL at its "&".
        response = self.http.put("/json/new?about:blank")
        response.raise_for_status()
        tab = Tab(response.json()["webSocketDebuggerUrl"])
        tab.call("Page.navigate", url=url)
        return tab

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class Tab:
    """One page, driven over its DevTools WebSocket."""

    def __init__(self, ws_url: str) -> None:
        self._stack = contextlib.ExitStack()
        self.conn = self._stack.enter_context(
            connect(ws_url, max_size=None, proxy=None, open_timeout=CDP_CALL_S, compression=None)
        )
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        call_id = self.next_id
        self.conn.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + CDP_CALL_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"DevTools {method} got no answer in {CDP_CALL_S}s")
            message = json.loads(self.conn.recv(timeout=remaining))
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"DevTools {method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str, what: str) -> Any:
        deadline = time.monotonic() + PAGE_WAIT_S
        value = None
        while time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):  # the page may still be loading
                value = self.js(expression)
                if value:
                    return value
            time.sleep(POLL_S)
        raise AssertionError(f"page never showed {what} within {PAGE_WAIT_S}s (last: {value!r})")

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def browser(chromium: str) -> Iterator[Browser]:
    instance = Browser(chromium)
    try:
        yield instance
    finally:
        instance.close()


def load_chat_app() -> Any:
    spec = importlib.util.spec_from_file_location("zzz_example_chat", CHAT_EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)
def test_two_tabs_exchange_a_message(serve, browser):
    running = serve(load_chat_app())
    base = f"http://127.0.0.1:{running.port}/?room=test"
    alice = browser.new_tab(base + "&name=alice")
    bob = None
    try:
        alice.wait_until("document.getElementById('status').textContent.startsWith('connected')",
                         "alice connected")
        bob = browser.new_tab(base + "&name=bob")
        bob.wait_until("document.getElementById('status').textContent.startsWith('connected')",
                       "bob connected")
        alice.wait_until("document.getElementById('log').innerText.includes('bob joined')",
                         "bob joining, in alice's tab")
        alice.js(
            "document.getElementById('text').value = 'hello from alice';"
            "document.getElementById('form').requestSubmit(); true"
        )
        log = bob.wait_until(
            "(t => t.includes('alice: hello from alice') && t)"
            "(document.getElementById('log').innerText)",
            "alice's message in bob's tab",
        )
        assert "alice: hello from alice" in log
    finally:
        alice.close()
        if bob is not None:
            bob.close()
