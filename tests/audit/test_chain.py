"""The audit log is a hash chain: verify_audit proves it unbroken or names the first bad entry."""

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections

from audit.chain import verify_chain
from audit.models import AuditEntry
from flags import services
from flags.models import FlagState
from tests.audit.conftest import delete_entries
from tests.audit.conftest import tamper as _tamper


@pytest.mark.django_db
def test_chain__after_several_writes__each_entry_links_to_the_previous(actor, flag):
    services.flag_toggle(actor=actor, flag=flag, environment="production")
    services.flag_kill(actor=actor, flag=flag, reason="incident")
    entries = list(AuditEntry.objects.order_by("id"))
    assert len(entries) == 5  # created, toggled, killed x3
    assert entries[0].prev_hash == "0" * 64
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(entries, entries[1:]))
    assert verify_chain().ok


@pytest.mark.django_db
def test_verify_audit__intact_chain__succeeds(actor, flag, capsys):
    services.flag_toggle(actor=actor, flag=flag, environment="production")
    call_command("verify_audit")
    assert "audit chain OK: 2 entries verified" in capsys.readouterr().out


@pytest.mark.django_db
def test_verify_audit__modified_entry__fails_naming_it(actor, flag):
    services.flag_toggle(actor=actor, flag=flag, environment="production")
    services.flag_toggle(actor=actor, flag=flag, environment="production")
    target = AuditEntry.objects.order_by("id")[1]
    _tamper(target.pk, reason="nothing to see here")

    with pytest.raises(CommandError, match=rf"broken at entry #{target.pk}: content does not match"):
        call_command("verify_audit")


@pytest.mark.django_db
def test_verify_audit__deleted_entry__fails_naming_the_next_one(actor, flag):
    for _ in range(3):
        services.flag_toggle(actor=actor, flag=flag, environment="production")
    ids = list(AuditEntry.objects.order_by("id").values_list("id", flat=True))
    delete_entries(pk=ids[1])

    with pytest.raises(CommandError, match=rf"broken at entry #{ids[2]}: prev_hash"):
        call_command("verify_audit")


@pytest.mark.django_db
def test_verify_audit__last_entry_removed__fails(actor, flag):
    services.flag_toggle(actor=actor, flag=flag, environment="production")
    last = AuditEntry.objects.order_by("-id").first()
    delete_entries(pk=last.pk)

    with pytest.raises(CommandError, match=rf"broken at entry #{last.pk}"):
        call_command("verify_audit")


def _toggle_in_threads(flag, actor, count):
    errors = []
    start = threading.Barrier(count)

    def work():
        try:
            start.wait()
            services.flag_toggle(actor=actor, flag=flag, environment="production")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_toggles__50_threads__50_entries_unbroken_chain_consistent_final_state(actor, flag):
    assert connection.vendor == "postgresql"
    before = AuditEntry.objects.count()

    errors = _toggle_in_threads(flag, actor, 50)

    assert errors == []
    toggles = list(AuditEntry.objects.filter(action="flag.toggled").order_by("id"))
    assert AuditEntry.objects.count() - before == 50 and len(toggles) == 50
    call_command("verify_audit")
    state = FlagState.objects.get(flag=flag, environment__key="production")
    assert state.enabled is toggles[-1].after["enabled"] is True  # 50 flips from on: on again
    assert state.version == toggles[-1].after["version"] == 51
    # each toggle saw the previous one's result: no lost update
    assert all(b.before["enabled"] == a.after["enabled"] for a, b in zip(toggles, toggles[1:]))


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_toggles__8_threads_on_the_embedded_database__unbroken_chain(actor, flag):
    errors = _toggle_in_threads(flag, actor, 8)

    assert errors == []
    toggles = list(AuditEntry.objects.filter(action="flag.toggled").order_by("id"))
    assert len(toggles) == 8
    assert verify_chain().ok
    state = FlagState.objects.get(flag=flag, environment__key="production")
    assert state.enabled is toggles[-1].after["enabled"] is True  # 8 flips from on
