"""Every Python and shell snippet of README.md, run as written against a live server (granian ASGI, on a
free port) holding the demo data, so the README cannot drift from the code.

What a reader fills in, and nothing else, is filled in here:
- `localhost:3001` (command 1's address) becomes the test server's `127.0.0.1:<port>`;
- `KEY=sdk_development_...` (the README's placeholder) becomes a real development SDK key, and the
  Python snippets get it as `KEY`; shell snippets also get `$KEY` and `$TOKEN` (a management token
  of the `admin` superuser) in their environment, as a reader has them from the snippets before;
- `.venv/bin/python` becomes this test's interpreter (.ci/run installs into another virtualenv).
Shell snippets run with bash under `set -euo pipefail`, with `curl` failing on an HTTP error status
and printing each answer on a line of its own; every answer must be JSON. Python snippets run with
exec, and the value of a trailing expression is checked where the README says what it is.

A snippet that cannot run in a test is listed in NOT_RUN with the reason; a new snippet is run, and
a fence in a language this test does not know fails it, so nothing is silently left out."""

import ast
import json
import re
import subprocess
import sys
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from openfeature import api

from audit.models import AuditEntry
from feature_flag_client import LocalFeatureFlagClient, WebSocketClient
from flags import services
from flags.models import Environment, Flag, FlagState
from tests.live.conftest import SYSTEM
from tests.servers import ROOT, child_env

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

README = ROOT / "README.md"
RUN_AS = {"python": "python", "bash": "shell", "sh": "shell", "shell": "shell"}
NOT_CODE = {"", "text", "json"}  # sample output and data: shown, not run
# Run by another test, which also checks the README's snippet against what it runs.
RUN_ELSEWHERE = {"javascript": "tests/ofrep/test_web_provider.py (tests/ofrep/web/page.js in Chromium)"}

# Snippets no test can run, by their first line, and why.
NOT_RUN = {
    "./scripts/run     # 1. install (.venv, Python 3.11), migrate, demo data, print admin login + SDK keys, serve :3001":
        "the two commands themselves: command 1 serves until stopped (this test starts the same granian "
        "server over the same demo data), and command 2 is the suite this test belongs to",
    "export DATABASE_URL=postgres://postgres@127.0.0.1:5432/flagsite   # psycopg 3":
        "command 1 against an outside PostgreSQL and Redis with a production secret: .ci/run runs the "
        "suite on those stores and tests/faults starts its own",
    "kubectl create secret generic flagsite-secrets \\":
        "needs a Kubernetes cluster: tests/ops/test_kubernetes.py renders and validates what it applies",
    "kubectl create secret generic flagsite-relay-secrets \\":
        "needs a Kubernetes cluster: tests/ops/test_kubernetes.py renders and validates what it applies",
}


def fences():
    """(line, language label, code) of every fenced block in README.md."""
    text = README.read_text(encoding="utf-8")
    for match in re.finditer(r"^```(\S*)\n(.*?)^```", text, re.S | re.M):
        yield text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2)


def runnable():
    return [pytest.param(RUN_AS[label], code, id=f"README.md:{line}",
                         marks=[pytest.mark.needs("curl")] if RUN_AS[label] == "shell" else [])
            for line, label, code in fences() if label in RUN_AS and code.splitlines()[0] not in NOT_RUN]


def test_every_snippet_is_run_or_listed_with_a_reason():
    first_lines = [code.splitlines()[0] for _, label, code in fences() if label in RUN_AS]
    assert all(first_lines.count(line) == 1 for line in NOT_RUN), "a NOT_RUN entry matches no snippet (or several)"
    unknown = {label for _, label, _ in fences()} - set(RUN_AS) - NOT_CODE - set(RUN_ELSEWHERE)
    assert not unknown, f"fences in {unknown}: run them here (RUN_AS) or say they are not code (NOT_CODE)"
    stale = (set(SHELL_CHECKS) | set(PYTHON_CHECKS)) - set(first_lines)
    assert not stale, f"checks for snippets the README no longer has: {stale}"
    assert len(runnable()) >= 5


