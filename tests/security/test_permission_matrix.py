"""Who may change what: every write path x every kind of caller, with the expected answer, and
nothing written on a refusal.

Write paths: every REST/OFREP route method that takes a body (from the URL conf), every dashboard
page route (actions by POST, the editor's read-only JSON by GET; read-only pages must write nothing
when POSTed to), and every admin
view and action of every registered ModelAdmin. The discovery tests at the bottom fail when a route,
page or admin action is missing from the tables below: a new endpoint joins the matrix.

Callers: anonymous; a non-staff user holding every permission (REST is for any user with the model
permission; pages and the admin are for staff); a staff user holding every permission except the
row's (the management API's users log in by session, or by their token on the key-only evaluation
paths where no session is read); a staff user with just the row's permission (plus `context`, e.g. view to reach a changelist);
a production SDK key; the management token of the user without the permission; a relay token
(relay/: it may only use the relay protocol, /api/relay/*, and is refused everywhere else). Each call runs in a
savepoint rolled back afterwards, so the rows of one table are independent.
"""

import json
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.db import transaction
from django.test import Client as PageClient
from django.test import RequestFactory
from django.urls import reverse

from audit.models import AuditEntry
from changes.models import ChangeRequest, ProtectedEnvironment, Review, RolloutPlan, ScheduledChange
from experiments import services as experiment_services
from experiments.models import Experiment
from flags import snapshot
from analytics.models import EvaluationRollup
from flags.models import ApiKey, Environment, Flag, RelayBatch
from flagsite.api.authentication import forget_api_key
from projects import services as project_services
from projects.models import Project, RoleGrant
from segments.models import Segment
from tests.api.conftest import SYSTEM, Client, create_flag, create_segment, make_key
from tests.conftest import World
from tests.flags.test_admin import change_form_data, user_change_data
from tests.urlconf import url_routes, view_class
from webhooks.models import Delivery, Webhook

pytestmark = pytest.mark.django_db

WHO = ("anonymous", "member", "staff_without", "staff_with", "sdk", "token_without", "relay")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
APPS = ("flags", "segments", "audit", "analytics", "auth", "projects", "webhooks", "changes", "experiments")
LOGIN = "login"  # a 302 to the admin login page


def rest_write(ok):
    """REST: any user with the permission (session or token); SDK keys never."""
    return {"anonymous": 401, "member": ok, "staff_without": 403, "staff_with": ok, "sdk": 403, "token_without": 403,
            "relay": 403}


def rest_evaluate(ok):
    """Evaluation-like calls: SDK keys too; they write nothing to the database."""
    return {"anonymous": 401, "member": ok, "staff_without": 403, "staff_with": ok, "sdk": ok, "token_without": 403,
            "relay": 403}


def relay_only(ok):
    """The relay protocol (relay/apis.py): relay tokens only; users, whatever they hold, and SDK keys never."""
    return {"anonymous": 401, "member": 403, "staff_without": 403, "staff_with": 403, "sdk": 403,
            "token_without": 403, "relay": ok}


PAGE = {"anonymous": LOGIN, "member": 403, "staff_without": 403, "staff_with": 302, "sdk": LOGIN,
        "token_without": LOGIN, "relay": LOGIN}
ADMIN_FORM = {**PAGE, "member": LOGIN}
# The action is not offered to staff_without: back to the list ("No action selected.", or the plain
# list when no action at all is offered to them), nothing done.
ADMIN_ACTION = {**ADMIN_FORM, "staff_without": (200, 302)}
ADMIN_NEVER = {**ADMIN_FORM, "staff_with": 403}  # read-only models: nobody, whatever they hold


@dataclass
class Row:
    key: tuple  # what discovery matches: ("rest", template, method) / ("page", template) / ("admin", model, op)
    request: callable  # objects -> (method, path, data)
    expect: dict  # WHO -> status
    perms: tuple = ()  # the permission under test: staff_with holds it, staff_without everything else
    context: tuple = ()  # also given to staff_with (e.g. view_flag to reach a changelist)
    writes: bool = True  # an allowed call must change something (False: evaluations, read-only forms)
    note: str = ""
    json: bool = False  # the body is posted as JSON (the editor's endpoints), not as a form

    @property
    def id(self):
        return " ".join(str(part) for part in self.key) + (f" [{self.note}]" if self.note else "")


def rest(template, method, path, body, expect, perms, writes=True, note=""):
    return Row(("rest", template, method), lambda o: (method, path, body), expect, tuple(perms), (), writes, note)


def page(template, path, data, perms=("flags.change_flag",), note=""):
    return Row(("page", template), lambda o: ("POST", path, data), PAGE, tuple(perms), note=note)


def page_json(template, path, body, perms=("flags.change_flag",), writes=True):
    """The targeting editor's JSON endpoints (flags/editor.py): 200 with JSON to staff with the permission."""
    return Row(("page", template), lambda o: ("POST", path, body), {**PAGE, "staff_with": 200}, tuple(perms), (),
               writes, json=True)


def page_get_json(template, path, perms):
    """A read-only JSON endpoint of the editor, by GET: 200 to staff with the permission, writes nothing."""
    return Row(("page", template), lambda o: ("GET", path, None), {**PAGE, "staff_with": 200}, tuple(perms), (),
               False, json=True)


def admin_view(model, op, url, data, expect=ADMIN_FORM, perms=(), context=(), writes=True, note=""):
    """url: objects -> path; data: objects -> form data."""
    return Row(("admin", model, op), lambda o: ("POST", url(o), data(o)), expect, tuple(perms), tuple(context),
               writes, note)


def admin_action(model, action, pks, perms, context=(), extra=None, note=""):
    changelist = reverse(f"admin:{model.replace('.', '_')}_changelist")
    return Row(("admin", model, action),
               lambda o: ("POST", changelist, {"action": action, "_selected_action": pks(o), **(extra or {})}),
               ADMIN_ACTION, tuple(perms), tuple(context), True, note)


def url(name, *attrs):
    return lambda o: reverse(f"admin:{name}", args=[getattr(o, attr).pk for attr in attrs])


VIEW_FLAG, CHANGE_FLAG = "flags.view_flag", "flags.change_flag"
SCHEDULE = ["changes.add_scheduledchange", CHANGE_FLAG]
LATER = "2099-01-01T00:00:00Z"
REPORT = {"evaluations": [{"flagId": "m", "variant": None, "enabled": True, "count": 3}]}

