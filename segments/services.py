"""Every write to segments. Segments are global: a change bumps every environment's version."""

from django.db import transaction
from feature_flag_client.engine import segment_refs

from audit.services import audit_record
from flags import protection
from flags.errors import Conflict, ValidationFailed
from flags.models import Environment
from flags.selectors import flags_referencing
from flags.services import _after_commit, _bump, prerequisite_map
from flags.validation import add, check_key, check_rules, check_text
from projects import policy
from segments.models import Segment
from segments.selectors import segment_conditions_map, segment_data, segment_rules_map

SEGMENT_FIELDS = ("name", "description", "conditions")


def check_conditions(fields, conditions, *, segment_key):
    """Shorthand {"field": value} (custom equals / in) or a full rule list, checked by the engine."""
    if not isinstance(conditions, (dict, list)):
        add(fields, "conditions", "Must be an object ({\"plan\": \"premium\"}) or a list of rules.")
        return
    segments = {**segment_conditions_map(), segment_key: conditions}
    check_rules(fields, conditions, path="conditions", segments=segments, flags=prerequisite_map(),
                segment_key=segment_key)


def _check_fields(fields, data, *, segment_key):
    if "name" in data:
        check_text(fields, "name", data["name"], required=True, max_length=200)
    if "description" in data:
        check_text(fields, "description", data["description"], max_length=10_000)
    if "conditions" in data:
        check_conditions(fields, data["conditions"], segment_key=segment_key)


def segment_create(*, actor, key, name, description="", conditions=None):
    conditions = [] if conditions is None else conditions
    fields = {}
    check_key(fields, key)
    _check_fields(fields, {"name": name, "description": description, "conditions": conditions}, segment_key=key)
    if fields:
        raise ValidationFailed(fields)
    policy.require(actor, "segments.add_segment")  # segments serve every environment
    if Segment.objects.filter(key=key).exists():
        raise Conflict(f"A segment with key '{key}' already exists.", fields={"key": ["Already exists."]})
    with transaction.atomic():
        segment = Segment.objects.create(key=key, name=name, description=description, conditions=conditions)
        versions = _bump(list(Environment.objects.all()))
        audit_record(actor=actor, action="segment.created", target_type="segment", target_key=key,
                     after=segment_data(segment))
        _after_commit(versions, "updated", segment_key=key)
    return segment


def segment_update(*, actor, segment, data):
    """Change name, description and/or conditions. The key is immutable."""
    fields = {}
    if not isinstance(data, dict):
        raise ValidationFailed({"non_field_errors": ["Expected an object."]})
    for name in sorted(set(data) - set(SEGMENT_FIELDS)):
        if name == "key":
            if data["key"] != segment.key:
                add(fields, "key", "Segment keys cannot be changed.")
        else:
            add(fields, name, "Unknown field.")
    _check_fields(fields, data, segment_key=segment.key)
    if fields:
        raise ValidationFailed(fields)
    policy.require(actor, "segments.change_segment")
    with transaction.atomic():
        segment = Segment.objects.select_for_update().get(pk=segment.pk)
        changes = {k: data[k] for k in SEGMENT_FIELDS if k in data and data[k] != getattr(segment, k)}
        if not changes:
            return segment
        if "conditions" in changes:  # the four-eyes rule (flags/protection.py): name and description serve nothing
            protection.require_segment_approval(segment.key, segment_rules_map(), "changing its conditions")
        before = segment_data(segment)
        for k, v in changes.items():
            setattr(segment, k, v)
        segment.save()
        versions = _bump(list(Environment.objects.all()))
        audit_record(actor=actor, action="segment.updated", target_type="segment", target_key=segment.key,
                     before=before, after=segment_data(segment))
        _after_commit(versions, "updated", segment_key=segment.key)
    return segment


def segment_delete(*, actor, segment):
    """Delete a segment; refused (Conflict) while a flag's rules reference it."""
    policy.require(actor, "segments.delete_segment")
    protection.require_segment_approval(segment.key, segment_rules_map(), "deleting it")
    referrers = flags_referencing(segment_key=segment.key) + [
        f"segment {key}" for key, rules in segment_rules_map().items()
        if key != segment.key and segment.key in segment_refs(rules)
    ]
    if referrers:
        raise Conflict(f"Segment '{segment.key}' is used by {', '.join(referrers)}; remove it from their rules first.",
                       fields={"key": [f"Referenced by {', '.join(referrers)}."]})
    with transaction.atomic():
        segment = Segment.objects.select_for_update().get(pk=segment.pk)
        before = segment_data(segment)
        key = segment.key
        segment.delete()
        versions = _bump(list(Environment.objects.all()))
        audit_record(actor=actor, action="segment.deleted", target_type="segment", target_key=key, before=before)
        _after_commit(versions, "updated", segment_key=key)
