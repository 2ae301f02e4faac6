import pytest

from audit.actor import Actor
from flags import services
from flags.models import Environment
from tests.servers import start_web

SYSTEM = Actor.system("live-tests")


@pytest.fixture
def server(transactional_db):
    """A real web server (granian ASGI: HTTP + /ws) on a free port, sharing this test's database."""
    process = start_web(FLAGS_WS_PING_SECONDS="0.5")
    yield process
    process.stop()


@pytest.fixture
def sdk_key(transactional_db):
    production = Environment.objects.get(key="production")
    return services.api_key_create(actor=SYSTEM, name="live", kind="sdk", environment=production)[1]


@pytest.fixture
def make_live_flag(transactional_db):
    def make(key, *, enabled=True, rules=None):
        envs = Environment.objects.values_list("key", flat=True)
        return services.flag_create(actor=SYSTEM, key=key, name=f"{key} name",
                                    states={env: {"enabled": enabled, "rules": rules or []} for env in envs})
    return make
