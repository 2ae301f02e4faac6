"""/api/docs (Swagger UI) loads nothing from another origin: its CSS and scripts are the sidecar
package's static files (WhiteNoise) and its start-up script is a same-origin request, not inline.
It used to load swagger-ui from a CDN with no integrity hash."""

import re
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.servers import start_web

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_api_docs__references_only_same_origin_assets__each_answers_200():
    server = start_web()
    try:
        page = httpx.get(f"{server.http_url}/api/docs", timeout=20)
        assert page.status_code == 200, page.text
        refs = re.findall(r'<(?:script|link)[^>]*?(?:src|href)="([^"]+)"', page.text)
        assert len(refs) >= 4, page.text  # css, bundle, preset, start-up script (and the favicon)
        assert "<script>" not in page.text, "an inline script"
        for ref in refs:
            url = urljoin(f"{server.http_url}/api/docs", ref.replace("&amp;", "&"))
            assert urlsplit(url).netloc == urlsplit(server.http_url).netloc, ref
            asset = httpx.get(url, timeout=20)
            assert asset.status_code == 200 and asset.content, (ref, asset.status_code)
    finally:
        server.stop()
