"""The statistics engine (experiments/stats), without a database: seeded simulations of its
promises (error rates under daily peeking, power, SRM, CUPED) and cross-checks against scipy and
closed forms where the methods coincide.

Where our numbers differ from an independent implementation on purpose (each test says which):
- the relative-uplift interval uses the delta method (scipy has no relative interval); we check
  it against the empirical spread of simulated estimates instead;
- Bayesian chance to beat control uses a normal (z) approximation of the relative uplift, so with
  a flat prior it equals 1 - the one-sided z p-value of the relative uplift, not of Welch's t;
- the sequential test uses z and has no scipy counterpart; it is checked against Howard et al.'s
  closed form, by simulation, and against GrowthBook's gbstats;
- gbstats (recorded outputs, gbstats_reference.py): identical for mean and ratio metrics; for
  conversions and CUPED within 1e-3 / 5e-3, for the reasons in GBSTATS_TOLERANCE.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from experiments.stats import (
    SRM_THRESHOLD, MetricType, VariantSummary, analyze_metric, boundaries, conversion_sample_size, cuped,
    group_sequential_test, holm, moments,
    more_users_needed, posterior, sample_size_per_variant, sequential_multiplier, sequential_p_value, srm_check,
    verdict,
)


def summary(name, values, pre=None, denominator=None):
    """Summary statistics of per-user values, as the SQL aggregate will produce them."""
    values = np.asarray(values, dtype=float)
    kwargs = {}
    if pre is not None:
        pre = np.asarray(pre, dtype=float)
        kwargs.update(pre_sum=pre.sum(), pre_sum_squares=(pre * pre).sum(), pre_cross_sum=(values * pre).sum())
    if denominator is not None:
        den = np.asarray(denominator, dtype=float)
        kwargs.update(denominator_sum=den.sum(), denominator_sum_squares=(den * den).sum(),
                      cross_sum=(values * den).sum())
    return VariantSummary(name, n=len(values), sum=values.sum(), sum_squares=(values * values).sum(), **kwargs)


# --- error rates under peeking -------------------------------------------------------------------

EXPERIMENTS, DAYS, USERS_PER_DAY, RATE, ALPHA = 500, 14, 1000, 0.10, 0.05


def _aa_looks(seed):
    """500 A/A conversion experiments, 1,000 new users per arm per day for 14 days: cumulative
    summaries at each daily look, drawn per day with numpy (no per-user loop)."""
    rng = np.random.default_rng(seed)
    conv_c = rng.binomial(USERS_PER_DAY, RATE, (EXPERIMENTS, DAYS)).cumsum(axis=1)
    conv_t = rng.binomial(USERS_PER_DAY, RATE, (EXPERIMENTS, DAYS)).cumsum(axis=1)
    n = USERS_PER_DAY * np.arange(1, DAYS + 1)
    return conv_c, conv_t, n


def _z(conv_c, conv_t, n):
    """The engine's estimate/se, vectorised: 0/1 values, ddof=1 variances (data.moments)."""
    pc, pt = conv_c / n, conv_t / n
    var = (pc * (1 - pc) + pt * (1 - pt)) * n / (n - 1) / n
    return (pt - pc) / np.sqrt(var)


def test_aa_daily_peeking__sequential_keeps_alpha__naive_fixed_test_does_not():
    # Given 500 A/A experiments looked at every day for 14 days
    conv_c, conv_t, n = _aa_looks(seed=20)
    z = _z(conv_c, conv_t, n)

    # When each look is tested by the always-valid p-value and by the naive fixed-horizon test
    p_seq = sequential_p_value(z, 2 * n, ALPHA, tuning=2 * n[-1])
    p_naive = 2 * stats.norm.sf(np.abs(z))
    seq_fpr = (p_seq <= ALPHA).any(axis=1).mean()
    naive_fpr = (p_naive <= ALPHA).any(axis=1).mean()
    final_look_fpr = (p_naive[:, -1] <= ALPHA).mean()

    # Then peeking at the naive test inflates the error rate well past alpha, the sequential one keeps it
    assert naive_fpr > 0.07, naive_fpr
    assert 0.03 <= final_look_fpr <= 0.07, final_look_fpr  # one look: the fixed test is fine
    assert seq_fpr <= 0.07, seq_fpr
    print(f"A/A, 14 daily looks: naive {naive_fpr:.1%}, sequential {seq_fpr:.1%}, single final look {final_look_fpr:.1%}")

    # And the vectorised numbers are the engine's: analyze_metric agrees on a sample of looks
    for e, d in [(0, 0), (1, 6), (2, 13), (3, 13), (4, 9)]:
        result = analyze_metric(metric_type="conversion", sequential_tuning=2 * n[-1], variants=[
            VariantSummary("control", n=int(n[d]), sum=int(conv_c[e, d])),
            VariantSummary("treatment", n=int(n[d]), sum=int(conv_t[e, d]))])
        c = result.comparison("treatment")
        assert c.sequential_p_value == pytest.approx(p_seq[e, d], rel=1e-9)
        assert c.p_value == pytest.approx(p_naive[e, d], rel=1e-3)  # Welch t (df ~ 2n) vs z


