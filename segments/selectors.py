"""Segment reads, and the one conversion from stored conditions to engine rules."""

from feature_flag_client import engine

from flags.errors import NotFound
from projects import scope
from segments.models import Segment


def normalize_conditions(conditions):
    """Stored conditions -> rule list. Shorthand {"plan": "premium"} means custom-field equals
    (a list value means `in`); a list is already the full rule form. The engine's own conversion."""
    return engine.segment_rules(conditions)


def segment_list():
    return Segment.objects.order_by("key")


def segment_get(key):
    segment = Segment.objects.filter(key=key).first()
    if segment is None:
        raise NotFound(f"Segment '{key}' not found.")
    return segment


def segment_rules_map(*, project=None):
    """{segment key: normalized rule list} of a project (default: the current one): what the
    engine's validator and compiler consume."""
    segments = Segment.all_objects.filter(project_id=project or scope.current()).only("key", "conditions")
    return {s.key: normalize_conditions(s.conditions) for s in segments}


def segment_conditions_map():
    """{segment key: stored conditions} for the engine's validator (existence and cycle checks)."""
    return {s.key: s.conditions for s in Segment.objects.only("key", "conditions")}


def segment_data(segment):
    return {
        "key": segment.key,
        "name": segment.name,
        "description": segment.description,
        "conditions": segment.conditions,
        "createdAt": segment.created_at.isoformat() if segment.created_at else None,
        "updatedAt": segment.updated_at.isoformat() if segment.updated_at else None,
    }
