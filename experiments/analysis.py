"""An experiment's results: summary statistics per variant computed IN the database, one aggregate
query for all its metrics (PostgreSQL and SQLite alike), handed to the stats package
(experiments/stats: no Django) for every comparison, the SRM check and the verdicts.

The query, per exposed user of the experiment (its Exposure rows: experiments/models.py) joined
to that user's events of the metrics' names in the same environment:
- the value of each metric from the events within its window after the user's first exposure,
  and never after the experiment stopped (conversion 0/1, count, sum; a ratio's numerator and
  denominator);
- the same value over the PRE_PERIOD before first exposure: the CUPED covariate (not for ratios);
then, per variant: users, sum, sum of squares (and the cross sums ratio and CUPED need). Only
those few numbers per variant leave the database, whatever the number of users. A user whose
variant changed mid-experiment counts once, in the first variant, and is reported.
"""

import math
import time
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from experiments import stats
from experiments.models import Event, Experiment, Exposure, Metric

PRE_PERIOD = timedelta(days=14)
STAT_TYPE = {Metric.Kind.CONVERSION: "conversion", Metric.Kind.COUNT: "mean", Metric.Kind.SUM: "mean",
             Metric.Kind.RATIO: "ratio"}
ROLES = ("primary", "secondary", "guardrail")
POWER = 0.8


def experiment_metrics(experiment):
    """[(role, metric)]: the primary, then the secondary and guardrail metrics by key."""
    return ([("primary", experiment.primary_metric)]
            + [("secondary", m) for m in experiment.secondary_metrics.order_by("key")]
            + [("guardrail", m) for m in experiment.guardrail_metrics.order_by("key")])


# -- SQL -----------------------------------------------------------------------------------------

def _shifted(column, seconds):
    """``column`` moved by ``seconds`` (an int we computed, never user input), comparable with
    another timestamp column: PostgreSQL interval arithmetic; SQLite compares Julian days."""
    if connection.vendor == "postgresql":
        return f"({column} + interval '{int(seconds)} seconds')"
    return f"(julianday({column}) + {int(seconds)} / 86400.0)"


def _ts(column):
    return column if connection.vendor == "postgresql" else f"julianday({column})"


def _summary_sql(experiment, metrics, end):
    """(sql, params): one row per variant: variant, users, users whose variant changed, then per
    metric v-sum, v-squares, [d-sum, d-squares, v*d], [p-sum, p-squares, v*p]. Window bounds are
    computed once per exposure (x.t0, x.w<hours>, x.pre), not once per joined event.

    PostgreSQL's plan at 1M exposures and 5M events (bench/experiments.py --analysis): the events
    hashed once (~3.5 s of a 9.7 s run), the exposures split among parallel workers probing it
    (~2.2 s), so each worker aggregates its own users (~1.5 s), then the Gather and merge of the
    1M per-user rows (~1.7 s) and the sums per variant (~0.5 s). Measured against it in the same
    runs, interleaved, sums identical, and not kept: per-user columns as aggregates with FILTER
    in double precision (0.87x, 1.09x, 1.22x: noise, no gain); an INNER join with the users
    counted apart, which hashes the exposures instead but lets every worker see every user
    (1.13x); a nested loop over an (environment, user, event, timestamp) covering index (1.45x);
    a UNION ALL of user-hash partitions (the planner misjudges hashtext's selectivity and picks
    nested loops: 4x)."""
    exposure = connection.ops.quote_name(Exposure._meta.db_table)
    event = connection.ops.quote_name(Event._meta.db_table)
    inner, outer, inner_params = [], [], []
    at = _ts("e.timestamp")
    windows = sorted({m.window_hours for m in metrics if m.window_hours})
    pre = any(m.kind != Metric.Kind.RATIO for m in metrics)

    def during(metric):
        return f"{at} >= x.t0" + (f" AND {at} < x.w{metric.window_hours}" if metric.window_hours else "")

    before = f"{at} < x.t0 AND {at} >= x.pre"

    def value(metric, cond, name):
        if metric.kind == Metric.Kind.CONVERSION:
            expr = f"MAX(CASE WHEN e.event = %s AND {cond} THEN 1 ELSE 0 END)"
        elif metric.kind == Metric.Kind.COUNT:
            expr = f"SUM(CASE WHEN e.event = %s AND {cond} THEN 1 ELSE 0 END)"
        else:  # sum; a ratio's numerator (a valueless event counts 1)
            default = 1 if metric.kind == Metric.Kind.RATIO else 0
            expr = f"SUM(CASE WHEN e.event = %s AND {cond} THEN COALESCE(e.value, {default}) ELSE 0 END)"
        inner.append(f"{expr} AS {name}")
        inner_params.append(metric.event)

    for i, metric in enumerate(metrics):
        value(metric, during(metric), f"v{i}")
        outer += [f"SUM(u.v{i})", f"SUM(u.v{i} * u.v{i})"]
        if metric.kind == Metric.Kind.RATIO:
            inner.append(f"SUM(CASE WHEN e.event = %s AND {during(metric)} THEN 1 ELSE 0 END) AS d{i}")
            inner_params.append(metric.denominator_event)
            outer += [f"SUM(u.d{i})", f"SUM(u.d{i} * u.d{i})", f"SUM(u.v{i} * u.d{i})"]
        else:
            value(metric, before, f"p{i}")
            outer += [f"SUM(u.p{i})", f"SUM(u.p{i} * u.p{i})", f"SUM(u.v{i} * u.p{i})"]
    names = sorted({m.event for m in metrics} | {m.denominator_event for m in metrics if m.denominator_event})
    bounds = [f"{_ts('first_seen')} AS t0", f"{_shifted('first_seen', -PRE_PERIOD.total_seconds())} AS pre"]
    bounds += [f"{_shifted('first_seen', hours * 3600)} AS w{hours}" for hours in windows]
    sql = (
        f"SELECT u.variant, COUNT(*), SUM(CASE WHEN u.changes > 0 THEN 1 ELSE 0 END), {', '.join(outer)} "
        f"FROM (SELECT x.variant AS variant, x.variant_changes AS changes, {', '.join(inner)} "
        f"FROM (SELECT id, environment_id, user_id, variant, variant_changes, {', '.join(bounds)} "
        f"FROM {exposure} WHERE experiment_id = %s) x "
        f"LEFT JOIN {event} e ON e.environment_id = x.environment_id AND e.user_id = x.user_id "
        f"AND e.event IN ({', '.join(['%s'] * len(names))}) AND {at} >= x.{'pre' if pre else 't0'} "
        "AND e.timestamp <= %s "
        "GROUP BY x.id, x.variant, x.variant_changes) u "
        "GROUP BY u.variant ORDER BY u.variant"
    )
    params = [*inner_params, experiment.pk, *names, connection.ops.adapt_datetimefield_value(end)]
    return sql, params