def test_aa_daily_peeking__group_sequential_spends_exactly_alpha():
    # Given the same 500 A/A experiments with a planned 28,000 users, looked at every day
    conv_c, conv_t, n = _aa_looks(seed=20)
    z = _z(conv_c, conv_t, n)
    planned = 2 * n[-1]

    # When each look is tested against the Lan-DeMets O'Brien-Fleming-type boundary
    bounds = np.array(boundaries(list(2 * n / planned), ALPHA))
    fpr = (np.abs(z) >= bounds).any(axis=1).mean()

    # Then the false positive rate is alpha within simulation error (sd 1 point)
    assert 0.03 <= fpr <= 0.07, fpr
    print(f"A/A, 14 daily looks: group sequential {fpr:.1%}")

    # And analyze_metric at a look gives the same boundary and decision
    e, d = 0, 6
    result = analyze_metric(metric_type="conversion", planned_users=int(planned),
                            earlier_looks=[int(2 * u) for u in n[:d]], variants=[
        VariantSummary("control", n=int(n[d]), sum=int(conv_c[e, d])),
        VariantSummary("treatment", n=int(n[d]), sum=int(conv_t[e, d]))])
    c = result.comparison("treatment")
    assert c.group_sequential_boundary == pytest.approx(bounds[d])
    assert c.z == pytest.approx(z[e, d], rel=1e-3)
    assert result.information_fraction == pytest.approx(0.5)


def test_group_sequential__published_lan_demets_boundaries():
    # Five equally spaced looks, two-sided alpha 0.05 (R ldbounds / gsDesign, alpha/2 per side)
    looks = [0.2, 0.4, 0.6, 0.8, 1.0]
    assert boundaries(looks) == pytest.approx([4.8769, 3.3569, 2.6803, 2.2898, 2.0310], abs=2e-4)
    assert boundaries(looks, spending="pocock") == pytest.approx([2.4380, 2.4268, 2.4101, 2.3966, 2.3859], abs=2e-4)
    assert boundaries([1.0]) == pytest.approx([stats.norm.ppf(0.975)])
    final = group_sequential_test(z=2.1, users=1_000, planned_users=1_000, earlier_looks=[200, 400, 600, 800])
    assert final.final and final.significant and final.boundary == pytest.approx(2.0310, abs=2e-4)


def test_planted_uplift__group_sequential_daily_looks_keep_the_power():
    # 300 experiments with a planted +5%, 14 daily looks up to the fixed-horizon sample size:
    # O'Brien-Fleming-type spending costs only ~1-2 points of power (sample size inflation ~1.03)
    n = conversion_sample_size(rate=RATE, relative_effect=0.05)
    rng = np.random.default_rng(21)
    daily = np.diff(np.linspace(0, n, DAYS + 1).round().astype(int))
    conv_c = rng.binomial(daily, RATE, (300, DAYS)).cumsum(axis=1)
    conv_t = rng.binomial(daily, RATE * 1.05, (300, DAYS)).cumsum(axis=1)
    users = daily.cumsum()
    z = _z(conv_c, conv_t, users)
    bounds = np.array(boundaries(list(users / users[-1])))
    power = (z >= bounds).any(axis=1).mean()
    assert abs(power - 0.8) <= 0.07, power


