"""Record GrowthBook's gbstats outputs on fixed summary inputs, for test_stats.py to compare with.

gbstats pins numpy < 2, so it cannot live in the project's environment; run this in its own:

    python3 -m venv /tmp/gbstats && /tmp/gbstats/bin/pip install gbstats==0.8.0
    /tmp/gbstats/bin/python tests/experiments/gbstats_reference.py > tests/experiments/gbstats_vectors.json

It imports nothing from this project. The inputs are summary statistics per variant, the same
ones `experiments.stats.VariantSummary` takes.
"""

import json
from importlib.metadata import version

from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig, GaussianPrior
from gbstats.frequentist.tests import FrequentistConfig, SequentialConfig, SequentialTwoSidedTTest, TwoSidedTTest
from gbstats.models.statistics import (
    ProportionStatistic, RatioStatistic, RegressionAdjustedStatistic, SampleMeanStatistic,
)

ALPHA, TUNING, PRIOR_SD = 0.05, 5000, 0.3

CASES = [
    {"name": "revenue per user", "metric_type": "mean", "variants": [
        {"name": "control", "n": 4000, "sum": 81234.5, "sum_squares": 3.1e6},
        {"name": "treatment", "n": 3900, "sum": 83500.0, "sum_squares": 3.3e6}]},
    {"name": "conversion", "metric_type": "conversion", "variants": [
        {"name": "control", "n": 10000, "sum": 1000},
        {"name": "treatment", "n": 10000, "sum": 1080}]},
    {"name": "revenue per order", "metric_type": "ratio", "variants": [
        {"name": "control", "n": 3000, "sum": 60000.0, "sum_squares": 2.0e6, "denominator_sum": 6000.0,
         "denominator_sum_squares": 15000.0, "cross_sum": 150000.0},
        {"name": "treatment", "n": 3100, "sum": 64000.0, "sum_squares": 2.2e6, "denominator_sum": 6150.0,
         "denominator_sum_squares": 15500.0, "cross_sum": 160000.0}]},
    {"name": "sessions per user, CUPED", "metric_type": "mean", "cuped": True, "variants": [
        {"name": "control", "n": 5000, "sum": 50000.0, "sum_squares": 560000.0, "pre_sum": 49000.0,
         "pre_sum_squares": 530000.0, "pre_cross_sum": 540000.0},
        {"name": "treatment", "n": 5000, "sum": 51000.0, "sum_squares": 580000.0, "pre_sum": 49200.0,
         "pre_sum_squares": 532000.0, "pre_cross_sum": 550000.0}]},
]


def statistic(case, v):
    if case["metric_type"] == "conversion":
        return ProportionStatistic(n=v["n"], sum=v["sum"])
    post = SampleMeanStatistic(n=v["n"], sum=v["sum"], sum_squares=v["sum_squares"])
    if case["metric_type"] == "ratio":
        den = SampleMeanStatistic(n=v["n"], sum=v["denominator_sum"], sum_squares=v["denominator_sum_squares"])
        return RatioStatistic(n=v["n"], m_statistic=post, d_statistic=den, m_d_sum_of_products=v["cross_sum"])
    if case.get("cuped"):
        pre = SampleMeanStatistic(n=v["n"], sum=v["pre_sum"], sum_squares=v["pre_sum_squares"])
        return RegressionAdjustedStatistic(n=v["n"], post_statistic=post, pre_statistic=pre,
                                           post_pre_sum_of_products=v["pre_cross_sum"], theta=0)
    return post


def run(case):
    def stats():
        return [statistic(case, v) for v in case["variants"]]

    out = {}
    for kind in ("absolute", "relative"):
        r = TwoSidedTTest(*stats(), FrequentistConfig(alpha=ALPHA, difference_type=kind)).compute_result()
        out[f"frequentist_{kind}"] = {"expected": r.expected, "ci": r.ci, "p_value": r.p_value}
        r = SequentialTwoSidedTTest(*stats(), SequentialConfig(alpha=ALPHA, difference_type=kind,
                                                               sequential_tuning_parameter=TUNING)).compute_result()
        out[f"sequential_{kind}"] = {"expected": r.expected, "ci": r.ci, "p_value": r.p_value}
    a, b = stats()
    test = TwoSidedTTest(a, b, FrequentistConfig(alpha=ALPHA))
    if isinstance(test.stat_a, RegressionAdjustedStatistic):
        out["theta"] = test.stat_a.theta
    for label, prior in (("bayesian_flat", GaussianPrior()),
                         ("bayesian_prior", GaussianPrior(mean=0, variance=PRIOR_SD**2, proper=True))):
        r = EffectBayesianABTest(*stats(), EffectBayesianConfig(alpha=ALPHA, prior_effect=prior)).compute_result()
        out[label] = {"expected": r.expected, "ci": r.ci, "chance_to_win": r.chance_to_win,
                      "risk_control": r.risk[0], "risk_treatment": r.risk[1]}
    return out


if __name__ == "__main__":
    print(json.dumps({"gbstats": version("gbstats"), "alpha": ALPHA, "sequential_tuning": TUNING,
                      "prior_sd": PRIOR_SD, "cases": [dict(case, gbstats=run(case)) for case in CASES]}, indent=1))
