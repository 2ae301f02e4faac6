"""Every analytics read the API and the pages share: all of the current project (projects/scope.py)
only, like the flags they count."""

from collections import defaultdict
from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from analytics.hll import HyperLogLog
from analytics.models import EvaluationRollup, FlagActivity, Granularity, UniqueUsersRollup
from projects import scope

# timeRange -> (span, bucket)
TIME_RANGES = {
    "1h": (timedelta(hours=1), "hour"),
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "day"),
    "30d": (timedelta(days=30), "day"),
}


def _floor(moment, bucket):
    moment = moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if bucket == "day" else moment


def _buckets(now, time_range):
    """The bucket starts covering the range, oldest first (the current bucket included)."""
    span, bucket = TIME_RANGES[time_range]
    step = timedelta(days=1) if bucket == "day" else timedelta(hours=1)
    last = _floor(now, bucket)
    first = _floor(now - span, bucket)
    if time_range == "24h" or time_range == "7d" or time_range == "30d":
        first += step  # exactly N buckets, the current one last
    starts = []
    current = first
    while current <= last:
        starts.append(current)
        current += step
    return starts, bucket, step


def flag_series(*, flag_key, time_range, environment=None, now=None):
    """Evaluations of one flag over a time range, per hour (1h, 24h) or per day (7d, 30d):
    evaluations, enabled, disabled, per-variant counts and unique users (HyperLogLog estimates)."""
    now = now or timezone.now()
    starts, bucket, step = _buckets(now, time_range)
    since = starts[0]
    rows = EvaluationRollup.objects.filter(project=scope.current(), flag_key=flag_key, period_start__gte=since)
    user_rows = UniqueUsersRollup.objects.filter(project=scope.current(), flag_key=flag_key,
                                                 period_start__gte=since)
    if environment:
        rows = rows.filter(environment=environment)
        user_rows = user_rows.filter(environment=environment)
    series = {start: {"evaluations": 0, "enabled": 0, "disabled": 0, "variants": defaultdict(int)} for start in starts}
    totals = {"evaluations": 0, "enabled": 0, "disabled": 0, "variants": defaultdict(int)}
    environments = defaultdict(int)
    for row in rows.values_list("period_start", "environment", "variant", "enabled", "evaluations"):
        start, env, variant, enabled, n = row
        point = series.get(_floor(start, bucket))
        if point is None:
            continue
        for target in (point, totals):
            target["evaluations"] += n
            target["enabled" if enabled else "disabled"] += n
            if variant:
                target["variants"][variant] += n
        environments[env] += n
    sketches = defaultdict(HyperLogLog)
    total_sketch = HyperLogLog()
    for start, data in user_rows.values_list("period_start", "sketch"):
        key = _floor(start, bucket)
        if key in series:
            sketch = HyperLogLog.from_bytes(data)
            sketches[key].merge(sketch)
            total_sketch.merge(sketch)
    points = []
    for start in starts:
        point = series[start]
        points.append({
            "time": start.isoformat().replace("+00:00", "Z"),
            "evaluations": point["evaluations"],
            "enabled": point["enabled"],
            "disabled": point["disabled"],
            "variants": dict(sorted(point["variants"].items())),
            "uniqueUsers": sketches[start].count() if start in sketches else 0,
        })
    return {
        "flagId": flag_key,
        "timeRange": time_range,
        "granularity": bucket,
        "environment": environment,
        "from": starts[0].isoformat().replace("+00:00", "Z"),
        "to": (starts[-1] + step).isoformat().replace("+00:00", "Z"),
        "totals": {
            "evaluations": totals["evaluations"],
            "enabled": totals["enabled"],
            "disabled": totals["disabled"],
            "enabledRatio": round(totals["enabled"] / totals["evaluations"], 4) if totals["evaluations"] else None,
            "variants": dict(sorted(totals["variants"].items())),
            "uniqueUsers": total_sketch.count(),
            "environments": dict(sorted(environments.items())),
        },
        "series": points,
    }


def evaluations_since(since, *, flag_key=None):
    qs = EvaluationRollup.objects.filter(project=scope.current(), period_start__gte=since)
    if flag_key:
        qs = qs.filter(flag_key=flag_key)
    return qs.aggregate(n=Sum("evaluations"))["n"] or 0


def evaluations_by_flag(since):
    """{flag_key: evaluations since `since`} (hourly and daily rows)."""
    rows = (EvaluationRollup.objects.filter(project=scope.current(), period_start__gte=since)
            .values("flag_key").annotate(n=Sum("evaluations")))
    return {row["flag_key"]: row["n"] for row in rows}


def stale_flag_keys():
    return set(FlagActivity.objects.filter(project=scope.current(), stale=True).values_list("flag_key", flat=True))


def flag_activity(flag_key):
    return FlagActivity.objects.filter(project=scope.current(), flag_key=flag_key).first()


def metrics(*, now=None):
    """The current project at a glance: flags, per-environment enabled and killed, segments,
    evaluations in the last 24 hours, live WebSocket connections of this process to its environments."""
    from flags.live import watcher
    from flags.models import Environment, Flag, FlagState
    from segments.models import Segment

    now = now or timezone.now()
    live_flags = Flag.objects.filter(archived=False)
    per_env = (
        FlagState.objects.filter(flag__project_id=scope.current(), flag__archived=False)
        .values("environment__key")
        .annotate(enabled=Count("pk", filter=Q(enabled=True, killed=False)), killed=Count("pk", filter=Q(killed=True)))
    )
    per_env = {row["environment__key"]: row for row in per_env}
    environments = [env.key for env in Environment.objects.all()]
    since = _floor(now, "hour") - timedelta(hours=23)
    return {
        "flags": {
            "total": live_flags.count(),
            "archived": Flag.objects.filter(archived=True).count(),
            "stale": FlagActivity.objects.filter(project=scope.current(), stale=True,
                                                 flag_key__in=live_flags.values("key")).count(),
        },
        "enabledFlags": {env: per_env.get(env, {}).get("enabled", 0) for env in environments},
        "killedFlags": {env: per_env.get(env, {}).get("killed", 0) for env in environments},
        "segments": Segment.objects.count(),
        "evaluations24h": evaluations_since(since),
        "liveConnections": watcher.connection_count(scope.current()),
        "generatedAt": now.isoformat().replace("+00:00", "Z"),
    }


def top_flags(*, since, limit=10):
    rows = (EvaluationRollup.objects.filter(project=scope.current(), period_start__gte=since)
            .values("flag_key").annotate(n=Sum("evaluations")).order_by("-n", "flag_key")[:limit])
    return [(row["flag_key"], row["n"]) for row in rows]


def evaluations_series_all(*, time_range="24h", now=None):
    """Evaluations of every flag together over a time range (the analytics overview chart)."""
    now = now or timezone.now()
    starts, bucket, step = _buckets(now, time_range)
    series = {start: [0, 0] for start in starts}
    for start, enabled, n in EvaluationRollup.objects.filter(
            project=scope.current(), period_start__gte=starts[0]).values_list(
            "period_start", "enabled", "evaluations"):
        point = series.get(_floor(start, bucket))
        if point is not None:
            point[0 if enabled else 1] += n
    return [{"time": start.isoformat().replace("+00:00", "Z"), "enabled": v[0], "disabled": v[1]}
            for start, v in series.items()]


__all__ = ["TIME_RANGES", "flag_series", "metrics", "stale_flag_keys", "Granularity"]
