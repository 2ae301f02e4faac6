"""The audited client address: REMOTE_ADDR unless trusted proxies are configured (NUM_PROXIES);
the same rule for DRF's throttle ident."""

import pytest
from django.test import RequestFactory

from audit.actor import client_ip
from audit.models import AuditEntry
from flagsite.api.throttling import ApiRateThrottle
from tests.api.conftest import (  # noqa: F401  (fixtures)
    _fresh_caches,
    create_flag,
    editor,
    editor_api,
    keys,
    reader,
)

SPOOFED = "6.6.6.6"


def toggle_from(client, **headers):
    create_flag("f", states={"production": {"enabled": True}})
    response = client.patch("/api/flags/f/toggle?environment=production", {"enabled": False}, **headers)
    assert response.status_code == 200, response.content
    return AuditEntry.objects.filter(target_key="f", action="flag.toggled").get()


@pytest.mark.django_db
def test_audit_ip__no_trusted_proxy__remote_addr_not_the_forwarded_header(editor_api):
    entry = toggle_from(editor_api, REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR=SPOOFED)
    assert entry.ip == "198.51.100.7"


@pytest.mark.django_db
def test_audit_ip__one_trusted_proxy__the_address_it_appended(editor_api, settings):
    settings.NUM_PROXIES = 1
    entry = toggle_from(editor_api, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"{SPOOFED}, 203.0.113.9")
    assert entry.ip == "203.0.113.9"


@pytest.mark.parametrize("num_proxies, meta, expected", [
    (0, {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": SPOOFED}, "10.0.0.2"),
    (1, {"REMOTE_ADDR": "10.0.0.2"}, "10.0.0.2"),  # no header: the peer itself
    (2, {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": f"{SPOOFED}, 203.0.113.9, 10.0.0.1"}, "203.0.113.9"),
    (1, {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "not-an-ip"}, None),
    (0, {"REMOTE_ADDR": "::ffff:10.0.0.2"}, "::ffff:a00:2"),
])
def test_client_ip__meta_or_request(settings, num_proxies, meta, expected):
    settings.NUM_PROXIES = num_proxies
    assert client_ip(meta) == expected
    assert client_ip(RequestFactory().get("/", **meta)) == expected


def test_throttle_ident__ignores_a_client_supplied_forwarded_header_by_default(settings):
    """Before: DRF (NUM_PROXIES unset) keyed anonymous clients on the whole X-Forwarded-For, so a
    new header value was a fresh rate-limit bucket."""
    throttle = ApiRateThrottle()
    idents = {throttle.get_ident(RequestFactory().get("/", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR=xff))
              for xff in ("1.1.1.1", "2.2.2.2")}
    assert idents == {"198.51.100.7"}
