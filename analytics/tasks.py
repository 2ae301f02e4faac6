"""Celery tasks: one more interface onto analytics/services.py."""

from celery import shared_task

from analytics import services


@shared_task(name="analytics.rollup_batch", acks_late=True)
def rollup_batch(batch):
    """Upsert a batch flushed by a process's counters (analytics.counters)."""
    return services.rollup_apply(batch=batch)


@shared_task(name="analytics.compact_rollups")
def compact_rollups():
    """Beat, daily: hours older than 30 days become days."""
    return services.rollups_compact()


@shared_task(name="analytics.mark_stale_flags")
def mark_stale_flags():
    """Beat, daily: flags not evaluated in any environment for 30 days are marked stale."""
    return services.flags_mark_stale()
