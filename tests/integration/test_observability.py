"""Server-level observability on both backends: metrics, access log, probes, drain.

Metrics are scraped over HTTP and parsed with ``prometheus_client.parser``;
access lines are formatted by the real JSON formatter and parsed with
``json.loads``; the graceful shutdown runs the real CLI in a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect as ws_connect

import zzz
from zzz.config import ObservabilityConfig, TlsConfig
from zzz.observability import JsonFormatter

from .apps import app as shared_app
from .test_shutdown import EXIT_MARGIN_S, _send_slow_request

#: Concurrent requests whose count the metrics must report exactly.
CONCURRENT_REQUESTS = 64
#: Client threads sending them.
CLIENT_THREADS = 8
#: Longest wait for a figure that is updated asynchronously (TLS failure, loop lag).
EVENTUAL_S = 5.0


def scrape(url: str) -> dict[str, list[Any]]:
    """``sample name → [(labels, value), ...]`` from a Prometheus text scrape."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    for got, number in samples.get(name, []):
        if all(got.get(k) == v for k, v in labels.items()):
            return float(number)
    raise AssertionError(f"{name}{labels} not in scrape: {sorted(samples)}")


def admin_url(srv: Any, path: str = "/metrics") -> str:
    return f"http://127.0.0.1:{srv.server.observer.admin.port}{path}"


