"""Project isolation, walked: members of project A (viewer, editor, admin; no site permission, not
staff) GET every dashboard page and every API route of the URL conf (so a route added later is
walked too) while project B holds objects whose keys and names all contain MARK. Nothing of B may
show: not in lists, counts, search, explain, analytics, recent contexts, audit, exports or the
OpenAPI document; and a path naming one of B's objects (or B itself) answers exactly what a path
naming nothing answers (policy.py: 404, never "exists elsewhere").

Then targeted tests for each surface that was once global: analytics, recent contexts, the
dashboard's audit page and its live updates (/ws), the project switcher, and /metrics (operator-only).
"""

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.cache.backends.locmem import LocMemCache
from django.test import Client as PageClient

from analytics import counters, recent
from analytics import services as analytics_services
from analytics.models import EvaluationRollup, FlagActivity
from changes import services as change_services
from experiments import services as experiment_services
from experiments.models import Experiment
from flags import services as flag_services
from flags.models import ApiKey, Environment, Flag
from projects import scope
from projects import services as project_services
from projects.models import Project
from segments.models import Segment
from tests.api.conftest import SYSTEM, Client, create_flag, create_segment
from tests.urlconf import url_routes, view_class
from webhooks import services as webhook_services
from webhooks.models import Webhook

pytestmark = pytest.mark.django_db

A, B = "alpha", "bravo"
MARK = "zqxw"  # in every key and name of project B's objects, and nowhere else
MISSING = "nothing-here"
ROLES = ("viewer", "editor", "admin")
# Operator-only, never opened by a session or a role: tested on its own below.
OPERATOR_ONLY = {"/metrics"}
TRACE = re.compile(MARK, re.IGNORECASE)


def _everywhere(enabled=True, rules=None):
    return {env: {"enabled": enabled, "rules": rules or []} for env in Environment.objects.values_list("key", flat=True)}


def _objects(prefix):
    """One of everything a project owns, keys starting with ``prefix``; returns {kind: key or id}."""
    checkout = create_flag("checkout", name=f"{prefix} checkout", description=f"{prefix} description",
                           tags=[f"{prefix}-tag"], states=_everywhere(rules=[
                               {"type": "custom", "field": f"{prefix}field", "operator": "equals",
                                "value": f"{prefix}value"}]))
    create_flag(f"{prefix}-flag", name=f"{prefix} flag", states=_everywhere())
    create_flag(f"{prefix}-mv", kind="multivariate", name=f"{prefix} mv", states=_everywhere(),
                variants=[{"key": f"{prefix}a", "weight": 50}, {"key": f"{prefix}b", "weight": 50}])
    create_segment(f"{prefix}-seg", {"plan": f"{prefix}plan"}, name=f"{prefix} segment")
    experiment_services.metric_create(actor=SYSTEM, key=f"{prefix}-metric", name=f"{prefix} metric",
                                      kind="conversion", event=f"{prefix}event")
    experiment_services.experiment_create(actor=SYSTEM, key=f"{prefix}-exp", name=f"{prefix} exp",
                                          flag=f"{prefix}-mv", environment="production", control=f"{prefix}a",
                                          primary_metric=f"{prefix}-metric")
    experiment_services.experiment_start(actor=SYSTEM, experiment=Experiment.objects.get(key=f"{prefix}-exp"))
    webhook, _ = webhook_services.webhook_create(actor=SYSTEM, url=f"http://127.0.0.1:1/{prefix}hook",
                                                 events=["flag.killed"], name=f"{prefix} hook")
    delivery = webhook_services.webhook_ping(actor=SYSTEM, webhook=webhook)
    change = change_services.scheduled_change_create(actor=SYSTEM, flag=checkout, environment="production",
                                                     operation="enable", run_at="2099-01-01T00:00:00Z")
    plan = change_services.rollout_plan_create(actor=SYSTEM, flag=checkout, environment="staging",
                                               percentages=[50, 100], at="09:00")
    sdk, raw = flag_services.api_key_create(actor=SYSTEM, name=f"{prefix} sdk key", kind="sdk",
                                            environment=Environment.objects.get(key="production"))
    from changes import approvals

    request = approvals.change_request_open(actor=SYSTEM, flag=Flag.objects.get(key=f"{prefix}-flag"),
                                            environment="production", title=f"{prefix} request", operation="disable")
    flag_services.flag_kill(actor=SYSTEM, flag=checkout, reason=f"{prefix} reason", environments=["staging"])
    return {"flag": f"{prefix}-flag", "segment": f"{prefix}-seg", "metric": f"{prefix}-metric",
            "experiment": f"{prefix}-exp", "webhook_id": webhook.pk, "delivery": getattr(delivery, "pk", 1),
            "change_id": change.pk, "plan_id": plan.pk, "key_id": sdk.pk, "sdk": raw,
            "change_request_id": request.pk, "environment": "production"}


