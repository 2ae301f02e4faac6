"""The Flagsite rule engine: one evaluator for the server and the SDK.

Pure Python, no framework, no I/O at evaluation time. See docs/rules.md for the rule format.
"""

from .bucketing import bucket, variant_bucket
from .compiler import (
    CompiledFlag,
    Snapshot,
    compile_flag,
    compile_snapshot,
    iter_rules,
    prerequisite_refs,
    segment_refs,
    segment_rules,
)
from .explain import Explanation, explain
from .model import Evaluation, Reason
from .unleash import import_unleash, unleash_context
from .validation import validate_off_variant, validate_rules, validate_variants

__all__ = [
    "CompiledFlag",
    "Evaluation",
    "Explanation",
    "Reason",
    "Snapshot",
    "bucket",
    "compile_flag",
    "compile_snapshot",
    "explain",
    "import_unleash",
    "iter_rules",
    "prerequisite_refs",
    "segment_refs",
    "unleash_context",
    "segment_rules",
    "validate_off_variant",
    "validate_rules",
    "validate_variants",
    "variant_bucket",
]
