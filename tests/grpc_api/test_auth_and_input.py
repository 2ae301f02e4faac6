"""Who may call, and what a bad request gets: a status code and a message naming the field;
never a crash (the server keeps answering)."""

import time

import grpc
import pytest
from feature_flag_client._protojson import to_struct
from google.protobuf import struct_pb2

from flags import services
from flags.models import ApiKey, Environment

from .conftest import SYSTEM, TRANSACTIONAL, auth, create_flag, flags_pb2, make_key, rpc_error, user_with

pytestmark = TRANSACTIONAL


@pytest.fixture
def flag(transactional_db):
    return create_flag("beta", states={"production": {"enabled": True, "rules": []},
                                      "staging": {"enabled": False, "rules": []}})


def evaluate(flag_id="beta", **kwargs):
    return flags_pb2.EvaluateRequest(flag_id=flag_id, **kwargs)


ALL_CALLS = [
    ("Evaluate", lambda: evaluate()),
    ("EvaluateBulk", lambda: flags_pb2.EvaluateBulkRequest()),
]


@pytest.mark.parametrize("metadata", [
    (),
    (("authorization", "sdk_production_not-a-real-key"),),  # no Bearer scheme
    (("authorization", "Basic dXNlcjpwYXNz"),),
    (("authorization", "Bearer "),),
    (("authorization", "Bearer sdk_production_unknown"),),
], ids=["missing", "no-scheme", "basic", "empty", "unknown"])
def test_bad_credentials__unauthenticated_on_every_method(stub, flag, metadata):
    for method, build in ALL_CALLS:
        error = rpc_error(getattr(stub, method), build(), metadata=metadata)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, method
    stream = stub.WatchFlags(flags_pb2.WatchFlagsRequest(), metadata=metadata)
    assert rpc_error(next, stream).code() == grpc.StatusCode.UNAUTHENTICATED


def test_revoked_key__unauthenticated(stub, flag, sdk_key):
    assert stub.Evaluate(evaluate(), metadata=auth(sdk_key)).evaluation.enabled is True
    services.api_key_revoke(actor=SYSTEM, api_key=ApiKey.objects.get(kind="sdk", environment__key="production"))
    error = rpc_error(stub.Evaluate, evaluate(), metadata=auth(sdk_key))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_sdk_key__reads_its_own_environment_only(stub, flag):
    staging = make_key("sdk", environment="staging")
    own = stub.Evaluate(evaluate(), metadata=auth(staging)).evaluation
    assert (own.environment, own.enabled, own.reason) == ("staging", False, "DISABLED")
    named = stub.Evaluate(evaluate(environment="staging"), metadata=auth(staging)).evaluation
    assert named.environment == "staging"
    for call in (stub.Evaluate, stub.EvaluateBulk):
        request = evaluate(environment="production") if call is stub.Evaluate else \
            flags_pb2.EvaluateBulkRequest(environment="production")
        error = rpc_error(call, request, metadata=auth(staging))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "staging" in error.details()
    stream = stub.WatchFlags(flags_pb2.WatchFlagsRequest(environment="production"), metadata=auth(staging))
    assert rpc_error(next, stream).code() == grpc.StatusCode.PERMISSION_DENIED


def test_management_token__needs_view_permission__then_any_environment(stub, flag):
    nobody = make_key("management", user=user_with("nobody", []))
    error = rpc_error(stub.Evaluate, evaluate(), metadata=auth(nobody))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    reader = make_key("management", user=user_with("reader", ["flags.view_flag"]))
    production = stub.Evaluate(evaluate(environment="production"), metadata=auth(reader)).evaluation
    assert (production.environment, production.enabled) == ("production", True)
    default = stub.Evaluate(evaluate(), metadata=auth(reader)).evaluation
    assert default.environment == "development"
    error = rpc_error(stub.Evaluate, evaluate(environment="nowhere"), metadata=auth(reader))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("environment:")


def deep_struct(depth):
    inner = struct_pb2.Struct()
    inner.fields["leaf"].string_value = "x"
    for _ in range(depth):
        outer = struct_pb2.Struct()
        outer.fields["a"].struct_value.CopyFrom(inner)
        inner = outer
    return inner


BAD_EVALUATE = [
    ("empty-flag-id", evaluate(flag_id=""), "flag_id:"),
    ("bad-flag-key", evaluate(flag_id="no spaces/allowed"), "flag_id:"),
    ("long-flag-key", evaluate(flag_id="x" * 5000), "flag_id:"),
    ("oversized-context", evaluate(context=to_struct({"blob": "x" * 70_000})), "context:"),
    ("deep-context", evaluate(context=deep_struct(20)), "context:"),
    ("long-user-id", evaluate(user_id="u" * 2000), "user_id:"),
]