def test_planted_uplift__detected_with_the_power_the_calculator_promised():
    # Given a 5% relative uplift on a 10% conversion rate and the calculator's users per variant
    n = conversion_sample_size(rate=RATE, relative_effect=0.05, alpha=ALPHA, power=0.8)
    n_seq = conversion_sample_size(rate=RATE, relative_effect=0.05, alpha=ALPHA, power=0.8, sequential=True)
    assert 55_000 < n < 60_000 and n_seq > n
    rng = np.random.default_rng(2020)
    runs = 300

    # When 300 seeded experiments run to that size and are analysed once
    def detected(users, sequential):
        conv_c = rng.binomial(users, RATE, runs)
        conv_t = rng.binomial(users, RATE * 1.05, runs)
        hits = 0
        for c, t in zip(conv_c, conv_t):
            result = analyze_metric(metric_type="conversion", variants=[
                VariantSummary("control", n=users, sum=int(c)), VariantSummary("treatment", n=users, sum=int(t))])
            comp = result.comparison("treatment")
            hits += (comp.sequential_significant if sequential else comp.significant) and comp.absolute > 0
        return hits / runs

    # Then the observed power is 80% within simulation error (sd 2.3 points; 3 sd allowed)
    assert abs(detected(n, sequential=False) - 0.8) <= 0.07
    assert abs(detected(n_seq, sequential=True) - 0.8) <= 0.07


# --- sample ratio mismatch -----------------------------------------------------------------------

def test_srm__52_48_of_100k_is_flagged():
    result = srm_check(users=[52_000, 48_000], weights=[0.5, 0.5], names=["control", "treatment"])
    assert result.flagged and result.p_value < SRM_THRESHOLD == 0.001
    assert "Sample ratio mismatch" in result.message


def test_srm__50_2_49_8_of_10k_is_not_flagged():
    result = srm_check(users=[5_020, 4_980], weights=[0.5, 0.5])
    assert not result.flagged and result.p_value > 0.5


def test_srm__matches_scipy_chisquare_with_uneven_weights():
    users, weights = [2_950, 3_100, 4_050], [0.3, 0.3, 0.4]
    result = srm_check(users=users, weights=weights)
    expected = stats.chisquare(users, f_exp=[sum(users) * w for w in weights])
    assert result.chi_square == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)


def test_srm__overrides_the_verdict():
    result = analyze_metric(metric_type="conversion", variants=[
        VariantSummary("control", n=52_000, sum=5_200), VariantSummary("treatment", n=48_000, sum=5_500)])
    srm = srm_check(users=[52_000, 48_000], weights=[0.5, 0.5])
    assert verdict(result, "treatment", srm=srm).startswith("do not trust these results: sample ratio mismatch")


# --- CUPED ---------------------------------------------------------------------------------------

def test_cuped__reduces_variance_and_stays_unbiased():
    # Given 200 experiments whose metric correlates with its pre-exposure value (rho ~ 0.85)
    rng = np.random.default_rng(7)
    runs, users, effect = 200, 2_000, 0.1
    pre_c, pre_t = rng.normal(10, 2, (runs, users)), rng.normal(10, 2, (runs, users))
    y_c = 0.8 * pre_c + rng.normal(0, 1, (runs, users))
    y_t = 0.8 * pre_t + rng.normal(0, 1, (runs, users)) + effect

    # When each is analysed with and without CUPED
    plain, adjusted, adjusted_se, thetas = [], [], [], []
    for r in range(runs):
        variants = [summary("control", y_c[r], pre_c[r]), summary("treatment", y_t[r], pre_t[r])]
        a = analyze_metric(metric_type="mean", variants=variants, use_cuped=True)
        b = analyze_metric(metric_type="mean", variants=variants)
        adjusted.append(a.comparison("treatment").absolute)
        plain.append(b.comparison("treatment").absolute)
        adjusted_se.append(a.comparison("treatment").absolute_ci.high - a.comparison("treatment").absolute)
        thetas.append(a.cuped_theta)
    adjusted, plain = np.array(adjusted), np.array(plain)

    # Then the spread shrinks to sqrt(1 - rho^2) = 0.53 of the plain one, the estimate stays centred,
    rho2 = 3.2**2 / (4 * 3.56)  # Cov(y, x)^2 / (Var x Var y)
    assert adjusted.std() / plain.std() == pytest.approx(math.sqrt(1 - rho2), rel=0.15)
    assert abs(adjusted.mean() - effect) < 3 * adjusted.std() / math.sqrt(runs)
    # theta is the regression slope, and the engine's interval matches the observed spread
    assert np.mean(thetas) == pytest.approx(0.8, abs=0.01)
    assert np.mean(adjusted_se) / stats.t.ppf(0.975, 2 * users) == pytest.approx(adjusted.std(), rel=0.15)


