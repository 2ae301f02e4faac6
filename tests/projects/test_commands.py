"""manage.py commands take --project (default: default)."""

import io

import pytest
from django.core.management import CommandError, call_command

from flags.models import ApiKey, Flag, FlagState

pytestmark = pytest.mark.django_db


def killed(project):
    return list(FlagState.objects.filter(flag__project_id=project, flag__key="checkout", killed=True)
                .values_list("environment__key", flat=True))


def test_kill_switch__project__kills_that_projects_flag_only(two_projects):
    call_command("kill_switch", "checkout", reason="errors", project="team-b", stdout=io.StringIO())
    assert sorted(killed("team-b")) == ["development", "production", "staging"] and killed("default") == []
    call_command("kill_switch", "checkout", reason="errors", stdout=io.StringIO())  # default: the default project
    assert len(killed("default")) == 3


def test_kill_switch__flag_of_another_project__not_found(two_projects):
    with pytest.raises(CommandError, match="not found"):
        call_command("kill_switch", "b-only", reason="errors", stdout=io.StringIO())
    with pytest.raises(CommandError, match="Unknown project"):
        call_command("kill_switch", "checkout", reason="errors", project="nope", stdout=io.StringIO())


def test_create_api_key__project_and_narrow(two_projects, django_user_model):
    out = io.StringIO()
    call_command("create_api_key", kind="sdk", environment="production", project="team-b", stdout=out,
                 stderr=io.StringIO())
    call_command("create_api_key", kind="management", user="editor", project="team-b", narrow=True, stdout=out,
                 stderr=io.StringIO())
    sdk, token = ApiKey.all_objects.order_by("-pk")[1], ApiKey.all_objects.order_by("-pk")[0]
    assert (sdk.project_id, sdk.environment.project_id) == ("team-b", "team-b")
    assert (token.project_id, token.narrowed) == ("team-b", True)


def test_load_demo_data__project(two_projects):
    call_command("load_demo_data", project="team-b", stdout=io.StringIO())
    assert Flag.all_objects.filter(project_id="team-b").count() > Flag.all_objects.filter(project_id="default").count()
