"""Exactly once with several appliers at the same time: two processes (both databases), four
threads (PostgreSQL: row locks with SKIP LOCKED), the embedded runner thread, and the runner started
by a real web server (granian) when there is no broker."""

import datetime as dt
import threading
import time
from collections import Counter

import pytest
from django.db import connection

from audit.chain import verify_chain
from audit.models import AuditEntry
from changes import clock as scheduler_clock
from changes import runner, services
from changes.models import ScheduledChange
from flags.models import FlagState
from tests.servers import manage, start_web

TRANSACTIONAL = pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the seeded rows stay


def due_changes(author, make_flag, count, prefix):
    """`count` changes (turn a flag on, one flag each) due 30 minutes ago, scheduled an hour ago."""
    real_now = scheduler_clock.now()
    scheduler_clock.set_now(real_now - dt.timedelta(hours=1))
    try:
        return [services.scheduled_change_create(actor=author, flag=make_flag(f"{prefix}-{n}", enabled=False),
                                                 environment="production", operation="enable",
                                                 run_at=real_now - dt.timedelta(minutes=30)).pk
                for n in range(count)]
    finally:
        scheduler_clock.set_now(None)


def assert_each_applied_once(ids, late=False):
    assert set(ScheduledChange.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"applied"}
    actors = Counter(actor.split(", applied late by ")[0] for actor in AuditEntry.objects.filter(
        action="flag.toggled", actor__contains="late" if late else "").values_list("actor", flat=True))
    assert sorted(actors) == sorted(f"scheduled change #{pk} by alice" for pk in ids)
    assert set(actors.values()) == {1}
    assert FlagState.objects.filter(environment__key="production", enabled=True).count() == len(ids)
    assert verify_chain().ok


@TRANSACTIONAL
def test_two_applier_processes_at_once__each_change_applied_exactly_once(author, make_flag):
    ids = due_changes(author, make_flag, 40, "proc")
    # an interval of 2 h: applied on time (the "late" rule has its own tests)
    first, second = (manage("apply_scheduled_changes", wait=False, FLAGS_SCHEDULED_CHANGES_INTERVAL=7200)
                     for _ in range(2))
    outputs = [process.communicate(timeout=120) for process in (first, second)]
    assert [process.returncode for process in (first, second)] == [0, 0], outputs
    decided = [line for out, _ in outputs for line in out.splitlines() if line.startswith("#")]
    assert sorted(decided) == sorted(f"#{pk} applied" for pk in ids)  # each once, between the two
    assert_each_applied_once(ids)


@pytest.mark.postgres
@TRANSACTIONAL
def test_four_applier_threads_on_postgres__skip_locked__each_change_applied_exactly_once(author, make_flag):
    assert connection.vendor == "postgresql"
    ids = due_changes(author, make_flag, 60, "thread")
    barrier, results, errors = threading.Barrier(4), [], []

    def applier():
        try:
            barrier.wait()
            results.append(services.apply_due(now=scheduler_clock.now() - dt.timedelta(minutes=29)))
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=applier) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    decided = [pk for result in results for pk, _ in result]
    assert sorted(decided) == sorted(ids)
    assert_each_applied_once(ids)


@TRANSACTIONAL
def test_embedded_runner_thread__applies_on_time_within_one_interval(author, make_flag, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded default: no broker, no beat
    settings.FLAGS_SCHEDULED_CHANGES_INTERVAL = 0.2
    flag = make_flag("embedded", enabled=False)
    change = services.scheduled_change_create(actor=author, flag=flag, environment="production",
                                              operation="enable", run_at=scheduler_clock.now() + dt.timedelta(seconds=1))
    assert runner.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and ScheduledChange.objects.get(pk=change.pk).status == "pending":
            time.sleep(0.05)
    finally:
        runner.stop()
    change.refresh_from_db()
    assert change.status == "applied", change.result
    assert dt.timedelta(0) <= change.applied_at - change.run_at < dt.timedelta(seconds=1.5)
    assert FlagState.objects.get(flag=flag, environment__key="production").enabled is True


@TRANSACTIONAL
def test_web_server_without_broker__its_workers_apply_due_changes_once(author, make_flag):
    ids = due_changes(author, make_flag, 5, "web")
    # two workers, as scripts/run: both run the runner; REDIS_URL empty: the embedded mode on either leg
    server = start_web(workers=2, REDIS_URL="", FLAGS_SCHEDULED_CHANGES_INTERVAL="0.3")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and ScheduledChange.objects.filter(pk__in=ids, status="pending").exists():
            time.sleep(0.1)
        time.sleep(1)  # a few more runs by both workers: nothing applied twice
    finally:
        server.stop()
    assert_each_applied_once(ids, late=True)  # due 30 minutes before the server started