def test_cuped__theta_is_pooled_regression_slope_from_numpy():
    rng = np.random.default_rng(3)
    pre = [rng.gamma(2, 5, 3_000), rng.gamma(2, 5, 2_000)]
    ys = [0.5 * pre[0] + rng.normal(0, 3, 3_000), 0.5 * pre[1] + rng.normal(1, 3, 2_000)]
    adj = cuped([summary("a", ys[0], pre[0]), summary("b", ys[1], pre[1])], MetricType.MEAN)
    # pooled within-group slope: centre each group, then least squares
    xc = np.concatenate([p - p.mean() for p in pre])
    yc = np.concatenate([y - y.mean() for y in ys])
    assert adj.theta == pytest.approx((xc @ yc) / (xc @ xc))
    resid = ys[1] - adj.theta * (pre[1] - np.concatenate(pre).mean())
    assert adj.adjusted[1].mean == pytest.approx(resid.mean())
    assert adj.adjusted[1].variance == pytest.approx(resid.var(ddof=1))


# --- cross-checks against scipy and closed forms -------------------------------------------------

def test_welch__same_p_value_and_interval_as_scipy():
    rng = np.random.default_rng(11)
    a, b = rng.exponential(10, 800), rng.exponential(11, 650)
    result = analyze_metric(metric_type="mean", variants=[summary("control", a), summary("treatment", b)])
    c = result.comparison("treatment")
    ref = stats.ttest_ind(b, a, equal_var=False)
    from_stats = stats.ttest_ind_from_stats(b.mean(), b.std(ddof=1), len(b), a.mean(), a.std(ddof=1), len(a), equal_var=False)
    assert c.p_value == pytest.approx(ref.pvalue, rel=1e-9) == pytest.approx(from_stats.pvalue, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert (c.absolute_ci.low, c.absolute_ci.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert c.degrees_of_freedom == pytest.approx(ref.df)
    assert result.variant("treatment").variance == pytest.approx(b.var(ddof=1))


def test_conversion__matches_scipy_on_0_1_values():
    values_c = np.r_[np.ones(120), np.zeros(880)]
    values_t = np.r_[np.ones(150), np.zeros(850)]
    result = analyze_metric(metric_type="conversion", variants=[
        VariantSummary("control", n=1000, sum=120), VariantSummary("treatment", n=1000, sum=150)])
    ref = stats.ttest_ind(values_t, values_c, equal_var=False)
    assert result.comparison("treatment").p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert result.comparison("treatment").relative == pytest.approx(0.25)


def test_relative_uplift__keeps_the_sign_of_the_difference_when_the_control_mean_is_negative():
    # net revenue per user after refunds: control -2.0, treatment -1.0 is an improvement of 50%
    result = analyze_metric(metric_type="mean", variants=[
        summary("control", np.r_[np.full(500, -3.0), np.full(500, -1.0)]),
        summary("treatment", np.r_[np.full(500, -2.0), np.full(500, 0.0)])])
    c = result.comparison("treatment")
    assert c.absolute == pytest.approx(1.0) and c.relative == pytest.approx(0.5)
    assert c.chance_to_beat_control > 0.99


def test_relative_interval__delta_method_matches_simulated_spread():
    # The delta-method se of treatment/control - 1 against 2,000 simulated experiments
    rng = np.random.default_rng(5)
    n, pc, pt = 5_000, 0.2, 0.22
    rel = rng.binomial(n, pt, 2_000) / rng.binomial(n, pc, 2_000) - 1
    result = analyze_metric(metric_type="conversion", variants=[
        VariantSummary("control", n=n, sum=int(n * pc)), VariantSummary("treatment", n=n, sum=int(n * pt))])
    c = result.comparison("treatment")
    se = (c.relative_ci.high - c.relative_ci.low) / 2 / stats.t.ppf(0.975, c.degrees_of_freedom)
    assert se == pytest.approx(rel.std(), rel=0.06)


def test_ratio_metric__delta_method_variance_matches_closed_form_and_simulation():
    rng = np.random.default_rng(9)
    runs, users = 400, 1_000
    orders = rng.poisson(2, (runs, users)) + 1
    revenue = orders * rng.gamma(4, 5, (runs, users))
    ratios = revenue.sum(axis=1) / orders.sum(axis=1)
    m = moments(summary("v", revenue[0], denominator=orders[0]), MetricType.RATIO)
    assert m.mean == pytest.approx(ratios[0])
    # closed form from numpy's covariance matrix
    cov = np.cov(revenue[0], orders[0])
    mu_n, mu_d = revenue[0].mean(), orders[0].mean()
    closed = cov[0, 0] / mu_d**2 - 2 * mu_n * cov[0, 1] / mu_d**3 + mu_n**2 * cov[1, 1] / mu_d**4
    assert m.variance == pytest.approx(closed)
    assert math.sqrt(m.variance_of_mean) == pytest.approx(ratios.std(), rel=0.1)


def test_bayesian__closed_forms_against_numerical_integration():
    post = posterior(0.03, 0.02)
    assert post.chance_to_beat_control == pytest.approx(stats.norm.cdf(1.5))
    density = stats.norm(0.03, 0.02).pdf
    loss, _ = integrate.quad(lambda d: max(0.0, -d) * density(d), -0.2, 0.2, points=[0.0])
    loss_control, _ = integrate.quad(lambda d: max(0.0, d) * density(d), -0.2, 0.2, points=[0.0])
    assert post.expected_loss == pytest.approx(loss, rel=1e-6)
    assert post.expected_loss_control == pytest.approx(loss_control, rel=1e-6)
    assert (post.credible_low, post.credible_high) == pytest.approx(stats.norm(0.03, 0.02).interval(0.95))
    # lower-is-better metrics flip the chance; a weak prior shrinks towards 0
    assert posterior(0.03, 0.02, higher_is_better=False).chance_to_beat_control == pytest.approx(stats.norm.cdf(-1.5))
    shrunk = posterior(0.03, 0.02, prior_sd=0.02)
    assert shrunk.mean == pytest.approx(0.015) and shrunk.sd == pytest.approx(0.02 / math.sqrt(2))


def test_sequential__closed_form_and_duality_with_its_interval():
    # Howard et al. (2021) eq. 14 with rho from eq. 15 (GrowthBook's formula), for N = 20,000, tuning 5,000
    alpha, n, tuning = 0.05, 20_000, 5_000
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning
    expected = math.sqrt(n * 2 * (n * rho2 + 1) / (n**2 * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha))
    assert sequential_multiplier(n, alpha, tuning) == pytest.approx(expected)
    assert sequential_multiplier(n, alpha, tuning) > stats.norm.ppf(0.975)  # always wider than fixed
    # p <= alpha exactly when 0 leaves the confidence sequence
    m = sequential_multiplier(n, alpha, tuning)
    assert sequential_p_value(m * 0.999, n, alpha, tuning) > alpha > sequential_p_value(m * 1.001, n, alpha, tuning)


def test_holm__adjusted_p_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.5, math.nan])  # a comparison without enough data neither counts nor gets a p-value
    assert adjusted[0] == 0.5 and math.isnan(adjusted[1])


