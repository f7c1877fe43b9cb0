"""Slow clients (issue 12 §3): slowloris, slow body, slow reader, silent TLS handshakes
and half-open connections, all at once, while a well-behaved client keeps asking.

Short deadlines in the server's config make every attacker due within about a
second; the test then checks that

* every request of the well-behaved client succeeded (its p99 latency is measured,
  printed and only loosely bounded: a 2-core machine shared with other jobs cannot
  promise the issue's 50 ms, so the figure goes in the report instead),
* every attacker was cut, and no later than its deadline plus :data:`CUT_GRACE_S`,
* the process's descriptor count comes back to the baseline, and its RSS stays
  within :data:`RSS_GROWTH_LIMIT` of it.

How many attackers: ``ZZZ_ATTACKERS`` (default :data:`conftest.DEFAULT_ATTACKERS`),
split evenly between the kinds.
"""

from __future__ import annotations

import resource
import statistics
import threading
import time
from typing import Any

import httpx
from integration.apps import HELLO, app
from integration.rawhttp import httpx_client

from .attackers import SLOW_READER_DRAIN_S, run_attackers
from .conftest import (
    DEFAULT_ATTACKERS,
    FD_SLACK,
    env_int,
    open_fds,
    raise_nofile,
    rss_bytes,
    wait_fds_back,
)

#: Deadlines of the server under attack (ms): short, so the test is short.
READ_TIMEOUT_MS = 1000
WRITE_TIMEOUT_MS = 1000
KEEPALIVE_TIMEOUT_MS = 1000
#: How long attackers keep at it: every deadline above plus a margin for a loaded box.
PHASE_S = 5.0
#: How long slow readers stall before checking they were cut: the write timeout plus
#: the time to fill both socket buffers, with a margin.
SLOW_READER_PHASE_S = 3.0
#: How late past its deadline an attacker may be cut (sweep interval + a busy machine).
CUT_GRACE_S = 2.5
#: Loose bound on the well-behaved client's p99 latency (the issue's target is 50 ms on
#: a quiet machine; the measured figure is printed).
P99_LIMIT_S = 2.0
#: Pause between two requests of the well-behaved client.
GOOD_CLIENT_PAUSE_S = 0.01
#: RSS the attack may leave behind, per attacker and fixed. This process holds the
#: attackers' own buffers too (asyncio reads up to 128 KiB ahead, TLS more) and the
#: allocator does not hand freed arenas back at once, so this only catches a gross
#: leak; bench/soak.py measures the server process alone.
RSS_PER_ATTACKER = 1024 * 1024
RSS_FIXED_GROWTH = 64 * 1024 * 1024
#: Slow readers in their test: a fifth of ``ZZZ_ATTACKERS`` (the mix's share), at least
#: this many (more than the native backend's 4 workers).
MIN_SLOW_READERS = 8