REST = [
    rest("/api/flags", "POST", "/api/flags", {"key": "made", "name": "Made"}, rest_write(201), ["flags.add_flag"]),
    rest("/api/flags/<str:key>", "PUT", "/api/flags/m", {"name": "M2", "enabled": False}, rest_write(200),
         [CHANGE_FLAG]),
    rest("/api/flags/<str:key>", "PATCH", "/api/flags/m", {"description": "d"}, rest_write(200), [CHANGE_FLAG]),
    rest("/api/flags/<str:key>", "DELETE", "/api/flags/m", None, rest_write(204), ["flags.delete_flag"],
         note="archive"),
    rest("/api/flags/<str:key>", "DELETE", "/api/flags/m?hard=true", None, rest_write(204), ["flags.delete_flag"],
         note="hard delete"),
    rest("/api/flags/<str:key>/toggle", "PATCH", "/api/flags/m/toggle", {"enabled": False}, rest_write(200),
         [CHANGE_FLAG]),
    rest("/api/flags/<str:key>/kill-switch", "POST", "/api/flags/m/kill-switch", {"reason": "r"}, rest_write(200),
         [CHANGE_FLAG]),
    rest("/api/flags/<str:key>/restore", "POST", "/api/flags/m/restore", {"reason": "r"}, rest_write(200),
         [CHANGE_FLAG]),
    rest("/api/flags/<str:key>/unarchive", "POST", "/api/flags/gone/unarchive", None, rest_write(200),
         [CHANGE_FLAG]),
    rest("/api/flags/<str:key>/explain", "POST", "/api/flags/m/explain", {"userId": "u", "context": {"plan": "x"}},
         rest_write(200), [VIEW_FLAG], writes=False, note="reads: SDK keys refused, it reveals rules"),
    rest("/api/segments", "POST", "/api/segments", {"key": "new-seg", "name": "n", "conditions": {"plan": "x"}},
         rest_write(201), ["segments.add_segment"]),
    rest("/api/segments/<str:key>", "PUT", "/api/segments/seg", {"name": "u", "conditions": {"plan": "y"}},
         rest_write(200), ["segments.change_segment"]),
    rest("/api/segments/<str:key>", "PATCH", "/api/segments/seg", {"description": "d"}, rest_write(200),
         ["segments.change_segment"]),
    rest("/api/segments/<str:key>", "DELETE", "/api/segments/seg", None, rest_write(204),
         ["segments.delete_segment"]),
    rest("/api/evaluate", "POST", "/api/evaluate", {"flagId": "m", "userId": "u"}, rest_evaluate(200), [VIEW_FLAG],
         writes=False),
    rest("/api/evaluate/bulk", "POST", "/api/evaluate/bulk", {"userId": "u"}, rest_evaluate(200), [VIEW_FLAG],
         writes=False),
    rest("/api/sdk/metrics", "POST", "/api/sdk/metrics", REPORT, rest_evaluate(202), [VIEW_FLAG], writes=False),
    # events: SDK keys, and tokens of users with view_flag (as SDK reports); queued in process, so the
    # request itself writes nothing (the flush does, later: tests/experiments/test_events_api.py)
    rest("/api/events", "POST", "/api/events", {"events": [{"event": "buy", "userId": "u", "id": "e1"}]},
         rest_evaluate(202), [VIEW_FLAG], writes=False),
    # webhooks: ping and redeliver reach 127.0.0.1:1 (refused at once); a delivery row is the write
    Row(("rest", "/api/webhooks", "POST"), lambda o: ("POST", "/api/webhooks", {"url": "http://127.0.0.1:1/h",
                                                                                  "events": ["flag.killed"]}),
        rest_write(201), ("webhooks.add_webhook",)),
    Row(("rest", "/api/webhooks/<int:webhook_id>", "PATCH"),
        lambda o: ("PATCH", f"/api/webhooks/{o.webhook.pk}", {"events": ["flag.changed"]}), rest_write(200),
        ("webhooks.change_webhook",)),
    Row(("rest", "/api/webhooks/<int:webhook_id>", "DELETE"), lambda o: ("DELETE", f"/api/webhooks/{o.webhook.pk}", None),
        rest_write(204), ("webhooks.delete_webhook",)),
    Row(("rest", "/api/webhooks/<int:webhook_id>/rotate-secret", "POST"),
        lambda o: ("POST", f"/api/webhooks/{o.webhook.pk}/rotate-secret", None), rest_write(200),
        ("webhooks.change_webhook",)),
    Row(("rest", "/api/webhooks/<int:webhook_id>/ping", "POST"),
        lambda o: ("POST", f"/api/webhooks/{o.webhook.pk}/ping", None), rest_write(200),
        ("webhooks.change_webhook",)),
    Row(("rest", "/api/webhooks/<int:webhook_id>/deliveries/<int:delivery>/redeliver", "POST"),
        lambda o: ("POST", f"/api/webhooks/{o.webhook.pk}/deliveries/{o.delivery.pk}/redeliver", None),
        rest_write(202), ("webhooks.change_webhook",)),
    rest("/api/metrics", "POST", "/api/metrics", {"key": "made", "name": "Made", "kind": "count", "event": "e"},
         rest_write(201), ["experiments.add_metric"]),
    rest("/api/metrics/<str:key>", "PATCH", "/api/metrics/buy", {"windowHours": 48}, rest_write(200),
         ["experiments.change_metric"]),
    rest("/api/metrics/<str:key>", "DELETE", "/api/metrics/spare", None, rest_write(204),
         ["experiments.delete_metric"]),
    rest("/api/experiments", "POST", "/api/experiments",
         {"key": "made", "name": "Made", "flag": "mv", "environment": "production", "control": "a",
          "primaryMetric": "buy"}, rest_write(201), ["experiments.add_experiment"]),
    rest("/api/experiments/<str:key>/start", "POST", "/api/experiments/draft/start", None, rest_write(200),
         ["experiments.change_experiment"]),
    rest("/api/experiments/<str:key>/stop", "POST", "/api/experiments/running/stop", {}, rest_write(200),
         ["experiments.change_experiment"]),
    rest("/api/experiments/<str:key>/stop", "POST", "/api/experiments/running/stop", {"ship": "b"},
         rest_write(200), ["experiments.change_experiment", CHANGE_FLAG], note="ship: the flag changes too"),
    rest("/ofrep/v1/evaluate/flags", "POST", "/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "u"}},
         rest_evaluate(200), [VIEW_FLAG], writes=False),
    rest("/ofrep/v1/evaluate/flags/<path:key>", "POST", "/ofrep/v1/evaluate/flags/m",
         {"context": {"targetingKey": "u"}}, rest_evaluate(200), [VIEW_FLAG], writes=False),
    # scheduling needs what the direct write needs too (flags.change_flag)
    rest("/api/scheduled-changes", "POST", "/api/scheduled-changes",
         {"flag": "m", "change": {"action": "disable"}, "runAt": LATER}, rest_write(201), SCHEDULE),
    Row(("rest", "/api/scheduled-changes/<int:change_id>/cancel", "POST"),
        lambda o: ("POST", f"/api/scheduled-changes/{o.scheduled.pk}/cancel", {}), rest_write(200),
        ("changes.change_scheduledchange",)),
    Row(("rest", "/api/scheduled-changes/<int:change_id>/reschedule", "POST"),
        lambda o: ("POST", f"/api/scheduled-changes/{o.scheduled.pk}/reschedule", {"runAt": "2099-02-01T00:00:00Z"}),
        rest_write(200), ("changes.change_scheduledchange",)),
    rest("/api/rollout-plans", "POST", "/api/rollout-plans", {"flag": "m", "percentages": [10, 100], "at": "09:00"},
         rest_write(201), ["changes.add_rolloutplan", CHANGE_FLAG]),
    Row(("rest", "/api/rollout-plans/<int:plan_id>/cancel", "POST"),
        lambda o: ("POST", f"/api/rollout-plans/{o.plan.pk}/cancel", {}), rest_write(200),
        ("changes.change_rolloutplan",)),
    # change requests: proposing needs what the direct write needs too (the dry run); amend, rebase and
    # withdraw are the author's (staff_with opened o.mine; the member, not its author, is refused), but a
    # project admin (changes.close_changerequest: the member holds it) closes anyone's;
    # reviews need the approver's rights (may_approve: flags.change_flag for site staff), never the author
    Row(("rest", "/api/change-requests", "POST"), lambda o: ("POST", "/api/change-requests", {
        "flag": "m", "title": "off", "change": {"action": "disable"}}), rest_write(201),
        ("changes.add_changerequest",), (CHANGE_FLAG,)),
    Row(("rest", "/api/change-requests/<int:change_request_id>/amend", "POST"),
        lambda o: ("POST", f"/api/change-requests/{o.mine.pk}/amend", {"title": "off, really"}),
        {**rest_write(200), "member": 403}, ("changes.change_changerequest",), (CHANGE_FLAG,), note="author only"),
    Row(("rest", "/api/change-requests/<int:change_request_id>/rebase", "POST"),
        lambda o: ("POST", f"/api/change-requests/{o.mine.pk}/rebase", None),
        {**rest_write(200), "member": 403}, ("changes.change_changerequest",), (CHANGE_FLAG,), note="author only"),
    Row(("rest", "/api/change-requests/<int:change_request_id>/withdraw", "POST"),
        lambda o: ("POST", f"/api/change-requests/{o.mine.pk}/withdraw", {}),
        rest_write(200), ("changes.change_changerequest",),
        note="the author, or a project admin (member) closing someone else's"),
    Row(("rest", "/api/change-requests/<int:change_request_id>/review", "POST"),
        lambda o: ("POST", f"/api/change-requests/{o.theirs.pk}/review", {"verdict": "approve"}), rest_write(200),
        ("changes.review_changerequest",), (CHANGE_FLAG,)),
    Row(("rest", "/api/change-requests/<int:change_request_id>/review", "POST"),
        lambda o: ("POST", f"/api/change-requests/{o.mine.pk}/review", {"verdict": "approve"}),
        {**rest_write(403), "member": 200}, ("changes.review_changerequest",), (CHANGE_FLAG,),
        note="staff_with opened it: never one's own"),
    Row(("rest", "/api/change-requests/<int:change_request_id>/apply", "POST"),
        lambda o: ("POST", f"/api/change-requests/{o.approved.pk}/apply", None), rest_write(200),
        ("changes.apply_changerequest",), (CHANGE_FLAG,)),
    Row(("rest", "/api/change-requests/<int:change_request_id>/apply", "POST"),
        lambda o: ("POST", f"/api/change-requests/{o.theirs.pk}/apply", None),
        {**rest_write(409)}, ("changes.apply_changerequest",), (CHANGE_FLAG,), writes=False,
        note="without enough approvals: 409"),
    Row(("rest", "/api/change-requests/<int:change_request_id>/schedule", "POST"),
        lambda o: ("POST", f"/api/change-requests/{o.approved.pk}/schedule", {"runAt": LATER}), rest_write(201),
        ("changes.apply_changerequest", "changes.add_scheduledchange")),
    Row(("rest", "/api/environments/<str:environment>/protection", "PUT"),
        lambda o: ("PUT", "/api/environments/production/protection", {"requiredApprovals": 2}), rest_write(200),
        ("changes.add_protectedenvironment", "changes.change_protectedenvironment")),
    Row(("rest", "/api/environments/<str:environment>/protection", "DELETE"),
        lambda o: ("DELETE", f"/api/environments/{o.protection.environment.key}/protection", None), rest_write(200),
        ("changes.delete_protectedenvironment",)),
]

