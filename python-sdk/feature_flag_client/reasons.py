"""Engine results in OpenFeature terms: reasons and variants (shared by OFREP and the provider).

Reasons (OpenFeature spec, "Resolution Details"; OFREP service/openapi.yaml lists STATIC,
TARGETING_MATCH, SPLIT, DISABLED, UNKNOWN as its examples):

- ``KILLED`` and ``DISABLED`` -> ``DISABLED`` (the flag is off for everyone).
- ``RULE_MISMATCH`` -> ``DEFAULT``: the flag is on, targeting ran and did not match this user, so the
  flag's off answer (the fallback) is served. OpenFeature defines DEFAULT as "the resolved value fell
  back to a pre-configured value (no dynamic evaluation occurred or dynamic evaluation yielded no
  result)", which is exactly this; TARGETING_MATCH would claim a rule matched, and OFREP's own
  ADR 0006 example answers DEFAULT for a fallback.
- ``TARGETING_MATCH``, ``SPLIT`` and ``STATIC`` keep their names.
- ``FLAG_NOT_FOUND`` is an error, not a reason (OFREP: 404 with errorCode FLAG_NOT_FOUND).

Variants: a multivariate flag that is on answers its variant's key. Every other answer names a
variant too, so clients can always report one: a boolean flag answers ``"on"`` / ``"off"``, a
multivariate flag that is off answers ``"off"``.
"""

REASONS = {
    "KILLED": "DISABLED",
    "DISABLED": "DISABLED",
    "RULE_MISMATCH": "DEFAULT",
    "TARGETING_MATCH": "TARGETING_MATCH",
    "SPLIT": "SPLIT",
    "STATIC": "STATIC",
}
OPENFEATURE_REASONS = ("STATIC", "TARGETING_MATCH", "SPLIT", "DISABLED", "DEFAULT", "UNKNOWN")
ON, OFF = "on", "off"


def openfeature_reason(evaluation):
    return REASONS.get(evaluation.reason, "UNKNOWN")


def openfeature_variant(evaluation):
    if evaluation.variant is not None:
        return evaluation.variant
    return ON if evaluation.enabled else OFF


def is_multivariate(snapshot, flag_key):
    compiled = snapshot.flags.get(flag_key)
    return compiled is not None and compiled.state.get("kind") == "multivariate"
