"""Every write to webhooks, and delivery.

Following the audit log (architecture section 8): ``webhooks_dispatch`` locks each active
subscription's row, reads the audit entries after its ``cursor``, creates one Delivery per matching
entry and moves the cursor, all in one transaction: a crash before the commit enqueues nothing and
leaves the cursor, a second dispatcher waits on the lock and then starts from the new cursor, so
each entry is enqueued once (the unique constraint on (webhook, audit entry) says so again).
Entries never appear behind the cursor: audit_record holds the chain head's lock until its
transaction commits, so entries commit in id order.

Sending: an attempt is claimed first (attempts + 1, next_attempt_at pushed out by a lease, in its own
transaction), then the HTTP request runs outside any transaction, then the outcome is recorded: a
worker that dies mid-request leaves the delivery due again once the lease ends. Failures retry with
capped exponential backoff and jitter; FLAGS_WEBHOOK_DISABLE_AFTER failed attempts in a row disable
the subscription, with an audit entry saying why.
"""

import datetime as dt
import ipaddress
import logging
import random
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook as Signer

from audit.actor import Actor
from audit.models import AuditEntry
from audit.services import audit_record
from flags.errors import ValidationFailed
from flags.validation import add, check_text
from projects import scope
from webhooks import crypto, events
from webhooks.models import Delivery, DeliveryAttempt, Webhook

logger = logging.getLogger("flagsite.webhooks")
SYSTEM = Actor.system("webhooks")
EXCERPT = 500  # characters of a response body kept in the log
USER_AGENT = "Flagsite-Webhooks/1"


def webhook_data(webhook):
    """What the audit log records (never the secret)."""
    return {"id": webhook.pk, "name": webhook.name, "url": webhook.url, "events": webhook.events,
            "format": webhook.format, "active": webhook.active}


def _check(fields, data, partial):
    if "url" in data or not partial:
        url = data.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
            add(fields, "url", "Enter an http:// or https:// URL (at most 2000 characters).")
    if "events" in data or not partial:
        chosen = data.get("events")
        if not isinstance(chosen, list) or not chosen or not all(isinstance(e, str) for e in chosen):
            add(fields, "events", f"Choose one or more of: {', '.join(events.EVENTS)}.")
        else:
            for index, event in enumerate(chosen):
                if event not in events.EVENTS:
                    add(fields, f"events[{index}]", f"Unknown event; choose from: {', '.join(events.EVENTS)}.")
    if "format" in data and data["format"] not in Webhook.Format.values:
        add(fields, "format", f"One of: {', '.join(Webhook.Format.values)}.")
    if "name" in data:
        check_text(fields, "name", data["name"], max_length=200)
    if "active" in data and not isinstance(data["active"], bool):
        add(fields, "active", "Must be true or false.")


def webhook_create(*, actor, url, events, format=Webhook.Format.STANDARD, name="", active=True):
    """A subscription in the current project. Returns (webhook, secret): the secret in clear, once."""
    data = {"url": url, "events": events, "format": format, "name": name, "active": active}
    fields = {}
    _check(fields, data, partial=False)
    if fields:
        raise ValidationFailed(fields)
    secret = crypto.new_secret()
    with transaction.atomic():
        webhook = Webhook.objects.create(url=url, events=list(dict.fromkeys(events)), format=format, name=name,
                                         active=active, secret_encrypted=crypto.encrypt(secret))
        entry = audit_record(actor=actor, action="webhook.created", target_type="webhook",
                             target_key=str(webhook.pk), after=webhook_data(webhook))
        webhook.cursor = entry.pk  # hears of changes from now on, not the history
        webhook.save(update_fields=["cursor"])
    return webhook, secret