def _evaluate(raw_key, prefix):
    """Evaluations through the project's SDK key (counted, contexts sampled), flushed to the tables."""
    client = Client(raw_key)
    for flag in ("checkout", f"{prefix}-flag"):
        answer = client.post("/api/evaluate", {"flagId": flag, "userId": f"{prefix}user",
                                               "context": {f"{prefix}attr": f"{prefix}context"}})
        assert answer.status_code == 200, answer.content
    batch = counters.recorder.collect()  # applied here: with Redis the task would go to a worker
    analytics_services.rollup_apply(batch=batch)
    # the sampled contexts stay in this process (read merges them): a shared Redis is cleared by
    # other test processes at will; test_recent_contexts__per_project flushes them to its own cache


@pytest.fixture
def world(db, settings):
    settings.FLAGS_ANALYTICS_AUTOFLUSH = False
    counters.recorder.reset()
    User = get_user_model()
    project_services.project_create(actor=SYSTEM, key=A, name="Alpha Team")
    project_services.project_create(actor=SYSTEM, key=B, name=f"Bravo {MARK} Team",
                                    environments=["development", "staging", "production", f"{MARK}-env"])
    with scope.using(A):
        a = _objects("alpha")
    with scope.using(B):
        b = _objects(MARK)
        b["environment"] = f"{MARK}-env"  # an environment only B has
        b["grant_id"] = project_services.role_grant(actor=SYSTEM, project=Project.objects.get(key=B), role="admin",
                                                    user=User.objects.create_user(f"{MARK}-person")).pk
    _evaluate(a["sdk"], "alpha")
    _evaluate(b["sdk"], MARK)
    members = {}
    for role in ROLES:
        members[role] = User.objects.create_user(f"alpha-{role}")
        a["grant_id"] = project_services.role_grant(actor=SYSTEM, project=Project.objects.get(key=A), role=role,
                                                    user=members[role]).pk
    assert not any(user.is_staff for user in members.values())
    return {"a": a, "b": b, "members": members}


def member_client(user):
    client = PageClient()
    client.force_login(user)
    return client


# ---- the walk --------------------------------------------------------------------------------

PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def _key_kind(template):
    for part, kind in (("/segments/", "segment"), ("/metrics/", "metric"), ("/experiments/", "experiment")):
        if part in template:
            return kind
    return "flag"


def _fill(template, objects, project, key=None):
    """A concrete path: the template's parameters taken from ``objects`` (one project's)."""

    def value(match):
        name = match.group(2)
        if name == "project":
            return project
        if name == "key":
            return key or ("checkout" if _key_kind(template) == "flag" else objects[_key_kind(template)])
        return str(objects[name])

    return PARAM.sub(value, template)


def walked_routes():
    """Every GET route of the URL conf but the admin's (tested by tests/projects/test_pages.py) and
    the operator-only ones: (template, is_api)."""
    routes = []
    for template, callback in url_routes():
        if template.startswith("/admin/") or template in OPERATOR_ONLY:
            continue
        view = view_class(callback)
        if view is not None and not hasattr(view, "get"):
            continue  # a write-only route: the permission matrix covers it
        routes.append(template)
    return sorted(set(routes))


def test_walk__discovers_pages_and_api_routes():
    routes = walked_routes()
    assert {"/", "/flags/<str:key>", "/audit/", "/analytics/", "/experiments/<str:key>",
            "/api/projects/<slug:project>/analytics/metrics", "/api/projects/<slug:project>/flags",
            "/api/schema", "/api/projects"} <= set(routes)
    assert len(routes) > 60


def _get(client, path):
    accept = "application/json, text/html;q=0.9, */*;q=0.8" if path.startswith("/api/") else "text/html"
    response = client.get(path, HTTP_ACCEPT=accept)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body.decode("utf-8", "replace")


@pytest.mark.parametrize("role", ROLES)
def test_walk__a_member_of_a_sees_nothing_of_b_on_any_route(world, role):
    seen_ok = _walk(member_client(world["members"][role]), world, walked_routes())
    assert seen_ok > 25  # the member really reached its project's pages and API


