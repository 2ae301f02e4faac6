"""Fixtures for analytics: keys, clients and flags built through services."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from audit.actor import Actor
from flags import services
from flags.models import Environment
from flagsite.api.authentication import forget_api_key

SYSTEM = Actor.system("analytics-tests")


@pytest.fixture(autouse=True)
def _forget_keys():
    forget_api_key()
    yield
    forget_api_key()


def sdk_key(environment="production"):
    env = Environment.objects.get(key=environment)
    return services.api_key_create(actor=SYSTEM, name=f"sdk-{environment}", kind="sdk", environment=env)[1]


def client_with(raw_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def sdk_client(db):
    return client_with(sdk_key("production"))


@pytest.fixture
def viewer(db):
    user = get_user_model().objects.create_user("viewer")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="flags", codename="view_flag"))
    return user


@pytest.fixture
def viewer_client(viewer):
    raw = services.api_key_create(actor=SYSTEM, name="mgmt", kind="management", user=viewer)[1]
    return client_with(raw)


@pytest.fixture
def make_env_flag(db):
    def make(key, *, enabled=True, rules=None, kind="boolean", variants=(), tags=(), description=""):
        envs = Environment.objects.values_list("key", flat=True)
        return services.flag_create(actor=SYSTEM, key=key, name=key.replace("-", " ").title(), kind=kind,
                                    variants=list(variants), tags=list(tags), description=description,
                                    states={env: {"enabled": enabled, "rules": rules or []} for env in envs})
    return make


@pytest.fixture(autouse=True)
def _eager_rollups(settings):
    """Flushes upsert in this process (the embedded mode) unless a test runs a real worker."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
