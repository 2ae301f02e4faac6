"""One audit chain for every project: verify_audit walks it all, and the project an entry belongs
to is part of what is hashed (moving an entry to another project is tampering)."""

import pytest

from audit.chain import verify_chain
from audit.models import AuditEntry
from tests.audit.conftest import tamper

pytestmark = pytest.mark.django_db


def test_chain__entries_of_two_projects__one_chain_verifies(two_projects):
    assert {"default", "team-b"} <= set(AuditEntry.objects.values_list("project", flat=True))
    report = verify_chain()
    assert report.ok and report.checked == AuditEntry.objects.count()


@pytest.mark.parametrize("project", ["default", "team-c"])
def test_chain__entry_moved_to_another_project__fails_naming_it(two_projects, project):
    entry = AuditEntry.objects.filter(project="team-b").order_by("id").first()
    tamper(entry.pk, project=project)
    report = verify_chain()
    assert report.broken_entry_id == entry.pk


def test_chain__default_entry_moved_to_a_project__fails_naming_it(two_projects):
    entry = AuditEntry.objects.filter(project="default").order_by("id").first()
    tamper(entry.pk, project="team-b")
    assert verify_chain().broken_entry_id == entry.pk
