"""Observability pieces without a server: config checks, log formats and files,
multiprocess aggregation, the Observer's readiness and drain decisions."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zzz import cli
from zzz.config import Config, ConfigError, ObservabilityConfig
from zzz.observability import JsonFormatter, prepare_multiprocess_dir
from zzz.observability.logs import configure_logging, load_log_config
from zzz.server import Server

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Worker processes (and their request counts) of the multiprocess test.
WORKER_REQUESTS = (3, 5)


class _App:
    def handle(self, request: Any, server: Any) -> Any:
        raise AssertionError("not called")

    def check_continue(self, request: Any) -> None:
        return None


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(("fields", "field_name"), [
    ({"log_format": "xml"}, "observability.log_format"),
    ({"metrics_port": 70000}, "observability.metrics_port"),
    ({"metrics_path": "metrics"}, "observability.metrics_path"),
    ({"health_path": "/h?x=1"}, "observability.health_path"),
    ({"drain_delay_ms": -1}, "observability.drain_delay_ms"),
    ({"health_path": "/same", "ready_path": "/same"}, "observability.ready_path"),
])
def test_invalid_values_name_the_field(fields: dict[str, Any], field_name: str) -> None:
    with pytest.raises(ConfigError) as info:
        ObservabilityConfig(**fields)
    assert info.value.field_name == field_name


def test_metrics_without_prometheus_client_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "prometheus_client" else real(name, *a))
    with pytest.raises(ConfigError, match=r"observability.metrics_port: .*zzz\[metrics\]"):
        ObservabilityConfig(metrics_port=9100)
    message = cli.main(["run", "tests.integration.apps:app", "--metrics-path", "/m"], {})
    assert message == cli.EXIT_USAGE


def test_flags_and_env_reach_the_config() -> None:
    _, _, config = cli.build_config(
        ["run", "tests.integration.apps:app", "--access-log", "--metrics-port", "9100",
         "--ready-path", "/readyz"], {"ZZZ_LOG_FORMAT": "json", "ZZZ_DRAIN_DELAY_MS": "250"})
    assert config.observability == ObservabilityConfig(
        access_log=True, log_format="json", metrics_port=9100, ready_path="/readyz",
        drain_delay_ms=250)


# --------------------------------------------------------------------------- logs


def test_json_formatter_writes_extra_fields_and_exceptions() -> None:
    record = logging.LogRecord("zzz.server", logging.ERROR, __file__, 1, "drain %s", ("x",),
                               None)
    record.event = "drain"
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "drain x"
    assert line["event"] == "drain"
    assert line["level"] == "error"
    assert "ValueError: boom" in line["exc_info"]


def test_log_config_json_file_is_applied(tmp_path: Path) -> None:
    out = tmp_path / "access.log"
    path = tmp_path / "logging.json"
    path.write_text(json.dumps({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(out)}},
        "loggers": {"zzz.test-log-config": {"handlers": ["file"], "level": "INFO"}},
    }))
    configure_logging("info", "text", str(path))
    logger = logging.getLogger("zzz.test-log-config")
    try:
        logger.info("routed")
        for handler in logger.handlers:
            handler.flush()
        assert out.read_text() == "routed\n"
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("missing.json", None, "cannot read"),
    ("bad.json", "{not json", "is not valid"),
    ("list.json", "[1, 2]", "dictConfig mapping"),
])
def test_bad_log_config_files_name_the_field(tmp_path: Path, name: str, text: str | None,
                                             needle: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError, match=f"observability.log_config: .*{needle}"):
        load_log_config(str(path))


@pytest.mark.skipif(importlib.util.find_spec("yaml") is None, reason="PyYAML not installed")
def test_yaml_log_config_with_pyyaml(tmp_path: Path) -> None:
    path = tmp_path / "logging.yaml"
    path.write_text("version: 1\ndisable_existing_loggers: false\n"
                    "loggers:\n  zzz.test-yaml:\n    level: WARNING\n")
    assert load_log_config(str(path))["loggers"] == {"zzz.test-yaml": {"level": "WARNING"}}


@pytest.mark.skipif(importlib.util.find_spec("yaml") is not None, reason="PyYAML installed")
def test_yaml_log_config_without_pyyaml_says_so(tmp_path: Path) -> None:
    path = tmp_path / "logging.yaml"
    path.write_text("version: 1\n")
    with pytest.raises(ValueError, match="PyYAML is not installed"):
        load_log_config(str(path))


# --------------------------------------------------------------------------- observer


def test_drain_turns_readiness_off_before_the_listener_closes() -> None:
    config = Config(port=0, observability=ObservabilityConfig(drain_delay_ms=60_000))
    server = Server(_App(), config)
    observer = server.observer
    server.ready.set()  # as the backend does once listening
    assert observer.is_ready()
    server.shutdown()
    assert not observer.is_ready()
    assert observer.ready_response().status == 503
    assert observer.health_response().status == 200
    assert not server.shutting_down.is_set()  # the listener stays open for the delay
    server.shutdown()  # a second call changes nothing
    assert not server.shutting_down.is_set()
    observer.stop()


def test_without_delay_the_drain_starts_at_once() -> None:
    server = Server(_App(), Config(port=0))
    server.ready.set()
    server.shutdown()
    assert server.shutting_down.is_set()
    assert not server.observer.is_ready()


def test_a_failing_ready_check_is_not_ready() -> None:
    server = Server(_App(), Config(port=0))
    server.ready.set()

    def broken() -> bool:
        raise RuntimeError("db down")

    server.observer.add_ready_check(broken)
    assert not server.observer.is_ready()


# --------------------------------------------------------------------------- multiprocess

_WORKER = textwrap.dedent("""
    import sys
    from zzz.observability.metrics import ServerMetrics
    metrics = ServerMetrics()
    for _ in range(int(sys.argv[1])):
        metrics.recorder.started()
        metrics.recorder.finished("GET", 200, 1_000_000, 13)
    if sys.argv[2] == "print":
        sys.stdout.write(metrics.exposition().decode())
