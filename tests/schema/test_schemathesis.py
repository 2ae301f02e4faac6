"""Schemathesis against /api/schema: every REST and OFREP operation, generated (positive and negative)
inputs, through the WSGI app in-process. Checks: no 5xx, a documented status, the documented content
type and headers, and a body that matches the documented schema (errors included).

Bounded for CI: SCHEMATHESIS_MAX_EXAMPLES per operation (default 100) and hypothesis' deadline off;
the whole module runs in well under three minutes. Keys: a superuser's management token for the
management API, an SDK key for evaluation, the SDK snapshot and OFREP."""

import os

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from flags import services
from flags.models import Environment
from flagsite.wsgi import application
from tests.ofrep.data import SYSTEM, build_flags

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "100"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
SDK_PATHS = ("/ofrep/", "/api/evaluate", "/api/sdk/", "/api/events")

schema = schemathesis.openapi.from_wsgi("/api/schema?format=json", application)


@pytest.fixture
def _keep_connection():
    """As Django's test client does: the WSGI app must not close the test's database connection
    (it would, on request_finished) while the test transaction is open."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_keys(db, settings, _keep_connection):
    settings.FLAGS_OFREP_RATE_LIMIT = "off"  # exercise the evaluation paths, not the limiter
    build_flags()
    admin = get_user_model().objects.create_superuser("schemathesis", "st@example.com", "pw-st-12345")
    production = Environment.objects.get(key="production")
    return {
        "management": services.api_key_create(actor=SYSTEM, name="st", kind="management", user=admin)[1],
        "sdk": services.api_key_create(actor=SYSTEM, name="st-sdk", kind="sdk", environment=production)[1],
    }


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, api_keys):
    kind = "sdk" if case.operation.path.startswith(SDK_PATHS) else "management"
    # identity: the WSGI transport hands gzip bytes to the checks undecoded (gzip has its own tests)
    case.call_and_validate(headers={"Authorization": f"Bearer {api_keys[kind]}", "Accept-Encoding": "identity"},
                           checks=CHECKS)
