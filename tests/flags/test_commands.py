"""Management commands call the same services as the API and admin."""

import json
import os
import pwd

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.actor import os_user
from audit.models import AuditEntry
from flags import services, snapshot
from flags.models import ApiKey, Flag, FlagState
from flags.management.commands.load_demo_data import FLAGS, SEGMENTS
from segments.models import Segment

pytestmark = pytest.mark.django_db


def run(*args):
    from io import StringIO

    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# -- kill_switch ---------------------------------------------------------------------------------

def test_kill_switch__default__kills_everywhere_with_reason_and_audit(flag):
    out, _ = run("kill_switch", flag.key, "--reason", "incident 42")

    assert "new-checkout killed in development, staging, production" in out
    assert FlagState.objects.filter(flag=flag, killed=True, killed_reason="incident 42").count() == 3
    assert set(AuditEntry.objects.filter(action="flag.killed").values_list("actor", "reason")) == {
        (f"cli:{os_user()}", "incident 42")}
    assert snapshot.get_snapshot("production").evaluate(flag.key, "u1", {}).reason == "KILLED"


def test_kill_switch__claimed_actor__recorded_after_the_os_user_never_alone(flag):
    """Before: --actor admin was recorded as "admin", indistinguishable from the admin user acting."""
    run("kill_switch", flag.key, "--reason", "r", "--actor", "admin")
    run("kill_switch", flag.key, "--reason", "r", "--restore", "--actor", "admin")

    me = pwd.getpwuid(os.geteuid()).pw_name
    assert set(AuditEntry.objects.filter(action__in=["flag.killed", "flag.restored"]).values_list("actor", flat=True)) == {
        f"cli:{me} as admin"}


def test_create_api_key__recorded_as_the_os_user(user):
    run("create_api_key", "--kind", "sdk", "--environment", "production")
    assert AuditEntry.objects.filter(target_type="apikey").values_list("actor", flat=True).get() == f"cli:{os_user()}"


def test_kill_switch__named_environments_only(flag):
    run("kill_switch", flag.key, "--reason", "r", "--environment", "production", "-e", "staging")
    assert sorted(FlagState.objects.filter(flag=flag, killed=True).values_list("environment__key", flat=True)) == [
        "production", "staging"]


def test_kill_switch__restore__undoes_it_and_records_the_reason_given(flag):
    run("kill_switch", flag.key, "--reason", "r")
    out, _ = run("kill_switch", flag.key, "--reason", "fixed", "--restore")
    assert "restored" in out and not FlagState.objects.filter(flag=flag, killed=True).exists()
    assert list(AuditEntry.objects.filter(action="flag.restored").values_list("reason", flat=True)) == ["fixed"] * 3


def test_kill_switch__restore_without_reason__restores_and_writes_the_audit_entries(flag):
    run("kill_switch", flag.key, "--reason", "r", "-e", "production")
    out, _ = run("kill_switch", flag.key, "--restore", "-e", "production")
    assert "new-checkout restored in production" in out
    assert not FlagState.objects.filter(flag=flag, killed=True).exists()
    entry = AuditEntry.objects.filter(action="flag.restored").get()
    assert (entry.environment, entry.target_key, entry.reason, entry.actor) == (
        "production", flag.key, "", f"cli:{os_user()}")
    assert snapshot.get_snapshot("production").evaluate(flag.key, "u1", {}).enabled


@pytest.mark.parametrize("reason", [None, "  "])
def test_kill_switch__kill_without_reason__clear_error_and_nothing_written(flag, world, reason):
    before = world.snapshot()
    with pytest.raises(CommandError, match=r"^--reason is required to kill a flag"):
        run("kill_switch", flag.key, *(["--reason", reason] if reason else []))
    assert world.snapshot() == before


def test_kill_switch__unknown_flag__one_line_error_and_nothing_written(flag, world):
    before = world.snapshot()
    with pytest.raises(CommandError, match=r"^Flag 'nope' not found\.$"):
        run("kill_switch", "nope", "--reason", "r")
    assert world.snapshot() == before


def test_kill_switch__unknown_environment__error_names_it_and_nothing_written(flag, world):
    before = world.snapshot()
    with pytest.raises(CommandError, match="Unknown environment 'prod'"):
        run("kill_switch", flag.key, "--reason", "r", "-e", "prod")
    assert world.snapshot() == before


