import pytest
from django.contrib.auth import get_user_model

from audit.actor import Actor
from flags import services
from flags.models import Environment

SYSTEM = Actor.system("pages-tests")
PASSWORD = "pw-pages-123"


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True, is_superuser=True)


@pytest.fixture
def member(db):
    return get_user_model().objects.create_user("member", password=PASSWORD)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def page_flag(db):
    def make(key, *, enabled=True, rules=None, tags=(), description="", **kwargs):
        envs = Environment.objects.values_list("key", flat=True)
        return services.flag_create(actor=SYSTEM, key=key, name=key.replace("-", " ").title(), tags=list(tags),
                                    description=description, **kwargs,
                                    states={env: {"enabled": enabled, "rules": rules or []} for env in envs})
    return make


@pytest.fixture(autouse=True)
def _eager_rollups(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
