"""Bayesian comparison on the relative uplift, with a Gaussian approximation (as GrowthBook's
gbstats since 2023: the delta-method relative uplift and its standard error as the likelihood).

Prior: flat (uninformative) by default; `prior_sd` (e.g. 0.3, GrowthBook's "proper prior"
default) adds a weak Normal(prior_mean, prior_sd^2) prior on the relative uplift, which shrinks
noisy early estimates towards `prior_mean`. Posterior (conjugate normal):
precision = 1/se^2 + 1/prior_sd^2, mean = (estimate/se^2 + prior_mean/prior_sd^2) / precision.

With the flat prior, chance to beat control = Phi(estimate / se) = 1 - one-sided z p-value of the
relative uplift; it is not corrected for multiple variants (no Bayesian engine does), which
docs/statistics.md states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Posterior:
    mean: float
    sd: float
    chance_to_beat_control: float
    expected_loss: float
    """E[max(0, -delta)] in relative units (direction-aware): what shipping the treatment costs on
    average if it is in fact worse."""
    expected_loss_control: float
    """E[max(0, delta)]: what keeping the control costs if the treatment is in fact better."""
    credible_low: float
    credible_high: float


def posterior(estimate: float, se: float, *, alpha: float = 0.05, higher_is_better: bool = True,
              prior_mean: float = 0.0, prior_sd: float | None = None) -> Posterior:
    if not (se > 0 and math.isfinite(se) and math.isfinite(estimate)):
        nan = math.nan
        return Posterior(nan, nan, nan, nan, nan, nan, nan)
    if prior_sd is None:
        mean, sd = estimate, se
    else:
        if not prior_sd > 0:
            raise ValueError(f"prior_sd: must be positive, got {prior_sd!r}")
        precision = 1 / se**2 + 1 / prior_sd**2
        mean = (estimate / se**2 + prior_mean / prior_sd**2) / precision
        sd = math.sqrt(1 / precision)
    # delta = the improvement in the good direction.
    good = mean if higher_is_better else -mean
    ratio = good / sd
    chance = float(stats.norm.cdf(ratio))
    # E[max(0, -D)] for D ~ N(good, sd^2) = sd phi(good/sd) - good Phi(-good/sd); E[max(0, D)] likewise.
    loss_treatment = float(sd * stats.norm.pdf(ratio) - good * stats.norm.cdf(-ratio))
    loss_control = float(sd * stats.norm.pdf(ratio) + good * stats.norm.cdf(ratio))
    q = float(stats.norm.ppf(1 - alpha / 2))
    return Posterior(mean=mean, sd=sd, chance_to_beat_control=chance, expected_loss=loss_treatment,
                     expected_loss_control=loss_control, credible_low=mean - q * sd, credible_high=mean + q * sd)
