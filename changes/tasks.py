"""Celery tasks: one more interface onto changes/services.py."""

from celery import shared_task

from changes import services


@shared_task(name="changes.apply_due_changes")
def apply_due_changes():
    """Beat, every FLAGS_SCHEDULED_CHANGES_INTERVAL seconds: apply the changes now due, each once
    (several beats or workers running this at once is safe: changes/services.py)."""
    return [list(outcome) for outcome in services.apply_due()]
