"""Browsers through OpenFeature: a page on another origin loads `@openfeature/web-sdk` and
`@openfeature/ofrep-web-provider` from npm (their ESM builds, served as they are: no bundler), points
the provider at a live Flagsite (granian, FLAGS_CORS_ORIGINS set to the page's origin) with an SDK
key, evaluates flags, and sees a kill (made through REST) within its polling interval. Playwright drives Debian's
Chromium and records the provider's requests: CORS headers on every answer, the ETag sent back as
If-None-Match and answered 304 while nothing changed, and the CORS preflights granted (seen through
Chromium's DevTools protocol: Playwright does not report preflights).

The npm packages are pinned in tests/ofrep/web/package-lock.json and installed with `npm ci` the
first time (node_modules is git-ignored); without npm or Chromium the test is deselected with one
line (tests/tools.py)."""

import functools
import json
import re
import subprocess
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import sync_playwright

from flags import services
from tests.live.conftest import sdk_key  # noqa: F401  (fixture: a production SDK key)
from tests.servers import ROOT, free_port, start_web
from tests.tools import CHROMIUM

from .data import SYSTEM, build_flags

WEB = ROOT / "tests" / "ofrep" / "web"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
POLL_MS = 1000


@pytest.fixture(scope="session")
def web_packages():
    """`npm ci` from the lock file when node_modules is missing or older than the lock."""
    installed = WEB / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < (WEB / "package-lock.json").stat().st_mtime:
        result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    return WEB


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def app_origin(web_packages):
    """tests/ofrep/web served on a port of its own: the browser app's origin."""
    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(QuietHandler, directory=str(web_packages)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def flagsite(app_origin, transactional_db):
    """The web server with the OFREP test flags, the page's origin allowed, and a management token
    (`server.token`) of an operator who may kill flags."""
    build_flags()
    operator = get_user_model().objects.create_superuser("operator", password="pw-operator-123")
    server = start_web(FLAGS_CORS_ORIGINS=app_origin, FLAGS_ANALYTICS_AUTOFLUSH="false")
    server.token = services.api_key_create(actor=SYSTEM, name="web-provider", kind="management", user=operator)[1]
    yield server
    server.stop()


def kill_through_rest(server, flag, reason):
    """POST /api/flags/{key}/kill-switch as an operator's tool would (production: the SDK key's environment)."""
    request = urllib.request.Request(
        f"{server.http_url}/api/flags/{flag}/kill-switch?environment=production", method="POST",
        data=json.dumps({"reason": reason}).encode(),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (the test server)
        assert response.status == 200


@pytest.fixture
def chromium(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop in this thread
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def wait_for(page, predicate, timeout):
    """Playwright's sync API delivers events (the recorded responses) only while it is called:
    wait in it, not in time.sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(20)
    return predicate()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.needs("chromium", "npm")
def test_ofrep_web_provider__cross_origin__etag_polling__sees_a_kill_within_its_poll_interval(
        flagsite, app_origin, sdk_key, chromium):  # noqa: F811
    page = chromium.new_page()
    bulk = []  # (method, status, request headers, response headers) of every bulk call the provider made

    def record(response):
        if response.url == f"{flagsite.http_url}/ofrep/v1/evaluate/flags":
            bulk.append((response.request.method, response.status, response.request.headers, response.headers))

    page.on("response", record)
    # Playwright reports no CORS preflights; Chromium's DevTools protocol does (type "Preflight").
    preflights = []
    cdp = page.context.new_cdp_session(page)
    cdp.on("Network.responseReceived", lambda e: e.get("type") == "Preflight" and preflights.append(
        ("response", e["response"]["status"], e["response"]["url"], {k.lower(): v for k, v in e["response"]["headers"].items()})))
    cdp.send("Network.enable")
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{app_origin}/index.html?" + urlencode({"base": flagsite.http_url, "key": sdk_key, "poll": POLL_MS}))
    page.wait_for_function("window.ready === true || window.failed !== undefined", timeout=30_000)
    assert page.evaluate("window.failed || null") is None and errors == [], (page.evaluate("window.failed"), errors)

    def evaluate(key, fallback):
        return page.evaluate("([key, fallback]) => window.evaluate(key, fallback)", [key, fallback])

    # Evaluated by the server, for this user, answered from the provider's cache in the page.
    assert evaluate("dark-mode", False) == {"value": True, "reason": "STATIC", "variant": "on", "errorCode": None}
    assert evaluate("geo-us", False)["value"] is True and evaluate("geo-us", False)["reason"] == "TARGETING_MATCH"
    assert evaluate("killed-flag", True)["value"] is False
    assert evaluate("button-color", "none")["value"] in ("#0000ff", "#00ff00")
    assert evaluate("no-such-flag", True) == {"value": True, "reason": "ERROR", "variant": None,
                                              "errorCode": "FLAG_NOT_FOUND"}

    # Cross-origin: every answer carries the page's origin; the ETag is readable (exposed) and sent
    # back, and a poll with nothing changed is a 304.
    assert wait_for(page, lambda: sum(status == 304 for _, status, _, _ in bulk) >= 2, 5), bulk
    first = bulk[0]
    assert (first[0], first[1]) == ("POST", 200) and first[2]["authorization"] == f"Bearer {sdk_key}"
    etag = first[3]["etag"]
    assert all(headers["access-control-allow-origin"] == app_origin for _, _, _, headers in bulk)
    assert all(request.get("if-none-match") == etag for _, status, request, _ in bulk if status == 304)
    assert page.evaluate("window.changes.length") == 0
    # The preflights (POST with Authorization and a JSON body) were granted for this origin, with the
    # headers the provider sends and the ETag readable by the page.
    granted = [headers for kind, status, url, headers in preflights
               if kind == "response" and status == 200 and url.endswith("/ofrep/v1/evaluate/flags")]
    assert granted, preflights
    for headers in granted:
        assert headers["access-control-allow-origin"] == app_origin
        allowed = {h.strip() for h in headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "if-none-match"} <= allowed
        assert "etag" in headers["access-control-expose-headers"]

    # A kill through REST (a management token) reaches the page's evaluations with the next poll.
    polls_before = len(bulk)
    kill_through_rest(flagsite, "dark-mode", "browser test")
    killed_at = time.monotonic()
    assert wait_for(page, lambda: evaluate("dark-mode", True)["value"] is False, 5), bulk[polls_before:]
    seen_after = time.monotonic() - killed_at
    assert seen_after < POLL_MS / 1000 + 1.0, f"kill seen after {seen_after:.2f}s, poll interval {POLL_MS} ms"
    print(f"kill seen in the page after {seen_after:.2f}s (poll interval {POLL_MS} ms); "
          f"bulk calls {[status for _, status, _, _ in bulk]}")
    assert evaluate("dark-mode", True)["reason"] == "DISABLED"
    changed = [(status, headers.get("etag")) for _, status, _, headers in bulk[polls_before:] if status == 200]
    assert changed and changed[0][1] != etag, bulk[polls_before:]
    assert wait_for(page, lambda: page.evaluate("window.changes.flatMap(c => c.flagsChanged)"), 2) and \
        "dark-mode" in page.evaluate("window.changes.flatMap(c => c.flagsChanged)")

    # The management API stays same-origin: the browser refuses to hand its answer to this page.
    refused = page.evaluate("""async (url) => {
        try { await fetch(url, {headers: {Authorization: 'Bearer x'}}); return 'answered'; }
        catch (error) { return 'refused'; } }""", f"{flagsite.http_url}/api/flags")
    assert refused == "refused"


def test_readme_snippet__is_what_the_browser_test_runs():
    """The README's JavaScript snippet imports what page.js imports and sets only options page.js
    sets (page.js adds its own: polling only, no local storage), so the documented path is the
    tested one."""
    readme = (ROOT / "README.md").read_text()
    (snippet,) = re.findall(r"^```javascript\n(.*?)^```", readme, re.S | re.M)
    page = (WEB / "page.js").read_text()
    def imports(text):
        return {module: {name.strip() for name in names.split(",")}
                for names, module in re.findall(r'^import \{([^}]*)\} from "([^"]+)";', text, re.M)}

    documented, tested = imports(snippet), imports(page)
    assert set(documented) == {"@openfeature/web-sdk", "@openfeature/ofrep-web-provider"} == set(tested)
    assert all(documented[module] <= tested[module] for module in documented), (documented, tested)
    options = set(re.findall(r"^  (\w+):", snippet.split("new OFREPWebProvider(", 1)[1], re.M))
    page_options = set(re.findall(r"^  (\w+):", page.split("new OFREPWebProvider(", 1)[1].split("});")[0], re.M))
    assert options == {"baseUrl", "headers", "pollInterval"} and options <= page_options
    assert "OpenFeature.setContext(" in snippet and "OpenFeature.setContext(" in page
    assert "OpenFeature.setProviderAndWait(" in snippet and "OpenFeature.setProviderAndWait(" in page
    lock = (WEB / "package-lock.json").read_text()
    for package in ("web-sdk", "ofrep-web-provider"):
        assert f'"node_modules/@openfeature/{package}"' in lock and f"@openfeature/{package}" in snippet