def webhook_update(*, actor, webhook, data):
    """url, events, format, name, active. Turning a subscription back on clears its failure count and
    resumes from now: what happened while it was off stays in the audit log, not in its queue."""
    fields = {}
    _check(fields, data, partial=True)
    if fields:
        raise ValidationFailed(fields)
    with transaction.atomic():
        webhook = Webhook.all_objects.select_for_update().get(pk=webhook.pk)
        before = webhook_data(webhook)
        reenabled = data.get("active") is True and not webhook.active
        for name in ("url", "events", "format", "name", "active"):
            if name in data:
                setattr(webhook, name, list(dict.fromkeys(data[name])) if name == "events" else data[name])
        if reenabled:
            webhook.consecutive_failures, webhook.disabled_at, webhook.disabled_reason = 0, None, ""
        webhook.save()
        entry = audit_record(actor=actor, action="webhook.updated", target_type="webhook",
                             target_key=str(webhook.pk), before=before, after=webhook_data(webhook),
                             project=webhook.project_id)
        if reenabled:
            webhook.cursor = entry.pk
            webhook.save(update_fields=["cursor"])
    return webhook


def webhook_delete(*, actor, webhook):
    with transaction.atomic():
        audit_record(actor=actor, action="webhook.deleted", target_type="webhook", target_key=str(webhook.pk),
                     before=webhook_data(webhook), project=webhook.project_id)
        webhook.delete()


def webhook_rotate_secret(*, actor, webhook):
    """A new secret, returned in clear once; the old one stops signing at once."""
    secret = crypto.new_secret()
    with transaction.atomic():
        Webhook.all_objects.filter(pk=webhook.pk).update(secret_encrypted=crypto.encrypt(secret),
                                                         updated_at=timezone.now())
        audit_record(actor=actor, action="webhook.secret_rotated", target_type="webhook",
                     target_key=str(webhook.pk), project=webhook.project_id)
    webhook.refresh_from_db()
    return secret


# ---- following the audit log ---------------------------------------------------------------------

def webhooks_dispatch(*, batch=500):
    """Enqueue a Delivery for every new matching audit entry of every active subscription. Returns
    the ids of the deliveries created (committed when this returns)."""
    created = []
    for pk in Webhook.all_objects.filter(active=True).values_list("pk", flat=True):
        while True:
            ids, more = _dispatch_one(pk, batch)
            created += ids
            if not more:
                break
    return created


def _dispatch_one(pk, batch):
    with transaction.atomic():
        # waits for a concurrent dispatcher, then reads the cursor it left (READ COMMITTED re-reads the row)
        webhook = Webhook.all_objects.select_for_update().filter(pk=pk, active=True).first()
        if webhook is None:
            return [], False
        entries = list(AuditEntry.objects.filter(pk__gt=webhook.cursor, project=webhook.project_id)
                       .order_by("pk")[:batch])
        if not entries:
            return [], False
        deliveries = []
        for entry in entries:
            event = events.event_for(entry.action)
            if event in webhook.events:
                deliveries.append(Delivery(
                    webhook=webhook, audit_entry_id=entry.pk, event=event, next_attempt_at=entry.created_at,
                    message_id=f"msg_{webhook.pk}_{entry.pk}",
                    body=events.body(webhook.format, event, events.entry_data(entry), entry.created_at)))
        Delivery.objects.bulk_create(deliveries)
        webhook.cursor = entries[-1].pk
        webhook.save(update_fields=["cursor"])
        ids = [d.pk for d in deliveries] if deliveries else []
        if ids and ids[0] is None:  # backends that return no ids from bulk_create
            ids = list(Delivery.objects.filter(webhook=webhook, audit_entry_id__in=[d.audit_entry_id
                                                                                     for d in deliveries])
                       .values_list("pk", flat=True))
    return ids, len(entries) == batch


def deliveries_due(*, now=None, limit=500):
    """Ids of deliveries whose next attempt is due, oldest first."""
    now = now or timezone.now()
    return list(Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now,
                                        webhook__active=True)
                .order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:limit])


# ---- sending -------------------------------------------------------------------------------------