class GoodClient(threading.Thread):
    """Keeps sending ``GET /`` over one keep-alive connection until stopped."""

    def __init__(self, srv: object) -> None:
        super().__init__(name="good-client", daemon=True)
        self.srv = srv
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.failures: list[str] = []

    def run(self) -> None:
        with httpx_client(self.srv) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    response = client.get(f"{self.srv.url}/")  # type: ignore[attr-defined]
                    if response.status_code != 200 or response.text != HELLO:
                        self.failures.append(f"status {response.status_code}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.latencies.append(time.perf_counter() - started)
                self.stop.wait(GOOD_CLIENT_PAUSE_S)


#: The slow-client mix of the main test; slow readers have their own test (below).
HEAD_ATTACKS = ("slowloris", "slow_body", "silent", "half_open")


def _deadline_s(kind: str, transport: str) -> float:
    if kind == "half_open":
        return 0.0  # the server sees the FIN at once
    if kind == "silent" and transport == "tcp":
        return KEEPALIVE_TIMEOUT_MS / 1000.0
    if kind == "slow_reader":
        # Stall start unknown: a reader counts as cut if its connection ended by the
        # end of the phase (its final drain then finds EOF, not 1 GiB of stream).
        return SLOW_READER_PHASE_S + SLOW_READER_DRAIN_S
    return READ_TIMEOUT_MS / 1000.0


def _attack(serve: Any, transport: str, backend: str, kinds: list[str],
            phase_s: float = PHASE_S) -> None:
    """Run ``kinds`` attackers against a fresh server while a good client asks; check
    the good client, the cuts, the fds and the RSS (see the module docstring)."""
    attackers = len(kinds)
    saved = raise_nofile(2 * attackers + 256)
    try:
        srv = serve(app, read_timeout_ms=READ_TIMEOUT_MS, write_timeout_ms=WRITE_TIMEOUT_MS,
                    keepalive_timeout_ms=KEEPALIVE_TIMEOUT_MS,
                    max_connections=max(1024, 2 * attackers),
                    # Room for the whole burst of connects: the storm is test_storm's.
                    kernel_backlog=min(65535, max(128, attackers)))
        with httpx_client(srv) as warm:  # lazily created pools and pipes exist from here
            assert warm.get(f"{srv.url}/").text == HELLO
        fds_before = wait_fds_back(open_fds())
        rss_before = rss_bytes()

        good = GoodClient(srv)
        good.start()
        try:
            outcomes = run_attackers(kinds, srv.port, srv.client_ssl, phase_s)
        finally:
            good.stop.set()
            good.join(10)
        assert not good.is_alive()

        fds_after = wait_fds_back(fds_before)
        rss_after = rss_bytes()
        lat = sorted(good.latencies)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
        by_kind = {k: [o.cut_after for o in outcomes if o.kind == k and o.cut_after is not None]
                   for k in sorted(set(kinds))}
        print(f"\n[{backend}/{transport}] {attackers} attackers; good client: "
              f"{len(lat)} requests, median {statistics.median(lat) * 1000:.1f} ms, "
              f"p99 {p99 * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms; "
              f"fds {fds_before}->{fds_after}; RSS {rss_before >> 20}->{rss_after >> 20} MiB; "
              + ", ".join(f"{k} cut max {max(v):.2f}s" for k, v in by_kind.items() if v))

        errors = [o for o in outcomes if o.error]
        assert not errors, f"attackers failed to attack: {errors[:5]}"
        uncut = [o.kind for o in outcomes if o.cut_after is None]
        assert not uncut, f"{len(uncut)} attackers never cut: {sorted(set(uncut))}"
        late = [(o.kind, round(o.cut_after, 2)) for o in outcomes if o.cut_after is not None
                and o.cut_after > _deadline_s(o.kind, transport) + CUT_GRACE_S]
        assert not late, f"attackers cut late: {late[:10]}"
        assert not good.failures, f"good client failed: {good.failures[:5]}"
        assert len(lat) > 0
        assert p99 < P99_LIMIT_S, f"good client p99 {p99:.3f}s"
        assert fds_after <= fds_before + FD_SLACK, f"fd leak: {fds_before} -> {fds_after}"
        assert rss_after - rss_before < RSS_FIXED_GROWTH + RSS_PER_ATTACKER * attackers
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, saved)


def test_slow_clients_are_cut_while_a_good_client_is_served(serve, transport, backend):
    """Slowloris, slow body, silent handshakes and half-open connections, mixed."""
    attackers = env_int("ZZZ_ATTACKERS", DEFAULT_ATTACKERS)
    _attack(serve, transport, backend,
            [HEAD_ATTACKS[i % len(HEAD_ATTACKS)] for i in range(attackers)])


def test_slow_readers_are_cut_while_a_good_client_is_served(
        serve, transport, backend, request):
    """Clients that ask for a large response and never read it."""
    readers = max(MIN_SLOW_READERS, env_int("ZZZ_ATTACKERS", DEFAULT_ATTACKERS) // 5)
    _attack(serve, transport, backend, ["slow_reader"] * readers, SLOW_READER_PHASE_S)
