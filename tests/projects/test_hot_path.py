"""Projects add no query to evaluation: warm REST evaluate and bulk, OFREP (one flag and bulk) and
the SDK snapshot answer with zero SQL, with the keys of the default project and of another one
(tests/api/test_evaluate_api.py and tests/ofrep/test_contract.py pin the default project's REST and
OFREP calls; bench/results/projects-overhead.md has the throughput)."""

import pytest

from tests.api.conftest import Client

pytestmark = pytest.mark.django_db

BODY = {"flagId": "checkout", "userId": "u1", "context": {"plan": "beta"}}


def _calls(sdk, token):
    """Every evaluation surface once through an SDK key and once through a narrowed management token."""
    return [
        sdk.post("/api/evaluate", BODY),
        sdk.post("/api/evaluate/bulk", {"userId": "u1", "context": {}}),
        sdk.get("/api/sdk/snapshot"),
        sdk.post("/ofrep/v1/evaluate/flags/checkout", {"context": {"targetingKey": "u1"}}),
        sdk.post("/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "u1"}}),
        token.post("/api/evaluate?environment=production", BODY),
        token.post("/api/evaluate/bulk?environment=production", {"userId": "u1", "context": {}}),
    ]


@pytest.mark.parametrize("project", ["default", "team-b"])
def test_warm_evaluation__any_project__zero_queries(two_projects, settings, django_assert_num_queries, project):
    settings.FLAGS_MAX_STALENESS_MS = 60_000
    settings.FLAGS_OFREP_RATE_LIMIT = "off"
    prefix = "a" if project == "default" else "b"
    sdk, token = Client(two_projects[f"{prefix}_sdk"]), Client(two_projects[f"{prefix}_token"])
    warm = _calls(sdk, token)  # key lookups, snapshot build, last_used_at writes

    with django_assert_num_queries(0):
        responses = _calls(sdk, token)

    assert [r.status_code for r in warm] == [r.status_code for r in responses] == [200] * 7
    enabled = project == "default"  # conftest: "checkout" is on in default, off in team-b
    assert responses[0].json()["enabled"] is enabled and responses[5].json()["enabled"] is enabled
    assert ("b-only" in responses[2].content.decode()) is (project == "team-b")  # the key's project's snapshot