def test_multiple_variants__holm_applied_and_stated():
    variants = [VariantSummary("control", n=20_000, sum=2_000), VariantSummary("b", n=20_000, sum=2_150),
                VariantSummary("c", n=20_000, sum=2_020)]
    result = analyze_metric(metric_type="conversion", variants=variants)
    b, c = result.comparison("b"), result.comparison("c")
    assert [b.p_value_adjusted, c.p_value_adjusted] == pytest.approx(holm([b.p_value, c.p_value]))
    assert b.p_value_adjusted == pytest.approx(2 * b.p_value)
    assert "Holm-Bonferroni across the 2 treatment(s)" in result.correction
    # intervals are Bonferroni: 97.5% intervals for two comparisons
    single = analyze_metric(metric_type="conversion", alpha=0.025, variants=variants[:2]).comparison("b")
    assert (b.absolute_ci.low, b.absolute_ci.high) == pytest.approx((single.absolute_ci.low, single.absolute_ci.high))


GBSTATS = json.loads((Path(__file__).parent / "gbstats_vectors.json").read_text())
# How close to GrowthBook's gbstats 0.8.0 each case must be, and why (recorded by gbstats_reference.py):
GBSTATS_TOLERANCE = {
    "revenue per user": 1e-9,  # the same formulas: Welch t, delta method, mixture CS, Gaussian posterior
    "revenue per order": 1e-9,  # ratio metric: the same delta method
    "conversion": 2e-3,  # gbstats uses p(1-p), we use the sample variance n/(n-1) p(1-p)
    # CUPED: gbstats takes theta from the two arms' joint covariance and divides the relative uplift
    # by the unadjusted control mean; we pool within variants (unaffected by the treatment effect)
    # and divide by the adjusted control mean
    "sessions per user, CUPED": 5e-3,
}


