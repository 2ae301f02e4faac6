"""Every write service: the row, the audit entry, the version bump; bad input writes nothing."""

import pytest

from audit.models import AuditEntry
from flags import services
from flags.errors import Conflict, NotFound, ValidationFailed
from flags.models import ApiKey, Environment, Flag, FlagState
from segments import services as segment_services
from segments.models import Segment

pytestmark = pytest.mark.django_db


def versions():
    return dict(Environment.objects.values_list("key", "version"))


def state_of(flag, env):
    return FlagState.objects.get(flag__key=flag if isinstance(flag, str) else flag.key, environment__key=env)


def last_audit():
    return AuditEntry.objects.order_by("-id").first()


# -- create --------------------------------------------------------------------------------------

def test_flag_create__valid__creates_flag_with_a_state_per_environment_audits_and_bumps_all(actor):
    before = versions()

    flag = services.flag_create(actor=actor, key="new-checkout", name="New checkout", tags=["checkout"],
                                states={"production": {"enabled": True, "rules": [
                                    {"type": "percentage", "operator": "less_than", "value": 50}]}})

    assert Flag.objects.get(key="new-checkout").tags == ["checkout"]
    assert state_of(flag, "production").enabled is True
    assert state_of(flag, "production").rules[0]["type"] == "percentage"
    assert state_of(flag, "staging").enabled is False
    assert FlagState.objects.filter(flag=flag).count() == 3
    entry = last_audit()
    assert (entry.action, entry.target_key, entry.actor, entry.actor_user.username) == (
        "flag.created", "new-checkout", "alice", "alice")
    assert entry.after["states"]["production"]["enabled"] is True
    assert entry.request_id == "req-1" and entry.ip == "127.0.0.1"
    assert all(versions()[k] == before[k] + 1 for k in before)


@pytest.mark.parametrize("kwargs, path", [
    ({"key": "bad key!"}, "key"),
    ({"name": ""}, "name"),
    ({"tags": "x"}, "tags"),
    ({"kind": "ternary"}, "kind"),
    ({"kind": "multivariate", "variants": [{"key": "a", "weight": -1}]}, "variants[0].weight"),
    ({"states": {"production": {"rules": [{"type": "custom", "field": "plan", "operator": "equalz",
                                           "value": "x"}]}}}, "states.production.rules[0].operator"),
    ({"states": {"prod": {"enabled": True}}}, "states.prod"),
    ({"states": {"production": {"enabled": "yes"}}}, "states.production.enabled"),
    ({"states": {"production": {"rules": [{"type": "segment", "operator": "in", "value": ["nope"]}]}}},
     "states.production.rules[0].value[0]"),
])
def test_flag_create__bad_input__validation_failed_at_path_and_nothing_written(actor, world, kwargs, path):
    args = {"key": "new-checkout", "name": "New checkout", **kwargs}
    before = world.snapshot()

    with pytest.raises(ValidationFailed) as exc:
        services.flag_create(actor=actor, **args)

    assert path in exc.value.fields
    assert world.snapshot() == before


def test_flag_create__duplicate_key__conflict_and_nothing_written(actor, flag, world):
    before = world.snapshot()
    with pytest.raises(Conflict):
        services.flag_create(actor=actor, key=flag.key, name="Again")
    assert world.snapshot() == before


def racing_create(monkeypatch, key):
    """Another writer creates `key` right after flag_create's existence check said it was free."""
    from django.db.models.query import QuerySet

    real_exists = QuerySet.exists
    raced = []

    def exists(qs):
        if qs.model is Flag and not raced:
            raced.append(True)
            services.flag_create(actor=services_actor(), key=key, name="The other writer's")
            return False
        return real_exists(qs)

    monkeypatch.setattr(QuerySet, "exists", exists)


def services_actor():
    from audit.actor import Actor

    return Actor.system("other-writer")


