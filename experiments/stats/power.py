"""Sample size: users per variant for a given power at a given relative effect.

Fixed horizon (two-sided z approximation, the textbook formula; Welch's t with thousands of users
is the same to three digits):
    n = (z_{1 - alpha/(2m)} + z_{power})^2 * (var_control + var_treatment) / delta^2,
with delta = relative_effect * control_mean and m comparisons (Bonferroni, conservative for
Holm). Sequential: the smallest n at which a single look at the end has that power against the
always-valid boundary, i.e. delta / se(n) = multiplier(2n) + z_{power} (solved with brentq);
looking earlier as well can only add power.
"""

from __future__ import annotations

import math

from scipy import optimize, stats

from experiments.stats.frequentist import DEFAULT_SEQUENTIAL_TUNING, sequential_multiplier


def sample_size_per_variant(*, control_mean: float, control_variance: float, relative_effect: float,
                            treatment_variance: float | None = None, alpha: float = 0.05, power: float = 0.8,
                            comparisons: int = 1, sequential: bool = False,
                            sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING) -> int:
    """Users per variant (control and each treatment) to detect `relative_effect` (0.05 = +5%)
    with probability `power`. `treatment_variance` defaults to the control's (for conversion
    metrics use `conversion_sample_size`, which knows it)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must be between 0 and 1, got {alpha!r}")
    if not 0 < power < 1:
        raise ValueError(f"power: must be between 0 and 1, got {power!r}")
    if comparisons < 1:
        raise ValueError(f"comparisons: must be at least 1, got {comparisons!r}")
    delta = relative_effect * control_mean
    if not (math.isfinite(delta) and delta != 0):
        raise ValueError(f"relative_effect: need a non-zero effect on a non-zero control mean, got {relative_effect!r} of {control_mean!r}")
    if not control_variance > 0:
        raise ValueError(f"control_variance: must be positive, got {control_variance!r}")
    variance = control_variance + (control_variance if treatment_variance is None else treatment_variance)
    a = alpha / comparisons
    z_power = float(stats.norm.ppf(power))
    if not sequential:
        n = (float(stats.norm.ppf(1 - a / 2)) + z_power) ** 2 * variance / delta**2
        return max(2, math.ceil(n))

    def gap(n: float) -> float:
        return abs(delta) / math.sqrt(variance / n) - sequential_multiplier(2 * n, a, sequential_tuning) - z_power

    hi = 2.0
    while gap(hi) < 0:
        hi *= 2
        if hi > 1e13:
            raise ValueError("relative_effect: too small to detect with any realistic sample size")
    if hi == 2.0:
        return 2
    return math.ceil(optimize.brentq(gap, hi / 2, hi, xtol=0.5))


def conversion_sample_size(*, rate: float, relative_effect: float, **kwargs) -> int:
    """`sample_size_per_variant` for a conversion rate: variances p(1-p) in each arm."""
    if not 0 < rate < 1:
        raise ValueError(f"rate: must be between 0 and 1, got {rate!r}")
    treated = rate * (1 + relative_effect)
    if not 0 < treated < 1:
        raise ValueError(f"relative_effect: {relative_effect!r} takes the rate {rate!r} outside (0, 1)")
    return sample_size_per_variant(control_mean=rate, control_variance=rate * (1 - rate), relative_effect=relative_effect,
                                   treatment_variance=treated * (1 - treated), **kwargs)
