"""Every write to the analytics tables: rollup upserts, compaction, stale marking.

Counts are upserted additively (INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n, the same
SQL on PostgreSQL and SQLite), so batches from any number of processes and workers add up exactly.
Sketches are merged under a row lock.

Batches name environments by ref (projects/scope.py); each row stores the ref's project and plain
environment key, so every read filters by project (analytics/selectors.py).
"""

import base64
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from analytics.hll import HyperLogLog
from analytics.models import EvaluationRollup, FlagActivity, Granularity, UniqueUsersRollup
from projects import scope

STALE_AFTER_DAYS = 30
COMPACT_AFTER_DAYS = 30


def hour_start(hour):
    """Epoch hour number -> aware UTC datetime."""
    return datetime.fromtimestamp(int(hour) * 3600, tz=UTC)


def _add_counts(counts, granularity):
    """counts: {(period_start, project, environment, flag_key, variant, enabled): n}, added to the rows."""
    if not counts:
        return
    table = connection.ops.quote_name(EvaluationRollup._meta.db_table)
    sql = (
        f"INSERT INTO {table} (granularity, period_start, project, environment, flag_key, variant, enabled, "
        "evaluations) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (project, granularity, period_start, environment, flag_key, variant, enabled) "
        f"DO UPDATE SET evaluations = {table}.evaluations + excluded.evaluations"
    )
    adapt = connection.ops.adapt_datetimefield_value
    rows = [(granularity, adapt(start), project, env, flag, variant or "", bool(enabled), int(n))
            for (start, project, env, flag, variant, enabled), n in sorted(counts.items(), key=_sort_key) if n]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _sort_key(item):
    start, project, env, flag, variant, enabled = item[0]
    return start, project, env, flag, variant or "", enabled  # one lock order for every writer


def _merge_sketches(sketches, granularity):
    """sketches: {(period_start, project, environment, flag_key): HyperLogLog}, merged into the rows."""
    if not sketches:
        return
    UniqueUsersRollup.objects.bulk_create(
        [UniqueUsersRollup(granularity=granularity, period_start=start, project=project, environment=env,
                           flag_key=flag)
         for start, project, env, flag in sorted(sketches)],
        ignore_conflicts=True,
    )
    rows = (
        UniqueUsersRollup.objects.select_for_update()
        .filter(granularity=granularity, period_start__in={key[0] for key in sketches},
                project__in={key[1] for key in sketches}, flag_key__in={key[3] for key in sketches})
        .order_by("period_start", "project", "environment", "flag_key")
    )
    changed = []
    for row in rows:
        sketch = sketches.get((row.period_start, row.project, row.environment, row.flag_key))
        if sketch is None:
            continue
        merged = HyperLogLog.from_bytes(row.sketch).merge(sketch)
        row.sketch = merged.to_bytes()
        row.users = merged.count()
        changed.append(row)
    UniqueUsersRollup.objects.bulk_update(changed, ["sketch", "users"], batch_size=200)


def _touch_activity(last_seen):
    """last_seen: {(project, flag_key): datetime}; a flag evaluated is not stale."""
    if not last_seen:
        return
    table = connection.ops.quote_name(FlagActivity._meta.db_table)
    sql = (
        f"INSERT INTO {table} (project, flag_key, last_evaluated_at, stale, stale_since) "
        "VALUES (%s, %s, %s, %s, NULL) "
        "ON CONFLICT (project, flag_key) DO UPDATE SET "
        f"last_evaluated_at = CASE WHEN {table}.last_evaluated_at IS NULL "
        f"OR excluded.last_evaluated_at > {table}.last_evaluated_at "
        f"THEN excluded.last_evaluated_at ELSE {table}.last_evaluated_at END, "
        "stale = excluded.stale, stale_since = NULL"
    )
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(project, key, adapt(when), False)
                                 for (project, key), when in sorted(last_seen.items())])


