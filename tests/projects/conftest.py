"""Two projects, "default" (today's data) and "team-b", each with a flag keyed "checkout" that
answers differently, and keys of each. Built through services, as users would."""

import pytest

from flags import services as flag_services
from flags.models import Environment
from projects import scope
from projects import services as project_services
from segments import services as segment_services
from tests.api.conftest import SYSTEM, Client, user_with, _fresh_caches  # noqa: F401 (fixture)

EDITOR_PERMS = ["flags.view_flag", "flags.add_flag", "flags.change_flag", "segments.view_segment",
                "segments.add_segment", "audit.view_auditentry", "projects.view_project"]


def _flag(enabled, variant_rule=None):
    return flag_services.flag_create(
        actor=SYSTEM, key="checkout", name="Checkout",
        states={env.key: {"enabled": enabled, "rules": []} for env in Environment.objects.all()})


def _key(kind, *, environment=None, user=None, narrowed=False):
    env = Environment.objects.get(key=environment) if environment else None
    return flag_services.api_key_create(actor=SYSTEM, name=f"{kind}-{scope.current()}", kind=kind, environment=env,
                                        user=user, narrowed=narrowed)[1]


@pytest.fixture
def two_projects(db):
    editor = user_with("editor", EDITOR_PERMS)
    project_services.project_create(actor=SYSTEM, key="team-b", name="Team B")
    keys = {}
    _flag(enabled=True)  # default: on
    segment_services.segment_create(actor=SYSTEM, key="beta", name="Beta", conditions={"plan": "beta"})
    keys["a_sdk"] = _key("sdk", environment="production")
    keys["a_token"] = _key("management", user=editor, narrowed=True)
    with scope.using("team-b"):
        _flag(enabled=False)  # team-b: off
        flag_services.flag_create(actor=SYSTEM, key="b-only", name="B only",
                                  states={"production": {"enabled": True, "rules": []}})
        keys["b_sdk"] = _key("sdk", environment="production")
        keys["b_token"] = _key("management", user=editor, narrowed=True)
    keys["any_token"] = _key("management", user=editor)
    return keys


@pytest.fixture
def client_for():
    return Client
