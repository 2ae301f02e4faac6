"""Scheduled changes are driven by a controllable clock (changes/clock.py): a test moves time
through hours, weekends and DST changes without sleeping."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from audit.actor import Actor
from changes import clock as scheduler_clock
from projects import services as project_services
from projects.models import Project
from tests.api.conftest import SYSTEM, create_flag

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


# -- change requests: the people and the flag (tests/changes/test_change_requests.py and neighbours) --

def member(username, role):
    user = get_user_model().objects.create_user(username, is_staff=True)
    project_services.role_grant(actor=SYSTEM, project=Project.objects.get(key="default"), role=role, user=user)
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def people(db):
    """An author (editor), two approvers, a project admin, and a superuser."""
    found = {"author": member("ann", "editor"), "editor": member("ed", "editor"),
             "approver": member("apu", "approver"), "approver2": member("abe", "approver"),
             "admin": member("ada", "admin")}
    found["superuser"] = get_user_model().objects.create_superuser("root", None, None)
    return found


@pytest.fixture
def checkout(db):
    flag = create_flag("checkout", states={env: {"enabled": False} for env in ("development", "staging", "production")})
    return flag


