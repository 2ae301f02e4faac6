"""Evaluate and EvaluateBulk over a real channel agree with the engine (the shared vectors) and
answer like REST."""

import json

import grpc
import pytest
from feature_flag_client._protojson import to_struct
from feature_flag_client.engine import compile_snapshot
from feature_flag_client.grpc import GrpcFlagClient

from flags import services
from flags.selectors import flag_get
from flags.snapshot import get_snapshot
from tests.api.conftest import Client
from tests.api.test_vectors_rest import COMPARED, FILES, REFUSED_BY_DESIGN, load

from .conftest import SYSTEM, TRANSACTIONAL, auth, create_flag, flags_pb2, rpc_error

pytestmark = TRANSACTIONAL


def request(flag_id, user_id, context, **kwargs):
    message = flags_pb2.EvaluateRequest(flag_id=flag_id, context=to_struct(context), **kwargs)
    if user_id is not None:
        message.user_id = user_id
    return message


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_vectors_through_evaluate__agree_with_engine_and_expected(path, stub, sdk_key, settings):
    # Given the file's segments and flags created through the services
    document = json.loads(path.read_text())
    engine = compile_snapshot(flags=document["flags"], segments=document["segments"], environment="production", version=1)
    refused = load(document, path.stem)
    assert refused == {r for r in REFUSED_BY_DESIGN if r[0] == path.stem}

    mismatches, compared, not_found = [], 0, 0
    for case in document["cases"]:
        if (path.stem, case["flagId"]) in refused:
            continue
        direct = engine.evaluate(case["flagId"], case["userId"], case["context"]).as_dict()
        call = request(case["flagId"], case["userId"], case["context"])
        if case["expected"]["reason"] == "FLAG_NOT_FOUND":
            # When the flag does not exist, Evaluate answers NOT_FOUND naming it
            error = rpc_error(stub.Evaluate, call, metadata=auth(sdk_key))
            assert error.code() == grpc.StatusCode.NOT_FOUND and case["flagId"] in error.details()
            assert direct["reason"] == "FLAG_NOT_FOUND"
            not_found += 1
            continue
        # When evaluated over gRPC
        got = stub.Evaluate(call, metadata=auth(sdk_key)).evaluation
        answer = {"enabled": got.enabled, "variant": got.variant if got.HasField("variant") else None,
                  "value": _plain(got.value), "reason": got.reason, "rule": got.rule if got.HasField("rule") else None}
        # Then the answer equals the engine's and the expected one, JSON type included
        for field in COMPARED + (("rule",) if "rule" in case["expected"] else ()):
            if not (answer[field] == direct[field] == case["expected"][field]
                    and type(answer[field]) is type(direct[field])):
                mismatches.append(f"{case['description']}: {field} grpc={answer[field]!r} "
                                  f"engine={direct[field]!r} expected={case['expected'][field]!r}")
        assert got.flag_id == case["flagId"] and got.environment == "production"
        served = get_snapshot("production").evaluate(case["flagId"], case["userId"], case["context"])
        assert got.version == served.version  # the flag state's version, as over REST
        compared += 1

    assert compared + not_found >= len(document["cases"]) - 4
    assert not mismatches, "\n".join(mismatches)


def _plain(value):
    from feature_flag_client._protojson import value_to_python

    return value_to_python(value)


def _setup_flags():
    create_flag("beta", states={"production": {"enabled": True, "rules": [
        {"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}]}})
    create_flag("dark-mode", states={"production": {"enabled": True, "rules": []}})
    create_flag("checkout", kind="multivariate", variants=[
        {"key": "small", "weight": 1, "value": {"limit": 3, "ratio": 0.5}},
        {"key": "large", "weight": 0, "value": 10}],
        states={"production": {"enabled": True, "rules": []}})


def test_evaluate_bulk__listed_flags__in_order_with_per_flag_error(stub, sdk_key):
    _setup_flags()
    bulk = flags_pb2.EvaluateBulkRequest(flag_ids=["dark-mode", "ghost", "beta"], user_id="u1",
                                         context=to_struct({"plan": "premium"}))
    response = stub.EvaluateBulk(bulk, metadata=auth(sdk_key))
    snap = get_snapshot("production")
    assert response.environment == "production" and response.version == snap.version
    assert [e.flag_id for e in response.evaluations] == ["dark-mode", "ghost", "beta"]
    dark, ghost, beta = response.evaluations
    assert (dark.enabled, dark.reason, dark.HasField("error")) == (True, "STATIC", False)
    assert (beta.enabled, beta.reason) == (True, "TARGETING_MATCH")
    assert (ghost.enabled, ghost.reason, ghost.error.code) == (False, "FLAG_NOT_FOUND", "FLAG_NOT_FOUND")
    assert "ghost" in ghost.error.message
    assert ghost.value.WhichOneof("kind") == "null_value"


def test_evaluate_bulk__no_flag_ids__every_flag_like_the_engine(stub, sdk_key):
    _setup_flags()
    response = stub.EvaluateBulk(flags_pb2.EvaluateBulkRequest(user_id="u2"), metadata=auth(sdk_key))
    expected = {r.flag_id: r.as_dict() for r in get_snapshot("production").evaluate_all("u2", {})}
    got = {e.flag_id: e for e in response.evaluations}
    assert set(got) == {"beta", "dark-mode", "checkout"} == set(expected)
    for key, evaluation in got.items():
        assert (evaluation.enabled, evaluation.reason) == (expected[key]["enabled"], expected[key]["reason"])
    assert _plain(got["checkout"].value) == {"limit": 3, "ratio": 0.5}
    assert got["checkout"].variant == "small"
    assert (got["beta"].reason, got["beta"].rule) == ("RULE_MISMATCH", 0)


def test_sdk_grpc_client__answers_exactly_like_rest(server, sdk_key):
    _setup_flags()
    rest = Client(sdk_key)
    cases = [("beta", "u1", {"plan": "premium"}), ("beta", "u1", {"plan": 3}), ("checkout", "u9", {}),
             ("dark-mode", None, {"nested": {"a": [1, 2.5, None, True]}}), ("ghost", "u1", {})]
    with GrpcFlagClient(f"127.0.0.1:{server.port}", sdk_key) as client:
        for flag_id, user_id, context in cases:
            over_rest = rest.post("/api/evaluate", {"flagId": flag_id, "userId": user_id, "context": context}).json()
            over_grpc = client.evaluate(flag_id, user_id, context)
            if over_rest["reason"] == "FLAG_NOT_FOUND":
                assert over_grpc["reason"] == "FLAG_NOT_FOUND" and over_grpc["enabled"] is False
                continue
            assert over_grpc == over_rest
        bulk_rest = rest.post("/api/evaluate/bulk", {"userId": "u1", "context": {"plan": "premium"},
                                                     "flagIds": ["beta", "checkout"]}).json()
        bulk_grpc = client.evaluate_bulk("u1", {"plan": "premium"}, ["beta", "checkout"])
        assert bulk_grpc == bulk_rest


def test_evaluate__answers_the_new_state_right_after_a_change(stub, sdk_key):
    _setup_flags()
    call = request("dark-mode", "u1", {})
    assert stub.Evaluate(call, metadata=auth(sdk_key)).evaluation.enabled is True
    services.flag_toggle(actor=SYSTEM, flag=flag_get("dark-mode"), environment="production", enabled=False)
    evaluation = stub.Evaluate(call, metadata=auth(sdk_key)).evaluation
    assert (evaluation.enabled, evaluation.reason) == (False, "DISABLED")
