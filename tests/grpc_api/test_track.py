"""flags.v1.FlagService/Track: events as POST /api/events (same validation, same buffer), with
INVALID_ARGUMENT naming the field; the SDK's gRPC client sends track() through it. And gRPC
evaluations record exposures through the same hook as REST."""

import grpc
import pytest

from experiments import buffers
from experiments.models import Event, Exposure
from feature_flag_client.grpc import GrpcFlagClient
from grpc_api.stubs import flags_pb2
from tests.grpc_api.conftest import TRANSACTIONAL, auth, create_flag, make_key, rpc_error, user_with


@pytest.fixture(autouse=True)
def _eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True


def request(*events, **kwargs):
    return flags_pb2.TrackRequest(events=list(events), **kwargs)


def event(n, **fields):
    return flags_pb2.TrackedEvent(**{"event": "purchase", "user_id": f"u{n}", "id": f"g{n}", **fields})


@TRANSACTIONAL
def test_track__accepted_queued_then_written_once(stub, sdk_key):
    reply = stub.Track(request(event(1, value=4.5), event(2, timestamp="2026-01-01T00:00:00Z")),
                       metadata=auth(sdk_key))
    assert reply.accepted == 2
    assert Event.objects.count() == 0  # queued, not written on the call
    stub.Track(request(event(1, value=4.5)), metadata=auth(sdk_key))  # resent
    buffers.flush()
    assert sorted(Event.objects.values_list("client_id", "user_id", "value")) == [("g1", "u1", 4.5),
                                                                                    ("g2", "u2", None)]


@TRANSACTIONAL
@pytest.mark.parametrize("events, field", [
    ((event(0), event(1, event="")), "events[1].event"),
    ((event(0, user_id=""),), "events[0].user_id"),
    ((event(0, timestamp="soon"),), "events[0].timestamp"),
    ((event(0, id="x" * 129),), "events[0].id"),
])
def test_track__invalid__invalid_argument_naming_the_field(stub, sdk_key, events, field):
    error = rpc_error(stub.Track, request(*events), metadata=auth(sdk_key))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{field}: ")
    assert buffers.events.pending() == 0


@TRANSACTIONAL
def test_track__too_many__invalid_argument(stub, sdk_key, settings):
    settings.FLAGS_EVENTS_MAX_BATCH = 2
    error = rpc_error(stub.Track, request(event(0), event(1), event(2)), metadata=auth(sdk_key))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "FLAGS_EVENTS_MAX_BATCH" in error.details()


@TRANSACTIONAL
def test_track__auth(stub, sdk_key):
    assert rpc_error(stub.Track, request(event(0))).code() == grpc.StatusCode.UNAUTHENTICATED
    assert rpc_error(stub.Track, request(event(0), environment="staging"),
                     metadata=auth(sdk_key)).code() == grpc.StatusCode.PERMISSION_DENIED
    nobody = make_key("management", user=user_with("nobody", []))
    assert rpc_error(stub.Track, request(event(0)), metadata=auth(nobody)).code() == grpc.StatusCode.PERMISSION_DENIED


@TRANSACTIONAL
def test_sdk_grpc_client_track(server, sdk_key):
    client = GrpcFlagClient(f"127.0.0.1:{server.port}", sdk_key)
    client.events.flush_interval = 60
    client.track("signup", "user-1", value=2, properties={"plan": "pro", "n": [1, 2]})
    [queued] = list(client.events._queue)
    assert client.flush_events() == 1
    client.close()
    buffers.flush()
    assert list(Event.objects.values_list("client_id", "event", "user_id", "value", "properties")) == [
        (queued["id"], "signup", "user-1", 2.0, {"plan": "pro", "n": [1, 2]})]


@TRANSACTIONAL
def test_grpc_evaluations__record_exposures(stub, sdk_key):
    create_flag("mv", kind="multivariate", variants=[{"key": "a", "weight": 50, "value": "a"},
                                                     {"key": "b", "weight": 50, "value": "b"}],
                states={"production": {"enabled": True}})
    for _ in range(2):
        stub.Evaluate(flags_pb2.EvaluateRequest(flag_id="mv", user_id="u1"), metadata=auth(sdk_key))
        stub.EvaluateBulk(flags_pb2.EvaluateBulkRequest(user_id="u2"), metadata=auth(sdk_key))
    buffers.flush()
    assert sorted(Exposure.objects.values_list("user_id", "variant_changes")) == [("u1", 0), ("u2", 0)]