# A project's management paths are the same views as the default project's, mounted again
# (projects/urls.py): the same rows, through /api/projects/default/.
REST += [
    Row(("rest", "/api/projects/<slug:project>" + r.key[1].removeprefix("/api"), r.key[2]),
        (lambda request: lambda o: (lambda m, path, body: (m, "/api/projects/default" + path.removeprefix("/api"),
                                                          body))(*request(o)))(r.request),
        r.expect, r.perms, r.context, r.writes, r.note)
    for r in list(REST) if r.key[1].startswith(("/api/flags", "/api/segments", "/api/webhooks",
                                                 "/api/scheduled-changes", "/api/rollout-plans", "/api/metrics",
                                                 "/api/experiments", "/api/change-requests",
                                                 "/api/environments/"))
] + [
    rest("/api/projects", "POST", "/api/projects", {"key": "made-project", "name": "Made"}, rest_write(201),
         ["projects.add_project"]),
    # a project's members and keys (only under /api/projects/<project>/): project admins and site staff
    rest("/api/projects/<slug:project>/members", "POST", "/api/projects/default/members",
         {"role": "editor", "user": "bob", "environments": ["development"]}, rest_write(201),
         ["projects.add_rolegrant"]),
    Row(("rest", "/api/projects/<slug:project>/members/<int:grant_id>", "DELETE"),
        lambda o: ("DELETE", f"/api/projects/default/members/{o.grant.pk}", None), rest_write(204),
        ("projects.delete_rolegrant",)),
    rest("/api/projects/<slug:project>/keys", "POST", "/api/projects/default/keys",
         {"name": "web", "kind": "sdk", "environment": "staging"}, rest_write(201), ["flags.add_apikey"]),
    rest("/api/projects/<slug:project>/keys", "POST", "/api/projects/default/keys",
         {"name": "edge", "kind": "relay", "relayEnvironments": ["production"]}, rest_write(201),
         ["flags.add_apikey"], note="a relay token"),
    # the relay protocol: relay tokens only; an accepted batch writes its id and the counts
    rest("/api/relay/ingest", "POST", "/api/relay/ingest",
         {"batch": "matrix-batch-1", "counts": {"counts": [["production", "m", None, True, 490000, 2]], "users": []}},
         relay_only(200), []),
    Row(("rest", "/api/projects/<slug:project>/keys/<int:key_id>", "DELETE"),
        lambda o: ("DELETE", f"/api/projects/default/keys/{o.sdk_key.pk}", None), rest_write(204),
        ("flags.change_apikey",)),
]

