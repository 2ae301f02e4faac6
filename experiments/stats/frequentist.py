"""Frequentist comparisons of a treatment with the control: Welch's test at a fixed horizon,
always-valid (sequential) p-values and confidence sequences, and Holm's correction.

Where this agrees with an independent implementation, and where it deliberately differs:

- Absolute difference: Welch's t test with Welch-Satterthwaite degrees of freedom; p-value and
  confidence interval equal `scipy.stats.ttest_ind_from_stats(..., equal_var=False)` given the
  same means and (ddof=1) standard deviations (tests/experiments/test_stats.py checks it).
- Relative uplift ((treatment - control)/|control|): the delta method for a ratio of two independent
  means, Var ~= V_t/m_c^2 + m_t^2 V_c/m_c^4 (as GrowthBook's frequentist engine), with the same
  t quantile as the absolute interval. It is an approximation (a ratio of normals is not normal),
  so its interval can disagree with the absolute test near the boundary; the p-value reported is
  the absolute test's, which is exact under the usual CLT assumptions.
- Sequential: the normal-mixture always-valid confidence sequence of Howard, Ramdas, McAuliffe
  and Sekhon (2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences", eq. 14),
  also GrowthBook's "sequential testing", with its tuning parameter. Uses z (normal), not t:
  there is no t version. Peeking at any number of looks keeps the false positive rate <= alpha;
  the price is wider intervals than the fixed-horizon test and a rate often well below alpha
  when looks are few (see docs/statistics.md for the measured rates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from experiments.stats.data import Moments

DEFAULT_SEQUENTIAL_TUNING = 5000
"""The total number of users (both arms of a comparison) at which the confidence sequence is
tightest; GrowthBook's default. Set it near the sample size you expect at the end."""


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


NAN_INTERVAL = Interval(math.nan, math.nan)


@dataclass(frozen=True)
class Difference:
    """Treatment minus control, absolute and relative, with standard errors and Welch's df."""

    absolute: float
    absolute_se: float
    relative: float
    relative_se: float
    degrees_of_freedom: float
    n_total: int


def difference(control: Moments, treatment: Moments) -> Difference:
    vc, vt = control.variance_of_mean, treatment.variance_of_mean
    se = math.sqrt(vc + vt)
    denom = (vc**2 / (control.n - 1) if control.n > 1 else math.inf) + (vt**2 / (treatment.n - 1) if treatment.n > 1 else math.inf)
    df = (vc + vt) ** 2 / denom if denom > 0 else math.inf
    if control.mean != 0:
        # divided by |control|, so a metric whose mean is negative (net revenue after refunds) keeps
        # the sign of the absolute difference; the same as treatment/control - 1 when control > 0
        relative = (treatment.mean - control.mean) / abs(control.mean)
        relative_se = math.sqrt(vt / control.mean**2 + treatment.mean**2 * vc / control.mean**4)
    else:
        relative, relative_se = math.nan, math.nan
    return Difference(absolute=treatment.mean - control.mean, absolute_se=se, relative=relative,
                      relative_se=relative_se, degrees_of_freedom=df, n_total=control.n + treatment.n)


def welch_p_value(d: Difference) -> float:
    """Two-sided p-value of Welch's t test of `absolute == 0`."""
    if d.absolute_se == 0:
        return math.nan
    return float(2 * stats.t.sf(abs(d.absolute / d.absolute_se), d.degrees_of_freedom))


def welch_intervals(d: Difference, alpha: float) -> tuple[Interval, Interval]:
    """(absolute, relative) two-sided 1-alpha confidence intervals with Welch's t quantile."""
    q = float(stats.t.ppf(1 - alpha / 2, d.degrees_of_freedom))
    return (Interval(d.absolute - q * d.absolute_se, d.absolute + q * d.absolute_se),
            Interval(d.relative - q * d.relative_se, d.relative + q * d.relative_se))


def _rho_squared(alpha: float, tuning: float) -> float:
    """Mixture variance that makes the sequence tightest at `tuning` observations (Howard et al.
    2021, eq. 15; GrowthBook's `sequential_tuning_parameter`)."""
    return (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning


def sequential_multiplier(n_total: int, alpha: float, tuning: float = DEFAULT_SEQUENTIAL_TUNING) -> float:
    """Half-width of the always-valid 1-alpha confidence sequence in standard errors (the fixed
    test's counterpart is z_{1-alpha/2} = 1.96):
    sqrt(N * 2 (N rho^2 + 1) / (N^2 rho^2) * log(sqrt(N rho^2 + 1) / alpha))."""
    r2 = _rho_squared(alpha, tuning)
    n = float(n_total)
    return math.sqrt(n * 2 * (n * r2 + 1) / (n * n * r2) * math.log(math.sqrt(n * r2 + 1) / alpha))


def sequential_intervals(d: Difference, alpha: float, tuning: float = DEFAULT_SEQUENTIAL_TUNING) -> tuple[Interval, Interval]:
    m = sequential_multiplier(d.n_total, alpha, tuning)
    return (Interval(d.absolute - m * d.absolute_se, d.absolute + m * d.absolute_se),
            Interval(d.relative - m * d.relative_se, d.relative + m * d.relative_se))


def sequential_p_value(z, n_total, alpha: float = 0.05, tuning: float = DEFAULT_SEQUENTIAL_TUNING):
    """Always-valid p-value 1/M_N of the normal-mixture martingale (mSPRT) at this look:
    M_N = (1 + N rho^2)^(-1/2) exp(N rho^2 / (1 + N rho^2) * z^2 / 2), with z = estimate / se.
    `p <= alpha` exactly when 0 is outside `sequential_intervals` at the same alpha (rho is
    chosen from the configured alpha and tuning). Vectorised: z and n_total may be arrays. The
    running minimum over looks is also valid."""
    n = np.asarray(n_total, dtype=float)
    nr2 = n * _rho_squared(alpha, tuning)
    log_m = -0.5 * np.log1p(nr2) + nr2 / (1 + nr2) * np.square(z) / 2
    p = np.minimum(1.0, np.exp(-log_m))
    return float(p) if np.ndim(p) == 0 else p


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (controls the family-wise error rate at alpha for any
    dependence between the comparisons; uniformly more powerful than Bonferroni): sort
    ascending, adj_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)). NaN stays NaN and does not count."""
    idx = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(idx)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out
