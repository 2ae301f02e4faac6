"""CORS on /api/evaluate*, /api/sdk/* and /ofrep/* only; credentials never with a wildcard."""

import pytest

from tests.ops.conftest import Client, create_flag, production_env, run, settings_under

pytestmark = pytest.mark.django_db
APP = "https://app.example.com"


@pytest.fixture
def cors(settings):
    settings.CORS_ALLOWED_ORIGINS = [APP]
    settings.CORS_ALLOW_ALL_ORIGINS = False
    settings.CORS_ALLOW_CREDENTIALS = False
    return settings


def preflight(path, origin=APP, headers="authorization,content-type"):
    return Client().options(path, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                            HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers)


@pytest.mark.parametrize("path", ["/api/evaluate", "/api/evaluate/bulk", "/api/sdk/snapshot",
                                  "/ofrep/v1/evaluate/flags", "/ofrep/v1/evaluate/flags/f"])
def test_preflight__allowed_origin_on_evaluation_paths(cors, path):
    response = preflight(path, headers="authorization,content-type,x-api-key,if-none-match")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == APP
    allowed = response["Access-Control-Allow-Headers"]
    assert all(h in allowed for h in ("authorization", "content-type", "x-api-key", "if-none-match"))
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response


def test_preflight__other_origin_or_management_path__no_cors(cors):
    assert "Access-Control-Allow-Origin" not in preflight("/api/evaluate", origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in preflight("/api/flags")
    assert "Access-Control-Allow-Origin" not in preflight("/api/audit")


def test_actual_request__origin_echoed_and_headers_exposed(cors, keys):
    create_flag("f", states={"production": {"enabled": True}})
    response = Client(keys["sdk"]).post("/api/evaluate", {"flagId": "f", "userId": "u"}, HTTP_ORIGIN=APP)
    assert response.status_code == 200 and response.json()["enabled"] is True
    assert response["Access-Control-Allow-Origin"] == APP
    exposed = response["Access-Control-Expose-Headers"].lower()
    assert "etag" in exposed and "x-request-id" in exposed and "retry-after" in exposed
    management = Client(keys["reader"]).get("/api/flags", HTTP_ORIGIN=APP)
    assert management.status_code == 200 and "Access-Control-Allow-Origin" not in management


def test_wildcard__star_and_no_credentials(settings, keys):
    settings.CORS_ALLOW_ALL_ORIGINS = True
    settings.CORS_ALLOW_CREDENTIALS = False
    response = preflight("/ofrep/v1/evaluate/flags", origin="https://anyone.example")
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response


def test_settings__from_env_and_wildcard_with_credentials_refused():
    listed = settings_under({"FLAGS_CORS_ORIGINS": f"{APP}, https://b.example"},
                            "CORS_ALLOWED_ORIGINS", "CORS_ALLOW_ALL_ORIGINS", "CORS_ALLOW_CREDENTIALS")
    assert listed == {"CORS_ALLOWED_ORIGINS": [APP, "https://b.example"], "CORS_ALLOW_ALL_ORIGINS": False,
                      "CORS_ALLOW_CREDENTIALS": False}
    star = settings_under({"FLAGS_CORS_ORIGINS": "*"}, "CORS_ALLOWED_ORIGINS", "CORS_ALLOW_ALL_ORIGINS")
    assert star == {"CORS_ALLOWED_ORIGINS": [], "CORS_ALLOW_ALL_ORIGINS": True}
    refused = run(["manage.py", "check"], {"FLAGS_CORS_ORIGINS": "*", "FLAGS_CORS_CREDENTIALS": "true"})
    assert refused.returncode != 0 and "cannot be used with FLAGS_CORS_ORIGINS=*" in refused.stderr
    assert run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
               production_env(FLAGS_CORS_ORIGINS=APP)).returncode == 0
