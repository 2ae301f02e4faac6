"""Inputs of the engine: per-variant summary statistics, their validation, and the per-user
moments (mean, variance) derived from them, including ratio metrics and CUPED.

Everything here works on sums, never on per-user rows: one SQL aggregate per variant
(`COUNT(*), SUM(v), SUM(v*v)`, plus the denominator and pre-exposure columns when used) feeds it,
so the cost does not grow with the number of users.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from decimal import Decimal
from enum import Enum
from typing import Sequence


class MetricType(str, Enum):
    """How a user's value is defined and summarised.

    - `conversion`: 0/1 per user (did the user send the event within the window); `sum` is the
      number of converted users and `sum_squares` may be omitted (it equals `sum`).
    - `mean`: any number per user (count of events, sum of values, revenue); the statistic is the
      mean per exposed user.
    - `ratio`: a numerator and a denominator per user (e.g. revenue per order, clicks per
      session); the statistic is sum(numerator) / sum(denominator), its variance by the delta
      method.
    """

    CONVERSION = "conversion"
    MEAN = "mean"
    RATIO = "ratio"


@dataclass(frozen=True)
class VariantSummary:
    """Sums over the users exposed to one variant.

    `n` users; `sum` and `sum_squares` of each user's metric value (the numerator for ratio
    metrics). Ratio metrics add the per-user denominator: `denominator_sum`,
    `denominator_sum_squares` and `cross_sum` (sum of numerator * denominator). CUPED adds each
    user's pre-exposure covariate (usually the same metric over a period before first exposure;
    0 for users who have none): `pre_sum`, `pre_sum_squares` and `pre_cross_sum` (sum of value *
    pre-exposure value).
    """

    name: str
    n: int
    sum: float
    sum_squares: float | None = None
    denominator_sum: float | None = None
    denominator_sum_squares: float | None = None
    cross_sum: float | None = None
    pre_sum: float | None = None
    pre_sum_squares: float | None = None
    pre_cross_sum: float | None = None

    def __post_init__(self):
        """Accept what database drivers and numpy hand over: PostgreSQL's SUM() of integers is a
        Decimal, numpy gives int64/float64. Numbers become int (n) and float (sums); anything
        else is left for `validate_variants` to reject by name."""
        if isinstance(self.n, numbers.Integral) and not isinstance(self.n, bool):
            object.__setattr__(self, "n", int(self.n))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("name", "n") and is_number(value):
                object.__setattr__(self, f.name, float(value))


def is_number(value) -> bool:
    """A real number (int, float, Decimal, numpy scalar), not a bool."""
    return isinstance(value, (numbers.Real, Decimal)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Moments:
    """One variant's estimate: `mean` (value per user, or the ratio), `variance` per user (so the
    variance of the mean is `variance / n`) and `n` users. After CUPED, the adjusted values."""

    n: int
    mean: float
    variance: float

    @property
    def variance_of_mean(self) -> float:
        return self.variance / self.n


def _finite(where: str, value) -> float:
    if not is_number(value) or not math.isfinite(value):
        raise ValueError(f"{where}: must be a finite number, got {value!r}")
    return float(value)


def validate_variants(variants: Sequence[VariantSummary], metric_type: MetricType, *, cuped: bool) -> None:
    """Raise ValueError naming the field (`variants[1].n ('treatment')`) for anything the engine
    cannot analyse: fewer than two variants, duplicate names, n < 1, negative or impossible
    counts, sums of squares smaller than the sums allow, missing ratio or CUPED columns."""
    metric_type = MetricType(metric_type)
    if len(variants) < 2:
        raise ValueError(f"variants: need a control and at least one treatment, got {len(variants)}")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variants: names must be unique, got {names}")
    for i, v in enumerate(variants):
        at = f"variants[{i}] ({v.name!r})"
        if isinstance(v.n, bool) or not isinstance(v.n, int) or v.n < 1:
            raise ValueError(f"{at}.n: must be a positive integer (users exposed), got {v.n!r}")
        s = _finite(f"{at}.sum", v.sum)
        if metric_type is MetricType.CONVERSION:
            if s < 0 or s > v.n:
                raise ValueError(f"{at}.sum: conversions must be between 0 and n={v.n}, got {v.sum!r}")
            if v.sum_squares is not None and _finite(f"{at}.sum_squares", v.sum_squares) != s:
                raise ValueError(f"{at}.sum_squares: a conversion is 0 or 1 per user, so it must equal sum")
        else:
            if v.sum_squares is None:
                raise ValueError(f"{at}.sum_squares: required for {metric_type.value} metrics")
            _check_squares(f"{at}.sum_squares", v.n, s, v.sum_squares)
        if metric_type is MetricType.RATIO:
            for field in ("denominator_sum", "denominator_sum_squares", "cross_sum"):
                if getattr(v, field) is None:
                    raise ValueError(f"{at}.{field}: required for ratio metrics")
                _finite(f"{at}.{field}", getattr(v, field))
            _check_squares(f"{at}.denominator_sum_squares", v.n, v.denominator_sum, v.denominator_sum_squares)
            if v.denominator_sum <= 0:
                raise ValueError(f"{at}.denominator_sum: must be positive for a ratio metric, got {v.denominator_sum!r}")
        if cuped:
            if metric_type is MetricType.RATIO:
                raise ValueError("cuped: not supported for ratio metrics (use it on mean or conversion metrics)")
            for field in ("pre_sum", "pre_sum_squares", "pre_cross_sum"):
                if getattr(v, field) is None:
                    raise ValueError(f"{at}.{field}: required for CUPED (use 0 sums when no user has a pre-exposure value)")
                _finite(f"{at}.{field}", getattr(v, field))
            _check_squares(f"{at}.pre_sum_squares", v.n, v.pre_sum, v.pre_sum_squares)


def _check_squares(where: str, n: int, s: float, ss) -> None:
    ss = _finite(where, ss)
    if ss < 0:
        raise ValueError(f"{where}: a sum of squares cannot be negative, got {ss!r}")
    # Cauchy-Schwarz: sum(v^2) >= sum(v)^2 / n, up to rounding.
    if ss < s * s / n - 1e-9 * max(1.0, ss):
        raise ValueError(f"{where}: {ss!r} is smaller than sum^2/n = {s * s / n!r}; the sums do not come from the same users")


def _covariance(n: int, sum_a: float, sum_b: float, sum_ab: float) -> float:
    """Sample covariance (ddof=1) from sums; 0 for a single user."""
    if n < 2:
        return 0.0
    return (sum_ab - sum_a * sum_b / n) / (n - 1)


def moments(v: VariantSummary, metric_type: MetricType) -> Moments:
    """Mean and per-user sample variance (ddof=1, so a 0/1 metric gets n/(n-1) * p(1-p)).

    Ratio metrics: R = sum(num) / sum(den) with the delta method (Deng et al. 2018, "Applying the
    delta method in metric analytics"): n * Var(R) ~= Var(num)/mu_d^2 - 2 mu_n Cov(num, den)/mu_d^3
    + mu_n^2 Var(den)/mu_d^4.
    """
    metric_type = MetricType(metric_type)
    ss = v.sum if metric_type is MetricType.CONVERSION else v.sum_squares
    var = max(_covariance(v.n, v.sum, v.sum, ss), 0.0)
    if metric_type is not MetricType.RATIO:
        return Moments(n=v.n, mean=v.sum / v.n, variance=var)
    mu_n, mu_d = v.sum / v.n, v.denominator_sum / v.n
    var_d = max(_covariance(v.n, v.denominator_sum, v.denominator_sum, v.denominator_sum_squares), 0.0)
    cov = _covariance(v.n, v.sum, v.denominator_sum, v.cross_sum)
    ratio_var = var / mu_d**2 - 2 * mu_n * cov / mu_d**3 + mu_n**2 * var_d / mu_d**4
    return Moments(n=v.n, mean=mu_n / mu_d, variance=max(ratio_var, 0.0))


@dataclass(frozen=True)
class CupedAdjustment:
    """CUPED (Deng, Xu, Kohavi, Walker 2013): Y_adj = Y - theta (X - mean(X)).

    `theta` = pooled within-variant Cov(Y, X) / Var(X) over all variants (one theta per metric,
    so every variant is adjusted the same way); `covariate_mean` is the pooled mean of X.
    Because X is measured before exposure, it is independent of assignment: the adjusted
    difference stays unbiased for any theta, and this theta minimises its variance. Variance
    reduction is the squared correlation between X and Y.
    """

    theta: float
    covariate_mean: float
    adjusted: tuple[Moments, ...]
    unadjusted: tuple[Moments, ...]


def cuped(variants: Sequence[VariantSummary], metric_type: MetricType) -> CupedAdjustment:
    metric_type = MetricType(metric_type)
    raw = tuple(moments(v, metric_type) for v in variants)
    ss = [v.sum if metric_type is MetricType.CONVERSION else v.sum_squares for v in variants]
    cov_yx = sum(_covariance(v.n, v.sum, v.pre_sum, v.pre_cross_sum) * (v.n - 1) for v in variants)
    var_x = sum(_covariance(v.n, v.pre_sum, v.pre_sum, v.pre_sum_squares) * (v.n - 1) for v in variants)
    theta = cov_yx / var_x if var_x > 0 else 0.0
    total_n = sum(v.n for v in variants)
    x_bar = sum(v.pre_sum for v in variants) / total_n
    adjusted = []
    for v, m, s2 in zip(variants, raw, ss):
        vy = _covariance(v.n, v.sum, v.sum, s2)
        vx = _covariance(v.n, v.pre_sum, v.pre_sum, v.pre_sum_squares)
        cyx = _covariance(v.n, v.sum, v.pre_sum, v.pre_cross_sum)
        adjusted.append(Moments(
            n=v.n,
            mean=m.mean - theta * (v.pre_sum / v.n - x_bar),
            variance=max(vy - 2 * theta * cyx + theta**2 * vx, 0.0),
        ))
    return CupedAdjustment(theta=theta, covariate_mean=x_bar, adjusted=tuple(adjusted), unadjusted=raw)
