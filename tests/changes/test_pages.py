"""The flag page: a timeline of upcoming changes in their authors' time zones, a small form to
schedule one, and a cancel button, all through the services."""

import datetime as dt
import html
import re

import pytest

from audit.models import AuditEntry
from changes import services
from changes.models import ScheduledChange
from tests.api.conftest import SYSTEM, create_flag

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", None, None))
    return client


def test_timeline__upcoming_soonest_first_with_local_and_utc_times(staff_client, clock):
    flag = create_flag("checkout")
    later = services.scheduled_change_create(actor=SYSTEM, flag=flag, environment="production", operation="kill",
                                             payload={"reason": "campaign ends"}, run_at="2026-12-08T18:00:00",
                                             timezone="America/New_York")
    sooner = services.scheduled_change_create(actor=SYSTEM, flag=flag, environment="staging", operation="enable",
                                              run_at="2026-12-05T09:00:00", timezone="Europe/Berlin")
    page = staff_client.get("/flags/checkout").content.decode()
    items = re.findall(r'<li data-change="(\d+)">(.*?)</li>', page, re.DOTALL)
    assert [int(pk) for pk, _ in items] == [sooner.pk, later.pk]
    text = [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split()) for _, body in items]
    assert text[0].startswith("2026-12-05 09:00 CET (Europe/Berlin) (2026-12-05 08:00 UTC) · staging · Turn on")
    assert "2026-12-08 18:00 EST (America/New_York) (2026-12-08 23:00 UTC) · production · Kill switch" in text[1]
    assert "“campaign ends”" in text[1]


def test_schedule_form__creates_the_change__then_cancel_button_cancels_it(staff_client, clock):
    create_flag("checkout")
    response = staff_client.post("/flags/checkout/schedule", {
        "environment": "production", "action": "rollout", "percentage": "25", "run_at": "2026-12-07T09:00",
        "timezone": "Europe/Berlin"})
    assert response.status_code == 302
    change = ScheduledChange.objects.get()
    assert (change.operation, change.payload, change.run_at, change.author_label) == (
        "rollout", {"percentage": 25}, dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC), "ops")
    page = staff_client.get("/flags/checkout", follow=True).content.decode()
    assert "Rollout step (percentage) to 25%" in page
    assert staff_client.post(f"/flags/checkout/schedule/{change.pk}/cancel").status_code == 302
    assert ScheduledChange.objects.get().status == "cancelled"
    assert AuditEntry.objects.filter(action="schedule.cancelled", actor="ops").count() == 1


def test_schedule_form__bad_input_shows_why__nothing_written(staff_client, clock, world):
    create_flag("checkout")
    before = world.snapshot()
    response = staff_client.post("/flags/checkout/schedule", {
        "environment": "production", "action": "kill", "reason": "", "run_at": "2020-01-01T09:00",
        "timezone": "UTC"}, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert len(messages) == 1 and "runAt: Must be in the future." in messages[0]
    assert "change.reason" in messages[0]
    assert world.snapshot() == before and not ScheduledChange.objects.exists()
