"""Fixtures for the REST API tests. Data is built through services, as users would."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from audit.actor import Actor
from audit.models import AuditEntry
from django.core.cache import cache

from flags import services as flag_services
from flags import snapshot
from flags.models import ApiKey, Environment, Flag, FlagState
from flagsite.api.authentication import forget_api_key
from segments import services as segment_services
from segments.models import Segment

SYSTEM = Actor.system("tests")

READ_PERMS = ["flags.view_flag", "segments.view_segment", "audit.view_auditentry"]
EDIT_PERMS = READ_PERMS + [
    f"{app}.{action}_{model}"
    for app, model in (("flags", "flag"), ("segments", "segment"))
    for action in ("add", "change", "delete")
]


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Process-local key and snapshot caches and the shared cache outlive each test's rolled-back
    transaction: start every test clean."""
    forget_api_key()
    snapshot.reset()
    cache.clear()
    yield
    forget_api_key()
    snapshot.reset()


def user_with(username, perms):
    user = get_user_model().objects.create_user(username)  # no password: no slow hashing
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def make_key(kind, *, environment=None, user=None):
    env = Environment.objects.get(key=environment) if environment else None
    _, raw = flag_services.api_key_create(actor=SYSTEM, name=f"{kind}-{environment or user}", kind=kind, environment=env, user=user)
    return raw


@pytest.fixture
def reader(db):
    return user_with("reader", READ_PERMS)


@pytest.fixture
def editor(db):
    return user_with("editor", EDIT_PERMS)


@pytest.fixture
def keys(db, reader, editor):
    """Raw keys: SDK keys for production and staging, a read-only and an editor management token."""
    return {
        "sdk": make_key("sdk", environment="production"),
        "sdk_other": make_key("sdk", environment="staging"),
        "reader": make_key("management", user=reader),
        "editor": make_key("management", user=editor),
    }


class Client(APIClient):
    """APIClient speaking JSON, optionally with an API key."""

    def __init__(self, key=None, **kwargs):
        super().__init__(**kwargs)
        if key:
            self.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    def _json(self, method, path, data=None, content_type="application/json", **extra):
        body = "" if data is None else (data if isinstance(data, (str, bytes)) else json.dumps(data))
        return self.generic(method, path, body, content_type, **extra)

    def get(self, path, data=None, **extra):
        return super().get(path, data, **extra)

    def post(self, path, data=None, **extra):
        return self._json("POST", path, data, **extra)

    def put(self, path, data=None, **extra):
        return self._json("PUT", path, data, **extra)

    def patch(self, path, data=None, **extra):
        return self._json("PATCH", path, data, **extra)

    def delete(self, path, data=None, **extra):
        return self._json("DELETE", path, data, **extra)


@pytest.fixture
def anon():
    return Client()


@pytest.fixture
def editor_api(keys):
    return Client(keys["editor"])


@pytest.fixture
def reader_api(keys):
    return Client(keys["reader"])


@pytest.fixture
def sdk_api(keys):
    return Client(keys["sdk"])


def create_flag(key, *, states=None, **kwargs):
    kwargs.setdefault("name", key.replace("-", " ").title())
    return flag_services.flag_create(actor=SYSTEM, key=key, states=states or {}, **kwargs)


def create_segment(key, conditions, **kwargs):
    kwargs.setdefault("name", key)
    return segment_services.segment_create(actor=SYSTEM, key=key, conditions=conditions, **kwargs)


def db_state():
    """Everything a write could touch: rows, states, audit entries, environment versions."""
    return {
        "flags": list(Flag.objects.order_by("key").values_list("key", "name", "description", "tags", "variants", "archived")),
        "states": list(
            FlagState.objects.order_by("flag__key", "environment__key").values_list(
                "flag__key", "environment__key", "enabled", "rules", "killed", "version"
            )
        ),
        "segments": list(Segment.objects.order_by("key").values_list("key", "name", "conditions")),
        "audit": AuditEntry.objects.count(),
        "versions": dict(Environment.objects.values_list("key", "version")),
        "api_keys": ApiKey.objects.count(),
    }


def assert_error(response, status, code, *fields):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    for field in fields:
        assert field in body["error"]["fields"], body
        assert body["error"]["fields"][field] and all(isinstance(m, str) for m in body["error"]["fields"][field])
    return body["error"]
