"""The edge relay (relay/, issue 21) as real processes: primary -> relay A -> relay B (a chain).

Relay A also serves gRPC and keeps a snapshot file. Tests run in file order on one topology
(tests/relay/conftest.py); the upstream stop/restart test runs last but one, the snapshot-file
start last."""

import json
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pytest
from django.db.models import Sum
from websockets.sync.client import connect

from analytics.models import EvaluationRollup
from experiments.models import Event
from flags import services
from flags.models import RelayBatch
from flags.selectors import flag_get
from grpc_api.stubs import flags_pb2, flags_pb2_grpc
from tests.relay.conftest import SYSTEM, RELAY_ENV, health, wait_synced, wait_until
from tests.servers import free_port, start_relay, start_web


def post(server, path, body, key):
    return httpx.post(f"{server.http_url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=5)


def get(server, path, key=None):
    return httpx.get(f"{server.http_url}{path}", headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=5)


def evaluate(server, key, flag, user="u1", context=None):
    return post(server, "/api/evaluate", {"flagId": flag, "userId": user, "context": context or {}}, key)


def relay_version(server, environment="production"):
    return health(server).get("relay", {}).get("environments", {}).get(environment)


def primary_version():
    from flags.models import Environment

    return Environment.objects.get(key="production").version


def wait_relays_at(topology, version, timeout=5.0):
    for relay in (topology.a, topology.b):
        wait_until(lambda: (relay_version(relay) or 0) >= version, timeout, message=f"{relay.http_url} at v{version}")


def ws_messages(ws, predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if predicate(message):
            return message


def test_vectors__identical_answers_through_both_relays(topology):
    """Every shared vector case: the same JSON from relay A and the chained relay B as from the primary."""
    clients = [httpx.Client(base_url=server.http_url, headers={"Authorization": f"Bearer {topology.sdk_key}"},
                            timeout=10) for server in topology.servers]
    mismatches = []

    def answers_of(client):
        answers = []
        for case in topology.vectors:
            answer = client.post("/api/evaluate", json={"flagId": case["flagId"], "userId": case["userId"],
                                                        "context": case["context"]})
            answers.append((answer.status_code, answer.json()))
        return answers

    try:
        with ThreadPoolExecutor(3) as pool:  # each server answers every case, the three at once
            primary_answers, a_answers, b_answers = pool.map(answers_of, clients)
        for case, primary, a, b in zip(topology.vectors, primary_answers, a_answers, b_answers):
            assert primary[0] == 200, (case, primary)
            if not (primary == a == b):
                mismatches.append((case["description"], primary, a, b))
            expected = {k: v for k, v in case["expected"].items() if k in primary[1]}
            assert {k: primary[1][k] for k in expected} == expected, case
        # accountId: the one variant stickiness field the vectors use besides userId (a missing
        # stickiness field draws a random bucket, docs/rules.md, and no two servers would agree)
        body = {"userId": "user-1", "context": {"country": "DE", "accountId": "acct-1"}}
        bulk = [client.post("/api/evaluate/bulk", json=body).json() for client in clients]
        assert len(bulk[0]["flags"]) >= 100
        differing = {key: (value, bulk[1]["flags"].get(key), bulk[2]["flags"].get(key))
                     for key, value in bulk[0]["flags"].items()
                     if value != bulk[1]["flags"].get(key) or value != bulk[2]["flags"].get(key)}
        assert not differing, differing
        assert bulk[0]["version"] == bulk[1]["version"] == bulk[2]["version"]
        snapshots = [client.get("/api/sdk/snapshot").json() for client in clients]
        assert snapshots[1] == snapshots[0] and snapshots[2] == snapshots[0]
    finally:
        for client in clients:
            client.close()
    assert not mismatches, mismatches[:3]
    assert len(topology.vectors) > 500


def test_ofrep_and_grpc__answer_on_the_relay(topology):
    body = {"context": {"targetingKey": "u1"}}
    answers = [post(server, "/ofrep/v1/evaluate/flags/relay-flag", body, topology.sdk_key) for server in topology.servers]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[1].json() == answers[0].json() == answers[2].json()
    with grpc.insecure_channel(topology.a.target) as channel:
        stub = flags_pb2_grpc.FlagServiceStub(channel)
        response = stub.Evaluate(flags_pb2.EvaluateRequest(flag_id="relay-flag", user_id="u1"),
                                 metadata=(("authorization", f"Bearer {topology.sdk_key}"),), timeout=10)
        assert (response.evaluation.enabled, response.evaluation.reason) == (True, evaluate(topology.primary, topology.sdk_key, "relay-flag").json()["reason"])
        with pytest.raises(grpc.RpcError) as refused:
            stub.Evaluate(flags_pb2.EvaluateRequest(flag_id="relay-flag"), metadata=(("authorization", "Bearer nope"),),
                          timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_and_metrics__report_the_relay(topology):
    info = health(topology.b)
    assert info["status"] == "ok" and info["relay"]["connected"] is True
    assert info["relay"]["upstream"] == topology.a.http_url and info["relay"]["ageSeconds"] == 0
    metrics = get(topology.a, "/metrics").text
    assert "flagsite_relay_connected 1.0" in metrics and "flagsite_relay_staleness_seconds 0.0" in metrics


def test_bad_input_and_wrong_credentials__clear_4xx(topology):
    token, sdk = topology.relay_token, topology.sdk_key
    # the relay serves no control plane: management routes name the upstream
    for path in ("/api/flags", "/api/audit", "/admin/", "/"):
        answer = get(topology.b, path, sdk)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_on_relay", (path, answer.text)
    # an unknown key at the relay: 401 as on the primary
    assert evaluate(topology.b, "sdk_production_unknown", "relay-flag").status_code == 401
    # a relay token may only use the relay protocol; an SDK key may not use it
    assert evaluate(topology.primary, token, "relay-flag").status_code == 403
    assert get(topology.primary, "/api/flags", token).status_code == 403
    assert get(topology.primary, "/api/relay/keys", sdk).status_code == 403
    assert get(topology.primary, "/api/relay/snapshot").status_code == 401
    # ingest: a malformed batch is a 400 naming the field, an environment the token may not write a 403
    bad = post(topology.primary, "/api/relay/ingest", {"batch": "x", "counts": {"counts": [["production"]]}}, token)
    assert bad.status_code == 400 and set(bad.json()["error"]["fields"]) >= {"batch", "counts"}
    assert post(topology.primary, "/api/relay/ingest", [1, 2], token).status_code == 400
    staging = post(topology.primary, "/api/relay/ingest", {"batch": uuid.uuid4().hex, "counts": {
        "counts": [["staging", "relay-flag", None, True, int(time.time()) // 3600, 1]]}}, token)
    assert staging.status_code == 403
    with connect(topology.a.http_url.replace("http", "ws") + "/ws/relay",
                 additional_headers={"Authorization": f"Bearer {sdk}"}, open_timeout=5) as ws:
        assert ws_messages(ws, lambda m: m["type"] == "error")["error"]["code"] == "permission_denied"
    snap = get(topology.a, "/api/relay/snapshot?environment=production", token).json()
    assert snap["environments"] == {"production": relay_version(topology.a)}
    assert get(topology.a, "/api/relay/snapshot?environment=staging", token).status_code == 403


def test_change_and_kill__reach_a_ws_client_of_the_chained_relay(topology):
    flag = flag_get("relay-flag")
    with connect(topology.b.ws_url, additional_headers={"Authorization": f"Bearer {topology.sdk_key}"},
                 open_timeout=5) as ws:
        hello = ws_messages(ws, lambda m: m["type"] == "hello")
        assert hello["environment"] == "production"
        started = time.monotonic()
        services.flag_update(actor=SYSTEM, flag=flag, environment="production",
                             data={"rules": [{"type": "user", "operator": "in", "value": ["vip"]}]})
        updated = ws_messages(ws, lambda m: m.get("flag", {}).get("key") == "relay-flag")
        assert updated["action"] == "updated" and updated["flag"]["rules"][0]["value"] == ["vip"]
        services.flag_kill(actor=SYSTEM, flag=flag, reason="relay test", environments=["production"])
        killed = ws_messages(ws, lambda m: m.get("flag", {}).get("key") == "relay-flag")
        assert killed["action"] == "killed" and killed["version"] == primary_version()
        assert time.monotonic() - started < 3
    assert evaluate(topology.b, topology.sdk_key, "relay-flag").json()["reason"] == "KILLED"
    services.flag_restore(actor=SYSTEM, flag=flag, environments=["production"])
    wait_relays_at(topology, primary_version())
    # resume by version: a client that held an older version gets what it missed
    with connect(f"{topology.b.ws_url}?since={killed['version'] - 1}",
                 additional_headers={"Authorization": f"Bearer {topology.sdk_key}"}, open_timeout=5) as ws:
        resumed = ws_messages(ws, lambda m: m["type"] in ("flag.changed", "snapshot"))
        assert resumed["type"] == "snapshot" or resumed["action"] in ("killed", "restored")


def test_grpc_watch_on_the_relay__sees_a_change_made_on_the_primary(topology):
    with grpc.insecure_channel(topology.a.target) as channel:
        stub = flags_pb2_grpc.FlagServiceStub(channel)
        stream = stub.WatchFlags(flags_pb2.WatchFlagsRequest(), timeout=15,
                                 metadata=(("authorization", f"Bearer {topology.sdk_key}"),))
        try:
            assert next(stream).type == "hello"
            services.flag_toggle(actor=SYSTEM, flag=flag_get("relay-flag"), environment="production")
            event = next(event for event in stream if event.type == "flag.changed")
            assert event.action == "toggled" and event.flag["key"] == "relay-flag"
            assert event.version == primary_version()
        finally:
            stream.cancel()
    services.flag_toggle(actor=SYSTEM, flag=flag_get("relay-flag"), environment="production")
    wait_relays_at(topology, primary_version())


def test_revoked_sdk_key__refused_by_the_chained_relay_within_a_second(topology):
    production = topology.production
    api_key, raw = services.api_key_create(actor=SYSTEM, name="soon revoked", kind="sdk", environment=production)
    wait_until(lambda: evaluate(topology.b, raw, "relay-flag").status_code == 200, 5, message="new key at relay B")
    services.api_key_revoke(actor=SYSTEM, api_key=api_key)
    revoked_at = time.monotonic()
    wait_until(lambda: evaluate(topology.b, raw, "relay-flag").status_code == 401, 1.0, interval=0.02,
               message="revoked key refused at relay B")
    assert time.monotonic() - revoked_at < 1.0
    assert evaluate(topology.a, raw, "relay-flag").status_code == 401
    assert evaluate(topology.b, topology.sdk_key, "relay-flag").status_code == 200  # the others still work


def test_revoked_relay_token__stream_closed_and_protocol_refused(topology):
    api_key, token = services.api_key_create(actor=SYSTEM, name="short-lived relay", kind="relay",
                                             relay_environments=["production"])
    with connect(topology.primary.http_url.replace("http", "ws") + "/ws/relay",
                 additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5) as ws:
        assert ws_messages(ws, lambda m: m["type"] == "synced")
        services.api_key_revoke(actor=SYSTEM, api_key=api_key)
        refused = ws_messages(ws, lambda m: m["type"] == "error", timeout=8)  # the primary's key cache TTL (5 s)
        assert refused["error"]["code"] == "not_authenticated"
    assert get(topology.primary, "/api/relay/keys", token).status_code == 401


def _primary_count(flag):
    return EvaluationRollup.objects.filter(flag_key=flag, environment="production").aggregate(n=Sum("evaluations"))["n"] or 0


def test_counts__arrive_at_the_primary_exactly_once(topology):
    services.flag_create(actor=SYSTEM, key="relay-counted", name="counted",
                         states={"production": {"enabled": True, "rules": []}})
    wait_relays_at(topology, primary_version())
    for server, times in ((topology.a, 7), (topology.b, 5)):
        for i in range(times):
            assert evaluate(server, topology.sdk_key, "relay-counted", user=f"u{i}").status_code == 200
    bulk = post(topology.b, "/api/evaluate/bulk", {"userId": "u1", "flagIds": ["relay-counted"]}, topology.sdk_key)
    assert bulk.status_code == 200
    wait_until(lambda: _primary_count("relay-counted") >= 13, 10, message="relay counts at the primary")
    time.sleep(1.0)  # more flushes: nothing counted twice
    assert _primary_count("relay-counted") == 13
    # a retried batch (same id) is applied once
    batch = {"batch": uuid.uuid4().hex, "counts": {"counts": [
        ["production", "relay-counted", None, True, int(time.time()) // 3600, 4]], "users": []}}
    first = post(topology.primary, "/api/relay/ingest", batch, topology.relay_token)
    again = post(topology.primary, "/api/relay/ingest", batch, topology.relay_token)
    assert (first.status_code, first.json()["duplicate"]) == (200, False)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert _primary_count("relay-counted") == 17
    assert RelayBatch.objects.filter(batch_id=batch["batch"]).count() == 1
    # events tracked at the chained relay reach the primary's table once
    tracked = post(topology.b, "/api/events", {"events": [{"event": "relay-buy", "userId": "u1", "id": "relay-e1"},
                                                          {"event": "relay-buy", "userId": "u2", "id": "relay-e2"}]},
                   topology.sdk_key)
    assert tracked.status_code == 202, tracked.text
    wait_until(lambda: Event.objects.filter(event="relay-buy").count() == 2, 10, message="relay events at the primary")


def test_upstream_stop_and_restart__relay_serves_stale_reports_it_and_catches_up(topology):
    port = topology.primary.port
    topology.primary.stop()
    try:
        stale = wait_until(lambda: health(topology.a).get("status") == "stale" and health(topology.a), 5,
                           message="relay A to report stale")
        assert stale["relay"]["connected"] is False and stale["relay"]["ageSeconds"] >= 1
        assert "flagsite_relay_stale 1.0" in get(topology.a, "/metrics").text
        # the chained relay is connected (to relay A), but its answers are as old as A's: stale too
        chained = wait_until(lambda: health(topology.b).get("status") == "stale" and health(topology.b), 5,
                             message="relay B to report stale through the chain")
        assert chained["relay"]["connected"] is True and chained["relay"]["ageSeconds"] >= 1
        for relay in (topology.a, topology.b):  # both keep answering from the last snapshot
            assert evaluate(relay, topology.sdk_key, "relay-flag").status_code == 200
        for i in range(3):  # counted while the upstream is away: kept in the outbox
            evaluate(topology.b, topology.sdk_key, "relay-counted", user=f"away{i}")
        services.flag_toggle(actor=SYSTEM, flag=flag_get("relay-flag"), environment="production")  # while away
    finally:
        topology.primary = start_web(port=port, output=topology.logs["primary"], FLAGS_WS_PING_SECONDS="1")
        topology.servers[0] = topology.primary
    wait_synced(topology.a, timeout=15)
    wait_synced(topology.b, timeout=5)
    wait_relays_at(topology, primary_version(), timeout=10)
    assert evaluate(topology.b, topology.sdk_key, "relay-flag").json()["enabled"] is False
    wait_until(lambda: _primary_count("relay-counted") == 20, 10, message="outbox flushed after the restart")


def test_snapshot_file__relay_starts_with_no_upstream_reachable(topology):
    copy = topology.tmp / "copy-snapshot.json"
    shutil.copy(topology.tmp / "a-snapshot.json", copy)
    nowhere = f"http://127.0.0.1:{free_port()}"
    relay = start_relay(nowhere, topology.relay_token, snapshot_file=copy, output=topology.logs["b"], **RELAY_ENV)
    try:
        info = wait_until(lambda: health(relay).get("relay") and health(relay), 15, message="relay C health")
        assert info["relay"]["fromSnapshotFile"] is True and info["relay"]["connected"] is False
        answer = evaluate(relay, topology.sdk_key, "relay-flag")
        assert answer.status_code == 200 and answer.json()["flagId"] == "relay-flag"
    finally:
        relay.stop()
