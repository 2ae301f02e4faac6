"""/api/projects and /api/projects/<project>/...: the default project's management views
(flags, segments, environments, audit, analytics, webhooks, changes, experiments) mounted once more with the project taken from the path;
one implementation, never a copy. Evaluation paths are not mounted: keys name their project."""

import functools

from django.urls import path

from analytics import urls as analytics_urls
from audit import urls as audit_urls
from changes import urls as change_urls
from experiments import urls as experiment_urls
from flags import urls as flag_urls
from projects import apis, scope
from segments import urls as segment_urls
from webhooks import urls as webhook_urls

MOUNTED = {"flag-list", "flag-detail", "flag-toggle", "flag-kill", "flag-restore", "flag-unarchive",
           "flag-explain", "segment-list", "segment-detail", "audit-list", "audit-flag", "environment-list",
           "webhook-list", "webhook-detail", "webhook-rotate-secret", "webhook-ping", "webhook-deliveries",
           "webhook-redeliver", *(p.name for p in change_urls.urlpatterns),
           "metric-list", "metric-detail", "experiment-list", "experiment-detail", "experiment-start",
           "experiment-stop", "experiment-results", "analytics-flag", "analytics-metrics"}


def in_project(view):
    """The view working in the path's project (flagsite/api/permissions.check_project answers 404
    for a project the caller may not see, or that does not exist)."""

    @functools.wraps(view)
    def in_project_view(request, project, **kwargs):
        request.url_project = project
        scope.enter(project)
        return view(request, **kwargs)

    return in_project_view


environment_patterns = [path("environments", apis.EnvironmentListApi.as_view(), name="environment-list")]
# a project's own resources: only under /api/projects/<project>/ (the default project's too)
own_patterns = [
    path("members", apis.MemberListCreateApi.as_view(), name="member-list"),
    path("members/<int:grant_id>", apis.MemberDetailApi.as_view(), name="member-detail"),
    path("keys", apis.KeyListCreateApi.as_view(), name="key-list"),
    path("keys/<int:key_id>", apis.KeyDetailApi.as_view(), name="key-detail"),
]


def project_patterns():
    patterns = []
    for module in (flag_urls, segment_urls, audit_urls, webhook_urls, change_urls, experiment_urls, analytics_urls):
        patterns += [p for p in module.urlpatterns if p.name in MOUNTED]
    patterns += environment_patterns + own_patterns
    return [path(str(p.pattern), in_project(p.callback), name=f"project-{p.name}") for p in patterns]


urlpatterns = [path("projects", apis.ProjectListCreateApi.as_view(), name="project-list")]
