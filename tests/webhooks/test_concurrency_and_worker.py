"""Exactly once under concurrency (PostgreSQL: two dispatchers and senders in threads at once), and
end to end through a real Celery worker over Redis."""

import os
import subprocess
import sys
import threading
import time

import pytest
from django.db import connections

from flags import services as flag_services
from tests.servers import ROOT, child_env
from tests.webhooks.conftest import SYSTEM
from webhooks import services
from webhooks.models import Delivery, Webhook

TRANSACTIONAL = pytest.mark.django_db(transaction=True, serialized_rollback=True)
KILLS = 30


def _kills(make_flag):
    flag = make_flag("f")
    for n in range(KILLS):
        flag_services.flag_kill(actor=SYSTEM, flag=flag, reason=f"kill {n}", environments=["production"])


@pytest.mark.postgres
@TRANSACTIONAL
def test_two_dispatchers_and_senders_at_once__each_entry_enqueued_and_sent_once(make_flag, receiver):
    # Given a subscription with 30 kills behind its cursor (created off, so nothing dispatched yet)
    webhook, secret = services.webhook_create(actor=SYSTEM, url=receiver.url, events=["flag.killed"], active=False)
    _kills(make_flag)
    Webhook.all_objects.filter(pk=webhook.pk).update(active=True)
    # When two threads dispatch (in small batches) and send whatever is due, released together
    barrier, errors = threading.Barrier(2), []

    def work():
        try:
            barrier.wait(timeout=10)
            while True:
                ids, more = services._dispatch_one(webhook.pk, 3)
                for pk in services.deliveries_due():
                    services.delivery_send(delivery_id=pk)
                if not ids and not more:
                    break
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Then every kill was enqueued once and received once, all signed
    assert errors == []
    assert Delivery.objects.filter(webhook=webhook).count() == KILLS
    assert set(Delivery.objects.values_list("status", "attempts")) == {("succeeded", 1)}
    ids = [headers["webhook-id"] for headers, _ in receiver.received]
    assert len(ids) == len(set(ids)) == KILLS
    assert sorted(m["data"]["reason"] for m in receiver.verified(secret)) == sorted(f"kill {n}" for n in range(KILLS))


@pytest.mark.redis
@TRANSACTIONAL
def test_celery_worker_over_redis__delivers_after_commit__retries_a_failure(settings, make_flag, receiver):
    from flagsite.celery import app

    assert os.environ.get("REDIS_URL"), "the redis leg runs with REDIS_URL (deselect with -m 'not redis')"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.control.purge()  # tasks other tests queued with no worker running
    receiver.script = [500, 200]  # the first attempt fails; the retry (a countdown task) succeeds
    webhook, secret = services.webhook_create(actor=SYSTEM, url=receiver.url, events=["flag.killed"])
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "flagsite", "worker", "--pool=solo", "--loglevel=WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=child_env(FLAGS_ANALYTICS_AUTOFLUSH="false", FLAGS_WEBHOOK_BACKOFF_SECONDS="0.5",
                                FLAGS_WEBHOOK_BACKOFF_MAX_SECONDS="1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # When a flag is killed (the commit enqueues the dispatcher on Redis; the worker does the rest)
        flag_services.flag_kill(actor=SYSTEM, flag=make_flag("f"), reason="r", environments=["production"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not Delivery.objects.filter(status="succeeded").exists():
            time.sleep(0.1)
        # Then it arrived, signed, after one failed attempt: the same message twice, no more
        delivery = Delivery.objects.get(webhook=webhook)
        assert (delivery.status, delivery.attempts) == ("succeeded", 2), delivery.error
        assert [m["type"] for m in receiver.verified(secret)] == ["flag.killed", "flag.killed"]
        assert len({headers["webhook-id"] for headers, _ in receiver.received}) == 1
        assert list(delivery.attempt_log.values_list("response_status", flat=True)) == [500, 200]
    finally:
        worker.terminate()
        try:
            output, _ = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
    assert "Traceback" not in output, output


@TRANSACTIONAL
def test_embedded_runner__no_broker__sends_off_the_request_and_retries(settings, make_flag, receiver):
    """The embedded default (eager Celery, no worker, no beat): the web process's runner thread is
    woken by the commit, sends, and retries a failure on its own tick."""
    from webhooks import runner

    settings.FLAGS_WEBHOOK_TICK_SECONDS = 0.1
    settings.FLAGS_WEBHOOK_BACKOFF_SECONDS = 0.2
    settings.FLAGS_WEBHOOK_BACKOFF_MAX_SECONDS = 0.2
    receiver.script = [500, 200]
    webhook, secret = services.webhook_create(actor=SYSTEM, url=receiver.url, events=["flag.killed"])
    flag = make_flag("f")
    assert runner.start()
    try:
        flag_services.flag_kill(actor=SYSTEM, flag=flag, reason="r", environments=["production"])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not Delivery.objects.filter(status="succeeded").exists():
            time.sleep(0.05)
    finally:
        runner.stop()
    delivery = Delivery.objects.get(webhook=webhook)
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert [m["type"] for m in receiver.verified(secret)] == ["flag.killed", "flag.killed"]
