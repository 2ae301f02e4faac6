"""Unleash-compatible bucketing: the one hashing utility shared by server and SDK."""

import mmh3

VARIANT_SEED = 86028157

_hash = mmh3.hash


def bucket(salt, identifier):
    """1..100 bucket of an identifier for a salt (usually the flag key)."""
    return _hash(f"{salt}:{identifier}", 0, False) % 100 + 1


def variant_bucket(salt, identifier, total_weight):
    """1..total_weight position used to walk cumulative variant weights."""
    return _hash(f"{salt}:{identifier}", VARIANT_SEED, False) % total_weight + 1
