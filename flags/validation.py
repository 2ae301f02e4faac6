"""Input checks shared by the flag and segment services. Rules go through the engine's validator,
so what is accepted at write time is exactly what the engine can compile."""

import re

from feature_flag_client import engine

from flags.models import KEY_REGEX, Flag

KEY_RE = re.compile(KEY_REGEX)
MAX_TAGS = 50
MAX_TAG_LENGTH = 64


def add(fields, path, message):
    fields.setdefault(path, []).append(message)


def check_key(fields, key, path="key"):
    if not isinstance(key, str) or not KEY_RE.match(key):
        add(fields, path, "Use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit.")


def check_text(fields, path, value, *, required=False, max_length=None):
    if not isinstance(value, str):
        add(fields, path, "Must be a string.")
    elif required and not value.strip():
        add(fields, path, "This field is required.")
    elif max_length and len(value) > max_length:
        add(fields, path, f"At most {max_length} characters.")


def check_tags(fields, tags, path="tags"):
    if not isinstance(tags, (list, tuple)):
        add(fields, path, "Must be a list of strings.")
        return
    if len(tags) > MAX_TAGS:
        add(fields, path, f"At most {MAX_TAGS} tags.")
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_LENGTH:
            add(fields, f"{path}[{i}]", f"Must be a non-empty string of at most {MAX_TAG_LENGTH} characters.")


def check_kind_and_variants(fields, kind, variants):
    if kind not in Flag.Kind.values:
        add(fields, "kind", f"Must be one of: {', '.join(Flag.Kind.values)}.")
        return
    if not isinstance(variants, (list, tuple)):
        add(fields, "variants", "Must be a list of variants.")
        return
    if kind == Flag.Kind.BOOLEAN:
        if variants:
            add(fields, "variants", "Boolean flags have no variants; use kind 'multivariate'.")
        return
    if not variants:
        add(fields, "variants", "A multivariate flag needs at least one variant.")
        return
    for path, message in engine.validate_variants(list(variants)):
        add(fields, path, message[:1].upper() + message[1:])


def check_off_variant(fields, off_variant, *, kind, variants, path="offVariant"):
    """The engine's validator: blank, or one of a multivariate flag's variant keys."""
    for error_path, message in engine.validate_off_variant(off_variant, variants if isinstance(variants, list)
                                                           else list(variants or ()), kind, path=path):
        add(fields, error_path, message[:1].upper() + message[1:])


def check_bool(fields, path, value):
    if not isinstance(value, bool):
        add(fields, path, "Must be true or false.")


def check_rules(fields, rules, *, path="rules", segments, flags, flag_key=None, segment_key=None):
    """The engine's validator. segments: {key: conditions}; flags: {key: rules of every environment}."""
    if not isinstance(rules, list) and not (segment_key is not None and isinstance(rules, dict)):
        add(fields, path, "Must be a list of rules.")
        return
    for rule_path, message in engine.validate_rules(rules, segments=segments, flags=flags, flag_key=flag_key,
                                                    segment_key=segment_key, path=path):
        add(fields, rule_path, message[:1].upper() + message[1:])
