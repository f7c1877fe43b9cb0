"""Prometheus metrics of one server, on ``prometheus_client``.

``prometheus_client`` is the ecosystem's standard: its text exposition, its
histogram semantics and its multiprocess mode are what scrapers and the other
Python servers expect, so zzz does not write its own. It is the optional extra
``zzz[metrics]``: ``Config`` refuses ``metrics_port``/``metrics_path`` with a
one-line error naming the field when it is missing, and nothing here is
imported unless metrics are on.

Two kinds of figures:

* **Events** (requests, bad requests, accepted connections, TLS handshake
  failures, WebSocket messages) are counters and histograms updated by the
  :class:`~zzz.observability.observer.Observer` as they happen.
* **Levels** of the backend (open connections, native queue depth, busy
  workers, parked connections) are read from the backend object *at scrape
  time* by :class:`BackendCollector`: nothing is paid per request for them.
  ``closed = accepted - open`` is derived the same way. (On the native backend a
  TLS connection counts as accepted before its handshake; on the event loop,
  whose TLS layer is asyncio's, once the handshake succeeded.)

Each server has its own :class:`CollectorRegistry` (two servers in one process,
as in the tests, never mix their counts). With ``PROMETHEUS_MULTIPROC_DIR`` set
(``--workers N``) the event metrics are written to per-process files by
``prometheus_client`` itself and a scrape of any worker aggregates them all
(:meth:`ServerMetrics.exposition`); the supervisor calls the functions of
:mod:`zzz.observability.multiproc` before forking and when a worker exits. Scrape-time
levels then describe the worker that answered the scrape only.
"""

from __future__ import annotations

import os
import queue
import threading
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from zzz.observability.multiproc import MULTIPROC_ENV
from zzz.observability.shards import histogram_family

