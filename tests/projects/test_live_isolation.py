"""Isolation over the long-lived transports: gRPC (a real channel) and /ws (a real web server)."""

import json

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


def _session_ws(server, user, query="?environment=production"):
    """The dashboard's socket: no key, the browser's session cookie (as the pages open it)."""
    from django.test import Client as PageClient
    from websockets.sync.client import connect

    client = PageClient()
    client.force_login(user)
    return connect(f"{server.ws_url}{query}", open_timeout=5,
                   additional_headers={"Cookie": f"sessionid={client.cookies['sessionid'].value}"})


def test_ws__dashboard_session_of_a_member__follows_its_project_only(two_projects, web_server):  # noqa: F811
    from django.contrib.auth import get_user_model

    from projects import services as project_services
    from projects.models import Project

    member = get_user_model().objects.create_user("b-viewer")  # not staff: a role in team-b only
    project_services.role_grant(actor=SYSTEM, project=Project.objects.get(key="team-b"), role="viewer", user=member)
    with _session_ws(web_server, member) as ws:
        assert next_message(ws, lambda m: m["type"] == "hello")["environment"] == "team-b.production"
        services.flag_toggle(actor=SYSTEM, flag=flag_get("checkout"), environment="production", enabled=False)
        with pytest.raises(TimeoutError):  # the default project's change: not a notice for team-b's member
            next_message(ws, changed("checkout"), timeout=0.7)
        with scope.using("team-b"):
            services.flag_toggle(actor=SYSTEM, flag=flag_get("checkout"), environment="production", enabled=True)
        assert next_message(ws, changed("checkout"))["flag"]["enabled"] is True
    # naming another project's environment names nothing: closed, no hello
    with _session_ws(web_server, member, "?environment=default.production") as ws:
        assert not any(m.get("type") == "hello" for m in _drain(ws))
    # the member's token narrowed to team-b follows team-b's environments by their plain keys
    token = _member_token(member)
    with open_ws(web_server, token, "?environment=production") as ws:
        assert next_message(ws, lambda m: m["type"] == "hello")["environment"] == "team-b.production"
    nobody = get_user_model().objects.create_user("no-role")
    with _session_ws(web_server, nobody) as ws:  # neither staff nor member: a key is required
        assert _drain(ws)[0]["error"]["code"] == "not_authenticated"


def _drain(ws):
    messages = []
    try:
        while True:
            messages.append(json.loads(ws.recv(timeout=2)))
    except Exception:  # closed (or quiet): what was said is what matters
        return messages


def _member_token(user):
    with scope.using("team-b"):
        return services.api_key_create(actor=SYSTEM, name="b-viewer", kind="management", user=user,
                                       narrowed=True)[1]


def _closed(ws):
    """(messages said, close code) of a socket the server ends."""
    from websockets.exceptions import ConnectionClosed

    messages = []
    try:
        while True:
            messages.append(json.loads(ws.recv(timeout=3)))
    except ConnectionClosed as closed:
        return messages, closed.rcvd.code


def test_ws__token_not_narrowed__follows_a_project_of_its_user_by_query(two_projects, web_server):  # noqa: F811
    """A member's management token that is not narrowed picks, with ?project=, a project its user
    holds a role in (the path's <project> of the REST API); a project it has no role in, another
    than a narrowed token's, or none at all answers exactly as a project that does not exist."""
    from django.contrib.auth import get_user_model

    from projects import services as project_services
    from projects.models import Project

    project_services.project_create(actor=SYSTEM, key="team-c", name="Team C")  # exists; no role there
    member = get_user_model().objects.create_user("b-viewer")  # not staff: a role in team-b only
    project_services.role_grant(actor=SYSTEM, project=Project.objects.get(key="team-b"), role="viewer", user=member)
    token = services.api_key_create(actor=SYSTEM, name="b-viewer", kind="management", user=member)[1]
    with open_ws(web_server, token, "?project=team-b&environment=production") as ws:
        assert next_message(ws, lambda m: m["type"] == "hello")["environment"] == "team-b.production"
        services.flag_toggle(actor=SYSTEM, flag=flag_get("checkout"), environment="production", enabled=False)
        with pytest.raises(TimeoutError):  # the default project's change: not for this socket
            next_message(ws, changed("checkout"), timeout=0.7)
        with scope.using("team-b"):
            services.flag_toggle(actor=SYSTEM, flag=flag_get("checkout"), environment="production", enabled=True)
        assert next_message(ws, changed("checkout"))["flag"]["enabled"] is True

    def outcome(key, query):
        with open_ws(web_server, key, query) as ws:
            return _closed(ws)

    unknown = outcome(token, "?project=nope&environment=production")
    assert unknown == ([], 4404)
    assert outcome(token, "?project=team-c&environment=production") == unknown  # no role there
    assert outcome(token, "?project=default&environment=production") == unknown  # nor in the default project
    assert outcome(token, "?environment=production") == unknown  # no project named: the default one
    assert outcome(token, "?project=team-b&environment=moon") == unknown  # its project, no such environment
    narrowed = _member_token(member)  # narrowed to team-b: it names team-b or nothing
    assert outcome(narrowed, "?project=team-c&environment=production") == unknown
    with open_ws(web_server, narrowed, "?project=team-b&environment=production") as ws:
        assert next_message(ws, lambda m: m["type"] == "hello")["environment"] == "team-b.production"

    # the view-permission check stays: a user holding no role and no permission is refused (4403)
    nobody = get_user_model().objects.create_user("no-role")
    nobody_token = services.api_key_create(actor=SYSTEM, name="nobody", kind="management", user=nobody)[1]
    messages, code = outcome(nobody_token, "?environment=production")
    assert (messages[0]["error"]["code"], code) == ("permission_denied", 4403)
    # site staff follow any project, as on the REST API's paths
    with open_ws(web_server, two_projects["any_token"], "?project=team-b&environment=production") as ws:
        assert next_message(ws, lambda m: m["type"] == "hello")["environment"] == "team-b.production"
