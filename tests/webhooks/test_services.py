"""Webhook delivery against a real receiver on 127.0.0.1: signatures checked with the
standardwebhooks library's own verifier; failures, timeouts, retries with backoff, disabling.
Time is driven by passing ``now`` (a controllable clock), never by sleeping."""

import datetime as dt
import json

import pytest
from cryptography.fernet import InvalidToken
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import WebhookVerificationError

from audit.models import AuditEntry
from audit.services import audit_record
from flags import services as flag_services
from segments import services as segment_services
from tests.webhooks.conftest import HANG, SYSTEM
from webhooks import crypto, services
from webhooks.models import Delivery, Webhook

pytestmark = pytest.mark.django_db


def pump(now=None):
    """What the beat tick does: dispatch, then one attempt of everything due at ``now``."""
    services.webhooks_dispatch()
    return [services.delivery_send(delivery_id=pk, now=now) for pk in services.deliveries_due(now=now)]


def test_kill__after_commit__delivered_once__signature_verified_by_the_library(
        make_flag, subscribe, receiver, django_capture_on_commit_callbacks):
    # Given a subscription to kills, and a flag
    webhook, secret = subscribe(["flag.killed"])
    flag = make_flag("checkout")
    # When the flag is killed (the audited commit wakes the dispatcher, which sends inline here)
    with django_capture_on_commit_callbacks(execute=True):
        flag_services.flag_kill(actor=SYSTEM, flag=flag, reason="errors", environments=["production"])
    # Then the receiver got one message that the library's verifier accepts
    [message] = receiver.verified(secret)
    entry = AuditEntry.objects.get(action="flag.killed")
    assert message["type"] == "flag.killed"
    assert message["data"] | {} == message["data"] and message["data"]["targetKey"] == "checkout"
    assert message["data"]["id"] == entry.pk and message["data"]["environment"] == "production"
    assert message["data"]["reason"] == "errors" and message["data"]["actor"] == "tests"
    headers = receiver.received[0][0]
    assert headers["webhook-id"] == f"msg_{webhook.pk}_{entry.pk}"  # stable per entry + subscription
    # and the delivery log says so
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("succeeded", 1, 200)
    assert delivery.latency_ms is not None and '"ok": true' in delivery.response_excerpt
    # a wrong secret does not verify
    with pytest.raises(WebhookVerificationError):
        receiver.verified(crypto.new_secret())
    # and running the dispatcher again sends nothing twice
    assert pump() == [] and len(receiver.received) == 1


def test_filter__each_subscription_hears_only_its_events(make_flag, subscribe, receiver):
    kills, _ = subscribe(["flag.killed"])
    changes, _ = subscribe(["flag.changed", "segment.changed"])
    flag = make_flag("f")
    flag_services.flag_toggle(actor=SYSTEM, flag=flag, environment="production", enabled=False)
    segment_services.segment_create(actor=SYSTEM, key="beta", name="Beta", conditions={"plan": "x"})
    flag_services.flag_kill(actor=SYSTEM, flag=flag, reason="r", environments=["staging"])
    with transaction.atomic():  # an action no event names (a future one) matches nothing
        audit_record(actor=SYSTEM, action="rollout.paused", target_type="flag", target_key="f")
    pump()
    seen = {webhook.pk: sorted(Delivery.objects.filter(webhook=webhook).values_list("event", flat=True))
            for webhook in (kills, changes)}
    assert seen == {kills.pk: ["flag.killed"], changes.pk: ["flag.changed", "flag.changed", "segment.changed"]}
    assert {Webhook.objects.get(pk=kills.pk).cursor} == {AuditEntry.objects.order_by("-pk")[0].pk}  # read past all


def test_slack_format__a_text_message(make_flag, subscribe, receiver):
    _, secret = subscribe(["flag.killed"], format="slack")
    flag_services.flag_kill(actor=SYSTEM, flag=make_flag("checkout"), reason="5xx spike",
                            environments=["production"])
    pump()
    [message] = receiver.verified(secret)
    assert message == {"text": "[default] flag *checkout* killed in production by tests: 5xx spike"}


