"""OFREP routes, mounted at /ofrep/ (flagsite/urls.py). Keys are matched as paths so that any key
answers OFREP's 404 FLAG_NOT_FOUND rather than Django's page."""

from django.urls import path

from flags import ofrep

urlpatterns = [
    path("v1/evaluate/flags", ofrep.OfrepEvaluateBulkApi.as_view(), name="ofrep-evaluate-bulk"),
    path("v1/evaluate/flags/<path:key>", ofrep.OfrepEvaluateFlagApi.as_view(), name="ofrep-evaluate-flag"),
    path("v1/configuration", ofrep.OfrepConfigurationApi.as_view(), name="ofrep-configuration"),
]
