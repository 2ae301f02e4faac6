"""The gRPC process's Prometheus metrics (calls by method and status code, latency, evaluations by
flag and result, open streams), scraped over HTTP after calls over a real channel; and failed
authentications logged like REST's, never with the key; unary calls on their own pool."""

import io
import json
import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2
from prometheus_client.parser import text_string_to_metric_families

from analytics import counters
from flagsite.ops.logging import JsonFormatter, RequestIdFilter
from flagsite.ops.metrics import start_metrics_server
from tests.servers import free_port

from .conftest import (REPO, TRANSACTIONAL, StreamReader, auth, create_flag, flags_pb2, flags_pb2_grpc,
                       make_key, manage, process_env, rpc_error, user_with, wait_serving)

pytestmark = TRANSACTIONAL


@pytest.fixture
def flags(transactional_db):
    create_flag("on-flag", states={"production": {"enabled": True, "rules": []}})
    create_flag("off-flag", states={"production": {"enabled": False, "rules": []}})


@pytest.fixture
def metrics_url():
    import grpc_api.metrics  # noqa: F401 (registers the gRPC collector, as `grpcserver --metrics-port` does)

    server = start_metrics_server("127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


def get(url, token=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(url, token=None):
    status, text = get(url, token)
    assert status == 200, text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics__calls_by_method_and_code__latency__evaluations__streams(server, stub, flags, sdk_key, metrics_url):
    before = scrape(metrics_url)
    for _ in range(3):
        stub.Evaluate(flags_pb2.EvaluateRequest(flag_id="on-flag", user_id="u1"), metadata=auth(sdk_key))
    stub.Evaluate(flags_pb2.EvaluateRequest(flag_id="off-flag", user_id="u1"), metadata=auth(sdk_key))
    assert rpc_error(stub.Evaluate, flags_pb2.EvaluateRequest(flag_id="ghost"), metadata=auth(sdk_key)).code() \
        == grpc.StatusCode.NOT_FOUND
    assert rpc_error(stub.Evaluate, flags_pb2.EvaluateRequest(flag_id="on-flag"), metadata=auth("sdk_bad")).code() \
        == grpc.StatusCode.UNAUTHENTICATED
    stub.EvaluateBulk(flags_pb2.EvaluateBulkRequest(user_id="u1"), metadata=auth(sdk_key))
    reader = StreamReader(stub.WatchFlags(flags_pb2.WatchFlagsRequest(), metadata=auth(sdk_key)))
    assert reader.next()[2].type == "hello"
    during = scrape(metrics_url)
    reader.close()
    deadline = time.monotonic() + 5
    while server.service.stream_count() and time.monotonic() < deadline:
        time.sleep(0.02)
    after = scrape(metrics_url)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("flagsite_grpc_requests_total", method="Evaluate", code="OK") == 4
    assert delta("flagsite_grpc_requests_total", method="Evaluate", code="NOT_FOUND") == 1
    assert delta("flagsite_grpc_requests_total", method="Evaluate", code="UNAUTHENTICATED") == 1
    assert delta("flagsite_grpc_requests_total", method="EvaluateBulk", code="OK") == 1
    assert delta("flagsite_grpc_requests_total", method="WatchFlags", code="CANCELLED") == 1
    # every unary call is timed, whatever its outcome; buckets are cumulative, +Inf holds them all
    assert delta("flagsite_grpc_request_duration_seconds_count", method="Evaluate") == 6
    assert delta("flagsite_grpc_request_duration_seconds_bucket", method="Evaluate", le="+Inf") == 6
    assert 0 < delta("flagsite_grpc_request_duration_seconds_sum", method="Evaluate") < 6 * 5.0
    assert delta("flagsite_grpc_request_duration_seconds_bucket", method="Evaluate", le="0.0005") <= \
        delta("flagsite_grpc_request_duration_seconds_bucket", method="Evaluate", le="5.0")
    # evaluations by flag and result: the analytics recorder's exact counts (bulk counts each flag)
    on = {"environment": "production", "flag": "on-flag", "enabled": "true", "variant": ""}
    off = {"environment": "production", "flag": "off-flag", "enabled": "false", "variant": ""}
    assert delta("flagsite_evaluations_total", **on) == 4
    assert delta("flagsite_evaluations_total", **off) == 2
    assert value(during, "flagsite_grpc_watch_streams") >= 1
    assert value(after, "flagsite_grpc_watch_streams") == value(during, "flagsite_grpc_watch_streams") - 1
    assert ("flagsite_grpc_unary_queue", ()) in after
    assert ("flagsite_snapshot_version", (("environment", "production"),)) in after
    assert ("process_resident_memory_bytes", ()) in after


def test_metrics_endpoint__token_and_switches_as_for_http(settings, metrics_url):
    settings.FLAGS_METRICS_TOKEN = "scrape-token-123"
    assert get(metrics_url)[0] == 401
    assert get(metrics_url, "wrong")[0] == 401
    assert get(metrics_url, "scrape-token-123")[0] == 200
    assert get(metrics_url.replace("/metrics", "/other"), "scrape-token-123")[0] == 404
    settings.FLAGS_METRICS = False
    assert get(metrics_url, "scrape-token-123")[0] == 404
    settings.FLAGS_METRICS, settings.FLAGS_METRICS_TOKEN, settings.FLAGS_PRODUCTION = True, "", True
    assert get(metrics_url)[0] == 404  # production without a token: not served


def test_grpcserver_process__metrics_port_per_worker(flags, sdk_key):
    port, metrics_port = free_port(), free_port(span=2)  # the metrics ports: one per worker
    while port in (metrics_port, metrics_port + 1):
        metrics_port = free_port(span=2)
    process = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "grpcserver", "--host", "127.0.0.1",
                                "--port", str(port), "--workers", "2", "--metrics-port", str(metrics_port)],
                               env=process_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_serving(port) == health_pb2.HealthCheckResponse.SERVING
        for _ in range(10):  # new connections: the kernel spreads them over both workers
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as chan:
                flags_pb2_grpc.FlagServiceStub(chan).Evaluate(flags_pb2.EvaluateRequest(flag_id="on-flag"),
                                                              metadata=auth(sdk_key))
        # Each worker answers for itself, on metrics port + its index: polled until both answer (the
        # second worker may still be importing Django on a busy machine), not for a fixed time.
        deadline, totals = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            try:
                totals = [value(scrape(f"http://127.0.0.1:{metrics_port + index}/metrics"),
                                "flagsite_grpc_requests_total", method="Evaluate", code="OK") for index in (0, 1)]
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=90)  # generous: CI runs its two legs at once on 2 cores
    assert sum(totals) == 10, (totals, err[-2000:])
    assert process.returncode == 0, err[-2000:]
    assert f"metrics on http://127.0.0.1:{metrics_port}/metrics" in out  # loopback unless told otherwise
    assert f"metrics on http://127.0.0.1:{metrics_port + 1}/metrics" in out