PAGES = [
    page("/flags/new/", "/flags/new/", {"key": "made", "name": "Made", "kind": "boolean", "tags": "a, b"},
         perms=["flags.add_flag"]),
    page("/flags/<str:key>/archive", "/flags/m/archive", {"confirm": "yes"}, perms=["flags.delete_flag"]),
    page("/flags/<str:key>/unarchive", "/flags/gone/unarchive", {}),
    page("/flags/<str:key>/toggle", "/flags/m/toggle", {"environment": "production", "enabled": "false",
                                                         "version": "1"}),
    page("/flags/<str:key>/kill", "/flags/m/kill", {"environment": "production", "reason": "r"}),
    page("/flags/<str:key>/restore", "/flags/m/restore", {"environment": "staging", "reason": "r"}),
    page_json("/flags/<str:key>/check", "/flags/m/check", {"rules": [{"type": "geo", "operator": "in",
                                                                       "value": ["US"]}]}, writes=False),
    page_json("/flags/<str:key>/targeting", "/flags/m/targeting",
              {"environment": "production", "version": 1, "rules": [{"type": "user", "operator": "in",
                                                                      "value": ["u1"]}]}),
    page_json("/flags/<str:key>/variants", "/flags/m/variants", {"variants": [], "stickiness": "accountId",
                                                          "seen": {"variants": [], "stickiness": ""}}),
    page_json("/flags/<str:key>/evaluate-as", "/flags/m/evaluate-as", {"userId": "u", "context": {"plan": "x"}},
              perms=("flags.view_flag",), writes=False),
    page_get_json("/flags/<str:key>/recent-contexts", "/flags/m/recent-contexts", perms=("flags.view_flag",)),
    page("/flags/<str:key>/schedule", "/flags/m/schedule", {"environment": "production", "action": "disable",
                                                            "run_at": "2099-01-01T09:00", "timezone": "Europe/Berlin"},
         perms=SCHEDULE),
    Row(("page", "/flags/<str:key>/schedule/<int:change_id>/cancel"),
        lambda o: ("POST", f"/flags/m/schedule/{o.scheduled.pk}/cancel", {}), PAGE, ("changes.change_scheduledchange",)),
    page("/flags/<str:key>/propose", "/flags/m/propose", {"environment": "production", "action": "disable",
                                                          "title": "off"}, perms=["changes.add_changerequest",
                                                                                  CHANGE_FLAG]),
    page("/flags/<str:key>/propose/change", "/flags/m/propose/change", {
        "environment": "production", "action": "update", "title": "u1 first",
        "rules": '[{"type": "user", "operator": "in", "value": ["u1"]}]'},
        perms=["changes.add_changerequest", CHANGE_FLAG]),
    Row(("page", "/changes/<int:change_request_id>/amend"),
        lambda o: ("POST", f"/changes/{o.mine.pk}/amend", {"action": "enable", "title": "on, really"}), PAGE,
        ("changes.change_changerequest", CHANGE_FLAG)),
    Row(("page", "/changes/<int:change_request_id>/review"),
        lambda o: ("POST", f"/changes/{o.theirs.pk}/review", {"verdict": "approve"}), PAGE,
        ("changes.review_changerequest", CHANGE_FLAG)),
    Row(("page", "/changes/<int:change_request_id>/apply"), lambda o: ("POST", f"/changes/{o.approved.pk}/apply", {}),
        PAGE, ("changes.apply_changerequest", CHANGE_FLAG)),
    Row(("page", "/changes/<int:change_request_id>/withdraw"),
        lambda o: ("POST", f"/changes/{o.mine.pk}/withdraw", {}), PAGE, ("changes.change_changerequest",)),
    Row(("page", "/changes/<int:change_request_id>/rebase"), lambda o: ("POST", f"/changes/{o.mine.pk}/rebase", {}),
        PAGE, ("changes.change_changerequest", CHANGE_FLAG)),
    page("/experiments/<str:key>/start", "/experiments/draft/start", {}, perms=["experiments.change_experiment"]),
    page("/experiments/<str:key>/stop", "/experiments/running/stop", {}, perms=["experiments.change_experiment"]),
    page("/experiments/<str:key>/ship", "/experiments/running/ship", {"ship": "b"},
         perms=["experiments.change_experiment", CHANGE_FLAG]),
]
# Pages that only read: a POST (by a superuser) must write nothing.
READ_PAGES = {"/": "/", "/flags/<str:key>": "/flags/m", "/audit/": "/audit/", "/analytics/": "/analytics/",
              "/metrics": "/metrics", "/experiments/": "/experiments/", "/experiments/<str:key>": "/experiments/running",
              "/changes/pending": "/changes/pending", "/changes/<int:change_request_id>": "/changes/1",
              # single sign-on (flagsite/sso.py): GET only, for anyone; the callback writes only what the
              # provider's signed token says, through projects/sso.py (tests/sso)
              "/oidc/authenticate/": "/oidc/authenticate/", "/oidc/callback/": "/oidc/callback/"}


def flag_add(o):
    return {"key": "made", "name": "Made", "description": "", "tags": "[]", "kind": "boolean", "variants": "[]",
            "salt": "", "stickiness": ""}


def flag_change(o):
    return {**change_form_data(o.flag), "name": "Renamed"}


def sure(o):
    return {"post": "yes"}


