"""Relay tokens (ApiKey kind "relay"): created like other keys (service, command, REST), audited,
revocable, scoped to environments of their project."""

import io

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from flags import services
from flags.errors import ValidationFailed
from flags.models import ApiKey
from flagsite.api.authentication import forget_api_key, resolve_api_key
from relay import upstream
from tests.api.conftest import SYSTEM, Client, make_key

pytestmark = pytest.mark.django_db


def test_create_api_key_command__relay_token__scoped_and_audited():
    out = io.StringIO()
    call_command("create_api_key", "--kind", "relay", "--relay-environment", "production",
                 "--relay-environment", "staging", stdout=out, stderr=io.StringIO())
    raw = out.getvalue().strip()
    assert raw.startswith("relay_")
    key = ApiKey.objects.get(kind="relay")
    assert key.relay_environments == ["production", "staging"] and key.environment is None and key.user is None
    entry = AuditEntry.objects.get(action="apikey.created", target_key=key.prefix)
    assert entry.after["kind"] == "relay" and entry.after["relayEnvironments"] == ["production", "staging"]
    _, principal = resolve_api_key(raw)
    assert principal.kind == "relay" and principal.environments == ("production", "staging")
    assert upstream.allowed_environments(principal) == ["production", "staging"]


def test_relay_token__bad_input_refused_with_field_errors():
    with pytest.raises(CommandError, match="Unknown environment 'nope'"):
        call_command("create_api_key", "--kind", "relay", "--relay-environment", "nope", stdout=io.StringIO())
    with pytest.raises(ValidationFailed) as refused:
        services.api_key_create(actor=SYSTEM, name="x", kind="sdk", relay_environments=["production"],
                                environment="production")
    assert "relayEnvironments" in refused.value.fields
    with pytest.raises(ValidationFailed) as refused:
        services.api_key_create(actor=SYSTEM, name="x", kind="relay", environment="production")
    assert "environment" in refused.value.fields


def test_relay_token__no_environments_means_all_of_its_project__keys_shared_as_hashes():
    raw = make_key("relay")
    sdk = make_key("sdk", environment="staging")
    _, principal = resolve_api_key(raw)
    assert upstream.allowed_environments(principal) == ["development", "production", "staging"]
    rows = upstream.key_rows(principal)
    assert {row["kind"] for row in rows} == {"sdk", "relay"}
    assert all(raw not in str(row) and sdk not in str(row) for row in rows)  # hashes, never keys
    version = upstream.keys_version(rows)
    services.api_key_revoke(actor=SYSTEM, api_key=ApiKey.objects.get(kind="sdk"))
    assert upstream.keys_version(upstream.key_rows(principal)) != version


def test_rest_keys_api__creates_a_relay_token__then_revoked_it_is_refused():
    from django.contrib.auth import get_user_model

    admin_token = make_key("management", user=get_user_model().objects.create_superuser("root", None, None))
    client = Client(admin_token)
    created = client.post("/api/projects/default/keys", {"name": "edge", "kind": "relay",
                                                          "relayEnvironments": ["production"]})
    assert created.status_code == 201, created.content
    assert created.json()["relayEnvironments"] == ["production"] and created.json()["key"].startswith("relay_")
    relay = Client(created.json()["key"])
    assert relay.get("/api/relay/keys").status_code == 200
    assert relay.get("/api/flags").status_code == 403
    assert client.delete(f"/api/projects/default/keys/{created.json()['id']}").status_code == 204
    forget_api_key()
    assert relay.get("/api/relay/keys").status_code == 401
    assert AuditEntry.objects.filter(action="apikey.revoked", target_key=created.json()["key"][:12]).exists()