@pytest.mark.parametrize("case", GBSTATS["cases"], ids=[c["name"] for c in GBSTATS["cases"]])
def test_same_numbers_as_growthbook_gbstats(case):
    assert GBSTATS["gbstats"] == "0.8.0"
    tol = dict(rel=GBSTATS_TOLERANCE[case["name"]], abs=1e-10)
    variants = [VariantSummary(**v) for v in case["variants"]]
    g = case["gbstats"]
    flat, prior = (analyze_metric(metric_type=case["metric_type"], variants=variants, use_cuped=case.get("cuped", False),
                                  alpha=GBSTATS["alpha"], sequential_tuning=GBSTATS["sequential_tuning"], prior_sd=sd)
                   for sd in (None, GBSTATS["prior_sd"]))
    c, p = flat.comparison("treatment"), prior.comparison("treatment")
    ours = {
        "frequentist_absolute": (c.absolute, [c.absolute_ci.low, c.absolute_ci.high], c.p_value),
        "frequentist_relative": (c.relative, [c.relative_ci.low, c.relative_ci.high], None),  # our p is the absolute test's
        "sequential_absolute": (c.absolute, [c.sequential_absolute_ci.low, c.sequential_absolute_ci.high], c.sequential_p_value),
        "sequential_relative": (c.relative, [c.sequential_relative_ci.low, c.sequential_relative_ci.high], None),
    }
    for key, (expected, ci, p_value) in ours.items():
        assert expected == pytest.approx(g[key]["expected"], **tol), key
        assert ci == pytest.approx(g[key]["ci"], **tol), key
        if p_value is not None:
            assert p_value == pytest.approx(g[key]["p_value"], **tol), key
    for key, comp in (("bayesian_flat", c), ("bayesian_prior", p)):
        assert comp.posterior_relative == pytest.approx(g[key]["expected"], **tol), key
        assert comp.chance_to_beat_control == pytest.approx(g[key]["chance_to_win"], **tol), key
        assert [comp.credible_interval.low, comp.credible_interval.high] == pytest.approx(g[key]["ci"], **tol), key
        assert comp.expected_loss_control == pytest.approx(g[key]["risk_control"], **tol), key
        assert comp.expected_loss == pytest.approx(g[key]["risk_treatment"], rel=tol["rel"], abs=1e-11), key
    if "theta" in g:
        assert flat.cuped_theta == pytest.approx(g["theta"], rel=1e-3)


def test_power__closed_form_gives_the_promised_power():
    n = sample_size_per_variant(control_mean=20.0, control_variance=100.0, relative_effect=0.02)
    achieved = stats.norm.cdf(0.4 / math.sqrt(200.0 / n) - stats.norm.ppf(0.975))
    assert achieved == pytest.approx(0.8, abs=0.001)
    assert sample_size_per_variant(control_mean=20.0, control_variance=100.0, relative_effect=0.02, comparisons=3) > n


# --- verdicts ------------------------------------------------------------------------------------