def test_receiver_fails_then_recovers__retried_after_backoff__same_webhook_id(make_flag, subscribe, receiver):
    receiver.script = [500, 500, 200]
    webhook, secret = subscribe(["flag.killed"])
    flag_services.flag_kill(actor=SYSTEM, flag=make_flag("f"), reason="r", environments=["production"])
    now = timezone.now()
    [delivery] = pump(now)
    # the first attempt failed; the retry is due 5-10 s later (base 10 s, half of it jitter)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, 500)
    assert now + dt.timedelta(seconds=5) <= delivery.next_attempt_at <= now + dt.timedelta(seconds=10)
    assert pump(now + dt.timedelta(seconds=4.9)) == []  # not due yet: nothing sent
    [delivery] = pump(delivery.next_attempt_at)
    assert delivery.attempts == 2 and delivery.status == "pending"
    [delivery] = pump(delivery.next_attempt_at)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("succeeded", 3, 200)
    log = list(delivery.attempt_log.values_list("number", "response_status", "succeeded"))
    assert log == [(1, 500, False), (2, 500, False), (3, 200, True)]
    assert len({headers["webhook-id"] for headers, _ in receiver.received}) == 1
    assert len(receiver.verified(secret)) == 3
    assert Webhook.objects.get(pk=webhook.pk).consecutive_failures == 0


def test_receiver_times_out_then_recovers(settings, make_flag, subscribe, receiver):
    settings.FLAGS_WEBHOOK_TIMEOUT_SECONDS = 0.3
    receiver.script = [HANG, 200]
    subscribe(["flag.killed"])
    flag_services.flag_kill(actor=SYSTEM, flag=make_flag("f"), reason="r", environments=["production"])
    [delivery] = pump()
    assert delivery.status == "pending" and "timed out" in delivery.error and delivery.response_status is None
    assert delivery.latency_ms >= 300
    [delivery] = pump(delivery.next_attempt_at)
    assert (delivery.status, delivery.response_status, delivery.error) == ("succeeded", 200, "")


def test_backoff__doubles__capped__with_jitter__then_gives_up(settings, make_flag, subscribe, receiver):
    settings.FLAGS_WEBHOOK_MAX_ATTEMPTS = 7
    receiver.script = [503]
    subscribe(["flag.killed"])
    flag_services.flag_kill(actor=SYSTEM, flag=make_flag("f"), reason="r", environments=["production"])
    at = timezone.now()
    while True:
        [delivery] = pump(at)
        if delivery.next_attempt_at is None:
            break
        at = delivery.next_attempt_at
    assert (delivery.status, delivery.attempts) == ("failed", 7)
    log = list(delivery.attempt_log.all())
    assert log[-1].next_attempt_at is None  # the last failure schedules nothing
    gaps = [(a.next_attempt_at - a.started_at).total_seconds() for a in log[:-1]]
    for attempt, gap in enumerate(gaps, start=1):
        full = min(80, 10 * 2 ** (attempt - 1))  # 10, 20, 40, 80, 80, 80
        assert full / 2 <= gap <= full, (attempt, gaps)
    assert len(set(gaps)) == len(gaps)  # jittered: no two alike


def test_repeated_failures__webhook_disabled_with_a_notice(settings, make_flag, subscribe, receiver, client):
    settings.FLAGS_WEBHOOK_DISABLE_AFTER = 3
    receiver.script = [500]
    webhook, _ = subscribe(["flag.killed"])
    flag = make_flag("f")
    for env in ("development", "staging"):
        flag_services.flag_kill(actor=SYSTEM, flag=flag, reason="r", environments=[env])
    at = timezone.now()
    pump(at)  # two attempts fail
    pump(at + dt.timedelta(seconds=10))  # the third: disabled
    webhook.refresh_from_db()
    assert not webhook.active and webhook.consecutive_failures == 3
    assert webhook.disabled_reason == "3 failed attempts in a row; last: HTTP 500"
    notice = AuditEntry.objects.get(action="webhook.disabled")
    assert notice.target_key == str(webhook.pk) and notice.reason == webhook.disabled_reason
    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"}
    # nothing more is sent while it is off
    flag_services.flag_kill(actor=SYSTEM, flag=flag, reason="r", environments=["production"])
    sent = len(receiver.received)
    pump(at + dt.timedelta(hours=1))
    assert len(receiver.received) == sent
    # turned back on: it resumes from now
    receiver.script = [200]
    services.webhook_update(actor=SYSTEM, webhook=webhook, data={"active": True})
    flag_services.flag_restore(actor=SYSTEM, flag=flag, environments=["production"])
    subscribe_all = Webhook.objects.get(pk=webhook.pk)
    assert subscribe_all.consecutive_failures == 0 and subscribe_all.disabled_reason == ""
    pump()
    assert len(receiver.received) == sent  # the restore is not a kill, and the kill before was skipped


