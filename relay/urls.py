from django.urls import path

from relay import apis

urlpatterns = [
    path("relay/snapshot", apis.RelaySnapshotApi.as_view(), name="relay-snapshot"),
    path("relay/keys", apis.RelayKeysApi.as_view(), name="relay-keys"),
    path("relay/ingest", apis.RelayIngestApi.as_view(), name="relay-ingest"),
]
