"""REST: /api/webhooks and /api/projects/<project>/webhooks, with a real receiver on 127.0.0.1."""

import pytest
from standardwebhooks import Webhook as Verifier

from flags import services as flag_services
from projects import scope
from projects import services as project_services
from tests.api.conftest import Client, user_with
from tests.webhooks.conftest import SYSTEM
from webhooks import services
from webhooks.models import Delivery, Webhook

pytestmark = pytest.mark.django_db
PERMS = [f"webhooks.{action}_webhook" for action in ("view", "add", "change", "delete")] + ["flags.view_flag"]


@pytest.fixture
def api():
    from tests.api.conftest import make_key

    return Client(make_key("management", user=user_with("hooks-admin", PERMS)))


def test_create__secret_answered_once__list_and_get_never_show_it(api, receiver):
    response = api.post("/api/webhooks", {"url": receiver.url, "events": ["flag.killed", "flag.restored"],
                                          "format": "slack", "name": "ops"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_") and body["events"] == ["flag.killed", "flag.restored"]
    assert body["active"] is True and body["format"] == "slack"
    listed = api.get("/api/webhooks").json()
    assert [w["id"] for w in listed] == [body["id"]] and "secret" not in listed[0]
    assert "secret" not in api.get(f"/api/webhooks/{body['id']}").json()


@pytest.mark.parametrize("payload, field", [
    ({"url": "ftp://x/y", "events": ["flag.killed"]}, "url"),
    ({"url": "http://", "events": ["flag.killed"]}, "url"),
    ({"url": "https://example.test/h", "events": []}, "events"),
    ({"url": "https://example.test/h", "events": ["flag.exploded"]}, "events"),
    ({"url": "https://example.test/h", "events": ["flag.killed"], "format": "xml"}, "format"),
    ({"url": "https://example.test/h", "events": ["flag.killed"], "secret": "mine", "colour": 1}, "colour"),
    ({"url": 5, "events": ["flag.killed"]}, "url"),
])
def test_create__bad_input__400_naming_the_field__nothing_written(api, payload, field):
    response = api.post("/api/webhooks", payload)
    assert response.status_code == 400, response.content
    assert field in str(response.json()) and not Webhook.objects.exists()


def test_update__delete__and_404s(api, receiver):
    webhook, _ = services.webhook_create(actor=SYSTEM, url=receiver.url, events=["flag.killed"])
    response = api.patch(f"/api/webhooks/{webhook.pk}", {"events": ["segment.changed"], "active": False})
    assert response.status_code == 200 and response.json()["events"] == ["segment.changed"]
    assert response.json()["active"] is False
    assert api.patch(f"/api/webhooks/{webhook.pk}", {"url": "nope"}).status_code == 400
    assert api.get("/api/webhooks/999999").status_code == 404
    assert api.delete(f"/api/webhooks/{webhook.pk}").status_code == 204
    assert not Webhook.objects.exists()


def test_ping__rotate__deliveries__redeliver(api, receiver, make_flag, django_capture_on_commit_callbacks):
    created = api.post("/api/webhooks", {"url": receiver.url, "events": ["flag.killed"]}).json()
    pk, secret = created["id"], created["secret"]
    # a test ping: sent now, answered with its outcome
    ping = api.post(f"/api/webhooks/{pk}/ping")
    assert ping.status_code == 200 and ping.json()["status"] == "succeeded" and ping.json()["responseStatus"] == 200
    assert Verifier(secret).verify(receiver.received[0][1], receiver.received[0][0])["type"] == "webhook.ping"
    # rotate: the new secret signs from now on
    rotated = api.post(f"/api/webhooks/{pk}/rotate-secret")
    assert rotated.status_code == 200 and rotated.json()["secret"] != secret
    with django_capture_on_commit_callbacks(execute=True):
        flag_services.flag_kill(actor=SYSTEM, flag=make_flag("f"), reason="r", environments=["production"])
    headers, body = receiver.received[-1]
    assert Verifier(rotated.json()["secret"]).verify(body, headers)["type"] == "flag.killed"
    # the delivery log, newest first, with attempts
    log = api.get(f"/api/webhooks/{pk}/deliveries").json()
    assert log["count"] == 2
    kill = log["results"][0]
    assert (kill["event"], kill["status"], kill["attempts"], kill["responseStatus"]) == ("flag.killed", "succeeded",
                                                                                          1, 200)
    assert kill["attemptLog"][0]["succeeded"] is True and kill["latencyMs"] >= 0
    # redeliver: queued and (after commit) sent again with the same webhook-id
    with django_capture_on_commit_callbacks(execute=True):
        again = api.post(f"/api/webhooks/{pk}/deliveries/{kill['id']}/redeliver")
    assert again.status_code == 202
    assert Delivery.objects.get(pk=kill["id"]).attempts == 2
    assert receiver.received[-1][0]["webhook-id"] == headers["webhook-id"]
    assert api.post(f"/api/webhooks/{pk}/deliveries/999999/redeliver").status_code == 404


def test_projects__each_lists_its_own__another_projects_webhook_is_404(api, receiver):
    project_services.project_create(actor=SYSTEM, key="team-b", name="Team B")
    mine, _ = services.webhook_create(actor=SYSTEM, url=receiver.url, events=["flag.killed"])
    response = api.post("/api/projects/team-b/webhooks", {"url": receiver.url, "events": ["flag.changed"]})
    assert response.status_code == 201
    theirs = response.json()["id"]
    assert Webhook.all_objects.get(pk=theirs).project_id == "team-b"
    assert [w["id"] for w in api.get("/api/projects/team-b/webhooks").json()] == [theirs]
    assert [w["id"] for w in api.get("/api/webhooks").json()] == [mine.pk]
    assert api.get(f"/api/projects/team-b/webhooks/{mine.pk}").status_code == 404
    assert api.delete(f"/api/webhooks/{theirs}").status_code == 404
    assert api.get("/api/projects/nope/webhooks").status_code == 404


def test_project_subscription__hears_only_its_projects_changes(receiver, make_flag):
    project_services.project_create(actor=SYSTEM, key="team-b", name="Team B")
    with scope.using("team-b"):
        services.webhook_create(actor=SYSTEM, url=receiver.url, events=["flag.killed"])
        b_flag = make_flag("b-flag")
    flag_services.flag_kill(actor=SYSTEM, flag=make_flag("a-flag"), reason="r", environments=["production"])
    with scope.using("team-b"):
        flag_services.flag_kill(actor=SYSTEM, flag=b_flag, reason="r", environments=["production"])
    services.webhooks_dispatch()
    assert list(Delivery.objects.values_list("body", flat=True).filter(body__contains="b-flag").values_list(
        "event", flat=True)) == ["flag.killed"]
    assert Delivery.objects.count() == 1
