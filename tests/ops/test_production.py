"""Production settings: refuse unsafe starts, check --deploy clean, headers, cookies, CSRF, and
failed authentications logged without the secret."""

import logging

import pytest
from django.contrib.auth import get_user_model
from django.test import Client as DjangoClient

from tests.ops.conftest import PRODUCTION_SECRET, Client, production_env, run, settings_under


def test_check_deploy__clean_under_production_settings():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy__default_settings_are_not_production_ready():
    """The same check without FLAGS_PRODUCTION does warn: the production switch is what makes it clean."""
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                 {"FLAGS_PRODUCTION": None, "SECRET_KEY": PRODUCTION_SECRET, "DEBUG": None})
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # no HSTS


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SECRET_KEY": None}, "set SECRET_KEY"),
        ({"SECRET_KEY": "dev-insecure-flagsite-secret-key-change-me"}, "set SECRET_KEY"),
        ({"SECRET_KEY": "short-but-custom"}, "set SECRET_KEY"),
        ({"DEBUG": "true"}, "DEBUG must be off"),
    ],
)
def test_production__refuses_to_start_with_one_clear_line(env, message):
    result = run(["manage.py", "check"], production_env(**env))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and message in lines[-1] and lines[-1].startswith("flagsite: refusing to start")
    assert "Traceback" not in result.stderr


def test_default_settings__embedded_run_starts_with_the_dev_key():
    result = run(["manage.py", "check"], {"FLAGS_PRODUCTION": None, "SECRET_KEY": None, "DEBUG": None})
    assert result.returncode == 0, result.stderr


def test_production__secure_cookies_hsts_redirect_and_opt_in_proxy_header():
    names = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_HTTPONLY",
             "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER")
    prod = settings_under(production_env(), *names)
    assert prod["SESSION_COOKIE_SECURE"] and prod["CSRF_COOKIE_SECURE"]
    assert prod["SESSION_COOKIE_HTTPONLY"] and prod["CSRF_COOKIE_HTTPONLY"]
    assert prod["SECURE_HSTS_SECONDS"] == 31536000 and prod["SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    assert prod["SECURE_SSL_REDIRECT"] and prod["SECURE_PROXY_SSL_HEADER"] is None  # opt-in only
    tuned = settings_under(production_env(SECURE_HSTS_SECONDS="600", SECURE_PROXY_SSL_HEADER="true"), *names)
    assert tuned["SECURE_HSTS_SECONDS"] == 600
    assert tuned["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    dev = settings_under({"FLAGS_PRODUCTION": None}, *names)
    assert not dev["SESSION_COOKIE_SECURE"] and dev["SECURE_HSTS_SECONDS"] == 0 and not dev["SECURE_SSL_REDIRECT"]


@pytest.mark.django_db
def test_security_headers__on_api_and_pages(settings, anon):
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    for response in (anon.get("/api/health", secure=True), anon.get("/admin/login/", secure=True)):
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"
    assert anon.get("/admin/login/")["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
def test_ssl_redirect__exempts_health_probes(settings, anon):
    settings.SECURE_SSL_REDIRECT = True
    assert anon.get("/api/flags").status_code == 301
    assert anon.get("/api/health").status_code == 200


@pytest.mark.django_db
def test_pages__csrf_enforced_and_session_cookie_secure_httponly(settings):
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    browser = DjangoClient(enforce_csrf_checks=True)
    referer = {"HTTP_REFERER": "https://testserver/admin/login/", "secure": True}
    refused = browser.post("/admin/login/", {"username": "root", "password": "pw-root-123"}, **referer)
    assert refused.status_code == 403  # no CSRF token

    form = browser.get("/admin/login/", secure=True)
    token = form.cookies["csrftoken"]
    assert token["secure"] and token["httponly"]
    ok = browser.post("/admin/login/", {"username": "root", "password": "pw-root-123",
                                        "csrfmiddlewaretoken": form.context["csrf_token"]}, **referer)
    assert ok.status_code == 302
    session = ok.cookies["sessionid"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"


@pytest.mark.django_db
def test_failed_api_key__logged_without_the_key(keys, caplog):
    bad = "sdk_production_" + "S3CRETguess" * 3
    with caplog.at_level(logging.WARNING, logger="flagsite.api.authentication"):
        response = Client(bad).post("/api/evaluate", {"flagId": "f"}, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 401
    records = [r for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "fingerprint=" in message and "ip=203.0.113.9" in message and "/api/evaluate" in message
    assert (records[0].transport, records[0].reason, records[0].client_ip) == ("rest", "invalid_key", "203.0.113.9")
    assert bad not in caplog.text and "S3CRETguess" not in caplog.text
    # the fingerprint is stable, so repeated guesses with one key can be correlated
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flagsite.api.authentication"):
        Client(bad).post("/api/evaluate", {"flagId": "f"})
    assert message.split("fingerprint=")[1].split()[0] in caplog.text


@pytest.mark.django_db
def test_failed_login__logged_with_username_not_password(caplog):
    get_user_model().objects.create_user("bob", password="right-password-1")
    with caplog.at_level(logging.WARNING, logger="flagsite.security"):
        DjangoClient().post("/admin/login/", {"username": "bob", "password": "Wr0ng-Pa55word"}, REMOTE_ADDR="198.51.100.7")
    lines = [r.getMessage() for r in caplog.records if r.name == "flagsite.security"]
    assert lines == ["authentication failed: login username='bob' ip=198.51.100.7"]
    assert "Wr0ng-Pa55word" not in caplog.text