def test_walk__a_members_management_token__sees_nothing_of_b_on_any_api_route(world):
    """Tokens act with their user's roles (an unnarrowed one: every project the user is in)."""
    _, raw = flag_services.api_key_create(actor=SYSTEM, name="alpha admin token", kind="management",
                                          user=world["members"]["admin"])
    seen_ok = _walk(Client(raw), world, [r for r in walked_routes() if r.startswith(("/api/", "/ofrep/"))])
    assert seen_ok > 15


def _walk(client, world, routes):
    """GET every route as ``client``: fails on any trace of B; returns how many answered 200."""
    seen_ok = 0
    failures = []
    for template in routes:
        paths = {_fill(template, world["a"], A)}
        paths.add(PARAM.sub(lambda m: A if m.group(2) == "project" else "x", template) + "?project=" + B)
        for path in paths:
            status, body = _get(client, path)
            assert status < 500, (path, status, body[:500])
            body = VOLATILE.sub("", body)  # a random CSRF token may spell anything
            seen_ok += status == 200
            if TRACE.search(body):
                failures.append(f"{path} ({status}): ...{body[TRACE.search(body).start() - 80:][:200]}...")
        # naming B (the project, or one of its objects) answers what naming nothing answers
        for name, mine, missing in _probes(template, world):
            b_status, b_body = _get(client, mine)
            m_status, m_body = _get(client, missing)
            assert b_status == m_status, (mine, b_status, missing, m_status)
            if _normalize(b_body, name) != _normalize(m_body, MISSING):
                failures.append(f"{mine} answers differently from {missing}:\n{_diff(b_body, m_body, name)}")
    assert not failures, "\n".join(failures)
    return seen_ok


SEARCHES = ("q", "search", "target", "flag", "key", "segment", "actor", "tag", "flagId")


def _probes(template, world):
    """(the B value used, a path naming B's object or B, the same path naming nothing)."""
    params = [m.group(2) for m in PARAM.finditer(template)]
    # searching, filtering for one of B's keys finds what searching for nothing finds
    query = "&".join(f"{name}={{}}" for name in SEARCHES)
    mine = _fill(template, world["a"], A)
    probes = [(f"{MARK}-flag", f"{mine}?{query.format(*[f'{MARK}-flag'] * len(SEARCHES))}",
               f"{mine}?{query.format(*[MISSING] * len(SEARCHES))}")]
    if "project" in params:
        probes.append((B, _fill(template, world["a"], B), _fill(template, world["a"], MISSING)))
    if "key" in params:
        b_key = world["b"][_key_kind(template)]
        probes.append((b_key, _fill(template, world["a"], A, key=b_key),
                       _fill(template, world["a"], A, key=MISSING)))
    ids = [p for p in params if p not in ("project", "key")]
    if ids:
        b_ids = {**world["a"], **{p: world["b"][p] for p in ids}}
        none = {**world["a"], **{p: 987654 for p in ids}}  # ("987654": no environment either)
        probes.append((str(world["b"][ids[0]]), _fill(template, b_ids, A), _fill(template, none, A)))
    return probes


VOLATILE = re.compile(r'"(requestId|request_id)":\s*"[^"]*"|name="csrfmiddlewaretoken" value="[^"]*"'
                      r'|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?'
                      r'|"(seconds|sqlSeconds)":\s*[\d.e-]+|Computed in [\d.e-]+ s|\([\d.e-]+ s in the database\)')


def _normalize(body, name):
    """The body with the probed name and what differs between any two answers (request ids, CSRF
    tokens, timestamps, timings) taken out."""
    body = body.replace(name, "<name>").replace(MISSING, "<name>").replace("987654", "<name>")
    return VOLATILE.sub("", body)


def _diff(one, other, name):
    one, other = _normalize(one, name), _normalize(other, MISSING)
    at = next((i for i, (x, y) in enumerate(zip(one, other)) if x != y), min(len(one), len(other)))
    return f"...{one[max(0, at - 150):at + 150]}...\n   vs\n...{other[max(0, at - 150):at + 150]}..."


# ---- targeted: each surface that was global --------------------------------------------------

