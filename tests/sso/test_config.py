"""A bad or incomplete SSO configuration is reported by `manage.py check` (which migrate and
bootstrap run) and stops a web process at start-up, naming the setting: never a 500 at login."""

import json

import pytest

from flagsite import sso
from projects import sso as mapping
from tests.servers import ROOT, manage
from tests.sso.conftest import MAPPING

GOOD = {"FLAGS_OIDC": True, "FLAGS_OIDC_ISSUER": "https://id.example.com", "FLAGS_OIDC_CLIENT_ID": "flagsite",
        "FLAGS_OIDC_CLIENT_SECRET": "s", "FLAGS_OIDC_GROUP_ROLES": MAPPING}


@pytest.fixture
def configured(settings):
    for name, value in GOOD.items():
        setattr(settings, name, value)
    return settings


def messages(errors):
    return [f"{e.id} {e.msg}" for e in errors]


def test_default__sso_off_no_errors(settings):
    assert settings.FLAGS_OIDC is False and settings.FLAGS_PASSWORD_LOGIN is True
    assert sso.check_settings() == []


def test_complete_configuration__no_errors(configured):
    assert sso.check_settings() == []
    configured.FLAGS_OIDC_GROUP_ROLES = json.dumps(MAPPING)  # as the environment gives it
    assert sso.check_settings() == []


@pytest.mark.parametrize(("changes", "expected"), [
    ({"FLAGS_OIDC_ISSUER": ""}, "flagsite.E201 FLAGS_OIDC is on but FLAGS_OIDC_ISSUER is not set."),
    ({"FLAGS_OIDC_CLIENT_ID": ""}, "flagsite.E201 FLAGS_OIDC is on but FLAGS_OIDC_CLIENT_ID is not set."),
    ({"FLAGS_OIDC_ISSUER": "id.example.com"},
     "flagsite.E201 FLAGS_OIDC_ISSUER must be an http(s) URL, not 'id.example.com'."),
    ({"FLAGS_OIDC_ISSUER": "http://id.example.com", "FLAGS_PRODUCTION": True},
     "flagsite.E201 FLAGS_OIDC_ISSUER must use https when FLAGS_PRODUCTION=true."),
    ({"FLAGS_OIDC_SIGN_ALGO": "none"}, "flagsite.E201 FLAGS_OIDC_SIGN_ALGO 'none' is not supported."),
    ({"FLAGS_OIDC_SIGN_ALGO": "HS256", "FLAGS_OIDC_CLIENT_SECRET": ""},
     "flagsite.E201 FLAGS_OIDC_SIGN_ALGO HS256 verifies tokens with the client secret: set FLAGS_OIDC_CLIENT_SECRET."),
    ({"FLAGS_OIDC_SCOPES": "email"}, "flagsite.E201 FLAGS_OIDC_SCOPES 'email' lacks 'openid'."),
    ({"FLAGS_OIDC_GROUP_ROLES": "{not json"},
     ("flagsite.E202 FLAGS_OIDC_GROUP_ROLES is not valid JSON: Expecting property name enclosed in double quotes: "
     "line 1 column 2 (char 1)")),
    ({"FLAGS_OIDC_GROUP_ROLES": ["payments"]},
     'flagsite.E202 FLAGS_OIDC_GROUP_ROLES must be an object: {"<claim group>": [{"project": ..., "role": ...}]}.'),
    ({"FLAGS_OIDC_GROUP_ROLES": {"devs": {"project": "p", "role": "editor"}}},
     "flagsite.E202 FLAGS_OIDC_GROUP_ROLES['devs'] must be a list of grants."),
    ({"FLAGS_OIDC_GROUP_ROLES": {"devs": [{"project": "p", "role": "owner"}]}},
     ("flagsite.E202 FLAGS_OIDC_GROUP_ROLES['devs'][0]: \"role\" must be one of viewer, editor, approver, admin, "
     "not 'owner'.")),
    ({"FLAGS_OIDC_GROUP_ROLES": {"devs": [{"project": "p", "role": "editor", "environments": "production"}]}},
     "flagsite.E202 FLAGS_OIDC_GROUP_ROLES['devs'][0]: \"environments\" must be a list of environment keys."),
    ({"FLAGS_OIDC_GROUP_ROLES": {"devs": [{"project": "p", "role": "editor", "env": ["production"]}]}},
     ("flagsite.E202 FLAGS_OIDC_GROUP_ROLES['devs'][0] must be an object with \"project\", \"role\" and optionally "
     "\"environments\".")),
    ({"FLAGS_OIDC_GROUP_ROLES": {"devs": [{"project": "p", "role": "editor"}, {"project": "p", "role": "editor"}]}},
     "flagsite.E202 FLAGS_OIDC_GROUP_ROLES['devs'][1]: editor in p is listed twice for this group."),
    ({"FLAGS_OIDC_GROUP_ROLES": {"x" * 146: []}},
     f"flagsite.E202 FLAGS_OIDC_GROUP_ROLES[{'x' * 146!r}]: a claim group name has 1-145 characters."),
    ({"FLAGS_OIDC": False, "FLAGS_PASSWORD_LOGIN": False},
     "flagsite.E200 FLAGS_PASSWORD_LOGIN is off and single sign-on (FLAGS_OIDC) is not on: nobody could sign in."),
])
def test_bad_configuration__named_by_the_check(configured, changes, expected):
    for name, value in changes.items():
        setattr(configured, name, value)
    assert messages(sso.check_settings()) == [expected]