SECRET = "sdk_production_" + "S3CRETguess" * 3


@pytest.fixture
def auth_log(caplog):
    with caplog.at_level(logging.WARNING, logger="flagsite.api.authentication"):
        yield caplog


def failures(caplog):
    return [r for r in caplog.records
            if r.name == "flagsite.api.authentication" and getattr(r, "transport", "") == "grpc"]


def assert_no_secret(caplog, *secrets):
    for record in caplog.records:
        text = record.getMessage() + " " + " ".join(str(v) for v in vars(record).values())
        for secret in secrets:
            assert secret not in text and secret[12:] not in text


def test_failed_authentication__logged_with_fingerprint_and_peer_never_the_key(stub, flags, auth_log):
    error = rpc_error(stub.Evaluate, flags_pb2.EvaluateRequest(flag_id="on-flag"), metadata=auth(SECRET))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert SECRET not in error.details()
    (record,) = failures(auth_log)
    assert record.levelno == logging.WARNING
    assert (record.reason, record.method) == ("invalid or revoked API key", "Evaluate")
    assert len(record.fingerprint) == 12 and record.peer.startswith(("ipv4:127.0.0.1:", "ipv6:"))
    assert record.getMessage().startswith("authentication failed: invalid or revoked API key")
    assert "transport=grpc" in record.getMessage() and f"fingerprint={record.fingerprint}" in record.getMessage()
    # the fingerprint is stable, so repeated guesses with one key can be correlated
    rpc_error(stub.EvaluateBulk, flags_pb2.EvaluateBulkRequest(), metadata=auth(SECRET))
    assert [r.fingerprint for r in failures(auth_log)] == [record.fingerprint] * 2
    assert failures(auth_log)[1].method == "EvaluateBulk"
    assert_no_secret(auth_log, SECRET)


