"""Failed admin logins are limited (django-axes): 60 wrong passwords in 15 s used to be followed by
a successful login with the right one."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/"


@pytest.fixture
def admins(db):
    model = get_user_model()
    return [model.objects.create_superuser(name, f"{name}@example.com", f"right-{name}") for name in ("ops", "dev")]


def attempt(ip, username, password):
    return Client(REMOTE_ADDR=ip).post(LOGIN, {"username": username, "password": password, "next": "/admin/"})


def logged_in(response):
    return response.status_code == 302 and "_auth_user_id" in response.client.session


def test_wrong_passwords_from_one_address__locked_out_even_with_the_right_one(settings, admins):
    settings.AXES_FAILURE_LIMIT = 3
    statuses = [attempt("198.51.100.1", "ops", f"guess-{n}").status_code for n in range(3)]
    assert statuses == [200, 200, 429]  # the form again with an error, then the lockout
    locked = attempt("198.51.100.1", "ops", "right-ops")
    other_account = attempt("198.51.100.1", "dev", "right-dev")

    assert locked.status_code == 429 and not logged_in(locked)
    assert other_account.status_code == 429  # the address is locked out
    assert logged_in(attempt("198.51.100.2", "dev", "right-dev"))  # another address, another account


def test_wrong_passwords_for_one_account_from_many_addresses__account_locked_out(settings, admins):
    settings.AXES_FAILURE_LIMIT = 3
    for n in range(3):
        attempt(f"198.51.100.{10 + n}", "ops", f"guess-{n}")
    response = attempt("198.51.100.20", "ops", "right-ops")
    assert response.status_code == 429 and not logged_in(response)
    assert logged_in(attempt("198.51.100.21", "dev", "right-dev"))


def test_a_success_before_the_limit_resets_the_count(settings, admins):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        attempt("198.51.100.30", "ops", "wrong")
    assert logged_in(attempt("198.51.100.30", "ops", "right-ops"))
    for _ in range(2):
        attempt("198.51.100.30", "ops", "wrong")
    assert logged_in(attempt("198.51.100.30", "ops", "right-ops"))


def test_logins_outside_http__not_counted(admins):
    """authenticate() without a request (scripts, the test client's login()) has no client to limit."""
    from django.contrib.auth import authenticate

    assert authenticate(username="ops", password="right-ops") is not None
    assert Client().login(username="ops", password="right-ops")