NEW_PASSWORD = {"password1": "Xy-12345-abcdef", "password2": "Xy-12345-abcdef", "usable_password": "true"}
ADMIN = [
    admin_view("flags.flag", "add", url("flags_flag_add"), flag_add, perms=["flags.add_flag"]),
    admin_view("flags.flag", "change", url("flags_flag_change", "flag"), flag_change, perms=[CHANGE_FLAG]),
    admin_view("flags.flag", "delete", url("flags_flag_delete", "flag"), sure, perms=["flags.delete_flag"]),
    admin_action("flags.flag", "delete_selected", lambda o: [o.flag.pk], ["flags.delete_flag"], [VIEW_FLAG],
                 {"post": "yes"}),
    admin_action("flags.flag", "turn_on", lambda o: [o.off.pk], [CHANGE_FLAG], extra={"environment": "production"}),
    admin_action("flags.flag", "turn_off", lambda o: [o.flag.pk], [CHANGE_FLAG], extra={"environment": "production"}),
    admin_action("flags.flag", "kill", lambda o: [o.flag.pk], [CHANGE_FLAG],
                 extra={"environment": "production", "confirm": "yes", "reason": "r"}),
    admin_action("flags.flag", "restore", lambda o: [o.flag.pk], [CHANGE_FLAG],
                 extra={"environment": "staging", "confirm": "yes", "reason": "r"}),
    admin_action("flags.flag", "archive", lambda o: [o.flag.pk], ["flags.delete_flag"], [VIEW_FLAG]),
    admin_action("flags.flag", "unarchive", lambda o: [o.gone.pk], [CHANGE_FLAG]),
    admin_action("flags.flag", "add_tag", lambda o: [o.flag.pk], [CHANGE_FLAG], extra={"tag": "new-tag"}),
    admin_action("flags.flag", "remove_tag", lambda o: [o.off.pk], [CHANGE_FLAG], extra={"tag": "old"}),
    admin_view("flags.environment", "add", url("flags_environment_add"), lambda o: {"key": "qa", "name": "QA"},
               ADMIN_NEVER, ["flags.add_environment"]),
    admin_view("flags.environment", "change", url("flags_environment_change", "environment"),
               lambda o: {"name": "Prod!"}, ADMIN_NEVER, ["flags.change_environment"]),
    admin_view("flags.environment", "delete", url("flags_environment_delete", "environment"), sure, ADMIN_NEVER,
               ["flags.delete_environment"]),
    # projects are created through the API (audited); the admin only lists them
    admin_view("projects.project", "add", url("projects_project_add"), lambda o: {"key": "p", "name": "P"},
               ADMIN_NEVER, ["projects.add_project"]),
    admin_view("projects.project", "change", url("projects_project_change", "project"), lambda o: {"name": "D"},
               ADMIN_NEVER, ["projects.change_project"]),
    admin_view("projects.project", "delete", url("projects_project_delete", "project"), sure, ADMIN_NEVER,
               ["projects.delete_project"]),
    # role grants: granted and revoked through projects.services; never changed in place
    admin_view("projects.rolegrant", "add", url("projects_rolegrant_add"),
               lambda o: {"role": "editor", "user": o.bob.pk, "group": "", "environments": '["staging"]'},
               perms=["projects.add_rolegrant"]),
    admin_view("projects.rolegrant", "change", url("projects_rolegrant_change", "grant"),
               lambda o: {"role": "admin", "user": o.bob.pk, "group": "", "environments": "[]"}, ADMIN_NEVER,
               ["projects.change_rolegrant"]),
    admin_view("projects.rolegrant", "delete", url("projects_rolegrant_delete", "grant"), sure,
               perms=["projects.delete_rolegrant"]),
    admin_view("flags.apikey", "add", url("flags_apikey_add"),
               lambda o: {"name": "web", "kind": "sdk", "environment": o.environment.pk, "user": ""},
               perms=["flags.add_apikey"]),
    admin_view("flags.apikey", "add", url("flags_apikey_add"),
               lambda o: {"name": "escalate", "kind": "management", "environment": "", "user": o.root.pk},
               {**ADMIN_FORM, "staff_with": 200}, ["flags.add_apikey"], writes=False,
               note="a token acting as a superuser: field error"),
    admin_view("flags.apikey", "change", url("flags_apikey_change", "sdk_key"), lambda o: {"name": "renamed"},
               perms=["flags.change_apikey"], writes=False, note="every field read-only"),
    admin_view("flags.apikey", "delete", url("flags_apikey_delete", "sdk_key"), sure, ADMIN_NEVER,
               ["flags.delete_apikey"]),
    admin_action("flags.apikey", "revoke", lambda o: [o.sdk_key.pk], ["flags.change_apikey"], ["flags.view_apikey"]),
    admin_action("flags.apikey", "revoke", lambda o: [o.root_key.pk], ["flags.change_apikey"],
                 ["flags.view_apikey"], note="a superuser's token: refused") ,
    admin_view("segments.segment", "add", url("segments_segment_add"),
               lambda o: {"key": "made", "name": "Made", "description": "", "conditions": '{"plan": "x"}'},
               perms=["segments.add_segment"]),
    admin_view("segments.segment", "change", url("segments_segment_change", "segment"),
               lambda o: {"name": "Renamed", "description": "", "conditions": '{"plan": "y"}'},
               perms=["segments.change_segment"]),
    admin_view("segments.segment", "delete", url("segments_segment_delete", "segment"), sure,
               perms=["segments.delete_segment"]),
    admin_action("segments.segment", "delete_selected", lambda o: [o.segment.pk], ["segments.delete_segment"],
                 ["segments.view_segment"], {"post": "yes"}),
    admin_view("audit.auditentry", "add", url("audit_auditentry_add"), lambda o: {"action": "forged"}, ADMIN_NEVER,
               ["audit.add_auditentry"]),
    admin_view("audit.auditentry", "change", url("audit_auditentry_change", "entry"), lambda o: {"reason": "x"},
               ADMIN_NEVER, ["audit.change_auditentry"]),
    admin_view("audit.auditentry", "delete", url("audit_auditentry_delete", "entry"), sure, ADMIN_NEVER,
               ["audit.delete_auditentry"]),
    admin_view("webhooks.webhook", "add", url("webhooks_webhook_add"), lambda o: {
        "name": "n", "url": "http://127.0.0.1:1/h", "events": ["flag.killed"], "format": "standard", "active": "on"},
        perms=["webhooks.add_webhook"]),
    admin_view("webhooks.webhook", "change", url("webhooks_webhook_change", "webhook"), lambda o: {
        "name": "renamed", "url": "http://127.0.0.1:1/h", "events": ["flag.changed"], "format": "slack"},
        perms=["webhooks.change_webhook"]),
    admin_view("webhooks.webhook", "delete", url("webhooks_webhook_delete", "webhook"), sure,
               perms=["webhooks.delete_webhook"]),
    admin_action("webhooks.webhook", "delete_selected", lambda o: [o.webhook.pk], ["webhooks.delete_webhook"],
                 ["webhooks.view_webhook"], {"post": "yes"}),
    admin_action("webhooks.webhook", "rotate_secret", lambda o: [o.webhook.pk], ["webhooks.change_webhook"]),
    admin_action("webhooks.webhook", "send_test_ping", lambda o: [o.webhook.pk], ["webhooks.change_webhook"]),
    admin_view("webhooks.delivery", "add", url("webhooks_delivery_add"), lambda o: {"event": "x"}, ADMIN_NEVER,
               ["webhooks.add_delivery"]),
    admin_view("webhooks.delivery", "change", url("webhooks_delivery_change", "delivery"), lambda o: {"event": "x"},
               ADMIN_NEVER, ["webhooks.change_delivery"]),
    admin_view("webhooks.delivery", "delete", url("webhooks_delivery_delete", "delivery"), sure, ADMIN_NEVER,
               ["webhooks.delete_delivery"]),
    # the log is read-only; sending again is a change to the subscription's traffic: change_webhook
    admin_action("webhooks.delivery", "redeliver", lambda o: [o.delivery.pk], ["webhooks.change_webhook"],
                 ["webhooks.view_delivery"]),
    admin_view("changes.scheduledchange", "add", url("changes_scheduledchange_add"), lambda o: {"operation": "kill"},
               ADMIN_NEVER, ["changes.add_scheduledchange"]),
    admin_view("changes.scheduledchange", "change", url("changes_scheduledchange_change", "scheduled"),
               lambda o: {"status": "applied"}, ADMIN_NEVER, ["changes.change_scheduledchange"]),
    admin_view("changes.scheduledchange", "delete", url("changes_scheduledchange_delete", "scheduled"), sure,
               ADMIN_NEVER, ["changes.delete_scheduledchange"]),
    admin_action("changes.scheduledchange", "cancel", lambda o: [o.scheduled.pk], ["changes.change_scheduledchange"],
                 ["changes.view_scheduledchange"]),
    admin_view("changes.rolloutplan", "add", url("changes_rolloutplan_add"), lambda o: {"days": "daily"},
               ADMIN_NEVER, ["changes.add_rolloutplan"]),
    admin_view("changes.rolloutplan", "change", url("changes_rolloutplan_change", "plan"),
               lambda o: {"status": "completed"}, ADMIN_NEVER, ["changes.change_rolloutplan"]),
    admin_view("changes.rolloutplan", "delete", url("changes_rolloutplan_delete", "plan"), sure,
               ADMIN_NEVER, ["changes.delete_rolloutplan"]),
    admin_action("changes.rolloutplan", "cancel", lambda o: [o.plan.pk], ["changes.change_rolloutplan"],
                 ["changes.view_rolloutplan"]),
    # change requests: opened through REST or the dashboard, never edited by hand; reviewed and applied
    # by action through the services (reviews need may_approve: flags.change_flag for site staff)
    admin_view("changes.changerequest", "add", url("changes_changerequest_add"), lambda o: {"title": "t"},
               ADMIN_NEVER, ["changes.add_changerequest"]),
    admin_view("changes.changerequest", "change", url("changes_changerequest_change", "theirs"),
               lambda o: {"status": "applied"}, ADMIN_NEVER, ["changes.change_changerequest"]),
    admin_view("changes.changerequest", "delete", url("changes_changerequest_delete", "theirs"), sure,
               ADMIN_NEVER, ["changes.delete_changerequest"]),
    admin_action("changes.changerequest", "approve", lambda o: [o.theirs.pk], ["changes.review_changerequest"],
                 ["changes.view_changerequest", CHANGE_FLAG]),
    admin_action("changes.changerequest", "reject", lambda o: [o.theirs.pk], ["changes.review_changerequest"],
                 ["changes.view_changerequest", CHANGE_FLAG]),
    admin_action("changes.changerequest", "apply", lambda o: [o.approved.pk], ["changes.apply_changerequest"],
                 ["changes.view_changerequest", CHANGE_FLAG]),
    admin_view("changes.protectedenvironment", "add", url("changes_protectedenvironment_add"),
               lambda o: {"environment": o.environment.pk, "required_approvals": 2},
               perms=["changes.add_protectedenvironment"]),
    admin_view("changes.protectedenvironment", "change", url("changes_protectedenvironment_change", "protection"),
               lambda o: {"required_approvals": 3}, perms=["changes.change_protectedenvironment"]),
    admin_view("changes.protectedenvironment", "delete", url("changes_protectedenvironment_delete", "protection"),
               sure, perms=["changes.delete_protectedenvironment"]),
    admin_view("auth.user", "add", url("auth_user_add"), lambda o: {"username": "newbie", **NEW_PASSWORD},
               perms=["auth.add_user"], context=["auth.change_user"]),
    admin_view("auth.user", "change", url("auth_user_change", "bob"),
               lambda o: user_change_data(o.bob, first_name="Robert"), perms=["auth.change_user"]),
    admin_view("auth.user", "password_change", url("auth_user_password_change", "bob"), lambda o: NEW_PASSWORD,
               perms=["auth.change_user"]),
    admin_view("auth.user", "delete", url("auth_user_delete", "bob"), sure, perms=["auth.delete_user"]),
    admin_action("auth.user", "delete_selected", lambda o: [o.bob.pk], ["auth.delete_user"], ["auth.view_user"],
                 {"post": "yes"}),
    admin_view("auth.group", "add", url("auth_group_add"), lambda o: {"name": "new-group"},
               perms=["auth.add_group"]),
    admin_view("auth.group", "change", url("auth_group_change", "group"), lambda o: {"name": "renamed"},
               perms=["auth.change_group"]),
    admin_view("auth.group", "delete", url("auth_group_delete", "group"), sure, perms=["auth.delete_group"]),
    admin_action("auth.group", "delete_selected", lambda o: [o.group.pk], ["auth.delete_group"],
                 ["auth.view_group"], {"post": "yes"}),
]
# A staff user with change_apikey may not revoke a superuser's token: the action runs, refuses, writes nothing.
ADMIN[[row.note for row in ADMIN].index("a superuser's token: refused")].writes = False

