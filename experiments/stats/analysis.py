"""One metric of one experiment: every treatment against the control, by every method, with the
multiple-comparison correction applied and stated, and the plain-language verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

from experiments.stats import bayesian, frequentist, group_sequential
from experiments.stats.data import MetricType, Moments, VariantSummary, cuped, moments, validate_variants
from experiments.stats.frequentist import DEFAULT_SEQUENTIAL_TUNING, NAN_INTERVAL, Interval
from experiments.stats.power import sample_size_per_variant
from experiments.stats.srm import SrmResult

Method = Literal["bayesian", "frequentist", "sequential", "group_sequential"]
METHODS = ("bayesian", "frequentist", "sequential", "group_sequential")

CORRECTION = ("Holm-Bonferroni across the {m} treatment(s) of this metric: p-values are adjusted (family-wise "
              "error <= {alpha}) and intervals are Bonferroni intervals at {level:.4g}% confidence. Bayesian "
              "chances to beat control are not adjusted.")


@dataclass(frozen=True)
class VariantResult:
    name: str
    users: int
    mean: float
    """Value per user (conversion rate, mean count or revenue), or the ratio; CUPED-adjusted when
    `MetricResult.cuped_theta` is set."""
    unadjusted_mean: float
    variance: float
    """Per-user variance (after CUPED when applied); the mean's standard error is sqrt(variance / users)."""
    standard_error: float


@dataclass(frozen=True)
class Comparison:
    """One treatment against the control. Relative values are fractions (0.05 = +5%)."""

    variant: str
    control: str
    enough_data: bool
    """False when a side has fewer than 2 users, no variance, or the control mean is 0: every
    number below is then NaN."""
    absolute: float
    relative: float
    degrees_of_freedom: float
    # fixed horizon (Welch), corrected intervals (Bonferroni) and adjusted p-value (Holm)
    p_value: float
    p_value_adjusted: float
    absolute_ci: Interval
    relative_ci: Interval
    significant: bool
    # sequential (always valid; read it at every look)
    sequential_p_value: float
    sequential_p_value_adjusted: float
    sequential_absolute_ci: Interval
    sequential_relative_ci: Interval
    sequential_significant: bool
    # group sequential (needs a planned number of users; NaN / False without one)
    group_sequential_boundary: float
    """|z| at or beyond this rejects at this look (Bonferroni alpha/m with several treatments)."""
    z: float
    group_sequential_significant: bool
    # Bayesian on the relative uplift
    posterior_relative: float
    """Posterior mean of the relative uplift: `relative` with the flat prior, shrunk towards the
    prior mean with a proper one."""
    chance_to_beat_control: float
    expected_loss: float
    expected_loss_control: float
    credible_interval: Interval

    def better(self, higher_is_better: bool = True) -> bool:
        """The point estimate goes in the good direction."""
        return (self.absolute > 0) == higher_is_better and self.absolute != 0


@dataclass(frozen=True)
class MetricResult:
    metric_type: MetricType
    control: str
    alpha: float
    higher_is_better: bool
    variants: tuple[VariantResult, ...]
    comparisons: tuple[Comparison, ...]
    correction: str
    """States the correction applied, for the results page."""
    cuped_theta: float | None
    sequential_tuning: float
    prior: str
    users: int
    """All users in the metric's variants at this look."""
    planned_users: int | None
    information_fraction: float
    """users / planned_users (NaN without a plan)."""

    def comparison(self, variant: str) -> Comparison:
        for c in self.comparisons:
            if c.variant == variant:
                return c
        raise KeyError(variant)

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