def test_flag_create__duplicate_key_racing_another_create__conflict_not_integrity_error(actor, monkeypatch):
    racing_create(monkeypatch, "raced")
    audit_before = AuditEntry.objects.count()

    with pytest.raises(Conflict) as exc:
        services.flag_create(actor=actor, key="raced", name="Mine")

    assert exc.value.fields == {"key": ["Already exists."]}
    assert Flag.objects.get(key="raced").name == "The other writer's"  # theirs stays, the transaction lives on
    assert AuditEntry.objects.count() == audit_before + 1  # only theirs
    assert FlagState.objects.filter(flag__key="raced").count() == 3


def test_flag_create__prerequisite_cycle__refused(actor, make_flag):
    make_flag("parent", rules=[])
    make_flag("child", rules=[{"type": "flag", "field": "parent", "operator": "enabled"}])
    with pytest.raises(ValidationFailed) as exc:
        services.flag_update(actor=actor, flag=Flag.objects.get(key="parent"), environment="production",
                             data={"rules": [{"type": "flag", "field": "child", "operator": "enabled"}]})
    assert "cycle" in exc.value.fields["rules[0].field"][0]


# -- update --------------------------------------------------------------------------------------

def test_flag_update__state_fields__changes_one_environment_and_bumps_only_it(actor, flag):
    before = versions()
    old = state_of(flag, "production").version

    state = services.flag_update(actor=actor, flag=flag, environment="production", data={
        "enabled": False, "rules": [{"type": "user", "operator": "in", "value": ["u1"]}]})

    assert state_of(flag, "production").enabled is False
    assert state_of(flag, "production").rules == [{"type": "user", "operator": "in", "value": ["u1"]}]
    assert state.version == old + 1
    entry = last_audit()
    assert (entry.action, entry.environment) == ("flag.updated", "production")
    assert entry.before["enabled"] is True and entry.after["enabled"] is False
    assert versions() == {**before, "production": before["production"] + 1}


def test_flag_update__flag_fields__bump_every_environment_and_state(actor, flag):
    before = versions()
    services.flag_update(actor=actor, flag=flag, environment="staging", data={"name": "Renamed", "tags": ["a"]})
    assert Flag.objects.get(pk=flag.pk).name == "Renamed"
    assert all(versions()[k] == before[k] + 1 for k in before)
    assert set(FlagState.objects.filter(flag=flag).values_list("version", flat=True)) == {2}


def test_flag_update__stale_version__conflict_and_nothing_written(actor, flag, world):
    services.flag_toggle(actor=actor, flag=flag, environment="production")  # now at version 2
    before = world.snapshot()
    with pytest.raises(Conflict):
        services.flag_update(actor=actor, flag=flag, environment="production", data={"enabled": True},
                             expected_version=1)
    assert world.snapshot() == before


def test_flag_update__current_version__applies(actor, flag):
    services.flag_update(actor=actor, flag=flag, environment="production", data={"enabled": False},
                         expected_version=1)
    assert state_of(flag, "production").enabled is False


@pytest.mark.parametrize("data, path", [
    ({"rules": [{"type": "geo", "operator": "in", "value": ["USA"]}]}, "rules[0].value[0]"),
    ({"rules": [{"type": "custom", "field": "plan", "operator": "equals", "value": "x"},
                {"type": "percentage", "operator": "less_than", "value": 150}]}, "rules[1].value"),
    ({"rules": "all"}, "rules"),
    ({"enabled": "yes"}, "enabled"),
    ({"key": "renamed"}, "key"),
    ({"colour": "red"}, "colour"),
    ({"name": 5}, "name"),
])
def test_flag_update__bad_input__validation_failed_at_path_and_nothing_written(actor, flag, world, data, path):
    before = world.snapshot()
    with pytest.raises(ValidationFailed) as exc:
        services.flag_update(actor=actor, flag=flag, environment="production", data=data)
    assert path in exc.value.fields
    assert world.snapshot() == before


def test_flag_update__unknown_environment__validation_failed(actor, flag, world):
    before = world.snapshot()
    with pytest.raises(ValidationFailed) as exc:
        services.flag_update(actor=actor, flag=flag, environment="prod", data={"enabled": False})
    assert "environment" in exc.value.fields
    assert world.snapshot() == before