def test_missing_or_malformed_credentials__logged(stub, flags, auth_log):
    rpc_error(stub.Evaluate, flags_pb2.EvaluateRequest(flag_id="on-flag"))
    basic = (("authorization", "Basic " + SECRET),)
    rpc_error(stub.Evaluate, flags_pb2.EvaluateRequest(flag_id="on-flag"), metadata=basic)
    stream = stub.WatchFlags(flags_pb2.WatchFlagsRequest(), metadata=(("authorization", SECRET),))
    assert rpc_error(next, stream).code() == grpc.StatusCode.UNAUTHENTICATED
    got = [(r.method, r.reason) for r in failures(auth_log)]
    assert got == [("Evaluate", "missing credentials"), ("Evaluate", "malformed credentials"),
                   ("WatchFlags", "malformed credentials")]
    assert not any(hasattr(r, "fingerprint") for r in failures(auth_log))
    assert_no_secret(auth_log, SECRET)


def test_permission_denied__logged_with_the_key_prefix_only(stub, flags, auth_log):
    staging = make_key("sdk", environment="staging")
    nobody = make_key("management", user=user_with("nobody-grpc", []))
    error = rpc_error(stub.Evaluate, flags_pb2.EvaluateRequest(flag_id="on-flag", environment="production"),
                      metadata=auth(staging))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rpc_error(stub.Evaluate, flags_pb2.EvaluateRequest(flag_id="on-flag"),
                     metadata=auth(nobody)).code() == grpc.StatusCode.PERMISSION_DENIED
    first, second = failures(auth_log)
    assert (first.reason, first.key_prefix) == ("environment not allowed for this SDK key", staging[:12])
    assert (second.reason, second.key_prefix) == ("token lacks flags.view_flag", nobody[:12])
    assert_no_secret(auth_log, staging, nobody)


def test_failed_authentication__one_json_object_with_the_fields(stub, flags):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("flagsite.api.authentication")
    logger.addHandler(handler)
    try:
        rpc_error(stub.Evaluate, flags_pb2.EvaluateRequest(flag_id="on-flag"), metadata=auth(SECRET))
    finally:
        logger.removeHandler(handler)
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["level"] == "WARNING" and line["logger"] == "flagsite.api.authentication"
    assert (line["transport"], line["reason"], line["method"]) == ("grpc", "invalid or revoked API key", "Evaluate")
    assert len(line["fingerprint"]) == 12 and line["peer"]
    assert "S3CRETguess" not in stream.getvalue()


def test_grpcserver__metrics_port_must_not_take_the_grpc_port(transactional_db):
    done = manage("grpcserver", "--host", "127.0.0.1", "--port", "50077", "--workers", "2", "--metrics-port", "50076")
    assert done.returncode != 0 and "must not take the gRPC --port" in done.stderr


def test_unary_calls_run_on_their_own_small_pool(stub, flags, sdk_key, monkeypatch):
    seen = []
    record, record_all = counters.record, counters.record_all
    monkeypatch.setattr(counters, "record", lambda *a: (seen.append(threading.current_thread().name), record(*a)))
    monkeypatch.setattr(counters, "record_all",
                        lambda *a: (seen.append(threading.current_thread().name), record_all(*a)))
    stub.Evaluate(flags_pb2.EvaluateRequest(flag_id="on-flag"), metadata=auth(sdk_key))
    stub.EvaluateBulk(flags_pb2.EvaluateBulkRequest(), metadata=auth(sdk_key))
    assert len(seen) == 2 and all(name.startswith("grpc-unary") for name in seen), seen