""")


def test_multiprocess_mode_sums_every_worker(tmp_path: Path) -> None:
    directory = str(tmp_path / "prom")
    os.makedirs(directory)
    (Path(directory) / "stale.db").write_bytes(b"left by an earlier run")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    saved = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    try:
        prepare_multiprocess_dir(directory)
        assert os.listdir(directory) == []
        env["PROMETHEUS_MULTIPROC_DIR"] = directory
    finally:
        if saved is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved
    for count in WORKER_REQUESTS:
        subprocess.run([sys.executable, "-c", _WORKER, str(count), "quiet"], env=env,
                       check=True, timeout=60)
    scrape = subprocess.run([sys.executable, "-c", _WORKER, "0", "print"], env=env,
                            check=True, timeout=60, capture_output=True, text=True).stdout
    totals = {
        sample.name: sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name in ("zzz_http_requests_total", "zzz_http_request_duration_seconds_count",
                           "zzz_http_requests_in_flight")
    }
    assert totals == {"zzz_http_requests_total": sum(WORKER_REQUESTS),
                      "zzz_http_request_duration_seconds_count": sum(WORKER_REQUESTS),
                      "zzz_http_requests_in_flight": 0}


# --------------------------------------------------------------------------- shards

#: Threads and updates per thread of the lost-update test.
SHARD_THREADS = 8
SHARD_UPDATES = 20_000
#: Values spread over every duration bucket, +Inf included, and exact bucket bounds.
SAMPLE_SECONDS = (0.0, 0.00005, 0.0001, 0.0003, 0.001, 0.004, 0.05, 0.7, 3.0, 10.0, 42.0)


def _families(text: str) -> dict[str, list[Any]]:
    return {f.name: sorted((tuple(sorted(s.labels.items())), s.name, s.value)
                           for s in f.samples if not s.name.endswith("_created"))
            for f in text_string_to_metric_families(text)}


def test_sharded_counts_lose_nothing_across_threads() -> None:
    import threading

    from zzz.observability.metrics import ShardedRecorder

    recorder = ShardedRecorder()
    barrier = threading.Barrier(SHARD_THREADS)

    def work() -> None:
        barrier.wait()
        for _ in range(SHARD_UPDATES):
            recorder.started()
            recorder.finished("GET", 200, 1000, 1)

    threads = [threading.Thread(target=work) for _ in range(SHARD_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    families = {f.name: f for f in recorder.collect()}
    total = SHARD_THREADS * SHARD_UPDATES
    assert families["zzz_http_requests"].samples[0].value == total
    assert families["zzz_http_requests_in_flight"].samples[0].value == 0
    count = [s for s in families["zzz_http_request_duration_seconds"].samples
             if s.name.endswith("_count")]
    assert count[0].value == total


def test_sharded_histogram_matches_prometheus_client() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from zzz.observability.metrics import DURATION_BUCKETS, ShardedRecorder

    recorder = ShardedRecorder()
    registry = CollectorRegistry()
    reference = Histogram("zzz_http_request_duration_seconds", "x",
                          buckets=DURATION_BUCKETS, registry=registry)
    for seconds in SAMPLE_SECONDS:
        recorder.finished("GET", 200, round(seconds * 1e9), 0)
        reference.observe(round(seconds * 1e9) / 1e9)
    ours = CollectorRegistry()
    ours.register(recorder)
    name = "zzz_http_request_duration_seconds"
    assert (_families(generate_latest(ours).decode())[name]
            == _families(generate_latest(registry).decode())[name])


# --------------------------------------------------------------------------- admin port


def test_admin_port_is_exclusive_unless_workers_share_it(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    import urllib.request

    from zzz.observability.admin import AdminListener

    observer = Server(_App(), Config(port=0)).observer
    first = AdminListener(observer, "127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match=r"observability\.metrics_port: cannot listen"):
            AdminListener(observer, "127.0.0.1", first.port)
    finally:
        first.close()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    first = AdminListener(observer, "127.0.0.1", 0)
    second = AdminListener(observer, "127.0.0.1", first.port)
    try:
        first.start()
        second.start()
        url = f"http://127.0.0.1:{first.port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
    finally:
        first.close()
        second.close()
