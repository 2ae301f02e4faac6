"""OFREP routes, mounted at /ofrep/ (flagsite/urls.py). Keys are matched as paths so that any key
answers OFREP's 404 FLAG_NOT_FOUND rather than Django's page."""

from django.urls import path, re_path

from flags import ofrep

urlpatterns = [
    path("v1/evaluate/flags", ofrep.OfrepEvaluateBulkApi.as_view(), name="ofrep-evaluate-bulk"),
    # [\s\S]: any key, a line break included (<path:key> is ".+", which stops at "\n" and left
    # such keys to Django's HTML 404 page instead of OFREP's FLAG_NOT_FOUND).
    re_path(r"^v1/evaluate/flags/(?P<key>[\s\S]+)$", ofrep.OfrepEvaluateFlagApi.as_view(),
            name="ofrep-evaluate-flag"),
    path("v1/configuration", ofrep.OfrepConfigurationApi.as_view(), name="ofrep-configuration"),
]