def backoff_seconds(attempt):
    """After the attempt-th failure: base * 2^(attempt-1), capped, with "equal jitter" (half fixed,
    half random) so many subscribers failing at once do not retry in lockstep."""
    delay = min(settings.FLAGS_WEBHOOK_BACKOFF_MAX_SECONDS,
                settings.FLAGS_WEBHOOK_BACKOFF_SECONDS * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def _lease():
    return dt.timedelta(seconds=settings.FLAGS_WEBHOOK_TIMEOUT_SECONDS + 30)


def delivery_send(*, delivery_id, now=None):
    """One attempt of a due delivery, if this caller wins the claim. Returns the updated delivery,
    or None when it was not due, already claimed, finished, or its webhook is off."""
    now = now or timezone.now()
    with transaction.atomic():
        delivery = (Delivery.objects.select_for_update(skip_locked=True, of=("self",)).select_related("webhook")
                    .filter(pk=delivery_id, status=Delivery.Status.PENDING).first())
        if delivery is None or (delivery.next_attempt_at and delivery.next_attempt_at > now):
            return None
        if not delivery.webhook.active and delivery.event != events.PING:
            return None
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.next_attempt_at = now + _lease()  # claimed: nobody else sends it until the lease ends
        delivery.save(update_fields=["attempts", "last_attempt_at", "next_attempt_at"])
    outcome = _post(delivery)
    return _record(delivery, now, **outcome)


def _post(delivery):
    """The HTTP request (outside any transaction): signed per the Standard Webhooks spec."""
    webhook = delivery.webhook
    sent_at = dt.datetime.now(dt.UTC)  # the real clock: receivers check it against theirs
    signature = Signer(crypto.decrypt(webhook.secret_encrypted)).sign(delivery.message_id, sent_at, delivery.body)
    request = urllib.request.Request(webhook.url, data=delivery.body.encode(), method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        "webhook-id": delivery.message_id, "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signature,
    })
    started = time.monotonic()
    status, excerpt, error = None, "", ""
    refused = _private_target(webhook.url)
    if refused:
        return {"status": None, "excerpt": "", "error": refused, "latency": 0, "ok": False}
    try:
        with _opener.open(request, timeout=settings.FLAGS_WEBHOOK_TIMEOUT_SECONDS) as response:
            status, excerpt = response.status, response.read(4 * EXCERPT).decode("utf-8", "replace")[:EXCERPT]
    except urllib.error.HTTPError as exc:  # a non-2xx answer (redirects are not followed)
        status, excerpt = exc.code, (exc.read(4 * EXCERPT) or b"").decode("utf-8", "replace")[:EXCERPT]
        error = f"HTTP {exc.code}"
    except (TimeoutError, OSError, ValueError) as exc:  # URLError, refused, reset, timed out, bad URL
        reason = getattr(exc, "reason", exc)
        error = (f"timed out after {settings.FLAGS_WEBHOOK_TIMEOUT_SECONDS}s"
                 if isinstance(reason, TimeoutError) or "timed out" in str(reason) else f"{type(exc).__name__}: {reason}")
    latency = round((time.monotonic() - started) * 1000)
    return {"status": status, "excerpt": excerpt, "error": error[:500], "latency": latency,
            "ok": status is not None and 200 <= status < 300}


def _private_target(url):
    """Under FLAGS_WEBHOOK_ALLOW_PRIVATE=false (the default with FLAGS_PRODUCTION): why a URL whose
    host resolves to a loopback, private or link-local address is refused (a subscription must not
    reach the server's own network), else None."""
    if settings.FLAGS_WEBHOOK_ALLOW_PRIVATE:
        return None
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0].split("%")[0] for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    for address in sorted(addresses):
        if not ipaddress.ip_address(address).is_global:
            return f"refused: {host} is {address}, not a public address (FLAGS_WEBHOOK_ALLOW_PRIVATE)"
    return None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is the receiver's answer, recorded as a failure: never follow it elsewhere


_opener = urllib.request.build_opener(_NoRedirects)


