"""Unleash-compatible bucketing: the one hashing utility shared by server and SDK."""

import mmh3

VARIANT_SEED = 86028157

_mmh3_hash = mmh3.hash


def _hash(text, seed=0, signed=True):
    """mmh3.hash of a str, for any str.

    mmh3 (5.x) crashes the whole process with a segmentation fault when the str holds a lone
    surrogate such as "\\ud800", which a JSON body can carry ("\\ud800" is a valid JSON escape) and
    application code can pass to the SDK. Such a str is hashed as its UTF-8 bytes with the surrogate
    encoded as is ("surrogatepass"); every other str hashes exactly as before (mmh3 hashes a str as
    its UTF-8 bytes), and ASCII, the common case, takes the direct call.
    """
    if text.isascii():
        return _mmh3_hash(text, seed, signed)
    return _mmh3_hash(text.encode("utf-8", "surrogatepass"), seed, signed)


def bucket(salt, identifier):
    """1..100 bucket of an identifier for a salt (usually the flag key)."""
    return _hash(f"{salt}:{identifier}", 0, False) % 100 + 1


def variant_bucket(salt, identifier, total_weight):
    """1..total_weight position used to walk cumulative variant weights."""
    return _hash(f"{salt}:{identifier}", VARIANT_SEED, False) % total_weight + 1
