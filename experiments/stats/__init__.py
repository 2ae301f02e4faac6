"""The experiments statistics engine: pure numpy/scipy, no Django, on summary statistics per
variant (users, sum, sum of squares; ratio and CUPED columns when used). docs/statistics.md
explains every method, its assumptions and references.

    from experiments.stats import VariantSummary, analyze_metric, srm_check, verdict
    result = analyze_metric(metric_type="conversion", variants=[
        VariantSummary("control", n=10_000, sum=1_000),
        VariantSummary("treatment", n=10_000, sum=1_080),
    ])
    verdict(result, "treatment")  # 'treatment is better than control with 96% chance (+8.0%, ...)'
"""

from experiments.stats.analysis import (
    Comparison, MetricResult, VariantResult, analyze_metric, more_users_needed, verdict,
)
from experiments.stats.bayesian import Posterior, posterior
from experiments.stats.data import CupedAdjustment, MetricType, Moments, VariantSummary, cuped, moments
from experiments.stats.frequentist import (
    DEFAULT_SEQUENTIAL_TUNING, Interval, holm, sequential_multiplier, sequential_p_value,
)
from experiments.stats.group_sequential import GroupSequentialResult, boundaries, group_sequential_test
from experiments.stats.power import conversion_sample_size, sample_size_per_variant
from experiments.stats.srm import SRM_THRESHOLD, SrmResult, srm_check

__all__ = [
    "Comparison", "CupedAdjustment", "GroupSequentialResult", "boundaries", "group_sequential_test", "DEFAULT_SEQUENTIAL_TUNING", "Interval", "MetricResult", "MetricType",
    "Moments", "Posterior", "SRM_THRESHOLD", "SrmResult", "VariantResult", "VariantSummary", "analyze_metric",
    "conversion_sample_size", "cuped", "holm", "more_users_needed", "moments", "posterior",
    "sample_size_per_variant", "sequential_multiplier", "sequential_p_value", "srm_check", "verdict",
]
