"""Sample ratio mismatch: Pearson's chi-square goodness-of-fit test of the users per variant
against the configured weights (df = variants - 1), the same test as `scipy.stats.chisquare`.

Flagged when p < 0.001 (SRM_THRESHOLD), the threshold commonly used in industry (Kohavi, Tang
and Xu, "Trustworthy Online Controlled Experiments", ch. 21; GrowthBook, Optimizely): SRM is
checked on every look at every experiment, so a loose threshold would cry wolf, and a real
mismatch (a broken assignment or lost exposures) drives p far below it quickly.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

from scipy import stats

from experiments.stats.data import is_number

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SrmResult:
    names: tuple[str, ...]
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi_square: float
    p_value: float
    threshold: float
    flagged: bool
    message: str


def srm_check(*, users: Sequence[int], weights: Sequence[float], names: Sequence[str] | None = None,
              threshold: float = SRM_THRESHOLD) -> SrmResult:
    """`users[i]` users were exposed to the variant configured with `weights[i]` (fractions that
    sum to 1)."""
    if names is None:
        names = [f"variant {i}" for i in range(len(users))]
    if len(weights) != len(users):
        raise ValueError(f"weights: {len(weights)} weights for {len(users)} variants")
    if len(names) != len(users):
        raise ValueError(f"names: {len(names)} names for {len(users)} variants")
    if len(users) < 2:
        raise ValueError(f"users: need at least two variants, got {len(users)}")
    for i, u in enumerate(users):
        if isinstance(u, bool) or not isinstance(u, numbers.Integral) or u < 0:
            raise ValueError(f"users[{i}] ({names[i]!r}): must be a non-negative integer, got {u!r}")
    for i, w in enumerate(weights):
        if not (is_number(w) and math.isfinite(w) and w > 0):
            raise ValueError(f"weights[{i}] ({names[i]!r}): must be a positive fraction, got {w!r}")
    users, weights = [int(u) for u in users], [float(w) for w in weights]
    if abs(sum(weights) - 1) > 1e-6:
        raise ValueError(f"weights: must sum to 1, got {sum(weights)!r}")
    total = sum(users)
    if total == 0:
        raise ValueError("users: no users exposed yet; nothing to check")
    expected = tuple(total * w for w in weights)
    chi2 = sum((o - e) ** 2 / e for o, e in zip(users, expected))
    p = float(stats.chi2.sf(chi2, len(users) - 1))
    flagged = p < threshold
    shares = ", ".join(f"{n} {o / total:.1%} (expected {w:.1%})" for n, o, w in zip(names, users, weights))
    if flagged:
        message = (f"Sample ratio mismatch: {shares}; chi-square p = {p:.2g} < {threshold}. The split is not "
                   "what was configured, so assignment or exposure logging is broken: do not trust these "
                   "results until the cause is found.")
    else:
        message = f"No sample ratio mismatch: {shares}; chi-square p = {p:.2g} (flagged below {threshold})."
    return SrmResult(names=tuple(names), observed=tuple(users), expected=expected, chi_square=chi2,
                     p_value=p, threshold=threshold, flagged=flagged, message=message)
