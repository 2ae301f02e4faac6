"""Authorization matrix: every endpoint x {no key, SDK key, SDK key of another environment,
read-only user token, editor token}."""

import pytest
from django.contrib.auth import get_user_model

from .conftest import EDIT_PERMS, Client, create_flag, create_segment, user_with

pytestmark = pytest.mark.django_db

WHO = ("none", "sdk", "sdk_other", "reader", "editor")
PUBLIC = (200, 200, 200, 200, 200)
EVALUATE = (401, 200, 403, 200, 200)  # requests name ?environment=production: the SDK key's
READ = (401, 403, 403, 200, 200)


def write(status):
    return (401, 403, 403, 403, status)


# (method, path, body, expected statuses by WHO)
MATRIX = [
    ("get", "/api/health", None, PUBLIC),
    ("get", "/api/schema", None, PUBLIC),
    ("get", "/api/docs", None, PUBLIC),
    ("get", "/api/flags", None, READ),
    ("post", "/api/flags", {"name": "created"}, write(201)),
    ("get", "/api/flags/matrix", None, READ),
    ("put", "/api/flags/matrix", {"name": "M", "enabled": True}, write(200)),
    ("patch", "/api/flags/matrix", {"description": "d"}, write(200)),
    ("delete", "/api/flags/matrix", None, write(204)),
    ("delete", "/api/flags/matrix?hard=true", None, write(204)),
    ("patch", "/api/flags/matrix/toggle", None, write(200)),
    ("post", "/api/flags/matrix/kill-switch", {"reason": "r"}, write(200)),
    ("post", "/api/flags/matrix/restore", {}, write(200)),
    ("post", "/api/flags/matrix/unarchive", None, write(200)),
    ("post", "/api/evaluate", {"flagId": "matrix", "userId": "u"}, EVALUATE),
    ("post", "/api/evaluate/bulk", {"userId": "u"}, EVALUATE),
    ("get", "/api/sdk/snapshot", None, EVALUATE),
    ("get", "/api/segments", None, READ),
    ("post", "/api/segments", {"key": "new-seg", "name": "n", "conditions": {"plan": "x"}}, write(201)),
    ("get", "/api/segments/unused", None, READ),
    ("put", "/api/segments/unused", {"name": "u", "conditions": {"plan": "y"}}, write(200)),
    ("patch", "/api/segments/unused", {"description": "d"}, write(200)),
    ("delete", "/api/segments/unused", None, write(204)),
    ("get", "/api/audit", None, READ),
    ("get", "/api/audit?limit=5", None, READ),
    ("get", "/api/audit/flag/matrix", None, READ),
]

CASES = [(m, p, b, who, expected[i]) for m, p, b, expected in MATRIX for i, who in enumerate(WHO)]


@pytest.mark.parametrize("method, path, body, who, status", CASES, ids=[f"{c[0]} {c[1]} {c[3]}" for c in CASES])
def test_authorization_matrix(keys, method, path, body, who, status):
    create_flag("matrix")
    create_segment("unused", {"plan": "free"})
    client = Client(None if who == "none" else keys[who])
    sep = "&" if "?" in path else "?"

    response = getattr(client, method)(f"{path}{sep}environment=production", body)

    assert response.status_code == status, response.content[:300]
    if status >= 400:
        code = {401: "not_authenticated", 403: "permission_denied"}[status]
        assert response.json()["error"]["code"] == code


def test_session_login_with_permissions_is_accepted(db):
    staff = user_with("staff", EDIT_PERMS)
    staff.is_staff = True
    staff.save()
    create_flag("f")
    client = Client()
    client.force_login(staff)

    assert client.get("/api/flags").status_code == 200
    assert client.patch("/api/flags/f/toggle").status_code == 200


def test_session_login_without_permissions__403(db):
    nobody = get_user_model().objects.create_user("nobody")
    client = Client()
    client.force_login(nobody)

    assert client.get("/api/flags").status_code == 403


def test_superuser_token_can_do_everything(db):
    from .conftest import make_key

    admin = get_user_model().objects.create_superuser("root", None, None)
    client = Client(make_key("management", user=admin))

    assert client.post("/api/flags", {"name": "by-root"}).status_code == 201
    assert client.get("/api/audit").status_code == 200


def test_unknown_api_path__404_json(keys):
    response = Client(keys["editor"]).get("/api/no-such-thing")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_method_not_allowed__405_error_shape(keys):
    response = Client(keys["editor"]).delete("/api/evaluate")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
