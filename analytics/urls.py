from django.urls import path

from analytics import apis

urlpatterns = [
    path("analytics/flags/<str:key>", apis.FlagAnalyticsApi.as_view(), name="analytics-flag"),
    path("analytics/metrics", apis.MetricsApi.as_view(), name="analytics-metrics"),
    path("sdk/metrics", apis.SdkMetricsApi.as_view(), name="sdk-metrics"),
]
