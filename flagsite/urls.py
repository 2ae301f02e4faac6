from django.contrib import admin
from django.urls import include, path

from flagsite import sso
from flagsite.ops.metrics import metrics_view
from projects import urls as project_urls

urlpatterns = [
    path("api/", include("flags.urls")),  # first: it holds the evaluation hot paths
    path("admin/login/", sso.login, name="login"),  # the password form and/or the SSO button (flagsite/sso.py)
    path("admin/", admin.site.urls),
    path("oidc/", include(sso.urlpatterns)),  # single sign-on: to the provider and back
    path("api/", include("segments.urls")),
    path("api/", include("audit.urls")),
    path("api/", include(project_urls.urlpatterns + project_urls.environment_patterns)),
    path("api/projects/<slug:project>/", include(project_urls.project_patterns())),
    path("api/", include("analytics.urls")),
    path("api/", include("experiments.urls")),
    path("api/", include("webhooks.urls")),
    path("api/", include("changes.urls")),
    path("api/", include("relay.urls")),  # the relay protocol (relay tokens): snapshot, keys, ingest
    path("ofrep/", include("flags.ofrep_urls")),
    path("metrics", metrics_view, name="metrics"),  # Prometheus (flagsite/ops/metrics.py)
    path("", include("flags.page_urls")),  # dashboard pages (staff)
]

# /api/ paths answer errors in the API's JSON shape; other paths get Django's pages.
handler404 = "flagsite.api.exceptions.api_not_found"
handler500 = "flagsite.api.exceptions.api_server_error"
