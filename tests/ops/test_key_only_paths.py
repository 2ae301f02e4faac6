"""The machine endpoints (FLAGS_KEY_ONLY_PATHS) authenticate with API keys only: the session, user
and message middleware skip them (flagsite/ops/browser.py), while every other path keeps
session login."""

import pytest

from tests.api.conftest import EDIT_PERMS, Client, create_flag, make_key, user_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_session():
    staff = user_with("staff", EDIT_PERMS)
    staff.is_staff = True
    staff.save()
    create_flag("beta", states={"production": {"enabled": True}})
    client = Client()
    client.force_login(staff)
    return client


@pytest.mark.parametrize("method, path, body", [
    ("post", "/api/evaluate?environment=production", {"flagId": "beta", "userId": "u1"}),
    ("post", "/api/evaluate/bulk?environment=production", {"userId": "u1"}),
    ("get", "/api/sdk/snapshot?environment=production", None),
    ("post", "/ofrep/v1/evaluate/flags/beta", {"context": {"targetingKey": "u1"}}),
])
def test_session_cookie_alone__401_on_machine_endpoints(staff_session, method, path, body):
    response = getattr(staff_session, method)(path, body)

    assert response.status_code == 401, response.content[:300]


def test_session_login__still_works_on_the_management_api(staff_session):
    assert staff_session.get("/api/flags").status_code == 200
    assert staff_session.patch("/api/flags/beta/toggle?environment=production").status_code == 200


def test_evaluate_with_a_key__200_and_no_cookie_work(staff_session):
    sdk = Client(make_key("sdk", environment="production"))
    sdk.cookies = staff_session.cookies  # a browser would send its session cookie along

    response = sdk.post("/api/evaluate", {"flagId": "beta", "userId": "u1"})

    assert response.status_code == 200
    assert response.json()["enabled"] is True
    assert not response.cookies  # no session refresh, no CSRF cookie
    assert "Cookie" not in response.get("Vary", "")
