"""Which audit actions a subscriber hears about, and the message bodies (Standard Webhooks JSON or a
Slack-compatible message). An action not named here (a future one included) matches no event."""

import json

FLAG_CHANGED = "flag.changed"
EVENTS = {
    FLAG_CHANGED: "A flag was created, edited, toggled, archived, unarchived or deleted",
    "flag.killed": "A kill switch turned a flag off",
    "flag.restored": "A killed flag was restored",
    "segment.changed": "A segment was created, edited or deleted",
    "change_request.opened": "A change request was opened",
    "change_request.approved": "A change request was approved",
    "change_request.applied": "A change request was applied",
    "change_request.closed": "A change request was rejected or withdrawn, or ran into a conflict",
    "scheduled_change.fired": "A scheduled change came due (applied, skipped or failed)",
    "environment.protection_changed": "An environment was protected or unprotected, or its required approvals "
                                      "changed (four eyes switched on or off)",
}
PING = "webhook.ping"

ACTION_EVENTS = {
    **dict.fromkeys(("flag.created", "flag.updated", "flag.toggled", "flag.archived", "flag.unarchived",
                     "flag.deleted"), FLAG_CHANGED),
    "flag.killed": "flag.killed",
    "flag.restored": "flag.restored",
    **dict.fromkeys(("segment.created", "segment.updated", "segment.deleted"), "segment.changed"),
    "change_request.opened": "change_request.opened",
    "change_request.approved": "change_request.approved",
    "change_request.applied": "change_request.applied",
    **dict.fromkeys(("environment.protected", "environment.unprotected"), "environment.protection_changed"),
    **dict.fromkeys(("change_request.rejected", "change_request.withdrawn", "change_request.conflict"),
                    "change_request.closed"),
    # the scheduler (branch h-schedule) audits a due change as the flag's own entry plus these
    # outcomes; "scheduled_change.fired"/"schedule.applied" join by name when written
    **dict.fromkeys(("scheduled_change.fired", "schedule.applied", "schedule.skipped", "schedule.failed"),
                    "scheduled_change.fired"),
}


def event_for(action):
    return ACTION_EVENTS.get(action)


def entry_data(entry):
    return {
        "id": entry.pk, "project": entry.project, "action": entry.action, "actor": entry.actor,
        "targetType": entry.target_type, "targetKey": entry.target_key, "environment": entry.environment,
        "before": entry.before, "after": entry.after, "reason": entry.reason,
        "createdAt": entry.created_at.isoformat(),
    }


def standard_body(event, data, timestamp):
    """The Standard Webhooks payload shape: {"type", "timestamp", "data"}."""
    return json.dumps({"type": event, "timestamp": timestamp.isoformat(), "data": data},
                      separators=(",", ":"), ensure_ascii=False)


def slack_text(event, data):
    if event == PING:
        return f"Flagsite test ping for webhook {data.get('webhook')}"
    where = f" in {data['environment']}" if data.get("environment") else ""
    verb = data["action"].split(".", 1)[-1].replace("_", " ")
    text = f"[{data['project']}] {data['targetType']} *{data['targetKey']}* {verb}{where} by {data['actor']}"
    return text + (f": {data['reason']}" if data.get("reason") else "")


def slack_body(event, data):
    """Slack's incoming-webhook shape (also accepted by Mattermost, Rocket.Chat, Discord's /slack)."""
    return json.dumps({"text": slack_text(event, data)}, ensure_ascii=False)


def body(format, event, data, timestamp):
    return slack_body(event, data) if format == "slack" else standard_body(event, data, timestamp)