def _record(delivery, now, *, status, excerpt, error, latency, ok):
    ping = delivery.event == events.PING
    retry_at = None
    with transaction.atomic():
        webhook = Webhook.all_objects.select_for_update().filter(pk=delivery.webhook_id).first()
        if webhook is None:  # deleted while the request was out: its log went with it
            return delivery
        delivery.latency_ms, delivery.response_status = latency, status
        delivery.response_excerpt, delivery.error = excerpt, error
        if ok:
            delivery.status, delivery.next_attempt_at = Delivery.Status.SUCCEEDED, None
        elif ping or delivery.attempts >= settings.FLAGS_WEBHOOK_MAX_ATTEMPTS:
            delivery.status, delivery.next_attempt_at = Delivery.Status.FAILED, None
        else:
            retry_at = now + dt.timedelta(seconds=backoff_seconds(delivery.attempts))
            delivery.next_attempt_at = retry_at
        delivery.save(update_fields=["latency_ms", "response_status", "response_excerpt", "error", "status",
                                     "next_attempt_at"])
        DeliveryAttempt.objects.create(delivery=delivery, number=delivery.attempts, started_at=now,
                                       latency_ms=latency, response_status=status, response_excerpt=excerpt,
                                       error=error, succeeded=ok, next_attempt_at=retry_at)
        if not ping:  # a test ping tells the user something; it does not count towards disabling
            webhook.consecutive_failures = 0 if ok else webhook.consecutive_failures + 1
            webhook.save(update_fields=["consecutive_failures"])
            if webhook.active and webhook.consecutive_failures >= settings.FLAGS_WEBHOOK_DISABLE_AFTER:
                _disable(webhook, now, f"{webhook.consecutive_failures} failed attempts in a row; last: "
                                       f"{error or f'HTTP {status}'}")
                delivery.refresh_from_db()
    if retry_at is not None:
        transaction.on_commit(lambda: _retry_later(delivery.pk, retry_at, now))
    return delivery


def _disable(webhook, now, reason):
    webhook.active, webhook.disabled_at, webhook.disabled_reason = False, now, reason
    webhook.save(update_fields=["active", "disabled_at", "disabled_reason"])
    Delivery.objects.filter(webhook=webhook, status=Delivery.Status.PENDING).update(
        status=Delivery.Status.FAILED, next_attempt_at=None, error=f"webhook disabled: {reason}"[:500])
    audit_record(actor=SYSTEM, action="webhook.disabled", target_type="webhook", target_key=str(webhook.pk),
                 after=webhook_data(webhook), reason=reason, project=webhook.project_id)
    logger.warning("webhook %s (%s) disabled: %s", webhook.pk, webhook.url, reason)


def _retry_later(delivery_id, retry_at, now):
    from webhooks import trigger

    trigger.send_later(delivery_id, max(0.0, (retry_at - now).total_seconds()))


def delivery_redeliver(*, actor, delivery):
    """Send a delivery again (same webhook-id and body), whatever became of it; audited."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().select_related("webhook").get(pk=delivery.pk)
        delivery.status, delivery.next_attempt_at = Delivery.Status.PENDING, timezone.now()
        delivery.save(update_fields=["status", "next_attempt_at"])
        audit_record(actor=actor, action="webhook.redelivered", target_type="webhook",
                     target_key=str(delivery.webhook_id), after={"delivery": delivery.pk,
                                                                 "message_id": delivery.message_id},
                     project=delivery.webhook.project_id)
        transaction.on_commit(lambda: _retry_later(delivery.pk, delivery.next_attempt_at,
                                                   delivery.next_attempt_at))
    return delivery


def webhook_ping(*, actor, webhook):
    """A test message, sent now, once (no retries); returns the delivery with its outcome."""
    now = timezone.now()
    data = {"webhook": webhook.pk, "project": webhook.project_id, "actor": actor.label}
    delivery = Delivery.objects.create(webhook=webhook, event=events.PING, next_attempt_at=now,
                                       message_id=f"msg_{webhook.pk}_ping_{int(now.timestamp() * 1e6)}",
                                       body=events.body(webhook.format, events.PING, data, now))
    delivery.webhook = webhook
    return delivery_send(delivery_id=delivery.pk, now=now) or delivery


def in_project(webhook):
    """A subscription of the current project (for views that got it by id)."""
    return webhook.project_id == scope.current()


def has_active():
    return Webhook.all_objects.filter(active=True).exists()
