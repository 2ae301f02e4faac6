"""Prometheus metrics, served at /metrics (per process; see README "Deployment").

Per request the only cost is one histogram observation and one counter increment, on children
cached by (method, route, status): routes are URL patterns ("api/flags/<str:key>"), never raw
paths, so label sets stay bounded. Everything else is read at scrape time:

- ``flagsite_evaluations_total{environment, flag, enabled, variant}``: from the analytics
  recorder's exact in-process counters (analytics/counters.py), which every evaluation already
  increments; no extra work per evaluation. At most ``FLAGS_METRICS_MAX_FLAGS`` flags per
  environment get their own label; the rest are summed under ``flag="_other"``.
- ``flagsite_ws_connections``: WebSocket clients of this process's watcher.
- ``flagsite_snapshot_version{environment}``, ``flagsite_snapshot_check_age_seconds{environment}``:
  this process's compiled snapshot and how long ago it last confirmed it was current.
- ``flagsite_analytics_pending_evaluations``: counted but not yet flushed to the rollup task.
"""

import hmac
import threading
import time

from django.conf import settings
from django.http import Http404, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUEST_SECONDS = Histogram(
    "flagsite_http_request_duration_seconds", "HTTP request latency by route", ["method", "route"], buckets=BUCKETS
)
REQUESTS = Counter("flagsite_http_requests", "HTTP responses by route and status", ["method", "route", "status"])
_children = {}


def observe_request(request, status, seconds):
    match = getattr(request, "resolver_match", None)
    observe(request.method, match.route if match is not None else "unmatched", status, seconds)


def observe(method, route, status, seconds):
    """Count one answered request: ``route`` is its URL pattern (Django's resolver_match.route)."""
    method = method if method in METHODS else "OTHER"
    key = (method, route, status)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (REQUEST_SECONDS.labels(method, route), REQUESTS.labels(method, route, str(status)))
    children[0].observe(seconds)
    children[1].inc()