def test_analytics__rows_carry_their_project_and_reads_are_per_project(world):
    assert set(EvaluationRollup.objects.values_list("project", flat=True)) == {A, B}
    assert not EvaluationRollup.objects.filter(environment__contains=".").exists()  # plain keys, not refs
    assert set(FlagActivity.objects.filter(flag_key="checkout").values_list("project", flat=True)) == {A, B}
    client = member_client(world["members"]["viewer"])
    series = client.get(f"/api/projects/{A}/analytics/flags/checkout?timeRange=24h").json()
    assert series["totals"]["evaluations"] == 1  # A's one evaluation, not A's and B's
    assert series["totals"]["environments"] == {"production": 1}
    metrics = client.get(f"/api/projects/{A}/analytics/metrics").json()
    assert metrics["evaluations24h"] == 2 and metrics["flags"]["total"] == 3
    assert client.get(f"/api/projects/{B}/analytics/metrics").status_code == 404
    assert client.get("/api/analytics/metrics").status_code == 404  # the default project: no role there, as B
    page = client.get("/analytics/").content.decode()
    assert "alpha-flag" in page and MARK not in page


def test_analytics__migration_moves_old_rows_to_their_project():
    """0002 splits the refs the counters used to store ("bravo.production") into project and key."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("analytics.migrations.0002_flagactivity_per_project")

    assert callable(migration.split_refs) and callable(migration.join_refs)
    EvaluationRollup.objects.create(project="default", granularity="hour", period_start="2026-01-01T00:00Z",
                                    environment=f"{B}.production", flag_key="old", enabled=True, evaluations=3)
    migration.split_refs(apps, None)
    row = EvaluationRollup.objects.get(flag_key="old")
    assert (row.project, row.environment, row.evaluations) == (B, "production", 3)


def test_recent_contexts__per_project(world):
    client = member_client(world["members"]["editor"])
    answer = client.get("/flags/checkout/recent-contexts").json()
    assert [s["userId"] for s in answer["contexts"]] == ["alphauser"]
    assert answer["contexts"][0]["environment"] == "production"
    assert MARK not in json.dumps(answer)
    page = client.get("/flags/checkout").content.decode()
    assert "alphaattr" in page and MARK not in page  # "Evaluate as" offers A's attributes only
    with scope.using(B):
        assert [s["userId"] for s in counters.recorder.recent.read("checkout")] == [f"{MARK}user"]
    # flushed to the cache: one entry per project and flag, read back per project
    cache = LocMemCache("isolation-walk", {})
    assert counters.recorder.recent.flush(cache=cache) == 4
    for project, user in ((A, "alphauser"), (B, f"{MARK}user")):
        assert [s["userId"] for s in cache.get(recent.cache_key("checkout", project))] == [user]
        assert [s["userId"] for s in counters.recorder.recent.read("checkout", cache=cache, project=project)] == [user]
    assert cache.get(recent.cache_key("checkout")) is None  # the default project evaluated nothing


def test_audit_page__the_current_projects_entries_only(world):
    client = member_client(world["members"]["viewer"])
    page = client.get("/audit/").content.decode()
    assert "alpha-flag" in page and MARK not in page
    assert client.get(f"/audit/?target={MARK}").content.decode().count(MARK) == 1  # the search box, no entry
    assert MARK not in client.get("/audit/?action=flag.created").content.decode()


def test_dashboard__members_reach_their_projects_pages_admin_link_and_switcher(world):
    User = get_user_model()
    client = member_client(world["members"]["viewer"])
    page = client.get("/")
    html = page.content.decode()
    assert page.status_code == 200 and "alpha-flag" in html
    assert 'href="/admin/"' not in html  # the admin is for staff
    assert f'<option value="{A}" selected>' in html
    assert f'value="{B}"' not in html and "default" not in re.findall(r'<option value="([^"]+)"', html)
    assert client.get(f"/?project={B}").content.decode().count(f'<option value="{A}" selected>') == 1
    assert client.get(f"/flags/{MARK}-flag").status_code == 404
    assert client.get("/admin/").status_code == 302  # the admin's login: not theirs
    nobody = member_client(User.objects.create_user("no-role"))
    assert nobody.get("/").status_code == 403
    staff = User.objects.create_superuser("root", None, None)
    assert 'href="/admin/"' in member_client(staff).get("/").content.decode()


def test_dashboard__a_member_logs_in_with_a_password_and_lands_on_the_dashboard(world):
    user = world["members"]["viewer"]
    user.set_password("pw-alpha-123")
    user.save()
    client = PageClient()
    answer = client.post("/admin/login/?next=/admin/", {"username": user.username, "password": "pw-alpha-123"})
    assert answer.status_code == 302 and answer["Location"] == "/"
    assert "alpha-flag" in client.get("/").content.decode()
    nobody = get_user_model().objects.create_user("no-role", password="pw-none-123")
    refused = PageClient().post("/admin/login/", {"username": nobody.username, "password": "pw-none-123"})
    assert refused.status_code == 200 and "staff account" in refused.content.decode()


def test_explain__another_projects_flag_answers_like_a_missing_one(world):
    client = member_client(world["members"]["viewer"])
    body = {"userId": "u1", "context": {}}
    mine = client.post(f"/api/projects/{A}/flags/checkout/explain", body, content_type="application/json")
    assert mine.status_code == 200 and MARK not in mine.content.decode()
    other = client.post(f"/api/projects/{A}/flags/{MARK}-flag/explain", body, content_type="application/json")
    missing = client.post(f"/api/projects/{A}/flags/{MISSING}/explain", body, content_type="application/json")
    assert other.status_code == missing.status_code == 404
    assert _normalize(other.content.decode(), f"{MARK}-flag") == _normalize(missing.content.decode(), MISSING)
    elsewhere = client.post(f"/api/projects/{B}/flags/checkout/explain", body, content_type="application/json")
    assert elsewhere.status_code == 404


def test_metrics__operator_only_a_members_session_opens_nothing(world, settings):
    settings.FLAGS_METRICS_TOKEN = "scrape-token"
    client = member_client(world["members"]["admin"])
    answer = client.get("/metrics")
    assert answer.status_code == 401 and MARK not in answer.content.decode()
    assert PageClient().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").status_code == 200


def test_objects_of_b_exist(world):
    """The walk's premise: B really holds what the walk must not see."""
    with scope.using(B):
        assert Segment.objects.filter(key=f"{MARK}-seg").exists()
        assert Webhook.objects.filter(name__contains=MARK).exists()
        assert ApiKey.objects.filter(name__contains=MARK).exists()


