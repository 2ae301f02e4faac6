"""Every write to the experiments tables: events inserted in bulk, exposures upserted in bulk.
Called by the Celery tasks with the batches the in-process buffers flush (experiments/buffers.py)."""

from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.models import Q

from experiments.models import Event, Exposure
from flags.models import Environment, Flag
from projects import scope

BATCH_SIZE = 1000


def _when(seconds):
    return datetime.fromtimestamp(float(seconds), tz=UTC)


def _by_ref(model, pairs):
    """{(environment ref, key): pk} of the (ref, key) pairs that name a row of ``model`` in the ref's
    project (refs: projects.scope; the same key lives in many projects). ``key`` None: the
    environment itself."""
    wanted = {}
    for env_ref, key in pairs:
        project, environment = scope.split(env_ref)
        wanted[(project, environment if key is None else key)] = (env_ref, key)
    if not wanted:
        return {}
    match = Q()
    for project, key in wanted:
        match |= Q(project_id=project, key=key)
    return {wanted[(project, key)]: pk for project, key, pk in
            model.all_objects.filter(match).values_list("project_id", "key", "pk")}


def events_write(*, rows):
    """Insert event rows ``[environment key, event, user id, value, timestamp (epoch s), properties,
    client id, received (epoch s)]``. Idempotent: a client id already stored in its environment is
    skipped (bulk_create ignore_conflicts on the unique (environment, client_id)), so a batch
    delivered twice adds nothing. Rows of environments that no longer exist are dropped.
    Returns the number of rows offered for insert."""
    environments = {env: pk for (env, _), pk in _by_ref(Environment, {(row[0], None) for row in rows}).items()}
    events = [
        Event(environment_id=environments[env], event=event, user_id=user_id, value=value,
              timestamp=_when(timestamp), properties=properties or {}, client_id=client_id,
              received_at=_when(received))
        for env, event, user_id, value, timestamp, properties, client_id, received in rows
        if env in environments
    ]
    Event.objects.bulk_create(events, ignore_conflicts=True, batch_size=BATCH_SIZE)
    return len(events)


def exposures_upsert(*, rows):
    """Upsert exposure rows ``[environment key, flag key, user id, first variant, last variant,
    first seen (epoch s), last seen (epoch s), variant changes within the batch]``.

    One statement per row on the unique (flag, environment, user) (INSERT ... ON CONFLICT DO UPDATE,
    the same SQL on PostgreSQL and SQLite), all in one transaction: a new row keeps its first
    variant and first_seen forever; a known one gets its last variant and last_seen moved on, and
    ``variant_changes`` grows by the changes in the batch plus one when the batch's first variant
    differs from the stored last one. Rows of unknown flags or environments are dropped."""
    if not rows:
        return 0
    environments = {env: pk for (env, _), pk in _by_ref(Environment, {(row[0], None) for row in rows}).items()}
    flags = _by_ref(Flag, {(row[0], row[1]) for row in rows})
    table = connection.ops.quote_name(Exposure._meta.db_table)
    sql = (
        f"INSERT INTO {table} (flag_id, environment_id, user_id, variant, last_variant, first_seen, last_seen, "
        "variant_changes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (flag_id, environment_id, user_id) DO UPDATE SET "
        f"variant_changes = {table}.variant_changes + excluded.variant_changes "
        f"+ CASE WHEN {table}.last_variant <> excluded.variant THEN 1 ELSE 0 END, "
        "last_variant = excluded.last_variant, "
        f"last_seen = CASE WHEN excluded.last_seen > {table}.last_seen THEN excluded.last_seen "
        f"ELSE {table}.last_seen END"
    )
    adapt = connection.ops.adapt_datetimefield_value
    params = []
    for env, flag, user_id, first, last, first_seen, last_seen, changes in rows:
        if env in environments and (env, flag) in flags:
            params.append((flags[(env, flag)], environments[env], str(user_id)[:256], first, last, adapt(_when(first_seen)),
                           adapt(_when(last_seen)), int(changes)))
    # one lock order for every writer; rows for one key stay in batch order (older first)
    params.sort(key=lambda p: (p[0], p[1], p[2]))
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(params), BATCH_SIZE):
            cursor.executemany(sql, params[start:start + BATCH_SIZE])
    return len(params)
