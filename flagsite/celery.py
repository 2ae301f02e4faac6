"""The Celery app. Broker: Redis with REDIS_URL; without it tasks run eagerly in the calling
process (settings: CELERY_TASK_ALWAYS_EAGER). Worker: `celery -A flagsite worker`; beat:
`celery -A flagsite beat` (rollup compaction and stale marking, daily; signed audit checkpoints every
FLAGS_AUDIT_CHECKPOINT_MINUTES, default 10; webhook dispatch and retries every FLAGS_WEBHOOK_TICK_SECONDS,
default 10; due scheduled changes every FLAGS_SCHEDULED_CHANGES_INTERVAL seconds, default 30). Without a
broker no beat runs: the web processes send webhooks and apply scheduled changes themselves
(webhooks/runner.py, changes/runner.py)."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flagsite.settings")

app = Celery("flagsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.beat_schedule = {
    "compact-analytics-rollups": {"task": "analytics.compact_rollups", "schedule": crontab(minute=15, hour=3)},
    "mark-stale-flags": {"task": "analytics.mark_stale_flags", "schedule": crontab(minute=30, hour=3)},
    # the window in which a truncated chain tail goes unnoticed (README "Audit threat model")
    "audit-checkpoint": {"task": "audit.checkpoint",
                         "schedule": 60 * float(os.environ.get("FLAGS_AUDIT_CHECKPOINT_MINUTES") or 10)},
    # webhooks' safety net: dispatch what a lost wake-up missed, send due retries (webhooks/trigger.py)
    "webhooks-tick": {"task": "webhooks.tick",
                      "schedule": float(os.environ.get("FLAGS_WEBHOOK_TICK_SECONDS") or 10)},
    # on time within one interval; several beats or workers at once still apply each change once
    "apply-scheduled-changes": {"task": "changes.apply_due_changes",
                                "schedule": float(os.environ.get("FLAGS_SCHEDULED_CHANGES_INTERVAL") or 30),
                                "options": {"expires": float(os.environ.get("FLAGS_SCHEDULED_CHANGES_INTERVAL") or 30)}},
}
