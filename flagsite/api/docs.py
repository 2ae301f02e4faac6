"""/api/schema (OpenAPI) and /api/docs (Swagger UI) as the API serves them.

drf-spectacular's views render their errors with their own renderers: a 404 (``?format=`` unknown),
405 or 406 answered YAML or HTML instead of the API's JSON error shape, and the Swagger page's
template renderer answered a 500 for any error and for OPTIONS (no template for those bodies). Here
errors always answer ``{"error": {...}}`` as JSON, and OPTIONS DRF's metadata as JSON.

The schema is the same for every request of a process (public, one URL conf), but generating and
rendering it costs tens of milliseconds of CPU: anyone could keep a worker busy with it. It is built
once per process (and API version, language and URL conf) and each rendering is kept as bytes.

/api/docs serves Swagger UI from the package (drf-spectacular-sidecar), so it works offline and
loads no third-party script.
"""

import threading

from django.conf import settings
from django.http import HttpResponseRedirect
from django.urls import get_urlconf, reverse
from django.utils import translation
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

_lock = threading.Lock()
_schemas = {}  # (version, language, urlconf) -> schema dict
_rendered = {}  # (version, language, urlconf, renderer class, media type) -> (content type, bytes)
_MAX_ENTRIES = 64


def forget_schema():
    """Drop the cached schema and its renderings (tests that change the URL conf)."""
    with _lock:
        _schemas.clear()
        _rendered.clear()


class JsonErrorsMixin:
    """Errors and OPTIONS answers (DRF's metadata) render as JSON, whatever renders the page."""

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response) and (response.status_code >= 400 or request.method == "OPTIONS"):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
            response.template_name = None
        return super().finalize_response(request, response, *args, **kwargs)


class SchemaApi(JsonErrorsMixin, SpectacularAPIView):
    def _schema_key(self, request):
        version = self.api_version or request.version or self._get_version_parameter(request)
        return version, translation.get_language(), str(get_urlconf() or settings.ROOT_URLCONF)

    def _get_schema_response(self, request):
        key = self._schema_key(request)
        schema = _schemas.get(key)
        if schema is None:
            generator = self.generator_class(urlconf=self.urlconf, api_version=key[0], patterns=self.patterns)
            schema = generator.get_schema(request=request, public=self.serve_public)
            with _lock:
                if len(_schemas) >= _MAX_ENTRIES:
                    _schemas.clear()
                _schemas[key] = schema
        self._key = key
        return Response(
            data=schema,
            headers={"Content-Disposition": f'inline; filename="{self._get_filename(request, key[0])}"'},
        )

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        key = getattr(self, "_key", None)
        if key is None or response.status_code != 200 or request.method == "OPTIONS" or not isinstance(
                response, Response):
            return response
        key = (*key, type(response.accepted_renderer), response.accepted_media_type)
        hit = _rendered.get(key)
        if hit is None:
            content = response.rendered_content  # renders once, and sets Content-Type
            hit = (response["Content-Type"], content)
            with _lock:
                if len(_rendered) >= _MAX_ENTRIES:
                    _rendered.clear()
                _rendered[key] = hit
        response["Content-Type"] = hit[0]
        response.content = hit[1]  # marks the response rendered
        return response


class DocsPage(JsonErrorsMixin, SpectacularSwaggerSplitView):
    """Swagger UI from our own static files (drf-spectacular-sidecar, no CDN); its start-up script is
    a separate request (``?script``), not inline, so the Content-Security-Policy needs no
    'unsafe-inline' for scripts."""


class DocsSlashRedirect(DocsPage):
    """/api/docs/ as people type it: a redirect to the page's one address, /api/docs (query kept).
    A DocsPage otherwise: the same access, JSON errors, and no place in the schema."""

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        query = request.META.get("QUERY_STRING", "")
        return HttpResponseRedirect(reverse("api-docs") + (f"?{query}" if query else ""))