def summaries(experiment, metrics, end):
    """{variant: {"users", "changed", "metrics": [column tuple per metric]}} from one query."""
    sql, params = _summary_sql(experiment, metrics, end)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # the per-user step hashes ~1M groups: keep it in memory; JIT compiling costs more than it saves
            cursor.execute("SET LOCAL work_mem = '256MB'")
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = {}
    for variant, users, changed, *sums in rows:
        columns = []
        for i, metric in enumerate(metrics):
            columns.append(tuple(float(s or 0) for s in sums[5 * i:5 * i + 5]))
        out[variant] = {"users": int(users), "changed": int(changed or 0), "metrics": columns}
    return out


def exposures_by_day(experiment):
    """[{"date", "variant", "users"}]: users first exposed each day (UTC)."""
    rows = (Exposure.objects.filter(experiment=experiment).annotate(date=TruncDate("first_seen"))
            .values("date", "variant").annotate(users=Count("id")).order_by("date", "variant"))
    return [{"date": row["date"].isoformat(), "variant": row["variant"], "users": row["users"]} for row in rows]


# -- statistics ----------------------------------------------------------------------------------

def _num(x):
    """JSON-safe: NaN and infinities (not enough data) become null."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _interval(iv):
    return [_num(iv.low), _num(iv.high)]


def _variant_summary(name, metric, columns, users):
    s, ss, a, b, c = columns
    if metric.kind == Metric.Kind.RATIO:
        return stats.VariantSummary(name, n=users, sum=s, sum_squares=ss, denominator_sum=a,
                                    denominator_sum_squares=b, cross_sum=c)
    return stats.VariantSummary(name, n=users, sum=s, sum_squares=None if metric.kind == Metric.Kind.CONVERSION
                                else ss, pre_sum=a, pre_sum_squares=b, pre_cross_sum=c)


def _srm(order, weights, data):
    users = [data.get(v, {}).get("users", 0) for v in order]
    if sum(users) == 0 or len(weights) < 2:
        return None
    unexpected = {v: d["users"] for v, d in data.items() if v not in weights and d["users"]}
    weighted = [v for v in order if v in weights]
    result = stats.srm_check(users=[data.get(v, {}).get("users", 0) for v in weighted],
                             weights=[weights[v] for v in weighted], names=weighted)
    out = {"flagged": result.flagged, "pValue": _num(result.p_value), "chiSquare": _num(result.chi_square),
           "threshold": result.threshold, "message": result.message, "_result": result}
    if unexpected:
        extra = ", ".join(f"{v} ({n:,} users)" for v, n in unexpected.items())
        out.update(flagged=True, message=f"Sample ratio mismatch: users were exposed to variants with no weight when "
                                         f"the experiment started: {extra}. Do not trust these results until the "
                                         "cause is found.")
    return out


def _metric_result(role, metric, position, order, control, data, srm):
    """One metric: a row per variant; ``position``: the metric's columns in the query."""
    present = [v for v in order if data.get(v, {}).get("users", 0) > 0
               and (metric.kind != Metric.Kind.RATIO or data[v]["metrics"][position][2] > 0)]  # a denominator
    base = {"metric": metric.key, "name": metric.name, "role": role, "kind": metric.kind,
            "higherIsBetter": metric.higher_is_better, "windowHours": metric.window_hours}
    if control not in present or len(present) < 2:
        return {**base, "cuped": None, "correction": "", "variants": [
            {"variant": v, "control": v == control, "users": data.get(v, {}).get("users", 0), "value": None,
             "verdict": "not enough data yet: the control and a treatment both need exposed users"
                        + (" with denominator events" if metric.kind == Metric.Kind.RATIO else "")}
            for v in order]}
    summaries_ = [_variant_summary(v, metric, data[v]["metrics"][position], data[v]["users"]) for v in present]
    cuped = metric.kind != Metric.Kind.RATIO and any(s.pre_sum_squares for s in summaries_)
    result = stats.analyze_metric(metric_type=STAT_TYPE[metric.kind], variants=summaries_, control=control,
                                  higher_is_better=metric.higher_is_better, use_cuped=cuped)
    rows = []
    for v in order:
        if v not in present:
            rows.append({"variant": v, "control": v == control, "users": data.get(v, {}).get("users", 0),
                         "value": None, "verdict": "not enough data yet"})
            continue
        vr = result.variant(v)
        row = {"variant": v, "control": v == control, "users": vr.users, "value": _num(vr.mean),
               "unadjustedValue": _num(vr.unadjusted_mean), "standardError": _num(vr.standard_error)}
        if v != control:
            c = result.comparison(v)
            more = stats.more_users_needed(result, v, power=POWER)
            row.update({
                "enoughData": c.enough_data,
                "absoluteUplift": _num(c.absolute), "relativeUplift": _num(c.relative),
                "relativeInterval": _interval(c.relative_ci), "absoluteInterval": _interval(c.absolute_ci),
                "pValue": _num(c.p_value), "pValueAdjusted": _num(c.p_value_adjusted), "significant": c.significant,
                "sequentialInterval": _interval(c.sequential_relative_ci),
                "sequentialPValue": _num(c.sequential_p_value_adjusted),
                "sequentialSignificant": c.sequential_significant,
                "chanceToBeatControl": _num(c.chance_to_beat_control), "expectedLoss": _num(c.expected_loss),
                "credibleInterval": _interval(c.credible_interval),
                "moreUsersNeeded": more,
                "verdict": stats.verdict(result, v, srm=srm["_result"] if srm else None, power=POWER),
            })
        rows.append(row)
    return {**base, "cuped": _num(result.cuped_theta) if cuped else None, "correction": result.correction,
            "variants": rows}