#: Request duration buckets (seconds): 100 µs (a hello route) up to 10 s, roughly x2.5
#: apart, so both the fast path and slow handlers land in a bucket that resolves them.
DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Response body size buckets (bytes): 0 (204/304) to 16 MiB, x4 apart.
SIZE_BUCKETS = (0, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
#: Loop-lag buckets (seconds): a healthy loop lags < 1 ms; > 100 ms is a blocked loop.
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Methods kept as label values; anything else is ``other`` (bounded cardinality:
#: llhttp accepts dozens of methods and a scanner would create a series for each).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                           "CONNECT", "TRACE"})
#: ``status // 100`` → label value, precomputed so the hot path formats nothing.
STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}

CONTENT_TYPE = CONTENT_TYPE_LATEST


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


def status_class(status: int) -> str:
    return STATUS_CLASSES.get(status // 100, "other")


class ServerMetrics:
    """The metrics of one server and the registry they live in.

    Per-request and per-connection figures go through :attr:`recorder`
    (:class:`ShardedRecorder`, or :class:`ClientRecorder` in multiprocess mode);
    rare events (bad requests, TLS failures, WebSocket opens, loop lag) use
    ``prometheus_client`` objects directly.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.recorder: Recorder = ClientRecorder(reg) if self.multiprocess else ShardedRecorder()
        if isinstance(self.recorder, ShardedRecorder):
            reg.register(self.recorder)
        self.bad_requests = Counter(
            "zzz_http_bad_requests", "Requests refused by the HTTP engine, by status",
            ["status"], registry=reg)
        self.tls_failures = Counter(
            "zzz_tls_handshake_failures", "TLS handshakes that failed or timed out",
            registry=reg)
        #: Failures reported but not yet added to ``tls_failures``: see :meth:`tls_failed`.
        self._tls_pending: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.ws_open = Gauge(
            "zzz_websocket_connections_open", "WebSocket connections open",
            registry=reg, multiprocess_mode="livesum")
        self.ws_opened = Counter(
            "zzz_websocket_connections", "WebSocket connections opened", registry=reg)
        self.loop_lag = Histogram(
            "zzz_eventloop_lag_seconds", "How late the periodic loop-lag probe ran",
            buckets=LAG_BUCKETS, registry=reg)
        self.backend = BackendCollector(self)
        reg.register(self.backend)

    def tls_failed(self) -> None:
        """Count a failed handshake. Safe from ``__del__`` (where the event loop's TLS
        objects report timeouts): ``SimpleQueue.put`` is reentrant, whereas a counter's
        lock taken inside a garbage collection that interrupted the same counter's
        ``inc()`` would deadlock. The count is added at the next scrape."""
        self._tls_pending.put(1)

    def exposition(self) -> bytes:
        """The text exposition a scrape returns (every worker's with multiprocess mode)."""
        pending = 0
        while True:
            try:
                pending += self._tls_pending.get_nowait()
            except queue.Empty:
                break
        if pending:
            self.tls_failures.inc(pending)
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(self.backend)
            return generate_latest(registry)
        return generate_latest(self.registry)


_REQUESTS = ("zzz_http_requests", "HTTP requests answered, by method and status class")
_DURATION = ("zzz_http_request_duration_seconds",
             "Time from the application call to the response produced (streams: last chunk)")
_SIZE = ("zzz_http_response_size_bytes", "Response body bytes (HEAD: 0)")
_IN_FLIGHT = ("zzz_http_requests_in_flight", "Requests inside the application or streaming")
_ACCEPTED = ("zzz_connections_accepted", "TCP connections accepted")
_WS_MESSAGES = ("zzz_websocket_messages_received", "WebSocket messages received")


class Recorder(Protocol):
    """Where the Observer puts per-request and per-connection figures."""

    def started(self) -> None: ...
    def finished(self, method: str, status: int, duration_ns: int, size: int) -> None: ...
    def accepted(self) -> None: ...
    def ws_message(self) -> None: ...
    def accepted_total(self) -> float: ...


class RequestShard:
    """One thread's share of the per-request figures (only that thread writes it)."""

    __slots__ = ("accepted", "duration", "requests", "size", "started", "ws_messages")

    def __init__(self) -> None:
        self.started = 0
        self.accepted = 0
        self.ws_messages = 0
        #: ``(method, status) → count``: labels are computed at scrape, not per request.
        self.requests: dict[tuple[str, int], int] = {}
        #: Per-bucket counts (``+Inf`` last) followed by the sum.
        self.duration: list[float] = [0] * (len(DURATION_BUCKETS) + 2)
        self.size: list[float] = [0] * (len(SIZE_BUCKETS) + 2)

    def finished(self, method: str, status: int, duration_ns: int, size: int) -> None:
        """One answered request (the Observer calls it directly, with its thread's shard)."""
        requests = self.requests
        key = (method, status)
        requests[key] = requests.get(key, 0) + 1
        seconds = duration_ns / 1e9
        hist = self.duration
        hist[bisect_left(DURATION_BUCKETS, seconds)] += 1
        hist[-1] += seconds
        hist = self.size
        hist[bisect_left(SIZE_BUCKETS, size)] += 1
        hist[-1] += size


class ShardedRecorder(Collector):
    """Per-thread shards (the technique of :mod:`zzz.observability.shards`, specialised:
    fixed fields instead of dict lookups), families built at scrape time."""

    def __init__(self) -> None:
        #: Each thread's shard is ``local.shard`` (the Observer reads it directly).
        self.local = threading.local()
        self._shards: list[RequestShard] = []
        self._lock = threading.Lock()

    def shard(self) -> RequestShard:
        """The calling thread's shard (created on its first use)."""
        try:
            shard: RequestShard = self.local.shard
        except AttributeError:
            shard = self.local.shard = RequestShard()
            with self._lock:
                self._shards.append(shard)
        return shard

    def started(self) -> None:
        self.shard().started += 1

    def finished(self, method: str, status: int, duration_ns: int, size: int) -> None:
        self.shard().finished(method, status, duration_ns, size)

    def accepted(self) -> None:
        self.shard().accepted += 1

    def ws_message(self) -> None:
        self.shard().ws_messages += 1

    def accepted_total(self) -> float:
        with self._lock:
            return float(sum(shard.accepted for shard in self._shards))

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        with self._lock:
            shards = list(self._shards)
        requests: dict[tuple[str, str], int] = {}
        duration = [0.0] * (len(DURATION_BUCKETS) + 2)
        size = [0.0] * (len(SIZE_BUCKETS) + 2)
        started = accepted = ws_messages = answered = 0
        for shard in shards:
            # ``started`` before the requests: a request finishing in between then shows
            # as answered but not started (clamped at 0), never as a phantom in flight.
            started += shard.started
            for (method, status), n in shard.requests.copy().items():
                label = (method_label(method), status_class(status))
                requests[label] = requests.get(label, 0) + n
                answered += n
            for total, part in ((duration, list(shard.duration)), (size, list(shard.size))):
                for i, amount in enumerate(part):
                    total[i] += amount
            accepted += shard.accepted
            ws_messages += shard.ws_messages
        family = CounterMetricFamily(*_REQUESTS, labels=["method", "status_class"])
        for labels, n in sorted(requests.items()):
            family.add_metric(list(labels), n)
        yield family
        yield histogram_family(*_DURATION, [], iter([((), duration)]), DURATION_BUCKETS)
        yield histogram_family(*_SIZE, [], iter([((), size)]), SIZE_BUCKETS)
        yield GaugeMetricFamily(*_IN_FLIGHT, value=max(0, started - answered))
        yield CounterMetricFamily(*_ACCEPTED, value=accepted)
        yield CounterMetricFamily(*_WS_MESSAGES, value=ws_messages)


class ClientRecorder:
    """``prometheus_client`` objects, for multiprocess mode (they write its value files)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(*_REQUESTS, ["method", "status_class"], registry=registry)
        self._duration = Histogram(*_DURATION, buckets=DURATION_BUCKETS, registry=registry)
        self._size = Histogram(*_SIZE, buckets=SIZE_BUCKETS, registry=registry)
        self._in_flight = Gauge(*_IN_FLIGHT, registry=registry, multiprocess_mode="livesum")
        self._accepted = Counter(*_ACCEPTED, registry=registry)
        self._ws_messages = Counter(*_WS_MESSAGES, registry=registry)

    def started(self) -> None:
        self._in_flight.inc()

    def finished(self, method: str, status: int, duration_ns: int, size: int) -> None:
        self._in_flight.dec()
        self._requests.labels(method_label(method), status_class(status)).inc()
        self._duration.observe(duration_ns / 1e9)
        self._size.observe(size)

    def accepted(self) -> None:
        self._accepted.inc()

    def ws_message(self) -> None:
        self._ws_messages.inc()

    def accepted_total(self) -> float:
        return _total(self._accepted)


class BackendCollector(Collector):
    """Backend levels read at scrape time from the running backend object.

    The backend is attached by :meth:`Observer.attach_backend`; its shape is
    read by duck typing (native: ``queue``, ``parker``, ``open_conns``,
    ``busy_workers``; event loop: ``states``), so a backend that lacks a figure
    simply does not report it.
    """

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self.backend: Any = None

    def describe(self) -> list[Any]:
        return []  # the families depend on the backend attached at run time

    def collect(self) -> Iterator[Any]:
        backend = self.backend
        if backend is None:
            return
        open_now = _open_connections(backend)
        if open_now is not None:
            yield GaugeMetricFamily("zzz_connections_open", "Connections open", value=open_now)
            if not os.environ.get(MULTIPROC_ENV):
                accepted = self._metrics.recorder.accepted_total()
                yield CounterMetricFamily("zzz_connections_closed", "Connections closed",
                                          value=max(0.0, accepted - open_now))
        queue = getattr(backend, "queue", None)
        if queue is not None:
            yield GaugeMetricFamily("zzz_native_queue_depth",
                                    "Connections waiting for a worker", value=len(queue))
        busy = getattr(backend, "busy_workers", None)
        if busy is not None:
            yield GaugeMetricFamily("zzz_native_busy_workers", "Workers serving a connection",
                                    value=len(busy))
        parker = getattr(backend, "parker", None)
        if parker is not None:
            yield GaugeMetricFamily("zzz_native_parked_connections",
                                    "Idle connections waiting on the acceptor's selector",
                                    value=len(parker.parked))


def _open_connections(backend: Any) -> int | None:
    conns = getattr(backend, "open_conns", None)
    if conns is not None:
        return len(conns)
    states = getattr(backend, "states", None)
    if states is not None:
        return sum(len(state.connections) for state in list(states))
    return None


def _total(counter: Counter) -> float:
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                return float(sample.value)
    return 0.0
