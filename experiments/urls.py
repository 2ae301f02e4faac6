from django.urls import path

from experiments import apis

urlpatterns = [
    path("events", apis.EventsApi.as_view(), name="events"),
    path("metrics", apis.MetricListCreateApi.as_view(), name="metric-list"),
    path("metrics/<str:key>", apis.MetricDetailApi.as_view(), name="metric-detail"),
    path("experiments", apis.ExperimentListCreateApi.as_view(), name="experiment-list"),
    path("experiments/<str:key>", apis.ExperimentDetailApi.as_view(), name="experiment-detail"),
    path("experiments/<str:key>/start", apis.ExperimentStartApi.as_view(), name="experiment-start"),
    path("experiments/<str:key>/stop", apis.ExperimentStopApi.as_view(), name="experiment-stop"),
    path("experiments/<str:key>/results", apis.ExperimentResultsApi.as_view(), name="experiment-results"),
]
