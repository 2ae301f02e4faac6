"""How the audit page groups and shows entries (audit/display.py), on unsaved entries: presentation
reads entries and never writes them."""

from datetime import datetime, timezone

from audit.display import group, present
from audit.models import AuditEntry

AT = datetime(2026, 1, 1, 12, 0, 0, 100, tzinfo=timezone.utc)


def entry(action="flag.toggled", env="production", request_id="r1", at=AT, before=None, after=None, key="f"):
    return AuditEntry(actor="ops", action=action, target_type="flag", target_key=key, environment=env,
                      request_id=request_id, created_at=at, before=before, after=after)


def test_one_request_one_group__other_requests_actions_and_targets_apart():
    entries = [entry(env="production"), entry(env="staging"), entry(request_id="r2"), entry(action="flag.killed"),
               entry(key="g")]
    assert [len(g) for g in group(entries)] == [2, 1, 1, 1]


def test_without_request_id__the_same_second_groups():
    later = AT.replace(second=1)
    entries = [entry(request_id="", at=AT.replace(microsecond=900)), entry(request_id=""), entry(request_id="", at=later)]
    assert [len(g) for g in group(entries)] == [2, 1]


def test_two_entries_in_one_environment_count_one_environment():
    row = present([entry(before={"enabled": True, "version": 2}, after={"enabled": False, "version": 3}),
                   entry(before={"enabled": False, "version": 1}, after={"enabled": True, "version": 2})])
    assert row["environments"] == ["production"] and row["count"] == 2
    assert row["changes"] == [("production", "enabled", "False", "True"), ("production", "enabled", "True", "False")]
