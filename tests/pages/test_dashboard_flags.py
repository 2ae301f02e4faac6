"""Flags from the dashboard: create (/flags/new/), archive with a confirmation and unarchive
(/flags/<key>), and the overview's "archived" filter. Every write goes through the services with
their audit entry; a refusal or bad input writes nothing."""

import re

import pytest

from audit.models import AuditEntry
from flags.models import Flag, FlagState
from tests.flags.test_services import racing_create
from tests.pages.test_page_permissions import messages_of, staff_with

pytestmark = pytest.mark.django_db

BOOLEAN = {"name": "New checkout", "key": "new-checkout", "description": "The one-page checkout",
           "tags": "payments, q3, payments", "kind": "boolean"}


def form(**overrides):
    return {**BOOLEAN, **overrides}


def variant_rows(*rows):
    data = {}
    for n, (key, weight, value) in enumerate(rows):
        data.update({f"variant-{n}-key": key, f"variant-{n}-weight": weight, f"variant-{n}-value": value})
    return data


def errors_near(body, name):
    """The messages of the error list of the field called `name` (id "<name>-errors")."""
    match = re.search(rf'<ul class="errors" id="{re.escape(name)}-errors"[^>]*>(.*?)</ul>', body, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split()) if match else ""


# -- create --------------------------------------------------------------------------------------

def test_new__form_offered_to_staff_with_add_flag(client, page_flag):
    client.force_login(staff_with("creator", "flags.view_flag", "flags.add_flag"))
    body = client.get("/flags/new/").content.decode()
    assert 'name="key"' in body and 'name="variant-0-weight"' in body and 'value="multivariate"' in body
    assert 'href="/flags/new/"' in client.get("/").content.decode()


def test_new__without_the_slash__redirected_to_the_form(staff_client):
    assert staff_client.get("/flags/new")["Location"] == "/flags/new/"


def test_new__without_add_flag__403_and_no_button(client, page_flag, world):
    client.force_login(staff_with("viewer", "flags.view_flag", "flags.change_flag"))
    before = world.snapshot()
    assert client.get("/flags/new/").status_code == 403
    assert client.post("/flags/new/", form()).status_code == 403
    assert world.snapshot() == before
    assert 'href="/flags/new/"' not in client.get("/").content.decode()


def test_new__boolean__created_off_everywhere_through_the_service_and_audited(staff_client):
    response = staff_client.post("/flags/new/", form())

    assert response.status_code == 302 and response["Location"] == "/flags/new-checkout"
    flag = Flag.objects.get(key="new-checkout")
    assert (flag.name, flag.description, flag.tags, flag.kind, flag.variants) == (
        "New checkout", "The one-page checkout", ["payments", "q3"], "boolean", [])
    assert not FlagState.objects.filter(flag=flag, enabled=True).exists()
    assert FlagState.objects.filter(flag=flag).count() == 3
    entry = AuditEntry.objects.get(action="flag.created", target_key="new-checkout")
    assert entry.actor == "ops"
    page = staff_client.get(response["Location"])
    assert any("Created new-checkout" in m for m in messages_of(page))


def test_new__no_key__made_from_the_name(staff_client):
    response = staff_client.post("/flags/new/", form(key="", name="Dark Mode v2"))
    assert response["Location"] == "/flags/dark-mode-v2"
    assert Flag.objects.filter(key="dark-mode-v2").exists()


def test_new__multivariate__blank_rows_ignored_values_parsed_as_json(staff_client):
    data = {**form(key="button-color", kind="multivariate", tags=""),
            **variant_rows(("control", "50", '"blue"'), ("", "", ""), ("green", "25", '{"hex": "#0f0"}'),
                           ("red", "25", ""))}
    response = staff_client.post("/flags/new/", data)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert Flag.objects.get(key="button-color").variants == [
        {"key": "control", "weight": 50, "value": "blue"}, {"key": "green", "weight": 25, "value": {"hex": "#0f0"}},
        {"key": "red", "weight": 25}]


@pytest.mark.parametrize("data, field, message", [
    (form(name=""), "name", "required"),
    (form(key="bad key!"), "key", "letters"),
    (form(tags="ok, " + "x" * 65), "tags", "64"),
    ({**form(kind="multivariate"), **variant_rows(("a", "fifty", ""), ("b", "50", ""))}, "variant-0-weight",
     "whole"),
    ({**form(kind="multivariate"), **variant_rows(("a", "50", "blue"), ("b", "50", ""))}, "variant-0-value", "JSON"),
    ({**form(kind="multivariate"), **variant_rows(("a", "50", ""), ("a", "50", ""))}, "variant-1-key", "duplicate"),
    ({**form(kind="multivariate"), **variant_rows(("a", "50", ""), ("b", "40", ""))}, "variants", "total 90"),
    (form(kind="multivariate"), "variants", "at least one variant"),
    (form(kind="sometimes"), "kind", "one of"),
])
def test_new__bad_input__400_error_at_the_field_values_kept_nothing_written(staff_client, world, data, field,
                                                                             message):
    before = world.snapshot()

    response = staff_client.post("/flags/new/", data)

    assert response.status_code == 400
    body = response.content.decode()
    assert "Not created" in body
    assert message.lower() in errors_near(body, field).lower(), body[body.find("<form"):][:3000]
    assert f'value="{data["name"]}"' in body  # what was typed is kept
    assert world.snapshot() == before


