"""The dashboard's project switcher: a select in the header, remembered in the session; each page
and admin list shows the picked project only."""

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, two_projects):
    client.force_login(get_user_model().objects.create_superuser("boss", None, None))
    return client


def test_switcher__lists_projects_and_marks_the_current_one(staff_client):
    html = staff_client.get("/").content.decode()
    assert '<select name="project">' in html
    assert '<option value="default" selected>Default</option>' in html
    assert '<option value="team-b">Team B</option>' in html


def test_switcher__picked_project_is_remembered_for_pages_and_admin(staff_client):
    assert "b-only" not in staff_client.get("/").content.decode()
    picked = staff_client.get("/?project=team-b").content.decode()
    assert "b-only" in picked and '<option value="team-b" selected>' in picked
    assert "b-only" in staff_client.get("/").content.decode()  # remembered in the session
    changelist = staff_client.get("/admin/flags/flag/").content.decode()
    assert "b-only" in changelist
    assert staff_client.get("/admin/segments/segment/").content.decode().count("beta") == 0
    staff_client.get("/?project=default")
    assert "b-only" not in staff_client.get("/admin/flags/flag/").content.decode()
    assert "beta" in staff_client.get("/admin/segments/segment/").content.decode()


def test_switcher__unknown_project__ignored(staff_client):
    staff_client.get("/?project=no-such-project")
    assert '<option value="default" selected>' in staff_client.get("/").content.decode()
