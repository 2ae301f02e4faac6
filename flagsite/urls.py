from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("flags.urls")),
    path("api/", include("segments.urls")),
    path("api/", include("audit.urls")),
    path("ofrep/", include("flags.ofrep_urls")),
]

# /api/ paths answer errors in the API's JSON shape; other paths get Django's pages.
handler404 = "flagsite.api.exceptions.api_not_found"
handler500 = "flagsite.api.exceptions.api_server_error"