@pytest.mark.parametrize("request_, field", [(r, f) for _, r, f in BAD_EVALUATE], ids=[i for i, _, _ in BAD_EVALUATE])
def test_evaluate__bad_request__invalid_argument_naming_the_field(stub, flag, sdk_key, request_, field):
    error = rpc_error(stub.Evaluate, request_, metadata=auth(sdk_key))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(field), error.details()
    assert stub.Evaluate(evaluate(), metadata=auth(sdk_key)).evaluation.enabled is True  # still serving


@pytest.mark.parametrize("request_, field", [
    (flags_pb2.EvaluateBulkRequest(flag_ids=["beta", ""]), "flag_ids[1]:"),
    (flags_pb2.EvaluateBulkRequest(flag_ids=["ok"] * 1001), "flag_ids:"),
    (flags_pb2.EvaluateBulkRequest(context=to_struct({"blob": "x" * 70_000})), "context:"),
], ids=["empty-id", "too-many", "oversized-context"])
def test_evaluate_bulk__bad_request__invalid_argument_naming_the_field(stub, flag, sdk_key, request_, field):
    error = rpc_error(stub.EvaluateBulk, request_, metadata=auth(sdk_key))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(field), error.details()


def test_evaluate__unknown_flag__not_found(stub, flag, sdk_key):
    error = rpc_error(stub.Evaluate, evaluate(flag_id="ghost"), metadata=auth(sdk_key))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "ghost" in error.details()


def test_odd_but_valid_context_values__evaluate_without_error(stub, sdk_key, transactional_db):
    create_flag("age-gate", states={"production": {"enabled": True, "rules": [
        {"type": "custom", "field": "age", "operator": "gte", "value": 18}]}})
    cases = [({"age": 18}, True), ({"age": 17.5}, False), ({"age": float("nan")}, False),
             ({"age": float("inf")}, True), ({"age": "19"}, True), ({"age": None}, False),
             ({"age": [20]}, False), ({"age": {"n": 20}}, False), ({"age": True}, False)]
    for context, enabled in cases:
        got = stub.Evaluate(evaluate("age-gate", context=to_struct(context)), metadata=auth(sdk_key)).evaluation
        assert got.enabled is enabled, context


def test_garbage_bytes__rejected_and_server_keeps_serving(channel, stub, flag, sdk_key):
    raw = channel.unary_unary("/flags.v1.FlagService/Evaluate",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
    error = rpc_error(raw, b"\xff\xff\xff\xff\x0f garbage", metadata=auth(sdk_key))
    assert error.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    big = rpc_error(stub.Evaluate, evaluate(context=to_struct({"blob": "x" * 2_000_000})), metadata=auth(sdk_key))
    assert big.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # over the 1 MiB message limit
    assert stub.Evaluate(evaluate(), metadata=auth(sdk_key)).evaluation.enabled is True


def test_unknown_environment_row_removed__invalid_argument(stub, flag):
    reader = make_key("management", user=user_with("reader2", ["flags.view_flag"]))
    Environment.objects.filter(key="staging").update(key="staging-old")
    time.sleep(0.2)  # serving processes notice within FLAGS_MAX_STALENESS_MS (100 ms)
    error = rpc_error(stub.EvaluateBulk, flags_pb2.EvaluateBulkRequest(environment="staging"), metadata=auth(reader))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "staging" in error.details()


def test_evaluate_bulk__cap_is_the_setting(stub, flag, sdk_key, settings):
    settings.FLAGS_MAX_BULK_FLAGS = 5
    assert len(stub.EvaluateBulk(flags_pb2.EvaluateBulkRequest(flag_ids=["beta"] * 5),
                                 metadata=auth(sdk_key)).evaluations) == 5
    error = rpc_error(stub.EvaluateBulk, flags_pb2.EvaluateBulkRequest(flag_ids=["beta"] * 6), metadata=auth(sdk_key))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 5" in error.details()


def test_invalid_key_flood__resource_exhausted_without_lookup_or_log_line(stub, flag, sdk_key, settings, caplog):
    """Failed keys count per client address (here 127.0.0.1): past FLAGS_AUTH_FAILURE_LIMIT the
    address's unknown keys are refused before any lookup; a key already known good still works."""
    import logging

    from flagsite.api import throttling

    settings.FLAGS_AUTH_FAILURE_LIMIT = "3/h"
    assert stub.Evaluate(evaluate(), metadata=auth(sdk_key)).evaluation.enabled is True  # known good
    try:
        codes = [rpc_error(stub.Evaluate, evaluate(), metadata=auth(f"sdk_guess_{n}")).code() for n in range(3)]
        with caplog.at_level(logging.INFO, logger="flagsite.api.authentication"):
            caplog.clear()
            refused = rpc_error(stub.Evaluate, evaluate(), metadata=auth("sdk_guess_more"))
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry in" in refused.details()
        assert [r for r in caplog.records if "authentication failed" in r.getMessage()] == []
        assert stub.Evaluate(evaluate(), metadata=auth(sdk_key)).evaluation.enabled is True
    finally:
        throttling._blocked.clear()