def analyze_metric(*, metric_type: MetricType | str, variants: Sequence[VariantSummary], control: str | None = None,
                   alpha: float = 0.05, higher_is_better: bool = True, use_cuped: bool = False,
                   sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING, prior_mean: float = 0.0,
                   prior_sd: float | None = None, planned_users: int | None = None, earlier_looks: Sequence[int] = (),
                   spending: group_sequential.Spending = "obrien_fleming") -> MetricResult:
    """Analyse one metric. `control` names the control variant (default: the first).

    `planned_users` (all variants together) enables the group-sequential test; `earlier_looks`
    are the total user counts at the looks already taken (increasing), for the alpha spent."""
    try:
        metric_type = MetricType(metric_type)
    except ValueError:
        raise ValueError(f"metric_type: must be one of {[t.value for t in MetricType]}, got {metric_type!r}") from None
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must be between 0 and 1, got {alpha!r}")
    if not sequential_tuning > 0:
        raise ValueError(f"sequential_tuning: must be positive, got {sequential_tuning!r}")
    validate_variants(variants, metric_type, cuped=use_cuped)
    names = [v.name for v in variants]
    control = names[0] if control is None else control
    if control not in names:
        raise ValueError(f"control: {control!r} is not one of the variants {names}")

    if use_cuped:
        adjustment = cuped(variants, metric_type)
        est, raw, theta = adjustment.adjusted, adjustment.unadjusted, adjustment.theta
    else:
        est = raw = tuple(moments(v, metric_type) for v in variants)
        theta = None
    by_name = dict(zip(names, est))
    treatments = [n for n in names if n != control]
    m = len(treatments)
    a_corrected = alpha / m

    diffs, p_fixed, p_seq = {}, [], []
    for name in treatments:
        d = frequentist.difference(by_name[control], by_name[name])
        ok = _enough(by_name[control], by_name[name])
        diffs[name] = (d, ok)
        p_fixed.append(frequentist.welch_p_value(d) if ok else math.nan)
        p_seq.append(frequentist.sequential_p_value(d.absolute / d.absolute_se, d.n_total, alpha, sequential_tuning) if ok else math.nan)
    p_fixed_adj, p_seq_adj = frequentist.holm(p_fixed), frequentist.holm(p_seq)
    users = sum(v.n for v in variants)
    gst = None
    if planned_users is not None:
        gst = group_sequential.group_sequential_test(z=0.0, users=users, planned_users=planned_users,
                                                     earlier_looks=earlier_looks, alpha=a_corrected, spending=spending)

    comparisons = []
    for i, name in enumerate(treatments):
        d, ok = diffs[name]
        if not ok:
            comparisons.append(_empty(name, control))
            continue
        abs_ci, rel_ci = frequentist.welch_intervals(d, a_corrected)
        seq_abs, seq_rel = frequentist.sequential_intervals(d, a_corrected, sequential_tuning)
        post = bayesian.posterior(d.relative, d.relative_se, alpha=alpha, higher_is_better=higher_is_better,
                                  prior_mean=prior_mean, prior_sd=prior_sd)
        comparisons.append(Comparison(
            variant=name, control=control, enough_data=True, absolute=d.absolute, relative=d.relative,
            degrees_of_freedom=d.degrees_of_freedom,
            p_value=p_fixed[i], p_value_adjusted=p_fixed_adj[i], absolute_ci=abs_ci, relative_ci=rel_ci,
            significant=p_fixed_adj[i] < alpha,
            sequential_p_value=p_seq[i], sequential_p_value_adjusted=p_seq_adj[i],
            sequential_absolute_ci=seq_abs, sequential_relative_ci=seq_rel, sequential_significant=p_seq_adj[i] < alpha,
            group_sequential_boundary=gst.boundary if gst else math.nan, z=d.absolute / d.absolute_se,
            group_sequential_significant=bool(gst) and abs(d.absolute / d.absolute_se) >= gst.boundary,
            posterior_relative=post.mean, chance_to_beat_control=post.chance_to_beat_control,
            expected_loss=post.expected_loss,
            expected_loss_control=post.expected_loss_control,
            credible_interval=Interval(post.credible_low, post.credible_high),
        ))
    variant_results = tuple(
        VariantResult(name=n, users=e.n, mean=e.mean, unadjusted_mean=r.mean, variance=e.variance,
                      standard_error=math.sqrt(e.variance_of_mean))
        for n, e, r in zip(names, est, raw)
    )
    correction = (CORRECTION.format(m=m, alpha=alpha, level=100 * (1 - a_corrected)) if m > 1
                  else "One treatment: no multiple-comparison correction needed.")
    prior = "flat (uninformative)" if prior_sd is None else f"Normal({prior_mean:g}, {prior_sd:g}^2) on the relative uplift"
    return MetricResult(metric_type=metric_type, control=control, alpha=alpha, higher_is_better=higher_is_better,
                        variants=variant_results, comparisons=tuple(comparisons), correction=correction,
                        cuped_theta=theta, sequential_tuning=sequential_tuning, prior=prior, users=users,
                        planned_users=planned_users, information_fraction=gst.information_fraction if gst else math.nan)


def _enough(control: Moments, treatment: Moments) -> bool:
    return (control.n >= 2 and treatment.n >= 2 and control.mean != 0
            and control.variance_of_mean + treatment.variance_of_mean > 0)


def _empty(name: str, control: str) -> Comparison:
    nan = math.nan
    return Comparison(variant=name, control=control, enough_data=False, absolute=nan, relative=nan,
                      degrees_of_freedom=nan, p_value=nan, p_value_adjusted=nan, absolute_ci=NAN_INTERVAL,
                      relative_ci=NAN_INTERVAL, significant=False, sequential_p_value=nan,
                      sequential_p_value_adjusted=nan, sequential_absolute_ci=NAN_INTERVAL,
                      sequential_relative_ci=NAN_INTERVAL, sequential_significant=False,
                      group_sequential_boundary=nan, z=nan, group_sequential_significant=False,
                      posterior_relative=nan, chance_to_beat_control=nan, expected_loss=nan, expected_loss_control=nan,
                      credible_interval=NAN_INTERVAL)