def test_flag_update__no_change__writes_nothing(actor, flag, world):
    before = world.snapshot()
    services.flag_update(actor=actor, flag=flag, environment="production", data={"enabled": True})
    assert world.snapshot() == before


def test_flag_update__failure_after_the_write__leaves_neither_change_nor_audit_entry(actor, flag, world, monkeypatch):
    real = services.audit_record

    def audit_then_fail(**kwargs):
        real(**kwargs)  # the flag row and the audit row are both written by now
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "audit_record", audit_then_fail)
    before = world.snapshot()

    with pytest.raises(RuntimeError):
        services.flag_update(actor=actor, flag=flag, environment="production", data={"enabled": False})

    assert world.snapshot() == before
    assert state_of(flag, "production").enabled is True


# -- toggle / kill / restore ---------------------------------------------------------------------

def test_flag_toggle__flips_and_sets__audited_per_call(actor, flag):
    before = versions()
    assert services.flag_toggle(actor=actor, flag=flag, environment="production").enabled is False
    assert services.flag_toggle(actor=actor, flag=flag, environment="production", enabled=True).enabled is True
    assert state_of(flag, "production").enabled is True
    assert list(AuditEntry.objects.filter(action="flag.toggled").values_list("after__enabled", flat=True)
                .order_by("id")) == [False, True]
    assert versions()["production"] == before["production"] + 2
    assert versions()["staging"] == before["staging"]


def test_flag_toggle__non_boolean__refused(actor, flag, world):
    before = world.snapshot()
    with pytest.raises(ValidationFailed):
        services.flag_toggle(actor=actor, flag=flag, environment="production", enabled="off")
    assert world.snapshot() == before


def test_flag_kill__all_environments_by_default__one_audit_entry_each_with_reason(actor, flag):
    before = versions()
    states = services.flag_kill(actor=actor, flag=flag, reason="checkout errors")
    assert len(states) == 3
    for env in ("development", "staging", "production"):
        state = state_of(flag, env)
        assert state.killed and state.killed_reason == "checkout errors" and state.killed_by == "alice"
        assert state.killed_at is not None
    entries = AuditEntry.objects.filter(action="flag.killed")
    assert sorted(entries.values_list("environment", flat=True)) == ["development", "production", "staging"]
    assert set(entries.values_list("reason", flat=True)) == {"checkout errors"}
    assert all(versions()[k] == before[k] + 1 for k in before)


def test_flag_kill__named_environment_only(actor, flag):
    services.flag_kill(actor=actor, flag=flag, reason="r", environments=["production"])
    assert state_of(flag, "production").killed and not state_of(flag, "staging").killed


@pytest.mark.parametrize("kwargs, path", [({"reason": ""}, "reason"), ({"reason": "  "}, "reason"),
                                          ({"reason": "r", "environments": ["nope"]}, "environments")])
def test_flag_kill__bad_input__nothing_written(actor, flag, world, kwargs, path):
    before = world.snapshot()
    with pytest.raises(ValidationFailed) as exc:
        services.flag_kill(actor=actor, flag=flag, **kwargs)
    assert path in exc.value.fields
    assert world.snapshot() == before


def test_flag_restore__undoes_kill_and_audits_only_killed_environments(actor, flag):
    services.flag_kill(actor=actor, flag=flag, reason="r", environments=["production"])
    restored = services.flag_restore(actor=actor, flag=flag)
    assert [s.environment.key for s in restored] == ["production"]
    state = state_of(flag, "production")
    assert not state.killed and state.killed_reason == "" and state.killed_at is None
    assert AuditEntry.objects.filter(action="flag.restored").count() == 1


# -- archive / delete ----------------------------------------------------------------------------

def test_flag_archive__hides_flag_and_bumps_every_environment(actor, flag):
    before = versions()
    services.flag_archive(actor=actor, flag=flag)
    assert Flag.objects.get(pk=flag.pk).archived is True
    assert last_audit().action == "flag.archived"
    assert all(versions()[k] == before[k] + 1 for k in before)