def test_new__duplicate_key__409_error_at_key_nothing_written(staff_client, page_flag, world):
    page_flag("new-checkout")
    before = world.snapshot()
    response = staff_client.post("/flags/new/", form())
    assert response.status_code == 409
    assert "Already exists." in errors_near(response.content.decode(), "key")
    assert world.snapshot() == before


def test_new__key_taken_by_a_racing_create__409_not_500(staff_client, monkeypatch):
    racing_create(monkeypatch, "new-checkout")
    response = staff_client.post("/flags/new/", form())
    assert response.status_code == 409
    assert Flag.objects.get(key="new-checkout").name == "The other writer's"
    assert AuditEntry.objects.filter(action="flag.created").count() == 1


# -- archive / unarchive -------------------------------------------------------------------------

def test_archive__asks_first__then_archives_through_the_service(staff_client, page_flag, world):
    page_flag("old-banner")
    detail = staff_client.get("/flags/old-banner").content.decode()
    assert 'href="/flags/old-banner/archive"' in detail
    before = world.snapshot()

    confirm = staff_client.get("/flags/old-banner/archive")
    assert confirm.status_code == 200 and "FLAG_NOT_FOUND" in confirm.content.decode()
    assert staff_client.post("/flags/old-banner/archive", {}).status_code == 200  # no confirm: asked again
    assert world.snapshot() == before

    response = staff_client.post("/flags/old-banner/archive", {"confirm": "yes"}, follow=True)

    assert Flag.objects.get(key="old-banner").archived is True
    assert AuditEntry.objects.filter(action="flag.archived", target_key="old-banner", actor="ops").count() == 1
    assert any("Archived old-banner" in m for m in messages_of(response))
    assert 'data-flag="old-banner"' not in response.content.decode()  # back on the overview, hidden


def test_archive__already_archived__says_so_and_writes_nothing(staff_client, page_flag, world):
    page_flag("old-banner")
    staff_client.post("/flags/old-banner/archive", {"confirm": "yes"})
    before = world.snapshot()
    response = staff_client.post("/flags/old-banner/archive", {"confirm": "yes"}, follow=True)
    assert any("already archived" in m for m in messages_of(response))
    assert world.snapshot() == before


def test_archive__a_prerequisite_of_another_flag__refused_nothing_written(staff_client, page_flag, world):
    page_flag("base")
    page_flag("child", rules=[{"type": "flag", "field": "base", "operator": "enabled"}])
    before = world.snapshot()
    assert "prerequisite of" in staff_client.get("/flags/base/archive").content.decode()

    response = staff_client.post("/flags/base/archive", {"confirm": "yes"}, follow=True)

    assert any("prerequisite of child" in m for m in messages_of(response))
    assert world.snapshot() == before and Flag.objects.get(key="base").archived is False


def test_unarchive__from_the_flag_page(staff_client, page_flag):
    page_flag("old-banner")
    staff_client.post("/flags/old-banner/archive", {"confirm": "yes"})
    detail = staff_client.get("/flags/old-banner").content.decode()
    assert 'action="/flags/old-banner/unarchive"' in detail and "/flags/old-banner/archive" not in detail

    response = staff_client.post("/flags/old-banner/unarchive", {"next": "/flags/old-banner"}, follow=True)

    assert Flag.objects.get(key="old-banner").archived is False
    assert AuditEntry.objects.filter(action="flag.unarchived", target_key="old-banner").count() == 1
    assert any("Unarchived old-banner" in m for m in messages_of(response))


@pytest.mark.parametrize("path, data, perms", [
    ("/flags/old-banner/archive", {"confirm": "yes"}, ("flags.view_flag", "flags.change_flag")),
    ("/flags/old-banner/unarchive", {}, ("flags.view_flag", "flags.delete_flag")),
])
def test_archive_needs_delete_flag__unarchive_change_flag(client, page_flag, world, path, data, perms):
    flag = page_flag("old-banner")
    if path.endswith("/unarchive"):
        from flags import services
        from tests.pages.conftest import SYSTEM

        services.flag_archive(actor=SYSTEM, flag=flag)
    client.force_login(staff_with("partial", *perms))
    before = world.snapshot()
    assert client.post(path, data).status_code == 403
    assert client.get("/flags/old-banner/archive").status_code == (200 if "flags.delete_flag" in perms else 403)
    assert world.snapshot() == before


def test_overview__archived_hidden_by_default__shown_by_the_filter(staff_client, page_flag):
    from flags import services
    from tests.pages.conftest import SYSTEM

    page_flag("live-one", tags=["ui"])
    services.flag_archive(actor=SYSTEM, flag=page_flag("gone-one", tags=["legacy"]))

    default = staff_client.get("/").content.decode()
    assert 'data-flag="live-one"' in default and 'data-flag="gone-one"' not in default
    assert ">legacy<" not in default  # the tag list follows the filter

    only = staff_client.get("/?archived=only").content.decode()
    assert 'data-flag="gone-one"' in only and 'data-flag="live-one"' not in only
    assert 'action="/flags/gone-one/unarchive"' in only and "/flags/gone-one/toggle" not in only

    everything = staff_client.get("/?archived=all&q=one").content.decode()
    assert 'data-flag="gone-one"' in everything and 'data-flag="live-one"' in everything
    assert 'data-flag="gone-one"' not in staff_client.get("/?archived=bogus").content.decode()
