"""Celery tasks: one more interface onto audit/checkpoints.py."""

from celery import shared_task

from audit.checkpoints import export_checkpoint


@shared_task(name="audit.checkpoint")
def checkpoint():
    """Beat, every FLAGS_AUDIT_CHECKPOINT_MINUTES: a signed checkpoint off the database."""
    result = export_checkpoint()
    return {"checkpoint": result.record, "errors": result.errors}