def test_kill_switch__exit_status_non_zero_on_unknown_flag(tmp_path):
    import subprocess
    import sys

    # a real process against a fresh SQLite file: the exit code and a one-line message on stderr
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "flagsite.settings",
           "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}  # absolute: sqlite:////tmp/...
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, check=True)
    result = subprocess.run([sys.executable, "manage.py", "kill_switch", "nope", "--reason", "r"], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == "CommandError: Flag 'nope' not found."


@pytest.mark.redis
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_kill_switch__process__its_change_notices_reach_the_other_processes(flag):
    """A kill from the CLI tells every server at once (a notice per environment on the channel
    layer), not only through their next version poll. Its notices leave from the outbox thread as
    the command exits: sent after the interpreter began to shut down, each one failed ("cannot
    schedule new futures after interpreter shutdown") and servers heard of the kill by polling."""
    import asyncio

    from channels.layers import channel_layers

    from flags import publish
    from flags.live import NOTICE_GROUP
    from flags.models import Environment
    from tests.servers import manage

    assert publish.notices_sent(5)  # the fixture's own, before listening
    layer = channel_layers.make_backend("default")  # a client of its own, bound to this test's loop

    async def notices_of_a_kill():
        channel = await layer.new_channel()
        await layer.group_add(NOTICE_GROUP, channel)
        try:
            command = await asyncio.to_thread(manage, "kill_switch", flag.key, "--reason", "incident 43")
            received = []
            while True:
                try:
                    received.append(await asyncio.wait_for(layer.receive(channel), timeout=2))
                except asyncio.TimeoutError:
                    return command, received
        finally:
            await layer.group_discard(NOTICE_GROUP, channel)
            await layer.close_pools()

    command, received = asyncio.run(notices_of_a_kill())

    assert command.returncode == 0, command.stderr
    assert "could not send flag change notice" not in command.stderr
    assert sorted((notice["environment"], notice["version"]) for notice in received) == sorted(
        Environment.objects.values_list("key", "version"))


# -- verify_audit (chain cases in tests/audit) ---------------------------------------------------

def test_verify_audit__tampered__non_zero(flag):
    from tests.audit.conftest import tamper  # past the PostgreSQL append-only trigger, as a superuser could

    entry = AuditEntry.objects.get()
    tamper(entry.pk, actor="mallory")
    with pytest.raises(CommandError, match=f"#{entry.pk}"):
        run("verify_audit")


# -- create_api_key ------------------------------------------------------------------------------

def test_create_api_key__sdk__prints_key_once_stores_hash():
    out, err = run("create_api_key", "--kind", "sdk", "--environment", "staging")
    raw = out.strip()
    assert raw.startswith("sdk_staging_")
    key = ApiKey.objects.get(key_hash=services.hash_api_key(raw))
    assert key.environment.key == "staging" and key.kind == "sdk" and "not shown again" in err


def test_create_api_key__management__for_user(user):
    out, _ = run("create_api_key", "--kind", "management", "--user", user.username)
    key = ApiKey.objects.get(key_hash=services.hash_api_key(out.strip()))
    assert key.user == user and key.kind == "management"


@pytest.mark.parametrize("args, message", [
    (["--kind", "sdk"], "environment"),
    (["--kind", "sdk", "--environment", "moon"], "Unknown environment 'moon'"),
    (["--kind", "management", "--user", "ghost"], "Unknown user 'ghost'"),
])
def test_create_api_key__bad_arguments__error_and_nothing_written(args, message):
    with pytest.raises(CommandError, match=message):
        run("create_api_key", *args)
    assert not ApiKey.objects.exists()


# -- load_demo_data / bootstrap ------------------------------------------------------------------

def test_load_demo_data__every_rule_type__and_idempotent():
    run("load_demo_data")
    assert Flag.objects.count() == len(FLAGS) and Segment.objects.count() == len(SEGMENTS) == 2
    audit_count = AuditEntry.objects.count()

    out, _ = run("load_demo_data")
    assert "0 created" in out
    assert Flag.objects.count() == len(FLAGS) and AuditEntry.objects.count() == audit_count

    def types(rules):
        for rule in rules:
            yield rule["type"], rule.get("operator")
            yield from types(rule.get("rules", []))
            if "rule" in rule:
                yield from types([rule["rule"]])

    used = {t for state in FlagState.objects.filter(environment__key="production") for t in types(state.rules)}
    kinds = {t for t, _ in used}
    assert {"geo", "device", "percentage", "user", "custom", "all", "any", "not", "segment", "flag"} <= kinds
    assert len({op for t, op in used if t == "custom"}) >= 4
    assert Flag.objects.filter(kind="multivariate").exists()


def test_load_demo_data__evaluates_as_documented():
    run("load_demo_data")
    snap = snapshot.get_snapshot("production")
    assert snap.evaluate("eu-cookie-banner", "u1", {"country": "DE"}).enabled
    assert not snap.evaluate("eu-cookie-banner", "u1", {"country": "US"}).enabled
    assert snap.evaluate("beta-dashboard", "u9", {"plan": "premium"}).enabled
    assert snap.evaluate("beta-dashboard", "u9", {"email": "Ann@FlagSite.dev"}).enabled
    assert snap.evaluate("mobile-redesign", "u1", {"device": "mobile"}).enabled
    assert snap.evaluate("pricing-experiment", "u1", {}).variant in {"control", "treatment"}
    assert snap.evaluate("legacy-export", "u1", {}).reason == "DISABLED"
    assert snap.evaluate("dark-mode", "u1", {"appVersion": "2.1.0", "signupDate": "2024-05-01", "locale": "en-GB",
                                             "age": 30, "plan": "pro"}).enabled
    on = sum(snap.evaluate("new-checkout", f"user-{i}", {}).enabled for i in range(2000))
    assert 900 < on < 1100


def test_bootstrap__creates_admin_and_one_sdk_key_per_environment_and_reuses_them(settings, tmp_path):
    settings.BASE_DIR = tmp_path
    settings.STATIC_ROOT = tmp_path / "static"
    out, _ = run("bootstrap")
    creds = json.loads((tmp_path / "artifacts" / "credentials.json").read_text())
    assert creds["admin"]["password"] in out
    for env in ("development", "staging", "production"):
        raw = creds["sdkKeys"][env]
        assert raw in out
        assert ApiKey.objects.get(key_hash=services.hash_api_key(raw)).environment.key == env

    from django.contrib.auth import authenticate
    assert authenticate(username="admin", password=creds["admin"]["password"]) is not None

    out_again, _ = run("bootstrap")
    assert ApiKey.objects.count() == 3 and creds["sdkKeys"]["production"] in out_again
