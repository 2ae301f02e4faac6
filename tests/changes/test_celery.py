"""Celery: the beat entry, and (redis) two real workers each with its own embedded beat, both
firing changes.apply_due_changes every second: the change is applied once, on time."""

import datetime as dt
import os
import subprocess
import sys
import time

import pytest

from audit.models import AuditEntry
from changes import clock as scheduler_clock
from changes import services
from changes.models import ScheduledChange
from tests.servers import ROOT, child_env


def test_beat_schedule__applies_due_changes_every_interval():
    from flagsite.celery import app

    app.loader.import_default_modules()  # what a worker does at start: autodiscovers every app's tasks
    entry = app.conf.beat_schedule["apply-scheduled-changes"]
    assert entry["task"] == "changes.apply_due_changes"
    assert entry["schedule"] == 30.0  # FLAGS_SCHEDULED_CHANGES_INTERVAL's default
    assert "changes.apply_due_changes" in app.tasks


@pytest.mark.django_db
def test_task__applies_what_is_due(author, make_flag, clock):
    from changes.tasks import apply_due_changes

    flag = make_flag("task", enabled=False)
    change = services.scheduled_change_create(actor=author, flag=flag, environment="production",
                                              operation="enable", run_at=clock.later(minutes=5))
    clock.advance(minutes=5)
    assert apply_due_changes() == [[change.pk, "applied"]]  # the task's body, in this process


def _worker_with_beat(directory, name):
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "flagsite", "worker", "--beat", "--pool=solo", "--loglevel=WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{name}@%h",
         "--schedule", str(directory / f"beat-{name}")],
        cwd=ROOT, env=child_env(FLAGS_SCHEDULED_CHANGES_INTERVAL="1", FLAGS_ANALYTICS_AUTOFLUSH="false"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_workers_with_beat_over_redis__change_applied_once_on_time(author, make_flag, tmp_path):
    assert os.environ.get("REDIS_URL"), "the redis leg runs with REDIS_URL (deselect with -m 'not redis')"
    warm_up, flag = make_flag("warm-up", enabled=False), make_flag("celery-beat", enabled=False)

    def schedule(flag, seconds):
        return services.scheduled_change_create(actor=author, flag=flag, environment="production", operation="enable",
                                                run_at=scheduler_clock.now() + dt.timedelta(seconds=seconds))

    def wait_for(change):
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and ScheduledChange.objects.get(pk=change.pk).status == "pending":
            time.sleep(0.1)

    workers = [_worker_with_beat(tmp_path, name) for name in ("one", "two")]
    try:
        wait_for(schedule(warm_up, 0.5))  # the workers are up and beating (each imports Django first)
        change = schedule(flag, 2)
        wait_for(change)
        time.sleep(3)  # several more beats of both
    finally:
        outputs = []
        for worker in workers:
            worker.terminate()
            try:
                outputs.append(worker.communicate(timeout=20)[0])
            except subprocess.TimeoutExpired:
                worker.kill()
                outputs.append(worker.communicate()[0])
    change.refresh_from_db()
    assert change.status == "applied", (change.result, outputs)
    assert dt.timedelta(0) <= change.applied_at - change.run_at < dt.timedelta(seconds=3)  # one interval + slack
    assert AuditEntry.objects.filter(action="flag.toggled", target_key="celery-beat").count() == 1
    assert not any("Traceback" in output for output in outputs), outputs
