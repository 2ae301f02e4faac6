"""Failures schemathesis found, pinned: input PostgreSQL refuses (a NUL byte) answered 400, not 500."""

import pytest

from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def test_nul_byte_in_environment__400_error_shape(reader_api):
    response = reader_api.get("/api/flags?environment=prod%00uction")

    assert_error(response, 400, "validation_error")


def test_nul_byte_in_a_key__an_error_never_a_500(reader_api):
    response = reader_api.get("/api/flags/new%00checkout")

    assert response.status_code in (400, 404)  # PostgreSQL refuses the value; SQLite finds no such flag
    assert set(response.json()) == {"error"}


def test_nul_byte_in_ofrep_environment__ofrep_400(reader_api):
    response = reader_api.post("/ofrep/v1/evaluate/flags/x?environment=a%00b", {})

    assert response.status_code == 400
    assert response.json()["errorCode"] == "GENERAL"


def test_accept_header_allowing_no_json__406_in_the_error_shape_and_documented(reader_api):
    from drf_spectacular.generators import SchemaGenerator

    response = reader_api.get("/api/flags/checkout", HTTP_ACCEPT="FALSE")

    assert_error(response, 406, "not_acceptable")
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert "406" in schema["paths"]["/api/flags/{key}"]["get"]["responses"]
