"""Drive 100,000 evaluations through REST and gRPC and remember exactly what they answered."""

from collections import Counter

from grpc_api.stubs import flags_pb2

FLAGS = 20
USERS = 700  # under the sketch's exact (sparse) limit: unique users are exact too
REST_BULK_REQUESTS = 4_000  # x 20 flags
REST_SINGLE = 1_000
GRPC_BULK_CALLS = 950  # x 20 flags
TOTAL = REST_BULK_REQUESTS * FLAGS + REST_SINGLE + GRPC_BULK_CALLS * FLAGS
assert TOTAL == 100_000


def make_flags(make_env_flag, prefix):
    keys = []
    for i in range(FLAGS):
        key = f"{prefix}-{i:02d}"
        if i % 4 == 0:
            make_env_flag(key, kind="multivariate", variants=[
                {"key": "red", "weight": 50}, {"key": "green", "weight": 30}, {"key": "blue", "weight": 20}])
        elif i % 4 == 1:
            make_env_flag(key, rules=[{"type": "percentage", "operator": "less_than", "value": 30}])
        elif i % 4 == 2:
            make_env_flag(key, enabled=False)
        else:
            make_env_flag(key)
        keys.append(key)
    return keys


def drive(rest, stub, sdk_key, keys, *, flush_every=None, flush=None):
    """Evaluate; return Counter{(environment, flag, variant, enabled): n} of what was answered."""
    seen = Counter()
    n = 0
    for i in range(REST_BULK_REQUESTS):
        response = rest.post("/api/evaluate/bulk", {"userId": f"user-{i % USERS}", "flagIds": keys}, format="json")
        assert response.status_code == 200, response.content
        for key, result in response.json()["flags"].items():
            seen[(result["environment"], key, result["variant"] or "", result["enabled"])] += 1
        n += 1
        if flush_every and n % flush_every == 0:
            flush()
    for i in range(REST_SINGLE):
        key = keys[i % len(keys)]
        response = rest.post("/api/evaluate", {"flagId": key, "userId": f"user-{i % USERS}"}, format="json")
        assert response.status_code == 200, response.content
        result = response.json()
        seen[(result["environment"], key, result["variant"] or "", result["enabled"])] += 1
    metadata = (("authorization", f"Bearer {sdk_key}"),)
    for i in range(GRPC_BULK_CALLS):
        reply = stub.EvaluateBulk(flags_pb2.EvaluateBulkRequest(flag_ids=keys, user_id=f"user-{i % USERS}"),
                                  metadata=metadata)
        for result in reply.evaluations:
            variant = result.variant if result.HasField("variant") else ""
            seen[(result.environment, result.flag_id, variant, result.enabled)] += 1
    assert sum(seen.values()) == TOTAL
    return seen


def rollup_counts(keys):
    from analytics.models import EvaluationRollup

    found = Counter()
    for env, flag, variant, enabled, n in EvaluationRollup.objects.filter(flag_key__in=keys).values_list(
            "environment", "flag_key", "variant", "enabled", "evaluations"):
        found[(env, flag, variant, enabled)] += n
    return found