ROWS = REST + PAGES + ADMIN


# ---- the world each row runs in -----------------------------------------------------------------

def all_perms():
    return list(Permission.objects.filter(content_type__app_label__in=APPS).select_related("content_type"))


def perm_name(perm):
    return f"{perm.content_type.app_label}.{perm.codename}"


def make_user(username, perms, *, staff):
    user = get_user_model().objects.create_user(username, is_staff=staff)  # no password: no hashing
    user.user_permissions.set(perms)
    return user


class Objects:
    def __init__(self, row):
        everything = all_perms()
        under_test = set(row.perms)
        self.flag = create_flag("m", states={env: {"enabled": True} for env in ("development", "staging",
                                                                                  "production")})
        self.off = create_flag("off")
        self.gone = create_flag("gone")
        from flags import services

        services.flag_kill(actor=SYSTEM, flag=self.flag, reason="r", environments=["staging"])
        services.flag_archive(actor=SYSTEM, flag=self.gone)
        services.flag_tags_change(actor=SYSTEM, flag=self.off, add=["old"])
        self.segment = create_segment("seg", {"plan": "free"})
        self.mv = create_flag("mv", kind="multivariate", variants=[{"key": "a", "weight": 50}, {"key": "b", "weight": 50}])
        for key in ("buy", "spare"):
            experiment_services.metric_create(actor=SYSTEM, key=key, name=key, kind="conversion", event=key)
        for key, env in (("draft", "staging"), ("running", "production")):
            experiment_services.experiment_create(actor=SYSTEM, key=key, name=key, flag="mv",
                                                  environment=env, control="a", primary_metric="buy")
        experiment_services.experiment_start(actor=SYSTEM, experiment=Experiment.objects.get(key="running"))
        self.environment = Environment.objects.get(key="production")
        self.project = Project.objects.get(key="default")
        self.group = Group.objects.create(name="ops")
        self.bob = get_user_model().objects.create_user("bob")
        self.root = get_user_model().objects.create_superuser("root", None, None)
        # a member's grant to revoke (not bob's: deleting bob would then need delete_rolegrant too)
        self.grant = project_services.role_grant(actor=SYSTEM, project=self.project, role="viewer",
                                                 user=get_user_model().objects.create_user("dora"))
        self.users = {
            "member": make_user("member", everything, staff=False),
            "staff_without": make_user("without", [p for p in everything if perm_name(p) not in under_test],
                                       staff=True),
            "staff_with": make_user("with", [p for p in everything if perm_name(p) in under_test | set(row.context)],
                                    staff=True),
        }
        self.tokens = {who: make_key("management", user=user) for who, user in self.users.items()}
        self.sdk_raw = make_key("sdk", environment="production")
        self.sdk_key = ApiKey.objects.get(kind="sdk", revoked_at__isnull=True)
        self.token_raw = make_key("management", user=self.users["staff_without"])
        self.relay_raw = make_key("relay")
        self.root_key = ApiKey.objects.get(pk=_key_for(self.root).pk)
        self.entry = AuditEntry.objects.order_by("pk").first()
        from changes import services as change_services
        from webhooks import services as webhook_services

        self.webhook, _ = webhook_services.webhook_create(actor=SYSTEM, url="http://127.0.0.1:1/h",
                                                          events=["flag.killed"])
        self.delivery = webhook_services.webhook_ping(actor=SYSTEM, webhook=self.webhook)  # refused: failed
        self.scheduled = change_services.scheduled_change_create(
            actor=SYSTEM, flag=self.off, environment="production", operation="enable", run_at=LATER)
        self.plan = change_services.rollout_plan_create(actor=SYSTEM, flag=self.off, environment="staging",
                                                        percentages=[50, 100], at="09:00")
        from changes import approvals

        # their own flag and authors: a flag or user with change requests is not deleted in the admin
        # (requests are history, as scheduled changes; users are deactivated), which rows here do to m and bob
        proposed = create_flag("proposed")
        carol = get_user_model().objects.create_user("carol")

        def opened(title, author, operation="enable"):
            cr = approvals.change_request_open(actor=SYSTEM, flag=proposed, environment="production", title=title,
                                               operation=operation)
            ChangeRequest.all_objects.filter(pk=cr.pk).update(author=author, author_label=author.username)
            return ChangeRequest.all_objects.get(pk=cr.pk)

        self.mine = opened("mine", self.users["staff_with"])  # amend / rebase / withdraw: the author's
        self.theirs = opened("theirs", carol)
        self.approved = opened("approved", carol)
        from audit.actor import Actor

        approvals.change_request_review(actor=Actor.for_user(self.root), change_request=self.approved,
                                        verdict="approve")

    @property
    def protection(self):
        """A protected environment to change or remove, made when a call asks for it, inside its rolled-back
        call (protecting one for every row would hold the other rows' writes for approval); made by
        the ORM, so only the call's own write shows in the audit count."""
        return ProtectedEnvironment.all_objects.get_or_create(
            environment=Environment.objects.get(key="development"), defaults={"required_approvals": 1})[0]


def _key_for(user):
    from flags import services

    api_key, _ = services.api_key_create(actor=SYSTEM, name="root-ci", kind="management", user=user)
    return api_key


def everything_written():
    """All a write could touch: flags, states, segments, audit, versions (World), keys, users, groups."""
    User = get_user_model()
    return {
        **World.snapshot(),
        "flag_rows": list(Flag.objects.order_by("pk").values_list("key", "name", "description", "archived", "tags")),
        "segment_rows": list(Segment.objects.order_by("pk").values_list("key", "name", "description")),
        "environments": list(Environment.objects.order_by("pk").values_list("key", "name")),
        "api_keys": list(ApiKey.objects.order_by("pk").values_list("name", "kind", "user_id", "revoked_at")),
        "users": list(User.objects.order_by("pk").values_list("username", "first_name", "password", "is_active",
                                                               "is_staff", "is_superuser")),
        "user_perms": list(User.user_permissions.through.objects.order_by("pk").values_list("user_id",
                                                                                            "permission_id")),
        "user_groups": list(User.groups.through.objects.order_by("pk").values_list("user_id", "group_id")),
        "groups": list(Group.objects.order_by("pk").values_list("name", flat=True)),
        "group_perms": list(Group.permissions.through.objects.order_by("pk").values_list("group_id",
                                                                                         "permission_id")),
        "audit_rows": AuditEntry.objects.count(),
        "relay_batches": list(RelayBatch.objects.order_by("pk").values_list("batch_id", flat=True)),
        "rollups": list(EvaluationRollup.objects.order_by("pk").values_list("flag_key", "evaluations")),
        "role_grants": list(RoleGrant.objects.order_by("pk").values_list("project_id", "role", "user_id", "group_id",
                                                                         "environments")),
        "webhooks": list(Webhook.all_objects.order_by("pk").values_list("name", "url", "events", "format", "active",
                                                                       "secret_encrypted")),
        "deliveries": list(Delivery.objects.order_by("pk").values_list("status", "attempts", "next_attempt_at")),
        "scheduled_changes": list(ScheduledChange.all_objects.order_by("pk").values_list("status", "run_at",
                                                                                          "payload")),
        "rollout_plans": list(RolloutPlan.all_objects.order_by("pk").values_list("status", flat=True)),
        "change_requests": list(ChangeRequest.all_objects.order_by("pk").values_list("status", "revision", "title",
                                                                                      "base_version")),
        "reviews": list(Review.objects.order_by("pk").values_list("verdict", "reviewer_id")),
    }


