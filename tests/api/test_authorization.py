"""Authorization matrix: every endpoint x {no key, SDK key, SDK key of another environment,
read-only user token, editor token}."""

import pytest
from django.contrib.auth import get_user_model

from .conftest import EDIT_PERMS, SYSTEM as SYSTEM_ACTOR, Client, create_flag, create_segment, user_with

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
    ("post", "/api/flags/matrix/explain", {"userId": "u", "context": {"plan": "x"}}, READ),  # reveals rules
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


# -- who may mint and revoke management tokens (services: the one place every path goes through) --

def test_management_token__for_another_user_only_by_a_superuser_or_the_operator(db, editor):
    from audit.actor import Actor
    from flags import services
    from flags.errors import ValidationFailed
    from flags.models import ApiKey

    root = get_user_model().objects.create_superuser("root", None, None)
    before = ApiKey.objects.count()
    with pytest.raises(ValidationFailed) as refused:
        services.api_key_create(actor=Actor.for_user(editor), name="escalate", kind="management", user=root)
    assert "only for yourself" in refused.value.fields["user"][0]
    assert ApiKey.objects.count() == before

    _, mine = services.api_key_create(actor=Actor.for_user(editor), name="mine", kind="management", user=editor)
    assert Client(mine).get("/api/flags").status_code == 200  # acts with the editor's own permissions
    assert Client(mine).get("/api/audit").status_code == 200
    services.api_key_create(actor=Actor.for_user(root), name="for-editor", kind="management", user=editor)
    services.api_key_create(actor=Actor.system("cli"), name="ops", kind="management", user=root)  # create_api_key


def test_revoke_another_users_token__only_by_a_superuser(db, editor, reader):
    from audit.actor import Actor
    from flags import services
    from flags.errors import ValidationFailed

    readers, _ = services.api_key_create(actor=SYSTEM_ACTOR, name="r", kind="management", user=reader)
    with pytest.raises(ValidationFailed):
        services.api_key_revoke(actor=Actor.for_user(editor), api_key=readers)
    readers.refresh_from_db()
    assert readers.revoked_at is None
    services.api_key_revoke(actor=Actor.for_user(reader), api_key=readers)  # their own
    readers.refresh_from_db()
    assert readers.revoked_at is not None
