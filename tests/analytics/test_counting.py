"""Counting is exact: every evaluation answered through REST and gRPC lands in the hourly rollups
exactly once after a flush, whether the rollup task runs eagerly (embedded) or on a real Celery
worker over Redis."""

import os
import subprocess
import sys
import time

import grpc
import pytest

from analytics import counters
from analytics.hll import HyperLogLog
from analytics.models import EvaluationRollup, UniqueUsersRollup
from flags.live import ThreadWatcher
from grpc_api.server import FlagServer
from grpc_api.stubs import flags_pb2_grpc
from tests.analytics.conftest import client_with, sdk_key
from tests.analytics.counting import TOTAL, USERS, drive, make_flags, rollup_counts
from tests.servers import ROOT, child_env

TRANSACTIONAL = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def grpc_stub():
    server = FlagServer("127.0.0.1:0", threads=32, watcher=ThreadWatcher()).start()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield flags_pb2_grpc.FlagServiceStub(channel)
    server.stop(grace=1)


def assert_unique_users(keys):
    for key in keys:
        sketch = HyperLogLog()
        for data in UniqueUsersRollup.objects.filter(flag_key=key).values_list("sketch", flat=True):
            sketch.merge(HyperLogLog.from_bytes(data))
        assert sketch.count() == USERS, key


@TRANSACTIONAL
def test_100k_evaluations_rest_and_grpc__eager_celery__exact_rollups(settings, make_env_flag, grpc_stub):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded mode, also on the Redis leg
    # Given 20 flags (variants, percentages, off, on) and an SDK key
    keys = make_flags(make_env_flag, "eager")
    key = sdk_key("production")
    # When 100,000 evaluations are answered, with flushes in between and after
    answered = drive(client_with(key), grpc_stub, key, keys, flush_every=997, flush=counters.flush)
    counters.flush()
    # Then the rollup rows hold exactly what was answered: per variant and on/off, in total too
    assert counters.recorder.pending_evaluations() == 0
    found = rollup_counts(keys)
    assert found == answered
    assert sum(found.values()) == TOTAL
    assert {row for row in EvaluationRollup.objects.values_list("granularity", flat=True)} == {"hour"}
    assert_unique_users(keys)


def _worker(queue_env):
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "flagsite", "worker", "--pool=solo", "--loglevel=WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=child_env(**queue_env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.redis
@TRANSACTIONAL
def test_100k_evaluations_rest_and_grpc__celery_worker_over_redis__exact_rollups(settings, make_env_flag, grpc_stub):
    from flagsite.celery import app

    assert os.environ.get("REDIS_URL"), "the redis leg runs with REDIS_URL (deselect with -m 'not redis')"
    settings.CELERY_TASK_ALWAYS_EAGER = False  # batches go to Redis, the worker upserts them
    app.control.purge()  # batches other tests flushed with no worker running
    keys = make_flags(make_env_flag, "worker")
    key = sdk_key("production")
    worker = _worker({"FLAGS_ANALYTICS_AUTOFLUSH": "false"})
    try:
        # When 100,000 evaluations are answered and flushed to the broker in batches
        answered = drive(client_with(key), grpc_stub, key, keys, flush_every=1500, flush=counters.flush)
        counters.flush()
        assert counters.recorder.pending_evaluations() == 0
        # Then the worker upserts them: exactly the answered counts, nothing twice
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(rollup_counts(keys).values()) < TOTAL:
            time.sleep(0.2)
        time.sleep(0.5)  # nothing more arrives
        assert rollup_counts(keys) == answered
        assert_unique_users(keys)
    finally:
        worker.terminate()
        try:
            output, _ = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
    assert "Traceback" not in output, output