def test_flag_tags_change__adds_and_removes_once__audited_and_bumped(actor, make_flag):
    flag = make_flag("tagged", tags=["a", "b"])
    before = versions()

    services.flag_tags_change(actor=actor, flag=flag, add=["c", "a", "c"], remove=["b"])

    assert Flag.objects.get(pk=flag.pk).tags == ["a", "c"]
    entry = last_audit()
    assert (entry.action, entry.target_key, entry.before["tags"], entry.after["tags"]) == (
        "flag.updated", "tagged", ["a", "b"], ["a", "c"])
    assert all(versions()[k] == before[k] + 1 for k in before)
    assert state_of(flag, "production").version == 2


def test_flag_tags_change__nothing_to_change__writes_nothing(actor, make_flag, world):
    flag = make_flag("tagged", tags=["a"])
    before = world.snapshot()
    services.flag_tags_change(actor=actor, flag=flag, add=["a"], remove=["zzz"])
    assert world.snapshot() == before


@pytest.mark.parametrize("kwargs, path", [({"add": [""]}, "add[0]"), ({"add": ["x" * 65]}, "add[0]"),
                                          ({"remove": 5}, "remove")])
def test_flag_tags_change__bad_tag__refused_and_nothing_written(actor, make_flag, world, kwargs, path):
    flag = make_flag("tagged", tags=["a"])
    before = world.snapshot()
    with pytest.raises(ValidationFailed) as exc:
        services.flag_tags_change(actor=actor, flag=flag, **kwargs)
    assert path in exc.value.fields
    assert world.snapshot() == before


def test_flag_delete__removes_rows_keeps_history(actor, flag):
    services.flag_delete(actor=actor, flag=flag)
    assert not Flag.objects.filter(key=flag.key).exists()
    assert not FlagState.objects.filter(flag_id=flag.pk).exists()
    entry = last_audit()
    assert entry.action == "flag.deleted" and entry.before["states"]["production"]["enabled"] is True


def test_flag_delete__prerequisite_of_another_flag__conflict_and_nothing_written(actor, make_flag, world):
    parent = make_flag("parent")
    make_flag("child", rules=[{"type": "flag", "field": "parent", "operator": "enabled"}])
    before = world.snapshot()
    with pytest.raises(Conflict):
        services.flag_delete(actor=actor, flag=parent)
    with pytest.raises(Conflict):
        services.flag_archive(actor=actor, flag=parent)
    assert world.snapshot() == before


def test_flag_toggle__deleted_flag__not_found(actor, flag):
    services.flag_delete(actor=actor, flag=flag)
    with pytest.raises(NotFound):
        services.flag_toggle(actor=actor, flag=flag, environment="production")


# -- segments ------------------------------------------------------------------------------------

def test_segment_create__shorthand__saved_audited_and_bumps_every_environment(actor):
    before = versions()
    segment = segment_services.segment_create(actor=actor, key="premium", name="Premium",
                                              conditions={"plan": "premium"})
    assert Segment.objects.get(key="premium").conditions == {"plan": "premium"}
    assert last_audit().action == "segment.created" and last_audit().target_key == segment.key
    assert all(versions()[k] == before[k] + 1 for k in before)


@pytest.mark.parametrize("kwargs, path", [
    ({"key": "no spaces"}, "key"),
    ({"name": ""}, "name"),
    ({"conditions": "plan=premium"}, "conditions"),
    ({"conditions": [{"type": "custom", "field": "plan", "operator": "like", "value": "x"}]},
     "conditions[0].operator"),
    ({"conditions": [{"type": "segment", "operator": "in", "value": ["premium"]}]}, "conditions[0].value[0]"),
])
def test_segment_create__bad_input__nothing_written(actor, world, kwargs, path):
    before = world.snapshot()
    with pytest.raises(ValidationFailed) as exc:
        segment_services.segment_create(actor=actor, **{"key": "premium", "name": "Premium", **kwargs})
    assert path in exc.value.fields
    assert world.snapshot() == before


def test_segment_update__changes_conditions_and_audits(actor):
    segment = segment_services.segment_create(actor=actor, key="premium", name="Premium", conditions={"plan": "gold"})
    segment_services.segment_update(actor=actor, segment=segment, data={"conditions": {"plan": "premium"}})
    assert Segment.objects.get(key="premium").conditions == {"plan": "premium"}
    entry = last_audit()
    assert entry.action == "segment.updated" and entry.before["conditions"] == {"plan": "gold"}


