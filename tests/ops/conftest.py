"""Fixtures shared with the REST API tests (keys, clients, fresh caches), a settings probe
that imports flagsite.settings in a fresh interpreter under given environment variables, and the
production HTTP topology (nginx in front of granian ASGI) as real processes."""

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.conftest import (  # noqa: F401  (fixtures)
    Client,
    _fresh_caches,
    anon,
    create_flag,
    editor,
    editor_api,
    keys,
    make_key,
    reader,
    reader_api,
    sdk_api,
)
from tests.servers import start_proxy, start_web

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_SECRET = "k9F2-example-production-secret-" + "x7Qp" * 10  # 50+ chars, many distinct
PRODUCTION_AUDIT_KEY = "example-audit-key-" + "Zr4m" * 8  # 32+ chars


def run(args, env=None, timeout=120):
    """Run python with args in the repository under os.environ + env (None values remove a variable)."""
    full = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    full.setdefault("DJANGO_SETTINGS_MODULE", "flagsite.settings")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=timeout)


def production_env(**extra):
    env = {"FLAGS_PRODUCTION": "true", "DEBUG": None, "SECRET_KEY": PRODUCTION_SECRET, "ALLOWED_HOSTS": "flags.example.com",
           "FLAGS_AUDIT_KEY": PRODUCTION_AUDIT_KEY}
    env.update(extra)
    return env


def settings_under(env, *names):
    """{name: value} of flagsite.settings imported with env (values JSON-able or repr'd)."""
    code = (
        "import json, flagsite.settings as s\n"
        f"names = {list(names)!r}\n"
        "print(json.dumps({n: getattr(s, n, None) for n in names}, default=repr))\n"
    )
    result = run(["-c", code], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def ops_settings(settings):
    return settings


@dataclass
class ProductionHttp:
    web: object  # the granian ServerProcess (its own port: straight at the app server)
    proxy: object  # the nginx ServerProcess
    http_url: str  # through the proxy
    ws_url: str


@pytest.fixture
def production_http(request, tmp_path):
    """granian ASGI (the production command, 2 workers) behind the shipped proxy config
    (deploy/nginx.conf): README "Deployment" on 127.0.0.1. Tests take the proxy's URLs; options by
    `@pytest.mark.production_http(workers=2, **web_env)`. The web server's output is in
    tmp_path / "web.log"."""
    marker = request.node.get_closest_marker("production_http")
    options = dict(marker.kwargs) if marker else {}
    workers = options.pop("workers", 2)
    log = open(tmp_path / "web.log", "w")
    with tempfile.TemporaryDirectory(prefix="flagsite-nginx-") as directory:
        web = start_web(workers=workers, output=log, **options)
        try:
            proxy = start_proxy(web.port, directory)
            try:
                yield ProductionHttp(web, proxy, proxy.http_url, proxy.ws_url)
            finally:
                proxy.stop()
        finally:
            web.stop()
            log.close()