def test_explicit_endpoints__no_issuer_needed(configured):
    configured.FLAGS_OIDC_ISSUER = ""
    for name in ("AUTHORIZATION_ENDPOINT", "TOKEN_ENDPOINT", "USERINFO_ENDPOINT", "JWKS_URI"):
        setattr(configured, f"FLAGS_OIDC_{name}", f"https://id.example.com/{name.lower()}")
    assert sso.check_settings() == []


def test_web_process_start__bad_configuration__refuses_with_the_reason(configured):
    configured.FLAGS_OIDC_CLIENT_ID = ""
    with pytest.raises(SystemExit, match="refusing to start: FLAGS_OIDC is on but FLAGS_OIDC_CLIENT_ID is not set"):
        sso.refuse_bad_settings()


@pytest.mark.django_db
def test_mapped_project_missing__database_check_warns(configured):
    warnings = sso.check_mapped_projects(databases=["default"])
    assert messages(warnings) == [
        "flagsite.W203 FLAGS_OIDC_GROUP_ROLES grants roles in projects that do not exist: payments, search."]


def test_manage_check__environment_variables__reports_and_fails():
    """As an operator meets it: environment variables, `manage.py check`, a non-zero exit (the
    check reads no database)."""
    result = manage("check", FLAGS_OIDC="true", FLAGS_OIDC_ISSUER="https://id.example.com",
                    FLAGS_OIDC_GROUP_ROLES='{"devs": [{"project": "payments", "role": "boss"}]}')
    assert result.returncode == 1
    assert "(flagsite.E201) FLAGS_OIDC is on but FLAGS_OIDC_CLIENT_ID is not set." in result.stderr
    assert """(flagsite.E202) FLAGS_OIDC_GROUP_ROLES['devs'][0]: "role" must be one of""" in result.stderr

    assert manage("check", FLAGS_OIDC="true", FLAGS_OIDC_ISSUER="https://id.example.com",
                  FLAGS_OIDC_CLIENT_ID="flagsite", FLAGS_OIDC_GROUP_ROLES=json.dumps(MAPPING)).returncode == 0


def test_readme_example__passes_the_check(settings):
    """README "Single sign-on": its settings block and its mapping are a configuration the check accepts."""
    text = (ROOT / "README.md").read_text(encoding="utf-8").split("## Single sign-on\n", 1)[1]
    env_block = text.split("```text\n", 1)[1].split("```", 1)[0]
    env = dict(line.split("  #")[0].strip().split("=", 1) for line in env_block.splitlines() if line.strip())
    from flagsite import settings as module

    assert all(hasattr(module, name) for name in env), "a setting that does not exist"
    settings.FLAGS_OIDC = env["FLAGS_OIDC"] == "true"
    settings.FLAGS_PASSWORD_LOGIN = env["FLAGS_PASSWORD_LOGIN"] == "true"
    for name in ("FLAGS_OIDC_ISSUER", "FLAGS_OIDC_CLIENT_ID", "FLAGS_OIDC_CLIENT_SECRET", "FLAGS_OIDC_SCOPES",
                 "FLAGS_OIDC_USERNAME_CLAIM", "FLAGS_OIDC_GROUPS_CLAIM", "FLAGS_OIDC_GROUP_ROLES"):
        setattr(settings, name, env[name])
    assert sso.check_settings() == []
    mapping_block = text.split("```json\n", 1)[1].split("```", 1)[0]
    assert mapping.group_roles(mapping_block)["payments-leads"][1] == {"project": "search", "role": "viewer",
                                                                   "environments": []}
