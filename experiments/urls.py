from django.urls import path

from experiments import apis

urlpatterns = [
    path("events", apis.EventsApi.as_view(), name="events"),
]
