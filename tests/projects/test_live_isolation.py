"""Isolation over the long-lived transports: gRPC (a real channel) and /ws (a real web server)."""

import grpc
import pytest
from feature_flag_client._protojson import to_struct

from flags import services
from flags.selectors import flag_get
from projects import scope
from tests.api.conftest import SYSTEM
from tests.grpc_api.conftest import _fresh_process_caches, auth, channel, server as grpc_server, stub  # noqa: F401
from tests.live.conftest import server as web_server  # noqa: F401
from tests.live.test_websocket import changed, next_message, open_ws
from grpc_api.stubs import flags_pb2

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def server(grpc_server):  # noqa: F811 (tests.grpc_api's channel fixture asks for "server")
    return grpc_server


def evaluate(stub, key, flag_id):  # noqa: F811
    try:
        answer = stub.Evaluate(flags_pb2.EvaluateRequest(flag_id=flag_id, user_id="u1", context=to_struct({})),
                               metadata=auth(key))
        return ("ok", answer.evaluation.enabled, answer.evaluation.reason)
    except grpc.RpcError as exc:
        return ("error", exc.code(), exc.details())


def test_grpc__each_key_its_projects_flags__other_projects_like_unknown(two_projects, stub):  # noqa: F811
    a, b = two_projects["a_sdk"], two_projects["b_sdk"]
    assert evaluate(stub, a, "checkout")[:2] == ("ok", True)
    assert evaluate(stub, b, "checkout")[:2] == ("ok", False)
    assert evaluate(stub, b, "b-only")[:2] == ("ok", True)
    other, unknown = evaluate(stub, a, "b-only"), evaluate(stub, a, "no-such-flag")
    assert other[:2] == unknown[:2] == ("error", grpc.StatusCode.NOT_FOUND)
    assert other[2].replace("b-only", "no-such-flag") == unknown[2]
    bulk = stub.EvaluateBulk(flags_pb2.EvaluateBulkRequest(user_id="u1", context=to_struct({})), metadata=auth(a))
    assert {result.flag_id for result in bulk.evaluations} == {"checkout"}


def test_ws__a_projects_changes_reach_its_keys_only(two_projects, web_server):  # noqa: F811
    with open_ws(web_server, two_projects["a_sdk"]) as ws_a, open_ws(web_server, two_projects["b_sdk"]) as ws_b:
        assert next_message(ws_a, lambda m: m["type"] == "hello")["environment"] == "production"
        assert next_message(ws_b, lambda m: m["type"] == "hello")["environment"] == "team-b.production"
        with scope.using("team-b"):
            services.flag_toggle(actor=SYSTEM, flag=flag_get("checkout"), environment="production", enabled=True)
        event = next_message(ws_b, changed("checkout"))
        assert event["flag"]["enabled"] is True
        services.flag_toggle(actor=SYSTEM, flag=flag_get("checkout"), environment="production", enabled=False)
        event = next_message(ws_a, changed("checkout"))  # the default project's change, not team-b's
        assert event["flag"]["enabled"] is False
        with pytest.raises(TimeoutError):
            next_message(ws_b, changed("checkout"), timeout=0.5)
