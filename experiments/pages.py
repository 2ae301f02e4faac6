"""Dashboard pages (server-rendered, staff with experiments.view_experiment): the experiments of
the current project (the header's switcher) and an experiment's results, computed at each view by
experiments/analysis.py; start, stop, and stop-and-ship as POST forms calling the services, with
the permissions REST asks for (shipping changes the flag: it needs flags.change_flag too)."""

from django.contrib import messages
from django.db.models import Count
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.actor import Actor
from experiments import analysis, services
from experiments.models import Experiment, Exposure
from flags.errors import ServiceError
from flags.models import FlagState
from flags.pages import staff_required
from flags.rule_text import describe

VIEW_EXPERIMENTS = ("experiments.view_experiment",)
CHANGE_EXPERIMENTS = ("experiments.change_experiment",)


@staff_required(perms=VIEW_EXPERIMENTS)
def experiment_list(request):
    experiments = list(Experiment.objects.select_related("flag", "environment", "primary_metric"))
    users = dict(Exposure.objects.filter(experiment__in=experiments).values_list("experiment")
                 .annotate(n=Count("id")).values_list("experiment", "n"))
    rows = [{"experiment": e, "users": users.get(e.pk, 0)} for e in experiments]
    return render(request, "experiments/list.html", {"rows": rows})


def _experiment_or_404(key):
    experiment = (Experiment.objects.select_related("flag", "environment", "primary_metric")
                  .prefetch_related("secondary_metrics", "guardrail_metrics").filter(key=key).first())
    if experiment is None:
        raise Http404(f"No experiment '{key}'.")
    return experiment


def _action(request, key, run, success):
    experiment = _experiment_or_404(key)
    try:
        run(experiment, Actor.from_request(request))
    except ServiceError as exc:
        messages.error(request, f"{experiment.key}: {exc}")
    else:
        messages.success(request, success.format(key=experiment.key))
    return redirect(reverse("page-experiment", args=[experiment.key]))


@require_POST
@staff_required(perms=CHANGE_EXPERIMENTS)
def experiment_start(request, key):
    return _action(request, key, lambda e, actor: services.experiment_start(actor=actor, experiment=e),
                   "{key} started: exposures count from now.")


@require_POST
@staff_required(perms=CHANGE_EXPERIMENTS)
def experiment_stop(request, key):
    return _action(request, key, lambda e, actor: services.experiment_stop(actor=actor, experiment=e),
                   "{key} stopped.")


@require_POST
@staff_required(perms=CHANGE_EXPERIMENTS + ("flags.change_flag",))
def experiment_ship(request, key):
    ship = request.POST.get("ship", "")
    return _action(request, key, lambda e, actor: services.experiment_stop(actor=actor, experiment=e, ship=ship),
                   f"{{key}} stopped; {ship} now serves everyone.")


@staff_required(perms=VIEW_EXPERIMENTS)
def experiment_detail(request, key):
    experiment = _experiment_or_404(key)
    results = analysis.experiment_results(experiment)
    # the experiment's audience is the flag's targeting in its environment: users it serves off are
    # never exposed (experiments/buffers.py), so they are not in the results
    state = FlagState.objects.filter(flag=experiment.flag, environment=experiment.environment).first()
    audience = describe(state.rules, state.enabled, state.killed, experiment.flag.variants) if state else None
    for metric in results["metrics"]:
        for row in metric["variants"]:
            row["bar"], row["shown"] = _bar(row), _shown(row)
    return render(request, "experiments/detail.html", {
        "experiment": experiment, "results": results, "audience": audience,
        "charts": {"metrics": [{"key": m["metric"], "name": m["name"], "variants": [
            {"variant": r["variant"], "uplift": r.get("relativeUplift"), "interval": r.get("sequentialInterval"),
             "credible": r.get("credibleInterval")} for r in m["variants"] if not r["control"]]}
            for m in results["metrics"]], "exposures": results["exposuresByDay"]},
    })


def _bar(row):
    """Where the always-valid interval of the relative uplift sits on a -50%..+50% scale (percent of
    the cell's width), for the table's inline drawing; None without an interval."""
    interval = row.get("sequentialInterval")
    if not interval or None in interval:
        return None
    def clamp(x):  # -50% -> 0, +50% -> 100
        return max(0.0, min(100.0, 50 + 100 * x))

    low, high = clamp(interval[0]), clamp(interval[1])
    return {"left": round(low, 1), "width": round(max(high - low, 0.5), 1), "point": round(clamp(row["relativeUplift"]), 1),
            "side": "good" if interval[0] > 0 else ("bad" if interval[1] < 0 else "none")}


def _pct(x, signed=True):
    return "—" if x is None else (f"{x:+.1%}" if signed else f"{x:.1%}")


def _shown(row):
    """The row's numbers as the table prints them."""
    chance = row.get("chanceToBeatControl")
    interval = row.get("sequentialInterval") or [None, None]
    p, sequential = row.get("pValueAdjusted"), row.get("sequentialPValue")
    return {
        "uplift": _pct(row.get("relativeUplift")),
        "interval": f"{_pct(interval[0])} to {_pct(interval[1])}",
        # a statistical result never promises 100% or 0% (as stats.verdict prints it)
        "chance": "—" if chance is None else (">99%" if chance > 0.99 else "<1%" if chance < 0.01 else f"{chance:.0%}"),
        "p": "—" if p is None else f"{p:.3g} ({sequential:.3g})",
    }
