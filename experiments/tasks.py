"""Celery tasks: one more interface onto experiments/services.py."""

from celery import shared_task

from experiments import services


@shared_task(name="experiments.write_events", acks_late=True)
def write_events(batch):
    """Insert a batch of events flushed by a process's buffer (experiments.buffers)."""
    return services.events_write(rows=batch)


@shared_task(name="experiments.write_exposures", acks_late=True)
def write_exposures(batch):
    """Upsert a batch of exposures flushed by a process's buffer (experiments.buffers)."""
    return services.exposures_upsert(rows=batch)
