"""/metrics: evaluations by flag and result, latency histograms, WS connections, snapshot version
and age, pending analytics; token-protected or off."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flags.models import Environment
from tests.ops.conftest import Client, create_flag

pytestmark = pytest.mark.django_db


def scrape(client=None, **extra):
    response = (client or Client()).get("/metrics", **extra)
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics__evaluations_by_flag_and_result_and_latency(keys):
    create_flag("on-flag", states={"production": {"enabled": True}})
    create_flag("off-flag", states={"production": {"enabled": False}})
    before = scrape()
    sdk = Client(keys["sdk"])
    for _ in range(3):
        sdk.post("/api/evaluate", {"flagId": "on-flag", "userId": "u"})
    sdk.post("/api/evaluate", {"flagId": "off-flag", "userId": "u"})
    sdk.post("/api/evaluate/bulk", {"userId": "u"})
    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    on = {"environment": "production", "flag": "on-flag", "enabled": "true", "variant": ""}
    off = {"environment": "production", "flag": "off-flag", "enabled": "false", "variant": ""}
    assert delta("flagsite_evaluations_total", **on) == 4
    assert delta("flagsite_evaluations_total", **off) == 2
    assert delta("flagsite_http_request_duration_seconds_count", method="POST", route="api/evaluate") == 4
    assert delta("flagsite_http_requests_total", method="POST", route="api/evaluate/bulk", status="200") == 1
    version = Environment.objects.get(key="production").version
    assert value(after, "flagsite_snapshot_version", environment="production") == version
    assert 0 <= value(after, "flagsite_snapshot_check_age_seconds", environment="production") < 60
    assert ("flagsite_ws_connections", ()) in after
    assert ("flagsite_analytics_pending_evaluations", ()) in after
    assert ("process_resident_memory_bytes", ()) in after


def test_metrics__flag_labels_capped(settings, keys):
    settings.FLAGS_METRICS_MAX_FLAGS = 1
    for key in ("a-flag", "b-flag", "c-flag"):
        create_flag(key, states={"staging": {"enabled": True}})
    sdk = Client(keys["sdk_other"])
    for key, times in (("a-flag", 5), ("b-flag", 1), ("c-flag", 1)):
        for _ in range(times):
            sdk.post("/api/evaluate", {"flagId": key, "userId": "u"})
    samples = scrape()
    flags = {dict(labels)["flag"] for (name, labels), _ in samples.items()
             if name == "flagsite_evaluations_total" and dict(labels).get("environment") == "staging"}
    assert flags == {"a-flag", "_other"}
    assert value(samples, "flagsite_evaluations_total", environment="staging", flag="_other", enabled="true", variant="") >= 2


def test_metrics__unmatched_paths_share_one_label():
    before = scrape()
    for n in range(5):
        Client().get(f"/no/such/path/{n}")
    after = scrape()
    routes = {dict(labels).get("route") for (name, labels) in after if name == "flagsite_http_requests_total"}
    assert not any(route and route.startswith("no/") for route in routes)
    key = ("flagsite_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))
    assert after[key] - before.get(key, 0) == 5


def test_metrics__token_required_when_set(settings):
    settings.FLAGS_METRICS_TOKEN = "scrape-token-1"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert scrape(HTTP_AUTHORIZATION="Bearer scrape-token-1")


def test_metrics__off_and_production_without_token_answer_404(settings):
    settings.FLAGS_METRICS = False
    assert Client().get("/metrics").status_code == 404
    settings.FLAGS_METRICS = True
    settings.FLAGS_PRODUCTION = True
    settings.FLAGS_METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 404
    settings.FLAGS_METRICS_TOKEN = "t"
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer t").status_code == 200