def client_for(row, who, objects):
    if row.key[0] == "rest":
        keys = {"sdk": objects.sdk_raw, "token_without": objects.token_raw, "relay": objects.relay_raw}
        if row.key[1].startswith(settings.FLAGS_KEY_ONLY_PATHS) and who in objects.users:
            # sessions are not read on the evaluation paths (flagsite/ops/browser.py): users come by token
            return Client(objects.tokens[who])
        client = Client(keys.get(who))
    else:
        client = PageClient()
        if who in ("sdk", "token_without", "relay"):  # keys are for the API: on pages they are nobody
            raw = {"sdk": objects.sdk_raw, "token_without": objects.token_raw, "relay": objects.relay_raw}[who]
            client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    if who in objects.users:
        client.force_login(objects.users[who])
    return client


def send(row, client, objects):
    method, path, data = row.request(objects)
    if row.key[0] == "rest":
        sep = "&" if "?" in path else "?"
        return getattr(client, method.lower())(f"{path}{sep}environment=production", data)
    if method == "GET":
        return client.get(path)
    if row.json:
        return client.post(path, json.dumps(data), content_type="application/json")
    return client.post(path, data)


def status_of(response):
    if response.status_code == 302 and response["Location"].startswith("/admin/login/"):
        return LOGIN
    return response.status_code


def _fresh():
    forget_api_key()
    snapshot.reset()
    cache.clear()


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_permission_matrix(row):
    objects = Objects(row)
    before = everything_written()  # each call below is rolled back to this
    failures = []
    for who in WHO:
        _fresh()
        with transaction.atomic():
            response = send(row, client_for(row, who, objects), objects)
            after = everything_written()
            transaction.set_rollback(True)
        expected, got = row.expect[who], status_of(response)
        allowed = who in ("member", "staff_with") and expected not in (LOGIN, 401, 403)
        if who in ("sdk", "relay") and expected not in (LOGIN, 401, 403):
            allowed = True
        if got != expected and not (isinstance(expected, tuple) and got in expected):
            failures.append(f"{who}: expected {expected}, got {got}: {response.content[:200]!r}")
        elif not (allowed and row.writes) and after != before:
            changed = sorted(k for k in before if before[k] != after[k])
            failures.append(f"{who}: refused or read-only ({got}) but wrote {changed}")
        elif allowed and row.writes and after == before:
            failures.append(f"{who}: allowed ({got}) but nothing was written")
    _fresh()
    assert not failures, "\n".join(failures)


def test_read_only_pages__a_post_writes_nothing(admin_client):
    Objects(Row(("page", "/"), None, {}))
    before = everything_written()
    for path in READ_PAGES.values():
        admin_client.post(path, {"environment": "production", "enabled": "false", "reason": "r"})
    assert everything_written() == before


# ---- discovery: everything that can write is in the tables above ------------------------------

def test_every_rest_write_method_is_in_the_matrix():
    discovered = set()
    for template, callback in url_routes():
        view = view_class(callback)
        if not template.startswith(("/api/", "/ofrep/")) or view is None:
            continue
        discovered |= {("rest", template, m.upper()) for m in view.http_method_names
                       if m.upper() in WRITE_METHODS and hasattr(view, m)}
    listed = {row.key for row in REST}
    assert discovered - listed == set(), f"write routes missing from the permission matrix: {discovered - listed}"
    assert listed - discovered == set(), f"matrix rows for routes that no longer exist: {listed - discovered}"


def test_every_page_route_is_in_the_matrix():
    discovered = {template for template, _ in url_routes() if not template.startswith(("/api/", "/ofrep/", "/admin/"))}
    listed = {row.key[1] for row in PAGES} | set(READ_PAGES)
    assert discovered - listed == set(), f"page routes missing from the permission matrix: {discovered - listed}"
    assert listed - discovered == set(), f"matrix rows for pages that no longer exist: {listed - discovered}"


def admin_operations():
    """{(model label, op)}: every view of every registered ModelAdmin but the list and history, and
    every action offered to a superuser."""
    superuser = get_user_model().objects.create_superuser("discover", None, None)
    request = RequestFactory().get("/admin/")
    request.user = superuser
    ops = set()
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        for pattern in model_admin.get_urls():
            name = (pattern.name or "").removeprefix(prefix)
            if pattern.name and name not in ("changelist", "history"):
                ops.add((label, name))
        ops |= {(label, action) for action in model_admin.get_actions(request)}
    return ops


def test_every_admin_view_and_action_is_in_the_matrix():
    discovered = {("admin", label, op) for label, op in admin_operations()}
    listed = {row.key for row in ADMIN}
    assert discovered - listed == set(), f"admin views/actions missing from the permission matrix: {discovered - listed}"
    assert listed - discovered == set(), f"matrix rows for admin views/actions that no longer exist: {listed - discovered}"


# ---- roles: every management route x role x project (own, other) x environment ------------------
#
# A member holds a role in project "alpha" (own) and none in "beta" (other); "staff" holds every model
# permission and no role (site staff). Others' projects answer 404 (existence is not revealed);
# within one's own project the role decides (403 when too low, or when an editor restricted to
# development writes elsewhere). A group's grant counts like the user's own, and a management token
# acts with its user's roles. Every call runs in a savepoint rolled back afterwards.

OWN, OTHER = "alpha", "beta"
ROLE_CALLERS = ("none", "viewer", "editor", "editor_dev", "approver", "admin", "staff", "group_editor",
                "token_editor_dev")
GRANTS = {"viewer": ("viewer", []), "editor": ("editor", []), "editor_dev": ("editor", ["development"]),
          "approver": ("approver", []), "admin": ("admin", [])}
LEVELS = {"none": 0, "viewer": 1, "editor_dev": 2, "editor": 2, "group_editor": 2, "token_editor_dev": 2,
          "approver": 3, "admin": 4, "staff": 5}
DEV_ONLY = {"editor_dev", "token_editor_dev"}
# in the other project every role answers 404 alike: the highest, a group's, a token's, and staff
OTHER_CALLERS = ("admin", "group_editor", "token_editor_dev", "staff")


def by_role(least, ok, *, dev_ok=True):
    """Expected status in one's own project: ``ok`` from role ``least`` up (dev_ok=False: not for an
    editor restricted to development), 403 below, 404 without any role."""
    need = {"viewer": 1, "editor": 2, "approver": 3, "admin": 4}[least]
    expect = {}
    for who in ROLE_CALLERS:
        if LEVELS[who] == 0:
            expect[who] = 404
        elif LEVELS[who] < need or (who in DEV_ONLY and not dev_ok):
            expect[who] = 403
        else:
            expect[who] = ok
    return expect


@dataclass
class RoleRow:
    name: str
    request: callable  # (world, project key) -> (method, path under /api/projects/<project>, body)
    expect: dict  # caller -> status in the own project
    writes: bool = True


def call(method, path, body=None):
    return lambda w, p: (method, path, body)


