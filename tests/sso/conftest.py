"""A real OpenID Connect provider for the SSO tests: oidc-provider-mock (PyPI) in its own process on
127.0.0.1. Its users and their claims are set over its HTTP API (PUT /users/<sub>); its authorize
page is a form where the browser (or a test, posting it) names the user to sign in."""

import sys
from urllib.parse import urlsplit

import pytest
import requests

from audit.actor import Actor
from flagsite import sso
from projects import services as project_services
from tests.servers import ServerProcess, free_port

CLIENT_ID = "flagsite"
CLIENT_SECRET = "flagsite-secret"
MAPPING = {
    "payments-devs": [{"project": "payments", "role": "editor", "environments": ["development", "staging"]}],
    "payments-leads": [{"project": "payments", "role": "admin"}, {"project": "search", "role": "viewer"}],
    "search-team": [{"project": "search", "role": "editor"}],
}


class Provider:
    def __init__(self, process):
        self.process = process
        self.url = f"http://127.0.0.1:{process.port}"

    def set_user(self, sub, **claims):
        """The provider's user ``sub`` with these claims (replacing earlier ones): e.g. groups=[...]."""
        response = requests.put(f"{self.url}/users/{sub}", json={"email": sub, **claims}, timeout=10)
        assert response.status_code == 204, response.text

    def authorize(self, authorize_url, sub):
        """What the user does on the provider's page: sign in as ``sub``. Returns where the provider
        sends the browser back to (the callback URL with code and state)."""
        response = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text
        return response.headers["Location"]


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("oidc") / "provider.log", "w")  # noqa: SIM115 (open for the session)
    process = ServerProcess([sys.executable, "-W", "ignore", "-m", "oidc_provider_mock", "--host", "127.0.0.1",
                             "--port", str(port)], port, log)
    yield Provider(process)
    process.stop()
    log.close()


def sso_env(provider, **extra):
    """Environment variables configuring SSO against ``provider`` (for a server process)."""
    import json

    return {"FLAGS_OIDC": "true", "FLAGS_OIDC_ISSUER": provider.url, "FLAGS_OIDC_CLIENT_ID": CLIENT_ID,
            "FLAGS_OIDC_CLIENT_SECRET": CLIENT_SECRET, "FLAGS_OIDC_GROUP_ROLES": json.dumps(MAPPING), **extra}


@pytest.fixture
def sso_settings(settings, oidc_provider):
    """This process's settings: SSO against the test provider, with MAPPING."""
    settings.FLAGS_OIDC = True
    settings.FLAGS_OIDC_ISSUER = oidc_provider.url
    settings.FLAGS_OIDC_CLIENT_ID = CLIENT_ID
    settings.FLAGS_OIDC_CLIENT_SECRET = CLIENT_SECRET
    settings.FLAGS_OIDC_GROUP_ROLES = MAPPING
    sso._discovered.clear()
    yield settings
    sso._discovered.clear()


@pytest.fixture
def projects(db):
    actor = Actor.system("sso-tests")
    return [project_services.project_create(actor=actor, key=key, name=key.title()) for key in ("payments", "search")]


def sso_login(client, provider, sub, next_url="/"):
    """The whole redirect flow through Django's test client and the real provider: returns the
    callback's response (a redirect to ``next_url`` on success)."""
    start = client.get("/oidc/authenticate/", {"next": next_url})
    assert start.status_code == 302, start.content
    assert start["Location"].startswith(f"{provider.url}/oauth2/authorize?")
    back = urlsplit(provider.authorize(start["Location"], sub))
    assert back.path == "/oidc/callback/"
    return client.get(f"{back.path}?{back.query}")