def test_verdict__clear_winner_and_keep_running():
    win = analyze_metric(metric_type="conversion", variants=[
        VariantSummary("control", n=20_000, sum=2_000), VariantSummary("treatment", n=20_000, sum=2_200)])
    assert verdict(win, "treatment").startswith("treatment is better than control with >99% chance (+10.0%")
    assert verdict(win, "treatment", method="frequentist").startswith("treatment is better than control: +10.0% (p = ")
    unsure = analyze_metric(metric_type="conversion", variants=[
        VariantSummary("control", n=5_000, sum=500), VariantSummary("treatment", n=5_000, sum=520)])
    text = verdict(unsure, "treatment")
    more = more_users_needed(unsure, "treatment")
    assert text == f"keep running: {more:,} more users per variant for 80% power at the observed effect (+4.0%)"
    # the calculator at the observed +4% (ddof=1 variances differ from p(1-p) by n/(n-1): a few users)
    assert more + 5_000 == pytest.approx(conversion_sample_size(rate=0.1, relative_effect=0.04), abs=20)


def test_verdict__group_sequential():
    variants = [VariantSummary("control", n=10_000, sum=1_000), VariantSummary("treatment", n=10_000, sum=1_150)]
    planned = analyze_metric(metric_type="conversion", variants=variants, planned_users=40_000, earlier_looks=[10_000])
    assert verdict(planned, "treatment", method="group_sequential").startswith(
        "treatment is better than control: +15.0% (|z| = 3.43 crossed the group-sequential boundary 2.96 at 50%")
    early = analyze_metric(metric_type="conversion", variants=variants[:1] + [VariantSummary("treatment", n=10_000, sum=1_050)],
                           planned_users=40_000)
    assert verdict(early, "treatment", method="group_sequential").startswith("keep running: 20,000 more users to the planned 40,000")
    with pytest.raises(ValueError, match="method: 'group_sequential' needs analyze_metric"):
        verdict(analyze_metric(metric_type="conversion", variants=variants), "treatment", method="group_sequential")