def rollup_apply(*, batch):
    """Upsert one flushed batch (analytics.counters.Recorder.collect) into the hourly rollups."""
    counts = Counter()
    last_seen = {}
    for ref, flag, variant, enabled, hour, n in batch.get("counts") or ():
        start = hour_start(hour)
        project, env = scope.split(ref)
        counts[(start, project, env, flag, variant or "", bool(enabled))] += int(n)
        seen = start + timedelta(hours=1) - timedelta(microseconds=1)
        last_seen[(project, flag)] = max(last_seen.get((project, flag), seen), seen)
    sketches = {}
    for ref, flag, hour, data in batch.get("users") or ():
        project, env = scope.split(ref)
        key = (hour_start(hour), project, env, flag)
        sketch = HyperLogLog.from_bytes(base64.b64decode(data))
        sketches[key] = sketches[key].merge(sketch) if key in sketches else sketch
    now = timezone.now()
    last_seen = {flag: min(when, now) for flag, when in last_seen.items()}
    with transaction.atomic():
        _add_counts(counts, Granularity.HOUR)
        _merge_sketches(sketches, Granularity.HOUR)
        _touch_activity(last_seen)
    return sum(counts.values())


def rollups_compact(*, older_than_days=COMPACT_AFTER_DAYS, now=None):
    """Fold hourly rows of whole days older than ``older_than_days`` into daily rows (sums, merged
    sketches) and delete the hours. Returns the number of hourly rows folded."""
    now = now or timezone.now()
    cutoff = (now - timedelta(days=older_than_days)).replace(hour=0, minute=0, second=0, microsecond=0)
    folded = 0
    with transaction.atomic():
        hours = EvaluationRollup.objects.select_for_update().filter(
            granularity=Granularity.HOUR, period_start__lt=cutoff)
        days = Counter()
        ids = []
        for row in hours.order_by("pk"):
            day = row.period_start.replace(hour=0, minute=0, second=0, microsecond=0)
            days[(day, row.project, row.environment, row.flag_key, row.variant, row.enabled)] += row.evaluations
            ids.append(row.pk)
        _add_counts(days, Granularity.DAY)
        for start in range(0, len(ids), 500):
            EvaluationRollup.objects.filter(pk__in=ids[start:start + 500]).delete()
        folded = len(ids)

        user_hours = UniqueUsersRollup.objects.select_for_update().filter(
            granularity=Granularity.HOUR, period_start__lt=cutoff)
        sketches = defaultdict(HyperLogLog)
        ids = []
        for row in user_hours.order_by("pk"):
            day = row.period_start.replace(hour=0, minute=0, second=0, microsecond=0)
            sketches[(day, row.project, row.environment, row.flag_key)].merge(HyperLogLog.from_bytes(row.sketch))
            ids.append(row.pk)
        _merge_sketches(dict(sketches), Granularity.DAY)
        for start in range(0, len(ids), 500):
            UniqueUsersRollup.objects.filter(pk__in=ids[start:start + 500]).delete()
    return folded


def flags_mark_stale(*, days=STALE_AFTER_DAYS, now=None):
    """Mark flags no one evaluated (in any environment) for ``days`` as stale; clear the mark on
    flags evaluated since. A flag younger than ``days`` is not stale. Every project's flags; returns
    the stale keys ("<project>/<key>" outside the default project)."""
    from flags.models import Flag

    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    activity = {(row.project, row.flag_key): row for row in FlagActivity.objects.all()}
    stale_keys = []
    with transaction.atomic():
        for flag in Flag.all_objects.filter(archived=False).only("key", "project_id", "created_at"):
            row = activity.get((flag.project_id, flag.key))
            last = row.last_evaluated_at if row and row.last_evaluated_at else None
            stale = (last or flag.created_at) < cutoff
            if stale:
                stale_keys.append(flag.key if flag.project_id == scope.DEFAULT else f"{flag.project_id}/{flag.key}")
            if row is None:
                FlagActivity.objects.create(project=flag.project_id, flag_key=flag.key, stale=stale,
                                            stale_since=now if stale else None)
            elif row.stale != stale:
                FlagActivity.objects.filter(pk=row.pk).update(stale=stale, stale_since=now if stale else None)
    return sorted(stale_keys)
