"""Every write to the experiments tables: events inserted in bulk and exposures upserted in bulk
(called by the Celery tasks with the batches the in-process buffers flush, experiments/buffers.py);
metrics and experiments created, changed, started and stopped, each audited in its transaction."""

from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import audit_record
from experiments.models import Event, Experiment, Exposure, Metric
from flags.errors import Conflict, ValidationFailed
from flags.models import Environment, Flag
from flags.validation import add, check_bool, check_key, check_text
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

    A row whose first evaluation came after the start of the experiment running on its flag and
    environment is that experiment's (unique per experiment and user), any other is the flag's
    (unique per flag, environment and user): experiments/models.py. One statement per row
    (INSERT ... ON CONFLICT DO UPDATE on the matching partial unique index, the same SQL on
    PostgreSQL and SQLite), all in one transaction: a new row keeps its first variant and
    first_seen forever; a known one gets its last variant and last_seen moved on, and
    ``variant_changes`` grows by the changes in the batch plus one when the batch's first variant
    differs from the stored last one. Rows of unknown flags or environments are dropped."""
    if not rows:
        return 0
    environments = {env: pk for (env, _), pk in _by_ref(Environment, {(row[0], None) for row in rows}).items()}
    flags = _by_ref(Flag, {(row[0], row[1]) for row in rows})
    running = {(flag, env): (pk, started.timestamp()) for pk, flag, env, started in Experiment.all_objects.filter(
        status=Experiment.Status.RUNNING, flag_id__in=set(flags.values())).values_list(
        "pk", "flag_id", "environment_id", "started_at")}
    table = connection.ops.quote_name(Exposure._meta.db_table)
    update = (
        f"DO UPDATE SET variant_changes = {table}.variant_changes + excluded.variant_changes "
        f"+ CASE WHEN {table}.last_variant <> excluded.variant THEN 1 ELSE 0 END, "
        "last_variant = excluded.last_variant, "
        f"last_seen = CASE WHEN excluded.last_seen > {table}.last_seen THEN excluded.last_seen "
        f"ELSE {table}.last_seen END"
    )
    insert = (f"INSERT INTO {table} (experiment_id, flag_id, environment_id, user_id, variant, last_variant, "
              "first_seen, last_seen, variant_changes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ")
    sql = {
        False: insert + "ON CONFLICT (flag_id, environment_id, user_id) WHERE experiment_id IS NULL " + update,
        True: insert + "ON CONFLICT (experiment_id, user_id) WHERE experiment_id IS NOT NULL " + update,
    }
    adapt = connection.ops.adapt_datetimefield_value
    params = {False: [], True: []}
    for env, flag, user_id, first, last, first_seen, last_seen, changes in rows:
        if env in environments and (env, flag) in flags:
            flag_pk, env_pk = flags[(env, flag)], environments[env]
            experiment, started = running.get((flag_pk, env_pk), (None, None))
            # exposures have whole seconds: one in the start's own second counts
            if experiment is not None and first_seen < int(started):
                experiment = None  # first seen before the start: not the experiment's user (yet)
            params[experiment is not None].append((experiment, flag_pk, env_pk, str(user_id)[:256], first, last,
                                                   adapt(_when(first_seen)), adapt(_when(last_seen)), int(changes)))
    with transaction.atomic(), connection.cursor() as cursor:
        for owned, batch in params.items():
            # one lock order for every writer; rows for one key stay in batch order (older first)
            batch.sort(key=lambda p: (p[0] or 0, p[1], p[2], p[3]))
            for start in range(0, len(batch), BATCH_SIZE):
                cursor.executemany(sql[owned], batch[start:start + BATCH_SIZE])
    return len(params[False]) + len(params[True])


def running_experiments(project, environment_key):
    """{flag key: start (epoch seconds)} of the experiments running in one environment: a part of
    its snapshot payload (flags/snapshot.py payload_parts), so every process and SDK learns of a
    start with the snapshot, and its exposure table starts over (experiments/buffers.py)."""
    rows = Experiment.all_objects.filter(project_id=project, environment__key=environment_key,
                                         status=Experiment.Status.RUNNING).values_list("flag__key", "started_at")
    return {flag: started.timestamp() for flag, started in rows}


def _announce(experiment, action):
    """In the caller's transaction: move the environment's version on, so every process reloads
    its snapshot (with the new ``experiments``) and SDKs receive it, once committed."""
    from flags import services as flag_services

    flag_services._after_commit(flag_services._bump([experiment.environment]), action, flag_key=experiment.flag.key)


# -- metrics and experiments ---------------------------------------------------------------------
# Field paths are the API's names (camelCase), as the flag services do ("offVariant").

METRIC_FIELDS = {"name": "name", "description": "description", "kind": "kind", "event": "event",
                 "denominatorEvent": "denominator_event", "windowHours": "window_hours",
                 "higherIsBetter": "higher_is_better"}
MAX_WINDOW_HOURS = 24 * 366


def metric_data(metric):
    return {"key": metric.key, **{name: getattr(metric, attr) for name, attr in METRIC_FIELDS.items()}}


def experiment_data(experiment):
    return {
        "key": experiment.key, "name": experiment.name, "hypothesis": experiment.hypothesis,
        "flag": experiment.flag.key, "environment": experiment.environment.key, "control": experiment.control,
        "primaryMetric": experiment.primary_metric.key,
        "secondaryMetrics": [m.key for m in experiment.secondary_metrics.all()],
        "guardrailMetrics": [m.key for m in experiment.guardrail_metrics.all()],
        "status": experiment.status, "weights": experiment.weights,
        "startedAt": experiment.started_at, "stoppedAt": experiment.stopped_at,
        "shippedVariant": experiment.shipped_variant,
    }


def _check_metric(fields, data):
    """``data``: API names -> values (every field of a metric, after merging an update)."""
    check_text(fields, "name", data["name"], required=True, max_length=200)
    check_text(fields, "description", data["description"], max_length=10_000)
    if data["kind"] not in Metric.Kind.values:
        add(fields, "kind", f"Must be one of: {', '.join(Metric.Kind.values)}.")
    check_text(fields, "event", data["event"], required=True, max_length=128)
    ratio = data["kind"] == Metric.Kind.RATIO
    check_text(fields, "denominatorEvent", data["denominatorEvent"], required=ratio, max_length=128)
    if not ratio and data["denominatorEvent"]:
        add(fields, "denominatorEvent", "Only ratio metrics have a denominator event.")
    window = data["windowHours"]
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                               or not 1 <= window <= MAX_WINDOW_HOURS):
        add(fields, "windowHours", f"Must be a whole number of hours from 1 to {MAX_WINDOW_HOURS}, or null "
                                   "(until the experiment stops).")
    check_bool(fields, "higherIsBetter", data["higherIsBetter"])


def metric_create(*, actor, key, name, kind, event, description="", denominator_event="", window_hours=None,
                  higher_is_better=True):
    fields = {}
    check_key(fields, key)
    data = {"name": name, "description": description, "kind": kind, "event": event,
            "denominatorEvent": denominator_event, "windowHours": window_hours, "higherIsBetter": higher_is_better}
    _check_metric(fields, data)
    if fields:
        raise ValidationFailed(fields)
    if Metric.objects.filter(key=key).exists():
        raise Conflict(f"A metric with key '{key}' already exists.", fields={"key": ["Already exists."]})
    with transaction.atomic():
        metric = Metric.objects.create(key=key, **{METRIC_FIELDS[k]: v for k, v in data.items()})
        audit_record(actor=actor, action="metric.created", target_type="metric", target_key=key,
                     after=metric_data(metric))
    return metric


def metric_update(*, actor, metric, data):
    """Change any field but the key (API names). Experiments using the metric see the new
    definition at their next look: results are always computed from the raw events."""
    fields = {}
    if not isinstance(data, dict):
        raise ValidationFailed({"non_field_errors": ["Expected an object."]})
    for name in sorted(set(data) - set(METRIC_FIELDS)):
        if name != "key" or data["key"] != metric.key:
            add(fields, name, "Metric keys cannot be changed." if name == "key" else "Unknown field.")
    merged = {**{k: v for k, v in metric_data(metric).items() if k != "key"},
              **{k: v for k, v in data.items() if k in METRIC_FIELDS}}
    if merged["kind"] != Metric.Kind.RATIO and "denominatorEvent" not in data:
        merged["denominatorEvent"] = ""  # a ratio turned into another kind drops its denominator
    _check_metric(fields, merged)
    if fields:
        raise ValidationFailed(fields)
    with transaction.atomic():
        metric = Metric.objects.select_for_update().get(pk=metric.pk)
        before = metric_data(metric)
        for name, value in merged.items():
            setattr(metric, METRIC_FIELDS[name], value)
        if metric_data(metric) == before:
            return metric
        metric.save()
        audit_record(actor=actor, action="metric.updated", target_type="metric", target_key=metric.key,
                     before=before, after=metric_data(metric))
    return metric


def metric_delete(*, actor, metric):
    """Refused (409) while an experiment uses it: its results would lose their definition."""
    users = sorted(Experiment.objects.filter(Q(primary_metric=metric) | Q(secondary_metrics=metric)
                                             | Q(guardrail_metrics=metric)).values_list("key", flat=True).distinct())
    if users:
        raise Conflict(f"Metric '{metric.key}' is used by experiment(s) {', '.join(users)}.")
    with transaction.atomic():
        before = metric_data(metric)
        Metric.objects.filter(pk=metric.pk).delete()
        audit_record(actor=actor, action="metric.deleted", target_type="metric", target_key=metric.key,
                     before=before)


def _metric_list(fields, path, keys, metrics):
    if not isinstance(keys, (list, tuple)):
        add(fields, path, "Must be a list of metric keys.")
        return []
    found = []
    for i, key in enumerate(keys):
        if not isinstance(key, str) or key not in metrics:
            add(fields, f"{path}[{i}]", f"No metric '{key}' in this project.")
        elif metrics[key] in found:
            add(fields, f"{path}[{i}]", "Listed twice.")
        else:
            found.append(metrics[key])
    return found


def experiment_create(*, actor, key, name, flag, environment, control, primary_metric, hypothesis="",
                      secondary_metrics=(), guardrail_metrics=()):
    """A draft experiment on a multivariate ``flag`` (key) in ``environment`` (key); metrics by key."""
    fields = {}
    check_key(fields, key)
    check_text(fields, "name", name, required=True, max_length=200)
    check_text(fields, "hypothesis", hypothesis, max_length=10_000)
    flag_row = Flag.objects.filter(key=flag, archived=False).first() if isinstance(flag, str) else None
    if flag_row is None:
        add(fields, "flag", f"No active flag '{flag}' in this project.")
    elif flag_row.kind != Flag.Kind.MULTIVARIATE or len(flag_row.variants) < 2:
        add(fields, "flag", "An experiment needs a multivariate flag with at least two variants.")
    elif control not in [v["key"] for v in flag_row.variants]:
        add(fields, "control", f"Must be one of the flag's variants: {', '.join(v['key'] for v in flag_row.variants)}.")
    env = Environment.objects.filter(key=environment).first() if isinstance(environment, str) else None
    if env is None:
        add(fields, "environment", f"No environment '{environment}' in this project.")
    metrics = {m.key: m for m in Metric.objects.all()}
    primary = metrics.get(primary_metric) if isinstance(primary_metric, str) else None
    if primary is None:
        add(fields, "primaryMetric", f"No metric '{primary_metric}' in this project.")
    secondary = _metric_list(fields, "secondaryMetrics", secondary_metrics, metrics)
    guardrail = _metric_list(fields, "guardrailMetrics", guardrail_metrics, metrics)
    if fields:
        raise ValidationFailed(fields)
    if Experiment.objects.filter(key=key).exists():
        raise Conflict(f"An experiment with key '{key}' already exists.", fields={"key": ["Already exists."]})
    with transaction.atomic():
        experiment = Experiment.objects.create(key=key, name=name, hypothesis=hypothesis, flag=flag_row,
                                               environment=env, control=control, primary_metric=primary)
        experiment.secondary_metrics.set(secondary)
        experiment.guardrail_metrics.set(guardrail)
        audit_record(actor=actor, action="experiment.created", target_type="experiment", target_key=key,
                     environment=env.key, after=experiment_data(experiment))
    return experiment


def _locked(experiment):
    return Experiment.all_objects.select_for_update(of=("self",)).select_related("flag", "environment", "primary_metric") \
        .get(pk=experiment.pk)


def experiment_start(*, actor, experiment):
    """draft -> running: from now on, exposures of its flag in its environment are its own. The
    variant weights are recorded: the split the sample-ratio check expects."""
    with transaction.atomic():
        experiment = _locked(experiment)
        if experiment.status != Experiment.Status.DRAFT:
            raise Conflict(f"Experiment '{experiment.key}' is {experiment.status}; only a draft can start.",
                           fields={"status": [f"Is {experiment.status}."]})
        flag = experiment.flag
        variants = {v["key"]: v.get("weight", 0) for v in flag.variants} if flag.kind == Flag.Kind.MULTIVARIATE else {}
        if experiment.control not in variants or flag.archived:
            message = f"Flag '{flag.key}' no longer has the control variant '{experiment.control}' (or is archived)."
            raise ValidationFailed({"flag": [message]})
        total = sum(variants.values())
        if total <= 0 or variants[experiment.control] <= 0 or sum(1 for w in variants.values() if w > 0) < 2:
            raise ValidationFailed({"flag": ["The control and at least one other variant need a weight above 0."]})
        running = Experiment.all_objects.filter(flag=flag, environment=experiment.environment,
                                                status=Experiment.Status.RUNNING).first()
        if running is not None:
            raise Conflict(f"Experiment '{running.key}' is already running on '{flag.key}' in "
                           f"'{experiment.environment.key}'.", fields={"flag": ["Another experiment is running."]})
        before = experiment_data(experiment)
        experiment.weights = {key: weight / total for key, weight in variants.items() if weight > 0}
        experiment.status = Experiment.Status.RUNNING
        experiment.started_at = timezone.now()
        experiment.save()
        _announce(experiment, "experiment.started")
        audit_record(actor=actor, action="experiment.started", target_type="experiment", target_key=experiment.key,
                     environment=experiment.environment.key, before=before, after=experiment_data(experiment))
    return experiment


def experiment_stop(*, actor, experiment, ship=None, reason=""):
    """running -> stopped. ``ship``: a variant rolled out to everyone by the flag service (its
    weight 100, every other 0: the flag's variants, so in every environment), audited in the same
    transaction as the stop."""
    from flags import services as flag_services

    with transaction.atomic():
        experiment = _locked(experiment)
        if experiment.status != Experiment.Status.RUNNING:
            raise Conflict(f"Experiment '{experiment.key}' is {experiment.status}; only a running one can stop.",
                           fields={"status": [f"Is {experiment.status}."]})
        variants = experiment.flag.variants
        if ship is not None and ship not in [v["key"] for v in variants]:
            message = f"Must be one of the flag's variants: {', '.join(v['key'] for v in variants)}."
            raise ValidationFailed({"ship": [message]})
        if ship is not None:  # first: the flag row before the audit head, the flag services' lock order
            shipped = [{**v, "weight": 100 if v["key"] == ship else 0} for v in variants]
            flag_services.flag_update(actor=actor, flag=experiment.flag, environment=None, data={"variants": shipped})
        before = experiment_data(experiment)
        experiment.status = Experiment.Status.STOPPED
        experiment.stopped_at = timezone.now()
        experiment.shipped_variant = ship or ""
        experiment.save()
        _announce(experiment, "experiment.stopped")
        audit_record(actor=actor, action="experiment.stopped", target_type="experiment", target_key=experiment.key,
                     environment=experiment.environment.key, before=before, after=experiment_data(experiment),
                     reason=reason)
    return experiment
