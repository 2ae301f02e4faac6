"""Deleting, in the Django admin (a real signed-in client), a flag or a user that change requests
point at. A flag takes its change requests (and reviews, scheduled changes, plans) along; their
history stays in the audit log and flag.deleted lists them. A user who authored or reviewed one is
deactivated, not deleted: the admin says so instead of Django's "Cannot delete" page."""

import pytest
from django.contrib.auth import get_user_model

from audit.models import AuditEntry
from changes import approvals
from changes.models import ChangeRequest, Review
from flags.models import Flag
from tests.api.conftest import SYSTEM
from tests.changes.test_change_requests import actor, page_as

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewed(people, checkout):
    """An approved request on checkout, opened while production was protected; unprotected since."""
    approvals.protection_set(actor=SYSTEM, environment="production", required_approvals=1)
    cr = approvals.change_request_open(actor=actor(people["author"]), flag="checkout", environment="production",
                                       title="on", operation="enable")
    approvals.change_request_review(actor=actor(people["approver"]), change_request=cr, verdict="approve")
    return cr


def test_admin_delete_flag_with_change_requests__unprotected__deleted_with_them__audit_keeps_them(people, reviewed):
    approvals.protection_remove(actor=SYSTEM, environment="production")
    root = page_as(people["superuser"])
    flag = Flag.objects.get(key="checkout")
    confirm = root.get(f"/admin/flags/flag/{flag.pk}/delete/")
    assert confirm.status_code == 200 and "Cannot delete" not in confirm.content.decode()
    done = root.post(f"/admin/flags/flag/{flag.pk}/delete/", {"post": "yes"})
    assert done.status_code == 302, done.content.decode()[:2000]
    assert not Flag.objects.filter(key="checkout").exists()
    assert not ChangeRequest.objects.exists() and not Review.objects.exists()
    entry = AuditEntry.objects.get(action="flag.deleted")
    assert entry.before["changeRequests"] == [{"id": reviewed.pk, "status": "approved", "title": "on",
                                               "author": "ann"}]
    assert list(AuditEntry.objects.filter(target_type="change_request", target_key=str(reviewed.pk))
                .values_list("action", flat=True).order_by("id")) == ["change_request.opened",
                                                                      "change_request.approved"]


def test_admin_bulk_delete_flags_with_change_requests__unprotected(people, reviewed):
    approvals.protection_remove(actor=SYSTEM, environment="production")
    root = page_as(people["superuser"])
    flag = Flag.objects.get(key="checkout")
    body = {"action": "delete_selected", "_selected_action": [flag.pk]}
    assert "Cannot delete" not in root.post("/admin/flags/flag/", body).content.decode()
    root.post("/admin/flags/flag/", {**body, "post": "yes"})
    assert not Flag.objects.filter(key="checkout").exists()


def test_admin_delete_flag__protected__refused_with_the_four_eyes_message(people, reviewed):
    root = page_as(people["superuser"])
    flag = Flag.objects.get(key="checkout")
    page = root.post(f"/admin/flags/flag/{flag.pk}/delete/", {"post": "yes"}, follow=True).content.decode()
    assert "needs an approved change request" in page
    assert Flag.objects.filter(key="checkout").exists() and ChangeRequest.objects.count() == 1


@pytest.mark.parametrize("who", ["author", "approver"])
def test_admin_delete_user_who_authored_or_reviewed__clear_message__deactivate_instead(people, reviewed, who):
    root = page_as(people["superuser"])
    user = people[who]
    response = root.get(f"/admin/auth/user/{user.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == f"/admin/auth/user/{user.pk}/change/"
    page = root.get(response["Location"]).content.decode()
    assert f"&#x27;{user.username}&#x27; is not deleted" in page and "Deactivate the account instead" in page
    bulk = root.post("/admin/auth/user/", {"action": "delete_selected", "_selected_action": [user.pk],
                                           "post": "yes"}, follow=True).content.decode()
    assert "Deactivate the account instead" in bulk
    assert get_user_model().objects.filter(pk=user.pk).exists()
    assert ChangeRequest.objects.get().author_label == "ann"


def test_admin_delete_user_without_change_requests__deleted_as_before(people, reviewed):
    root = page_as(people["superuser"])
    user = people["editor"]
    assert root.get(f"/admin/auth/user/{user.pk}/delete/").status_code == 200
    assert root.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not get_user_model().objects.filter(pk=user.pk).exists()