def test_verdict__lower_is_better_and_not_enough_data():
    worse = analyze_metric(metric_type="mean", higher_is_better=False, variants=[
        summary("control", np.r_[np.full(5_000, 1.0), np.full(5_000, 2.0)]),
        summary("treatment", np.r_[np.full(5_000, 1.2), np.full(5_000, 2.2)])])
    assert verdict(worse, "treatment").startswith("treatment is worse than control with >99% chance")
    empty = analyze_metric(metric_type="conversion", variants=[
        VariantSummary("control", n=1, sum=0), VariantSummary("treatment", n=10, sum=1)])
    assert not empty.comparison("treatment").enough_data
    assert verdict(empty, "treatment").startswith("not enough data yet")


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: analyze_metric(metric_type="conversion", variants=[VariantSummary("control", n=0, sum=0), VariantSummary("t", n=5, sum=1)]),
     r"variants\[0\] \('control'\)\.n: must be a positive integer"),
    (lambda: analyze_metric(metric_type="conversion", variants=[VariantSummary("control", n=5, sum=-1), VariantSummary("t", n=5, sum=1)]),
     r"variants\[0\] \('control'\)\.sum: conversions must be between 0 and n=5"),
    (lambda: analyze_metric(metric_type="conversion", variants=[VariantSummary("control", n=5, sum=6), VariantSummary("t", n=5, sum=1)]),
     r"\.sum: conversions must be between 0 and n=5"),
    (lambda: analyze_metric(metric_type="mean", variants=[VariantSummary("control", n=5, sum=10, sum_squares=-1), VariantSummary("t", n=5, sum=1, sum_squares=1)]),
     r"variants\[0\] \('control'\)\.sum_squares: a sum of squares cannot be negative"),
    (lambda: analyze_metric(metric_type="mean", variants=[VariantSummary("control", n=5, sum=10, sum_squares=1), VariantSummary("t", n=5, sum=1, sum_squares=1)]),
     r"sum_squares: 1.0 is smaller than sum\^2/n"),
    (lambda: analyze_metric(metric_type="mean", variants=[VariantSummary("control", n=5, sum=10), VariantSummary("t", n=5, sum=1, sum_squares=1)]),
     r"variants\[0\] \('control'\)\.sum_squares: required for mean metrics"),
    (lambda: analyze_metric(metric_type="conversion", variants=[VariantSummary("control", n=5, sum=1)]),
     r"variants: need a control and at least one treatment"),
    (lambda: analyze_metric(metric_type="conversion", variants=[VariantSummary("a", n=5, sum=1), VariantSummary("a", n=5, sum=1)]),
     r"variants: names must be unique"),
    (lambda: analyze_metric(metric_type="conversion", control="b", variants=[VariantSummary("a", n=5, sum=1), VariantSummary("c", n=5, sum=1)]),
     r"control: 'b' is not one of the variants"),
    (lambda: analyze_metric(metric_type="ratio", variants=[VariantSummary("a", n=5, sum=1, sum_squares=1), VariantSummary("c", n=5, sum=1, sum_squares=1)]),
     r"variants\[0\] \('a'\)\.denominator_sum: required for ratio metrics"),
    (lambda: analyze_metric(metric_type="conversion", use_cuped=True, variants=[VariantSummary("a", n=5, sum=1), VariantSummary("c", n=5, sum=1)]),
     r"variants\[0\] \('a'\)\.pre_sum: required for CUPED"),
    (lambda: analyze_metric(metric_type="median", variants=[]), r"metric_type: must be one of"),
    (lambda: analyze_metric(metric_type="conversion", alpha=5, variants=[]), r"alpha: must be between 0 and 1"),
    (lambda: srm_check(users=[50, 50], weights=[0.5, 0.4]), r"weights: must sum to 1, got 0.9"),
    (lambda: analyze_metric(metric_type="mean", variants=[VariantSummary("c", n=5.5, sum=1, sum_squares=1), VariantSummary("t", n=5, sum=1, sum_squares=1)]),
     r"variants\[0\] \('c'\)\.n: must be a positive integer"),
    (lambda: analyze_metric(metric_type="mean", variants=[VariantSummary("c", n=5, sum="1", sum_squares=1), VariantSummary("t", n=5, sum=1, sum_squares=1)]),
     r"variants\[0\] \('c'\)\.sum: must be a finite number, got '1'"),
    (lambda: analyze_metric(metric_type="mean", variants=[VariantSummary("c", n=5, sum=math.nan, sum_squares=1), VariantSummary("t", n=5, sum=1, sum_squares=1)]),
     r"variants\[0\] \('c'\)\.sum: must be a finite number"),
    (lambda: srm_check(users=[50, 50, 10], weights=[0.5, 0.5]), r"weights: 2 weights for 3 variants"),
    (lambda: srm_check(users=[50, -1], weights=[0.5, 0.5]), r"users\[1\] \('variant 1'\): must be a non-negative integer"),
    (lambda: srm_check(users=[50, 50], weights=[1.0, 0.0]), r"weights\[1\] \('variant 1'\): must be a positive fraction"),
    (lambda: conversion_sample_size(rate=0.1, relative_effect=0), r"relative_effect: need a non-zero effect"),
    (lambda: group_sequential_test(z=1.0, users=100, planned_users=0), r"planned_users: must be a positive integer"),
    (lambda: group_sequential_test(z=1.0, users=100, planned_users=1000, earlier_looks=[200]), r"earlier_looks: user counts must be positive and increasing"),
    (lambda: boundaries([0.5, 0.4]), r"fractions: must be increasing"),
    (lambda: boundaries([0.5, 1.0], spending="haybittle"), r"spending: must be 'obrien_fleming' or 'pocock'"),
    (lambda: conversion_sample_size(rate=1.5, relative_effect=0.1), r"rate: must be between 0 and 1"),
])
def test_bad_input__clear_value_error_naming_the_field(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_database_and_numpy_numbers_are_accepted():
    # PostgreSQL's SUM() of integers arrives as Decimal; numpy gives int64 / float64
    from decimal import Decimal
    plain = analyze_metric(metric_type="mean", variants=[
        VariantSummary("control", n=1_000, sum=5_000, sum_squares=40_000),
        VariantSummary("treatment", n=1_000, sum=5_300, sum_squares=44_000)])
    odd = analyze_metric(metric_type="mean", variants=[
        VariantSummary("control", n=np.int64(1_000), sum=Decimal(5_000), sum_squares=Decimal("40000")),
        VariantSummary("treatment", n=np.int32(1_000), sum=np.float64(5_300), sum_squares=np.int64(44_000))])
    assert odd == plain
    assert srm_check(users=[np.int64(500), 500], weights=[Decimal("0.5"), 0.5]).p_value == 1.0


def test_engine_imports_without_django():
    code = "import sys, experiments.stats; assert 'django' not in sys.modules, 'django imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