def test_segment_delete__in_use__conflict_then_deleted_once_unused(actor, make_flag, world):
    segment = segment_services.segment_create(actor=actor, key="premium", name="Premium", conditions={"plan": "p"})
    flag = make_flag(rules=[{"type": "segment", "operator": "in", "value": ["premium"]}])
    before = world.snapshot()
    with pytest.raises(Conflict):
        segment_services.segment_delete(actor=actor, segment=segment)
    assert world.snapshot() == before

    for env in ("development", "staging", "production"):
        services.flag_update(actor=actor, flag=flag, environment=env, data={"rules": []})
    segment_services.segment_delete(actor=actor, segment=segment)
    assert not Segment.objects.filter(key="premium").exists()
    assert last_audit().action == "segment.deleted"


# -- API keys ------------------------------------------------------------------------------------

def test_api_key_create__sdk__stores_only_the_hash_and_audits(actor):
    api_key, raw = services.api_key_create(actor=actor, name="web", kind="sdk", environment="production")
    assert raw.startswith("sdk_production_") and raw[:12] == api_key.prefix
    stored = ApiKey.objects.get(pk=api_key.pk)
    assert stored.key_hash == services.hash_api_key(raw) and raw not in stored.key_hash
    assert last_audit().action == "apikey.created" and last_audit().target_key == api_key.prefix


def test_api_key_create__management__acts_as_user(actor, user):
    api_key, raw = services.api_key_create(actor=actor, name="ci", kind="management", user=user)
    assert raw.startswith("mgmt_") and api_key.user == user and api_key.environment is None


@pytest.mark.parametrize("kwargs, path", [
    ({"kind": "sdk"}, "environment"),
    ({"kind": "sdk", "environment": "nope"}, "environment"),
    ({"kind": "management"}, "user"),
    ({"kind": "root"}, "kind"),
])
def test_api_key_create__bad_input__nothing_written(actor, world, kwargs, path):
    before = world.snapshot()
    count = ApiKey.objects.count()
    with pytest.raises(ValidationFailed) as exc:
        services.api_key_create(actor=actor, name="k", **kwargs)
    assert path in exc.value.fields
    assert world.snapshot() == before and ApiKey.objects.count() == count


def test_api_key_revoke__sets_revoked_at_and_audits(actor):
    api_key, _ = services.api_key_create(actor=actor, name="web", kind="sdk", environment="staging")
    services.api_key_revoke(actor=actor, api_key=api_key)
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert last_audit().action == "apikey.revoked"


def test_after_a_commit__the_live_notice_goes_before_the_audit_followers(actor, make_flag, monkeypatch,
                                                                        django_capture_on_commit_callbacks):
    # a fresh process's first webhook enqueue (an audit follower) spends 100+ ms importing and
    # connecting Celery's transport: a kill's notice to live clients must not wait behind it
    from audit import services as audit_services
    from flags import publish

    flag = make_flag("ordered")
    order = []
    monkeypatch.setattr(publish, "after_commit", lambda versions, action, **keys: order.append(("notice", action)))
    monkeypatch.setattr(audit_services, "_followers", [lambda: order.append(("follower", None))])
    for change in (lambda: services.flag_kill(actor=actor, flag=flag, reason="incident", environments=["production"]),
                   lambda: services.flag_toggle(actor=actor, flag=flag, environment="staging")):
        with django_capture_on_commit_callbacks(execute=True):
            change()
    assert order == [("notice", "killed"), ("follower", None), ("notice", "toggled"), ("follower", None)]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_publish_on_commit__outside_a_transaction__runs_at_once_and_leaves_other_hooks_alone(monkeypatch):
    from flags import publish

    heard = []
    monkeypatch.setattr(publish, "after_commit", lambda versions, action, **keys: heard.append(action))
    publish.on_commit({"production": 1}, "toggled")
    assert heard == ["toggled"]