def experiment_results(experiment, *, now=None):
    """Everything the results page and GET .../results show, as JSON-ready data."""
    started = time.perf_counter()
    experiment = Experiment.all_objects.select_related("flag", "environment", "primary_metric").get(pk=experiment.pk)
    metrics = experiment_metrics(experiment)
    end = experiment.stopped_at or now or timezone.now()
    data = summaries(experiment, [m for _, m in metrics], end) if experiment.started_at else {}
    sql = time.perf_counter() - started
    weights = experiment.weights or {}
    order = [experiment.control] + [v["key"] for v in experiment.flag.variants if v["key"] != experiment.control]
    order += sorted(v for v in data if v not in order)
    srm = _srm(order, weights, data)
    results = [_metric_result(role, metric, i, order, experiment.control, data, srm)
               for i, (role, metric) in enumerate(metrics)]
    primary = results[0]
    verdicts = [row["verdict"] if row["verdict"].startswith(row["variant"]) else f"{row['variant']}: {row['verdict']}"
                for row in primary["variants"] if not row["control"]]
    if srm is not None:
        srm.pop("_result")
    by_day_started = time.perf_counter()
    by_day = exposures_by_day(experiment)
    done = time.perf_counter()
    return {
        "experiment": experiment.key,
        "status": experiment.status,
        "startedAt": experiment.started_at, "stoppedAt": experiment.stopped_at, "until": end,
        "control": experiment.control,
        "users": sum(d["users"] for d in data.values()),
        "variants": [{"variant": v, "users": data.get(v, {}).get("users", 0), "weight": weights.get(v, 0.0),
                      "variantChanged": data.get(v, {}).get("changed", 0)} for v in order],
        "srm": srm,
        "verdict": verdicts,
        "metrics": results,
        "exposuresByDay": by_day,
        # where the time went: the queries (the sums, the experiment's rows, exposures per day);
        # the rest is the statistics in Python
        "seconds": round(done - started, 4), "sqlSeconds": round(sql + done - by_day_started, 4),
    }
