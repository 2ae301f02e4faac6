from django.urls import path

from flags import apis
from flagsite.api.docs import DocsPage, DocsSlashRedirect, SchemaApi
from flagsite.api.health import HealthApi

urlpatterns = [
    # the hot paths first: Django tries patterns in order
    path("evaluate", apis.EvaluateApi.as_view(), name="evaluate"),
    path("evaluate/bulk", apis.EvaluateBulkApi.as_view(), name="evaluate-bulk"),
    path("sdk/snapshot", apis.SdkSnapshotApi.as_view(), name="sdk-snapshot"),
    path("health", HealthApi.as_view(), name="api-health"),
    path("schema", SchemaApi.as_view(), name="api-schema"),
    path("docs", DocsPage.as_view(url_name="api-schema"), name="api-docs"),
    path("docs/", DocsSlashRedirect.as_view(), name="api-docs-slash"),
    path("flags", apis.FlagListCreateApi.as_view(), name="flag-list"),
    path("flags/<str:key>", apis.FlagDetailApi.as_view(), name="flag-detail"),
    path("flags/<str:key>/toggle", apis.FlagToggleApi.as_view(), name="flag-toggle"),
    path("flags/<str:key>/kill-switch", apis.FlagKillApi.as_view(), name="flag-kill"),
    path("flags/<str:key>/restore", apis.FlagRestoreApi.as_view(), name="flag-restore"),
    path("flags/<str:key>/unarchive", apis.FlagUnarchiveApi.as_view(), name="flag-unarchive"),
    path("flags/<str:key>/explain", apis.FlagExplainApi.as_view(), name="flag-explain"),
]