class StateCollector:
    """Scrape-time metrics from in-process state (no work on the request path)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._seen = {}  # recorder entry key -> total already added to _totals
        self._totals = {}  # (environment, flag, enabled, variant) -> evaluations since start

    def collect(self):
        yield from self._evaluations()
        yield from self._snapshots()
        yield from self._live()
        yield from self._health()
        yield from self._relay()

    def _relay(self):
        if not getattr(settings, "FLAGS_RELAY", ""):
            return
        from relay.outbox import outbox
        from relay.state import state

        yield _gauge("flagsite_relay_connected", "1 while this relay follows its upstream's stream", state.connected)
        yield _gauge("flagsite_relay_staleness_seconds",
                     "Seconds since this relay last heard from its upstream (0 while connected)", state.age())
        yield _gauge("flagsite_relay_stale", "1 while the relay serves a snapshot older than "
                     "FLAGS_RELAY_STALE_SECONDS with its upstream away", state.stale())
        yield _gauge("flagsite_relay_keys", "Key hashes this relay authenticates with", len(state.keys))
        yield _gauge("flagsite_relay_outbox_batches", "Batches of counts/exposures/events waiting for the upstream",
                     outbox.pending())
        dropped = CounterMetricFamily("flagsite_relay_outbox_dropped_batches",
                                      "Batches dropped because the outbox was full (FLAGS_RELAY_OUTBOX_MAX)")
        dropped.add_metric([], outbox.dropped)
        yield dropped
        sent = CounterMetricFamily("flagsite_relay_outbox_sent_batches", "Batches the upstream took")
        sent.add_metric([], outbox.sent)
        yield sent

    def _health(self):
        from flagsite.api.health import last_errors

        gauge = GaugeMetricFamily("flagsite_health_check_failed",
                                  "1 per /api/health check whose latest run failed, with its error",
                                  labels=["check", "error"])
        for check, error in list(last_errors.items()):
            gauge.add_metric([check, error], 1)
        yield gauge

    def _evaluations(self):
        from analytics.counters import _value, recorder

        with self._lock:
            for key, entry in list(getattr(recorder, "_entries", {}).items()):
                environment, flag, variant, enabled, _hour = key
                total = _value(entry[0])
                delta = total - self._seen.get(key, 0)
                if delta > 0:
                    self._seen[key] = total
                    label = (environment, flag, "true" if enabled else "false", variant or "")
                    self._totals[label] = self._totals.get(label, 0) + delta
            live = set(getattr(recorder, "_entries", {}))
            for key in [k for k in self._seen if k not in live]:  # the recorder forgot an old hour
                del self._seen[key]
            totals = dict(self._totals)
        family = CounterMetricFamily(
            "flagsite_evaluations", "Flag evaluations served by this process",
            labels=["environment", "flag", "enabled", "variant"],
        )
        cap = settings.FLAGS_METRICS_MAX_FLAGS
        per_env = {}
        for (environment, flag, _e, _v), n in totals.items():
            per_env.setdefault(environment, {}).setdefault(flag, 0)
            per_env[environment][flag] += n
        kept = {
            env: set(sorted(flags, key=lambda f: -flags[f])[:cap]) for env, flags in per_env.items()
        }
        merged = {}
        for (environment, flag, enabled, variant), n in totals.items():
            if flag not in kept[environment]:
                flag, variant = "_other", ""
            label = (environment, flag, enabled, variant)
            merged[label] = merged.get(label, 0) + n
        for label, n in merged.items():
            family.add_metric(list(label), n)
        yield family
        pending = GaugeMetricFamily(
            "flagsite_analytics_pending_evaluations",
            "Evaluations counted in this process and not yet flushed to the rollup task",
        )
        try:
            pending.add_metric([], recorder.pending_evaluations())
        except Exception:
            pass
        yield pending

    def _snapshots(self):
        from flags import snapshot

        version = GaugeMetricFamily(
            "flagsite_snapshot_version", "Configuration version of this process's compiled snapshot", labels=["environment"]
        )
        age = GaugeMetricFamily(
            "flagsite_snapshot_check_age_seconds",
            "Seconds since this process last confirmed its snapshot is current",
            labels=["environment"],
        )
        now = time.monotonic()
        for environment, entry in list(getattr(snapshot, "_entries", {}).items()):
            version.add_metric([environment], entry.version)
            if entry.checked_at != float("-inf"):
                age.add_metric([environment], max(0.0, now - entry.checked_at))
        yield version
        yield age

    def _live(self):
        gauge = GaugeMetricFamily("flagsite_ws_connections", "WebSocket clients connected to this process")
        try:
            from flags.live import watcher

            gauge.add_metric([], watcher.connection_count())
        except Exception:
            gauge.add_metric([], 0)
        yield gauge


def _gauge(name, documentation, value):
    gauge = GaugeMetricFamily(name, documentation)
    gauge.add_metric([], float(value))
    return gauge


state_collector = StateCollector()
REGISTRY.register(state_collector)


def _authorized(request):
    token = settings.FLAGS_METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_view(request):
    """GET /metrics: Prometheus text format. 404 when FLAGS_METRICS is off, or under FLAGS_PRODUCTION
    without FLAGS_METRICS_TOKEN; 401 without the token when one is set."""
    if not settings.FLAGS_METRICS or (settings.FLAGS_PRODUCTION and not settings.FLAGS_METRICS_TOKEN):
        raise Http404
    if not _authorized(request):
        response = HttpResponse("metrics token required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


# -- the same endpoint outside Django's URLconf (the gRPC process: `manage.py grpcserver --metrics-port`)


def scrape(authorization_header):
    """(status, headers, body) of one scrape, by metrics_view's rules: 404 when FLAGS_METRICS is
    off or under FLAGS_PRODUCTION without FLAGS_METRICS_TOKEN; 401 without the token when set."""
    if not settings.FLAGS_METRICS or (settings.FLAGS_PRODUCTION and not settings.FLAGS_METRICS_TOKEN):
        return 404, {"Content-Type": "text/plain"}, b"not found\n"
    token = settings.FLAGS_METRICS_TOKEN
    if token:
        scheme, _, given = (authorization_header or "").partition(" ")
        if not (scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())):
            return 401, {"Content-Type": "text/plain", "WWW-Authenticate": 'Bearer realm="metrics"'}, \
                b"metrics token required\n"
    return 200, {"Content-Type": CONTENT_TYPE_LATEST}, generate_latest(REGISTRY)


def start_metrics_server(host, port):
    """Serve GET /metrics on host:port from a daemon thread; returns the (started) HTTP server,
    whose ``server_address[1]`` is the bound port and ``shutdown()`` stops it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?", 1)[0] != "/metrics":
                status, headers, body = 404, {"Content-Type": "text/plain"}, b"not found: GET /metrics\n"
            else:
                status, headers, body = scrape(self.headers.get("Authorization"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # scrapes are not news
            pass

    server = ThreadingHTTPServer((host, port), MetricsHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