def more_users_needed(result: MetricResult, variant: str, *, power: float = 0.8, sequential: bool = False) -> int | None:
    """Users per variant still needed for `power` at the observed relative effect (0 when already
    there); None when there is no observed effect to plan for."""
    c = result.comparison(variant)
    if not c.enough_data or c.relative == 0 or not math.isfinite(c.relative):
        return None
    ctrl, treat = result.variant(result.control), result.variant(variant)
    if ctrl.variance <= 0:
        return None
    needed = sample_size_per_variant(
        control_mean=ctrl.mean, control_variance=ctrl.variance, treatment_variance=treat.variance,
        relative_effect=c.relative, alpha=result.alpha, power=power, comparisons=len(result.comparisons),
        sequential=sequential, sequential_tuning=result.sequential_tuning)
    return max(0, needed - min(ctrl.users, treat.users))


def verdict(result: MetricResult, variant: str, *, method: Method = "bayesian", srm: SrmResult | None = None,
            chance_threshold: float = 0.95, power: float = 0.8) -> str:
    """One plain-language sentence for the results page, e.g. "treatment is better with 97%
    chance (+4.8%, 95% credible interval +1.2% to +8.5%)" or "keep running: 1,200 more users per
    variant for 80% power at the observed effect (+1.5%)". An SRM overrides everything."""
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    if method == "group_sequential" and result.planned_users is None:
        raise ValueError("method: 'group_sequential' needs analyze_metric(planned_users=...)")
    if srm is not None and srm.flagged:
        return (f"do not trust these results: sample ratio mismatch (p = {srm.p_value:.2g}); fix assignment "
                "or exposure logging first")
    c = result.comparison(variant)
    if not c.enough_data:
        return f"not enough data yet: {variant} and {result.control} need at least 2 users each and some variation"
    better = c.better(result.higher_is_better)
    word = "better" if better else "worse"
    if method == "bayesian":
        chance = c.chance_to_beat_control
        level = round(100 * (1 - result.alpha))
        if chance >= chance_threshold or chance <= 1 - chance_threshold:
            shown = chance if better else 1 - chance
            return (f"{variant} is {word} than {result.control} with {_percent(shown)} chance "
                    f"({c.posterior_relative:+.1%}, {level}% credible interval {c.credible_interval.low:+.1%} to "
                    f"{c.credible_interval.high:+.1%})")
        decided = False
    elif method == "frequentist":
        decided, p, ci = c.significant, c.p_value_adjusted, c.relative_ci
    elif method == "sequential":
        decided, p, ci = c.sequential_significant, c.sequential_p_value_adjusted, c.sequential_relative_ci
    else:
        if c.group_sequential_significant:
            return (f"{variant} is {word} than {result.control}: {c.relative:+.1%} (|z| = {abs(c.z):.2f} crossed the "
                    f"group-sequential boundary {c.group_sequential_boundary:.2f} at {result.information_fraction:.0%} "
                    "of the planned users)")
        if result.information_fraction >= 1:
            return (f"no significant difference at the planned {result.planned_users:,} users ({c.relative:+.1%}, "
                    f"|z| = {abs(c.z):.2f} < {c.group_sequential_boundary:.2f})")
        return (f"keep running: {result.planned_users - result.users:,} more users to the planned "
                f"{result.planned_users:,} (now {c.relative:+.1%}, |z| = {abs(c.z):.2f}; this look needs "
                f"{c.group_sequential_boundary:.2f})")
    if decided:
        return (f"{variant} is {word} than {result.control}: {c.relative:+.1%} (p = {p:.2g}, interval "
                f"{ci.low:+.1%} to {ci.high:+.1%})")
    more = more_users_needed(result, variant, power=power, sequential=(method == "sequential"))
    if more is None:
        return "keep running: no difference observed yet"
    if more == 0:
        return (f"no clear difference: there are already enough users for {_percent(power)} power at the observed "
                f"effect ({c.relative:+.1%}), so the true effect is probably smaller than that")
    return (f"keep running: {more:,} more users per variant for {_percent(power)} power at the observed effect "
            f"({c.relative:+.1%})")


def _percent(x: float) -> str:
    """97%; never 100% or 0%, which a statistical result cannot promise (nor rounding invent)."""
    pct = 100 * x
    if pct > 99:
        return ">99%"
    if pct < 1:
        return "<1%"
    return f"{pct:.0f}%"
