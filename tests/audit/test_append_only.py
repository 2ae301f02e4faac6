"""PostgreSQL refuses UPDATE, DELETE and TRUNCATE of audit rows; deleting a user leaves the entries
(and who acted) as they are on every database."""

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEntry
from flags import services

pytestmark = pytest.mark.django_db


def refused(sql, params=()):
    with pytest.raises(DatabaseError, match="audit entries are append-only") as exc:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    return exc


@pytest.mark.postgres
def test_trigger__update_delete_truncate_refused_and_nothing_changed(actor, flag):
    assert connection.vendor == "postgresql"
    before = list(AuditEntry.objects.order_by("id").values())
    entry_id = before[0]["id"]

    refused("UPDATE audit_auditentry SET reason = 'x' WHERE id = %s", [entry_id])
    refused("DELETE FROM audit_auditentry WHERE id = %s", [entry_id])
    with pytest.raises(DatabaseError, match="append-only: UPDATE"):
        with transaction.atomic():
            AuditEntry.objects.filter(pk=entry_id).update(actor="mallory")
    with pytest.raises(DatabaseError, match="append-only: DELETE"):
        with transaction.atomic():
            AuditEntry.objects.all().delete()
    # the test database allows TRUNCATE for Django's flush (tests/conftest.py); a normal session does not
    exc = refused("SET LOCAL flagsite.audit_truncate = ''; TRUNCATE audit_auditentry")
    assert "TRUNCATE" in str(exc.value)

    assert list(AuditEntry.objects.order_by("id").values()) == before
    services.flag_toggle(actor=actor, flag=flag, environment="production")  # appending still works
    assert AuditEntry.objects.count() == len(before) + 1


def test_deleting_a_user__works_and_their_entries_keep_who_acted(actor, flag, user):
    services.flag_toggle(actor=actor, flag=flag, environment="production")
    mine = list(AuditEntry.objects.filter(actor_user_id=user.pk).order_by("id").values())
    assert mine

    get_user_model().objects.filter(pk=user.pk).delete()

    assert not get_user_model().objects.filter(pk=user.pk).exists()
    assert list(AuditEntry.objects.filter(pk__in=[e["id"] for e in mine]).order_by("id").values()) == mine
    from django.core.management import call_command

    call_command("verify_audit", stdout=open("/dev/null", "w"))


def test_deleting_a_user_in_the_admin__works(admin_client, actor, flag, user):
    response = admin_client.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=user.pk).exists()
    assert AuditEntry.objects.filter(actor_user_id=user.pk).exists()
