"""A seeded experiment built through the services, as users would: a 50/50 flag, three metrics
(conversion within 24 h, revenue per user, revenue per order), exposures and events flushed by
the real write paths. `expected` keeps each user's values, for an independent check."""

import random
from datetime import timedelta

from django.utils import timezone

from experiments import services
from experiments.models import Experiment
from tests.api.conftest import SYSTEM, create_flag

ENVS = ("development", "staging", "production")


def checkout_flag(key="checkout", weights=(50, 50)):
    return create_flag(key, kind="multivariate",
                       variants=[{"key": v, "weight": w, "value": v} for v, w in zip(("control", "treatment"), weights)],
                       states={env: {"enabled": True} for env in ENVS})


def metrics():
    return [
        services.metric_create(actor=SYSTEM, key="purchase", name="Purchase", kind="conversion", event="buy",
                               window_hours=24),
        services.metric_create(actor=SYSTEM, key="revenue", name="Revenue per user", kind="sum", event="buy"),
        services.metric_create(actor=SYSTEM, key="order-value", name="Revenue per order", kind="ratio",
                               event="buy", denominator_event="buy"),
    ]


def seeded(users=400, uplift=0.5, seed=7):
    """A running experiment with `users` exposed users; returns (experiment, per-user truth)."""
    flag = checkout_flag()
    metrics()
    experiment = services.experiment_create(
        actor=SYSTEM, key="checkout-test", name="Checkout test", flag=flag.key, environment="production",
        control="control", primary_metric="purchase", secondary_metrics=["revenue"], guardrail_metrics=["order-value"],
        hypothesis="A one-page checkout sells more")
    experiment = services.experiment_start(actor=SYSTEM, experiment=experiment)
    # started ten days ago (a fixture's shortcut past the service): every exposure and event is in the past
    Experiment.all_objects.filter(pk=experiment.pk).update(started_at=experiment.started_at - timedelta(days=10))
    experiment.refresh_from_db()
    rng = random.Random(seed)
    start = experiment.started_at.timestamp() + 1
    exposures, events, truth = [], [], {}
    for i in range(users):
        user, variant = f"u{i}", ("control", "treatment")[i % 2]
        first = start + rng.uniform(0, 3 * 86400)
        exposures.append(["production", "checkout", user, variant, variant, first, first, 0])
        rate = 0.3 * (1 + uplift if variant == "treatment" else 1)
        inside, revenue, orders, pre_buys, pre_revenue = 0, 0.0, 0, 0, 0.0
        for _ in range(rng.randint(0, 3)):
            when = first + rng.uniform(-2 * 86400, 3 * 86400)  # some before exposure (CUPED), some late
            if rng.random() > rate:
                continue
            value = round(rng.uniform(5, 50), 2)
            events.append(["production", "buy", user, value, when, {}, f"{user}-{len(events)}", when])
            if first <= when:
                revenue += value
                orders += 1
                inside |= when < first + 86400
            elif when >= first - 14 * 86400:
                pre_buys, pre_revenue = 1, pre_revenue + value
        truth[user] = {"variant": variant, "purchase": int(inside), "revenue": revenue, "orders": orders,
                       "pre_purchase": pre_buys, "pre_revenue": pre_revenue}
    services.exposures_upsert(rows=exposures)
    services.events_write(rows=events)
    return experiment, truth


def far_future():
    return timezone.now() + timedelta(days=30)
