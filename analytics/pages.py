"""Analytics overview page: the session's current project's (staff and project members)."""

from datetime import timedelta

from django.shortcuts import render
from django.utils import timezone

from analytics import selectors
from flags.models import Flag
from flags.pages import staff_required


@staff_required
def overview(request):
    now = timezone.now()
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    stale = selectors.stale_flag_keys()
    return render(request, "analytics/overview.html", {
        "metrics": selectors.metrics(now=now),
        "series": selectors.evaluations_series_all(time_range="24h", now=now),
        "top": selectors.top_flags(since=since, limit=15),
        "stale_flags": Flag.objects.filter(archived=False, key__in=stale).order_by("key"),
    })