def test_redeliver__sends_the_same_message_again(make_flag, subscribe, receiver):
    _, secret = subscribe(["flag.killed"])
    flag_services.flag_kill(actor=SYSTEM, flag=make_flag("f"), reason="r", environments=["production"])
    [delivery] = pump()
    services.delivery_redeliver(actor=SYSTEM, delivery=delivery)
    [again] = pump()
    assert again.pk == delivery.pk and again.attempts == 2 and again.status == "succeeded"
    first, second = receiver.verified(secret)
    assert first == second and receiver.received[0][0]["webhook-id"] == receiver.received[1][0]["webhook-id"]
    assert AuditEntry.objects.filter(action="webhook.redelivered").count() == 1


def test_ping__one_attempt_now__refused_connection_recorded(subscribe, receiver):
    webhook, secret = subscribe(["flag.killed"])
    delivery = services.webhook_ping(actor=SYSTEM, webhook=webhook)
    assert delivery.status == "succeeded" and receiver.verified(secret)[0]["type"] == "webhook.ping"
    dead, _ = subscribe(["flag.killed"], url="http://127.0.0.1:1/none")
    delivery = services.webhook_ping(actor=SYSTEM, webhook=dead)
    assert delivery.status == "failed" and delivery.attempts == 1 and "refused" in delivery.error.lower()
    assert Webhook.objects.get(pk=dead.pk).consecutive_failures == 0  # pings do not count


def test_private_targets_refused_when_not_allowed(settings, subscribe, receiver):
    settings.FLAGS_WEBHOOK_ALLOW_PRIVATE = False  # the production default
    webhook, _ = subscribe(["flag.killed"])
    delivery = services.webhook_ping(actor=SYSTEM, webhook=webhook)
    assert delivery.status == "failed" and "127.0.0.1, not a public address" in delivery.error
    assert receiver.received == []


def test_secret__encrypted_at_rest__rotation(settings, subscribe, receiver, make_flag):
    webhook, secret = subscribe(["flag.killed"])
    stored = Webhook.objects.get(pk=webhook.pk).secret_encrypted
    assert secret.removeprefix("whsec_") not in stored and crypto.decrypt(stored) == secret
    settings.FLAGS_WEBHOOK_KEY = "another-key"  # the dump without the key: unreadable
    with pytest.raises(InvalidToken):
        crypto.decrypt(stored)
    settings.FLAGS_WEBHOOK_KEY = f"another-key,{settings.SECRET_KEY}"  # key rotation: the old one still reads
    assert crypto.decrypt(stored) == secret
    new = services.webhook_rotate_secret(actor=SYSTEM, webhook=webhook)
    assert new != secret and AuditEntry.objects.filter(action="webhook.secret_rotated").exists()
    flag_services.flag_kill(actor=SYSTEM, flag=make_flag("f"), reason="r", environments=["production"])
    pump()
    assert receiver.verified(new)[0]["type"] == "flag.killed"
    with pytest.raises(WebhookVerificationError):
        receiver.verified(secret)
    assert "secret" not in json.dumps(AuditEntry.objects.get(action="webhook.created").after)


def test_created__hears_changes_from_then_on_only(make_flag, subscribe, receiver):
    flag = make_flag("f")
    flag_services.flag_kill(actor=SYSTEM, flag=flag, reason="before", environments=["production"])
    subscribe(["flag.killed"])
    flag_services.flag_kill(actor=SYSTEM, flag=flag, reason="after", environments=["staging"])
    pump()
    assert [json.loads(body)["data"]["reason"] for _, body in receiver.received] == ["after"]