def eventually(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + EVENTUAL_S
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def obs(**fields: Any) -> ObservabilityConfig:
    return ObservabilityConfig(**fields)


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    """The ``zzz.access`` records of the test, one JSON object per line."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("zzz.access")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield buffer
    logger.removeHandler(handler)
    logger.setLevel(old_level)


# --------------------------------------------------------------------------- metrics


def test_concurrent_requests_are_all_counted(serve, backend):
    srv = serve(shared_app, observability=obs(metrics_port=0))

    def client(count: int) -> None:
        with httpx.Client(timeout=10) as http:
            for _ in range(count):
                assert http.get(f"{srv.url}/users/7").status_code == 200

    per_thread = CONCURRENT_REQUESTS // CLIENT_THREADS
    threads = [threading.Thread(target=client, args=(per_thread,)) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    samples = scrape(admin_url(srv))
    assert value(samples, "zzz_http_requests_total", method="GET",
                 status_class="2xx") == CONCURRENT_REQUESTS
    assert value(samples, "zzz_http_request_duration_seconds_count") == CONCURRENT_REQUESTS
    assert value(samples, "zzz_http_response_size_bytes_count") == CONCURRENT_REQUESTS
    assert value(samples, "zzz_http_requests_in_flight") == 0
    accepted = value(samples, "zzz_connections_accepted_total")
    assert CLIENT_THREADS <= accepted <= CONCURRENT_REQUESTS
    assert eventually(lambda: value(scrape(admin_url(srv)), "zzz_connections_open") == 0)
    after = scrape(admin_url(srv))
    assert value(after, "zzz_connections_closed_total") == accepted


def test_status_classes_streams_async_and_errors(serve, backend):
    srv = serve(shared_app, observability=obs(metrics_path="/metrics"))
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{srv.url}/stream?n=4").text == "".join(f"piece {i}\n" for i in range(4))
        assert http.get(f"{srv.url}/async-stream").text == "a0a1a2"
        assert http.get(f"{srv.url}/async").status_code == 200
        assert http.get(f"{srv.url}/boom").status_code == 500
        assert http.get(f"{srv.url}/missing").status_code == 404
        assert http.head(f"{srv.url}/stream").status_code == 200
    samples = scrape(f"{srv.url}/metrics")  # on the app port, answered before routing
    assert value(samples, "zzz_http_requests_total", method="GET", status_class="2xx") == 3
    assert value(samples, "zzz_http_requests_total", method="GET", status_class="5xx") == 1
    assert value(samples, "zzz_http_requests_total", method="GET", status_class="4xx") == 1
    assert value(samples, "zzz_http_requests_total", method="HEAD", status_class="2xx") == 1
    body_bytes = len("".join(f"piece {i}\n" for i in range(4))) + len("a0a1a2") + len("async hello")
    # Scrapes are not requests of the application; the 500 and 404 bodies count too.
    assert value(samples, "zzz_http_response_size_bytes_sum") > body_bytes
    assert value(samples, "zzz_http_requests_in_flight") == 0


def test_bad_requests_are_counted_by_status(serve, backend):
    srv = serve(shared_app, observability=obs(metrics_port=0))
    for raw in (b"GARBAGE\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(raw)
            assert sock.recv(100).startswith(b"HTTP/1.1 4")
    samples = scrape(admin_url(srv))
    assert value(samples, "zzz_http_bad_requests_total", status="400") == 1
    assert value(samples, "zzz_http_bad_requests_total", status="431") == 1


def test_backend_levels_are_read_at_scrape_time(serve, backend):
    srv = serve(shared_app, observability=obs(metrics_port=0))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5):
        assert eventually(lambda: value(scrape(admin_url(srv)), "zzz_connections_open") == 1)
    samples = scrape(admin_url(srv))
    if backend == "native":
        assert value(samples, "zzz_native_queue_depth") == 0
        assert value(samples, "zzz_native_busy_workers") == 0
        assert "zzz_native_parked_connections" in samples
        slow = threading.Thread(target=httpx.get, args=(f"{srv.url}/slow?ms=1500",),
                                kwargs={"timeout": 10})
        slow.start()
        try:
            assert eventually(
                lambda: value(scrape(admin_url(srv)), "zzz_native_busy_workers") == 1)
            assert value(scrape(admin_url(srv)), "zzz_http_requests_in_flight") == 1
        finally:
            slow.join(10)
    else:
        assert eventually(
            lambda: value(scrape(admin_url(srv)), "zzz_eventloop_lag_seconds_count") >= 2)


def test_websocket_connections_and_messages(serve, backend):
    app = zzz.Router()
    app.ws("/echo", on_message=lambda ws, message: ws.send(message))
    srv = serve(app, observability=obs(metrics_port=0))
    with ws_connect(f"ws://127.0.0.1:{srv.port}/echo") as ws:
        for i in range(3):
            ws.send(f"m{i}")
            assert ws.recv(timeout=5) == f"m{i}"
        samples = scrape(admin_url(srv))
        assert value(samples, "zzz_websocket_connections_open") == 1
        assert value(samples, "zzz_websocket_connections_total") == 1
        assert value(samples, "zzz_websocket_messages_received_total") == 3
        assert value(samples, "zzz_http_requests_total", method="GET", status_class="1xx") == 1
    assert eventually(
        lambda: value(scrape(admin_url(srv)), "zzz_websocket_connections_open") == 0)


def test_tls_handshake_failures_are_counted(serve, backend, tls_test_files):
    tls = TlsConfig(str(tls_test_files.cert_file), str(tls_test_files.key_file))
    srv = serve(shared_app, tls=tls, observability=obs(metrics_port=0))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP to a TLS port
        with contextlib.suppress(OSError):
            sock.recv(100)
    assert eventually(
        lambda: value(scrape(admin_url(srv)), "zzz_tls_handshake_failures_total") == 1)


# --------------------------------------------------------------------------- access log


def test_access_log_json_line(serve, backend, access_lines):
    srv = serve(shared_app, observability=obs(access_log=True, health_path="/healthz"))
    response = httpx.get(f"{srv.url}/users/42?token=secret", timeout=10,
                         headers={"User-Agent": "obs-test/1", "X-Request-Id": "rid-123"})
    assert response.status_code == 200
    assert httpx.get(f"{srv.url}/healthz", timeout=10).text == "ok\n"
    assert eventually(lambda: bool(access_lines.getvalue()))
    lines = access_lines.getvalue().splitlines()
    assert len(lines) == 1, lines  # the health probe is not logged at INFO
    line = json.loads(lines[0])
    assert line["logger"] == "zzz.access"
    assert line["method"] == "GET"
    assert line["path"] == "/users/42"  # no query string
    assert "secret" not in lines[0]
    assert line["status"] == 200
    assert line["bytes"] == len(response.content)
    assert isinstance(line["duration_us"], int) and line["duration_us"] >= 0
    assert line["client"].startswith("127.0.0.1:")
    assert line["request_id"] == "rid-123"
    assert line["user_agent"] == "obs-test/1"
    assert line["timestamp"].endswith("Z")


def test_nothing_observed_leaves_the_entry_point_unwrapped(serve, backend):
    srv = serve(shared_app)
    assert srv.server.handle.__func__ is zzz.Server.handle
    assert httpx.get(f"{srv.url}/", timeout=10).status_code == 200


# --------------------------------------------------------------------------- probes


def test_probes_are_answered_before_routing(serve, backend):
    seen: list[str] = []
    app = zzz.Router()

    @app.get("/*rest")
    def everything(ctx: zzz.Context) -> None:
        seen.append(ctx.path)
        ctx.text(200, "app")

    healthy = [True]
    srv = serve(app, observability=obs(health_path="/healthz", ready_path="/readyz"))
    srv.server.observer.add_ready_check(lambda: healthy[0])
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{srv.url}/healthz").text == "ok\n"
        assert http.get(f"{srv.url}/readyz").status_code == 200
        healthy[0] = False
        assert http.get(f"{srv.url}/readyz").status_code == 503
        assert http.get(f"{srv.url}/healthz").status_code == 200
        assert http.get(f"{srv.url}/other").text == "app"
    assert seen == ["/other"]


def test_drain_delay_keeps_accepting_with_readiness_503(serve, backend):
    srv = serve(shared_app, observability=obs(ready_path="/readyz", metrics_port=0,
                                              drain_delay_ms=1500))
    srv.server.shutdown()
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{srv.url}/readyz").status_code == 503
        assert http.get(admin_url(srv, "/readyz")).status_code == 503
        assert http.get(admin_url(srv, "/healthz")).status_code == 200
        assert http.get(f"{srv.url}/").status_code == 200  # still accepting
    assert not srv.server.shutting_down.is_set()
    srv.thread.join(15)
    assert srv.server.stopped.is_set()


# --------------------------------------------------------------------------- CLI shutdown


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sigterm_readiness_503_liveness_200_slow_request_completes(start_process):
    admin = _free_port()
    drain_ms = 5000
    process = start_process("--drain-timeout-ms", str(drain_ms), "--metrics-port", str(admin),
                          "--health-path", "/healthz", "--ready-path", "/readyz")
    base = f"http://127.0.0.1:{admin}"
    with httpx.Client(timeout=5) as http:
        assert http.get(f"{base}/readyz").status_code == 200
        client = _send_slow_request(process.port, 1500)
        try:
            process.proc.send_signal(signal.SIGTERM)
            assert eventually(lambda: http.get(f"{base}/readyz").status_code == 503)
            assert http.get(f"{base}/healthz").status_code == 200
            response = client.read_response()
            assert response.status == 200
            assert response.body == b"slept 1500"
        finally:
            client.close()
    code = process.wait_exit(drain_ms / 1000 + EXIT_MARGIN_S)
    assert code == 0, process.stderr
    assert "drain begins: readiness now 503" in process.stderr


def test_cli_json_log_format(start_process):
    process = start_process("--log-format", "json", "--access-log")
    httpx.get(f"http://127.0.0.1:{process.port}/", timeout=10)
    process.proc.send_signal(signal.SIGTERM)
    assert process.wait_exit(15) == 0
    records = [json.loads(line) for line in process.lines if line.strip()]
    assert any(r.get("event") == "start" for r in records)
    access = [r for r in records if r["logger"] == "zzz.access"]
    assert len(access) == 1 and access[0]["status"] == 200 and access[0]["path"] == "/"


# --------------------------------------------------------------------------- Router middleware


def _routed_app() -> zzz.Router:
    app = zzz.Router(middleware=[zzz.metrics("/metrics"), zzz.structured_logger("info", "json")])

    @app.get("/users/:id")
    def user(ctx: zzz.Context) -> None:
        ctx.text(200, ctx.path_param("id"))

    @app.get("/async/:id")
    async def auser(ctx: zzz.Context) -> None:
        ctx.text(201, "a")

    return app


def test_router_metrics_label_the_route_pattern(serve, backend):
    srv = serve(_routed_app(), observability=obs(metrics_port=0))
    with httpx.Client(timeout=10) as http:
        for path in ("/users/1", "/users/2", "/async/3", "/nope", "/nope/deeper"):
            http.get(f"{srv.url}{path}")
    samples = scrape(f"{srv.url}/metrics")
    assert value(samples, "zzz_route_requests_total", route="/users/:id",
                 status_class="2xx") == 2
    assert value(samples, "zzz_route_requests_total", route="/async/:id",
                 status_class="2xx") == 1
    assert value(samples, "zzz_route_requests_total", route="(unmatched)",
                 status_class="4xx") == 2
    routes = {labels["route"] for labels, _ in samples["zzz_route_requests_total"]}
    assert routes == {"/users/:id", "/async/:id", "(unmatched)"}  # never a raw path
    # The server's own metrics follow the route metrics in the same scrape.
    assert value(samples, "zzz_http_requests_total", method="GET", status_class="2xx") == 3


def test_structured_logger_json_message(serve, backend):
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("zzz.request")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        srv = serve(_routed_app())
        httpx.get(f"{srv.url}/users/9?q=1", timeout=10, headers={"X-Request-Id": "abc"})
        assert eventually(lambda: bool(buffer.getvalue()))
    finally:
        logger.removeHandler(handler)
    line = json.loads(buffer.getvalue().splitlines()[0])
    assert line == {**line, "method": "GET", "path": "/users/9", "route": "/users/:id",
                    "status": 200, "request_id": "abc"}
    assert line["duration_us"] >= 0


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_asgi_and_wsgi_apps_are_observed(serve, backend, access_lines, kind):
    """Server-level features serve every interface: metrics, probes and the access log
    see an ASGI or WSGI app's requests exactly as a Router's."""
    from .interface_apps import TWINS

    srv = serve(TWINS[kind], observability=obs(metrics_path="/metrics", access_log=True,
                                                 ready_path="/readyz"))
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{srv.url}/").text == "hello"
        assert http.get(f"{srv.url}/stream?n=3").text == "piece 0\npiece 1\npiece 2\n"
        assert http.post(f"{srv.url}/echo", content=b"e" * 1000).content == b"e" * 1000
        assert http.get(f"{srv.url}/boom").status_code == 500
        assert http.get(f"{srv.url}/readyz").status_code == 200
    samples = scrape(f"{srv.url}/metrics")
    assert value(samples, "zzz_http_requests_total", method="GET", status_class="2xx") == 2
    assert value(samples, "zzz_http_requests_total", method="POST", status_class="2xx") == 1
    assert value(samples, "zzz_http_requests_total", method="GET", status_class="5xx") == 1
    assert eventually(lambda: len(access_lines.getvalue().splitlines()) >= 4)
    lines = [json.loads(line) for line in access_lines.getvalue().splitlines()]
    echo = next(line for line in lines if line.get("path") == "/echo")
    assert echo["status"] == 200 and echo["bytes"] == 1000
