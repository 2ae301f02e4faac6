"""Scheduled changes are driven by a controllable clock (changes/clock.py): a test moves time
through hours, weekends and DST changes without sleeping."""

import datetime as dt

import pytest
from django.contrib.auth.models import Permission

from audit.actor import Actor
from changes import clock as scheduler_clock

UTC = dt.UTC
FRIDAY = dt.datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now):
        self.set(now)

    def set(self, now):
        self.now = now
        scheduler_clock.set_now(now)

    def advance(self, **delta):
        self.set(self.now + dt.timedelta(**delta))
        return self.now

    def later(self, **delta):
        return self.now + dt.timedelta(**delta)


@pytest.fixture
def clock():
    yield Clock(FRIDAY)
    scheduler_clock.set_now(None)


def grant(user, *perms):
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return type(user).objects.get(pk=user.pk)  # a fresh instance: Django caches permissions per instance


SCHEDULER_PERMS = ("flags.view_flag", "flags.change_flag", "changes.view_scheduledchange",
                   "changes.add_scheduledchange", "changes.change_scheduledchange", "changes.view_rolloutplan",
                   "changes.add_rolloutplan", "changes.change_rolloutplan")


@pytest.fixture
def author(user):
    return Actor.for_user(grant(user, *SCHEDULER_PERMS), request_id="req-s", ip="127.0.0.1")