ROLE_ROWS = [
    RoleRow("list flags", call("GET", "/flags"), by_role("viewer", 200), writes=False),
    RoleRow("audit log", call("GET", "/audit"), by_role("viewer", 200), writes=False),
    RoleRow("explain", call("POST", "/flags/m/explain", {"userId": "u"}), by_role("viewer", 200), writes=False),
    RoleRow("create flag (off everywhere)", call("POST", "/flags", {"key": "made", "name": "Made"}),
            by_role("editor", 201)),
    RoleRow("create flag on in production",
            call("POST", "/flags", {"key": "made", "name": "Made", "states": {"production": {"enabled": True}}}),
            by_role("editor", 201, dev_ok=False)),
    RoleRow("toggle production", call("PATCH", "/flags/m/toggle?environment=production", {"enabled": False}),
            by_role("editor", 200, dev_ok=False)),
    RoleRow("toggle development", call("PATCH", "/flags/m/toggle?environment=development", {"enabled": False}),
            by_role("editor", 200)),
    RoleRow("state in development", call("PATCH", "/flags/m?environment=development", {"rules": []}),
            by_role("editor", 200), writes=False),  # unchanged rules: allowed, nothing to write
    RoleRow("flag fields (every environment)", call("PATCH", "/flags/m?environment=development",
                                                    {"description": "d"}), by_role("editor", 200, dev_ok=False)),
    RoleRow("kill everywhere", call("POST", "/flags/m/kill-switch", {"reason": "r"}),
            by_role("editor", 200, dev_ok=False)),
    RoleRow("kill in development", call("POST", "/flags/m/kill-switch", {"reason": "r",
                                                                          "environments": ["development"]}),
            by_role("editor", 200)),
    RoleRow("restore staging", call("POST", "/flags/m/restore", {"reason": "r", "environments": ["staging"]}),
            by_role("editor", 200, dev_ok=False)),
    RoleRow("archive", call("DELETE", "/flags/m"), by_role("editor", 204, dev_ok=False)),
    RoleRow("create segment", call("POST", "/segments", {"key": "s2", "name": "S", "conditions": {"plan": "x"}}),
            by_role("editor", 201, dev_ok=False)),
    RoleRow("propose a change in production", call("POST", "/change-requests?environment=production", {
        "flag": "m", "title": "off", "change": {"action": "disable"}}), by_role("editor", 201, dev_ok=False)),
    RoleRow("review a change request in production",
            lambda w, p: ("POST", f"/change-requests/{w.requests[p]['open'].pk}/review", {"verdict": "approve"}),
            by_role("approver", 200)),
    RoleRow("apply an approved change request in production",
            lambda w, p: ("POST", f"/change-requests/{w.requests[p]['approved'].pk}/apply", None),
            by_role("approver", 200)),
    RoleRow("close someone else's change request (withdraw)",
            lambda w, p: ("POST", f"/change-requests/{w.requests[p]['open'].pk}/withdraw", {"reason": "stale"}),
            by_role("admin", 200)),
    RoleRow("protect an environment", call("PUT", "/environments/staging/protection", {"requiredApprovals": 1}),
            by_role("admin", 200)),
    RoleRow("list members", call("GET", "/members"), by_role("admin", 200), writes=False),
    RoleRow("grant", call("POST", "/members", {"role": "editor", "group": "outsiders"}), by_role("admin", 201)),
    RoleRow("revoke", lambda w, p: ("DELETE", f"/members/{w.grants[p].pk}", None), by_role("admin", 204)),
    RoleRow("list keys", call("GET", "/keys"), by_role("admin", 200), writes=False),
    RoleRow("create SDK key", call("POST", "/keys", {"name": "web", "kind": "sdk", "environment": "development"}),
            by_role("admin", 201)),
    RoleRow("revoke SDK key", lambda w, p: ("DELETE", f"/keys/{w.sdk_keys[p].pk}", None), by_role("admin", 204)),
    RoleRow("create relay token", call("POST", "/keys", {"name": "edge", "kind": "relay"}), by_role("admin", 201)),
]


class RoleWorld:
    """Projects alpha and beta (each: flag m on everywhere and killed in staging, a segment, an SDK
    key, a grant to revoke), members of alpha, site staff, and a token of the dev-only editor."""

    def __init__(self):
        from flags import services
        from projects import scope

        from audit.actor import Actor
        from changes import approvals

        self.grants, self.sdk_keys, self.requests = {}, {}, {}
        reviewer = get_user_model().objects.create_superuser("reviewer", None, None)
        outsiders = Group.objects.create(name="outsiders")
        for key in (OWN, OTHER):
            project = project_services.project_create(actor=SYSTEM, key=key, name=key.title())
            with scope.using(key):
                flag = create_flag("m", states={env: {"enabled": True} for env in ("development", "staging",
                                                                                    "production")})
                services.flag_kill(actor=SYSTEM, flag=flag, reason="r", environments=["staging"])
                create_segment("seg", {"plan": "free"})
                self.sdk_keys[key] = services.api_key_create(
                    actor=SYSTEM, name="sdk", kind="sdk", environment=Environment.objects.get(key="production"))[0]
                # opened from the command line (no author among the callers), one approved by a superuser
                self.requests[key] = {name: approvals.change_request_open(
                    actor=SYSTEM, flag=flag, environment="production", title=name, operation="disable")
                    for name in ("open", "approved")}
                approvals.change_request_review(actor=Actor.for_user(reviewer), verdict="approve",
                                                change_request=self.requests[key]["approved"])
            self.grants[key] = project_services.role_grant(actor=SYSTEM, project=project, role="viewer",
                                                           group=outsiders)
        alpha = Project.objects.get(key=OWN)
        self.users = {who: get_user_model().objects.create_user(who, is_staff=True)
                      for who in ("none", *GRANTS, "staff", "group_editor")}
        for who, (role, envs) in GRANTS.items():
            project_services.role_grant(actor=SYSTEM, project=alpha, role=role, user=self.users[who],
                                        environments=envs)
        self.users["staff"].user_permissions.set(all_perms())
        editors = Group.objects.create(name="alpha-editors")
        self.users["group_editor"].groups.add(editors)
        project_services.role_grant(actor=SYSTEM, project=alpha, role="editor", group=editors)
        self.clients = {"token_editor_dev": Client(make_key("management", user=self.users["editor_dev"]))}
        for who, user in self.users.items():  # logged in once, outside the calls' rolled-back savepoints
            self.clients[who] = Client()
            self.clients[who].force_login(user)


def written():
    return (AuditEntry.objects.count(), RoleGrant.objects.count(),
            ApiKey.all_objects.filter(revoked_at__isnull=True).count())


@pytest.mark.parametrize("row", ROLE_ROWS, ids=[row.name for row in ROLE_ROWS])
def test_role_matrix(row):
    world = RoleWorld()
    failures = []
    for project, callers in ((OWN, ROLE_CALLERS), (OTHER, OTHER_CALLERS)):
        for who in callers:
            expected = row.expect[who] if project == OWN or who == "staff" else 404
            _fresh()
            before = written()
            with transaction.atomic():
                method, path, body = row.request(world, project)
                response = getattr(world.clients[who], method.lower())(f"/api/projects/{project}{path}", body)
                after = written()
                transaction.set_rollback(True)
            if response.status_code != expected:
                failures.append(f"{who} in {project}: expected {expected}, got {response.status_code}: "
                                f"{response.content[:160]!r}")
            elif response.status_code >= 400 and after != before:
                failures.append(f"{who} in {project}: refused ({response.status_code}) but wrote something")
            elif response.status_code < 400 and row.writes and after == before:
                failures.append(f"{who} in {project}: allowed but nothing was written")
    _fresh()
    assert not failures, "\n".join(failures)