@pytest.fixture
def live(server, transactional_db):
    """The demo data, the admin superuser, a development SDK key and the admin's management token."""
    call_command("load_demo_data", verbosity=0)
    admin = get_user_model().objects.create_superuser("admin", password="pw-readme-123")
    development = Environment.objects.get(key="development")
    key = services.api_key_create(actor=SYSTEM, name="readme", kind="sdk", environment=development)[1]
    token = services.api_key_create(actor=SYSTEM, name="readme", kind="management", user=admin)[1]
    server.key, server.token = key, token
    return server


def filled_in(code, server):
    host = server.http_url.removeprefix("http://")
    return (code.replace("localhost:3001", host).replace("KEY=sdk_development_...", f"KEY={server.key}")
            .replace(".venv/bin/python", sys.executable))


SHELL_PRELUDE = """set -euo pipefail
curl() { command curl --fail-with-body --show-error "$@"; echo; }  # an HTTP error fails; one answer a line
"""


def run_shell(code, server):
    result = subprocess.run(["bash", "-c", SHELL_PRELUDE + filled_in(code, server)], cwd=ROOT,
                            env=child_env(KEY=server.key, TOKEN=server.token), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"{code}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def run_python(code, server):
    """exec the snippet; the value of its last line when that is an expression (as a REPL shows it)."""
    tree = ast.parse(filled_in(code, server))
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    namespace = {"KEY": server.key}
    exec(compile(tree, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    value = eval(compile(ast.Expression(last.value), "README.md", "eval"), namespace) if last else None  # noqa: S307
    return namespace, value


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("kind, code", runnable())
def test_readme_snippet__runs_as_written(live, kind, code, capsys):
    first = code.splitlines()[0]
    if kind == "shell":
        answers = run_shell(code, live)
        check = SHELL_CHECKS.get(first)
        if check:
            check(answers)
        return
    namespace, value = {}, None
    try:
        namespace, value = run_python(code, live)
        check = PYTHON_CHECKS.get(first)
        if check:
            check(namespace, value, capsys)
    finally:
        for thing in namespace.values():
            if isinstance(thing, (WebSocketClient, LocalFeatureFlagClient)):
                thing.close()
        api.shutdown()  # the OpenFeature provider's own client


# What the README says each snippet answers, by its first line (a snippet without one is still run:
# it must exit 0, and its curl answers must be 2xx JSON).

def _tour(answers):
    evaluation, bulk, snapshot = answers
    assert (evaluation["flagId"], evaluation["enabled"]) == ("beta-dashboard", True), evaluation
    assert "beta-dashboard" in bulk["flags"] and "beta-dashboard" in json.dumps(snapshot)


def _management(answers):
    flags, toggled, explained, killed = answers
    assert "new-checkout" in json.dumps(flags)
    assert set(explained["environments"]) == {"development", "staging", "production"}
    staging = explained["environments"]["staging"]  # just turned off
    assert (staging["reason"], staging["decidingRule"], staging["rules"]) == ("DISABLED", None, [])
    staging = FlagState.objects.get(flag__key="new-checkout", environment__key="staging")
    assert staging.enabled is False and staging.killed  # turned off, then killed with the others
    assert FlagState.objects.filter(flag__key="new-checkout", killed=True, killed_reason="checkout errors").count() == 3
    assert AuditEntry.objects.filter(action="flag.killed", target_key="new-checkout", actor__contains="admin").count() == 3


def _analytics(answers):
    assert len(answers) == 2 and all(isinstance(answer, dict) for answer in answers)


def _projects(answers):
    created, flag, fetched = answers
    assert (created["key"], created["environments"]) == ("payments", ["development", "staging", "production"])
    assert flag["key"] == fetched["key"] == "new-checkout" and fetched["states"]["production"]["enabled"] is True
    assert AuditEntry.objects.filter(project="payments", action="project.created").count() == 1


def _project_analytics(answers):
    (metrics,) = answers
    assert {"flags", "evaluations24h", "enabledFlags"} <= set(metrics), metrics


def _change_requests(answers):
    """Protected: the direct toggle is refused (409 approval_required, nothing changed), the proposal is
    open, and listed as pending."""
    protection, refused, opened, pending = answers
    assert protection == {"environment": "production", "protected": True, "requiredApprovals": 1}
    assert refused["error"]["code"] == "approval_required"
    assert refused["error"]["changeRequests"] == "/api/change-requests"
    assert (opened["status"], opened["requiredApprovals"], opened["author"].split(" ")[0]) == ("open", 1, "admin")
    assert [row["id"] for row in pending["results"]] == [opened["id"]]


def _relay(answers):
    evaluation, health = answers
    assert (evaluation["flagId"], evaluation["enabled"]) == ("beta-dashboard", True), evaluation
    assert health["status"] == "ok" and health["relay"]["connected"] is True, health
    assert health["relay"]["upstream"].startswith("http://127.0.0.1:")


SHELL_CHECKS = {
    "curl -s -X PUT localhost:3001/api/environments/production/protection -H \"Authorization: Bearer $TOKEN\" \\":
        _change_requests,
    "RELAY_TOKEN=$(.venv/bin/python manage.py create_api_key --kind relay --relay-environment development "
    "--name edge-eu)": _relay,
    'curl -s localhost:3001/api/projects/default/analytics/metrics -H "Authorization: Bearer $TOKEN"':
        _project_analytics,
    "curl -s -X POST localhost:3001/api/projects -H \"Authorization: Bearer $TOKEN\" \\": _projects,
    "KEY=sdk_development_...   # from the output above": _tour,
    "TOKEN=$(.venv/bin/python manage.py create_api_key --kind management --user admin)": _management,
    'curl -s "localhost:3001/api/analytics/flags/new-checkout?timeRange=24h" -H "Authorization: Bearer $TOKEN"  '
    "# 1h|24h|7d|30d": _analytics,
}


def _sdk(namespace, value, capsys):
    """The three clients answer alike; the WebSocket client announces a kill, the local client evaluates it."""
    assert value is True
    answer = namespace["client"].evaluate_flag(flag_id="beta-dashboard", user_id="user-123", context={"plan": "premium"})
    assert (answer["enabled"], answer["reason"]) == (True, "TARGETING_MATCH")
    assert answer == namespace["flags"].evaluate_flag("beta-dashboard", "user-123", {"plan": "premium"})
    assert namespace["ws_client"].wait_connected(5)
    flag = Flag.objects.get(key="beta-dashboard")
    services.flag_kill(actor=SYSTEM, flag=flag, reason="readme")
    printed = []
    assert wait_until(lambda: printed.append(capsys.readouterr().out) or
                      f"Flag {flag.name} was killed" in "".join(printed))
    assert wait_until(lambda: namespace["flags"].evaluate("beta-dashboard", "user-123").reason == "KILLED")


def _events(namespace, value, capsys):
    """The tracked event reached the server's buffer (its flush writes it: tests/live/test_events.py)."""
    assert value == (1, 0)


def _openfeature(namespace, value, capsys):
    assert value is True  # the README's "# True": evaluated after the provider loaded, with the targeting key
    details = namespace["api"].get_client().get_boolean_details("beta-dashboard", False, namespace["user"])
    assert (details.value, details.reason, details.error_code) == (True, "TARGETING_MATCH", None)


PYTHON_CHECKS = {
    "from feature_flag_client import FeatureFlagClient, WebSocketClient, LocalFeatureFlagClient": _sdk,
    "from openfeature import api": _openfeature,
    "from feature_flag_client import FeatureFlagClient": _events,
}
