"""The scheduler's clock: timezone.now(), unless a test sets it (tests/changes drive the applier
through hours and weekends without sleeping)."""

from django.utils import timezone

_frozen = None


def now():
    return _frozen or timezone.now()


def set_now(value):
    """Freeze the clock at `value` (an aware datetime); None: real time again."""
    global _frozen
    _frozen = value