def test_admin__a_staff_member_of_a_sees_nothing_of_b_in_any_list(world):
    """A member who is also staff (is_staff, no model permission, a role in A) reaches the admin:
    every list it shows them is A's; B's objects' change pages answer like missing ones."""
    from django.contrib import admin
    from django.urls import reverse

    user = world["members"]["admin"]
    user.is_staff = True
    user.save()
    client = member_client(user)
    failures, lists = [], 0
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        status, body = _get(client, reverse("admin:%s_%s_changelist" % info))
        assert status < 500, (info, status)
        body = VOLATILE.sub("", body)
        lists += status == 200
        if TRACE.search(body):
            failures.append(f"{info} list: ...{body[TRACE.search(body).start() - 80:][:200]}")
    assert lists >= 4 and not failures, failures
    b_flag = Flag.all_objects.get(project_id=B, key=f"{MARK}-flag")
    status, body = _get(client, reverse("admin:flags_flag_change", args=[b_flag.pk]))
    assert MARK not in body and status in (302, 404)


WRITES = ("post", "put", "patch", "delete")


def write_routes():
    """[(template, method)] of every route that writes (REST and pages) and names something."""
    found = []
    for template, callback in url_routes():
        if template.startswith("/admin/") or not PARAM.search(template):
            continue
        view = view_class(callback)
        methods = [m for m in WRITES if view is not None and hasattr(view, m)] if view is not None else ["post"]
        found += [(template, method) for method in methods]
    return sorted(set(found))


def _b_state():
    from audit.models import AuditEntry
    from flags.models import FlagState

    return (AuditEntry.objects.filter(project=B).count(),
            sorted(FlagState.objects.filter(flag__project_id=B).values_list("flag__key", "environment__key",
                                                                            "enabled", "killed", "version")),
            sorted(Flag.all_objects.filter(project_id=B).values_list("key", "name", "archived")))


def test_writes__naming_b_changes_nothing_and_answers_like_naming_nothing(world):
    """A's admin sends every write (REST and pages) at B's objects, or at B itself: nothing of B
    changes, and each answer is the one a path naming nothing gets."""
    client = member_client(world["members"]["admin"])
    before = _b_state()
    failures = []
    routes = write_routes()
    assert len(routes) > 30
    for template, method in routes:
        for name, mine, missing in _probes(template, world)[1:]:  # not the search probe
            send = getattr(client, method)
            b = send(mine, {}, content_type="application/json")
            m = send(missing, {}, content_type="application/json")
            b_body, m_body = b.content.decode(), m.content.decode()
            if b.status_code != m.status_code or _normalize(b_body, name) != _normalize(m_body, MISSING):
                failures.append(f"{method.upper()} {mine} ({b.status_code}) vs {missing} ({m.status_code}):\n"
                                f"{_diff(b_body, m_body, name)}")
    assert _b_state() == before
    assert not failures, "\n".join(failures)
