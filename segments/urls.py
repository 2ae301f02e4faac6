from django.urls import path

from segments import apis

urlpatterns = [
    path("segments", apis.SegmentListCreateApi.as_view(), name="segment-list"),
    path("segments/<str:key>", apis.SegmentDetailApi.as_view(), name="segment-detail"),
]
