"""Redis stops while a web node (granian ASGI: REST + /ws) and a gRPC node serve real SDK clients."""

import time

import httpx
import pytest
from feature_flag_client import FeatureFlagClient
from feature_flag_client.grpc import GrpcFlagClient

from .conftest import ONLY_U1, assert_answers, audit_actions, flag_row, follow_grpc, follow_ws, server_env, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.usefixtures("stores_up")]

STABLE, MOVING = "redis-fault-stable", "redis-fault-moving"


def notice_listeners(store):
    """Members of the channel-layer group that carries change notices (flags.live.NOTICE_GROUP)."""
    return store.client().zcard("faults:group:flagsite.versions")


def health(web):
    response = httpx.get(f"{web.http_url}/api/health", timeout=5)
    return response.status_code, response.json()


def test_redis_down__evaluations_and_writes_go_on__health_names_the_cache__notices_recover(
        private_postgres, private_redis, site, servers, cleanup):
    """Users keep getting correct evaluations (REST, gRPC) and operators keep changing flags while
    Redis is down; /api/health says the cache is what failed; WebSocket clients still hear
    changes; when Redis returns, change notices reach other nodes again with no restart."""
    web = servers("web", **server_env(private_postgres, private_redis, FLAGS_WS_PING_SECONDS=1))
    # This gRPC node re-reads versions only every few minutes: a change reaches it promptly only through
    # a notice over Redis, so its stream proves notices work before the outage and after it.
    grpc_node = servers("grpc", **server_env(private_postgres, private_redis, FLAGS_MAX_STALENESS_MS=600_000))
    admin = cleanup.enter_context(
        FeatureFlagClient(f"{web.http_url}/api", site["token"], environment="production", retries=0))
    sdk = cleanup.enter_context(FeatureFlagClient(f"{web.http_url}/api", site["sdk"], retries=0))
    grpc_client = cleanup.enter_context(GrpcFlagClient(grpc_node.target, site["sdk"]))
    ws_events = follow_ws(cleanup, web.ws_url, site["sdk"])
    grpc_events = follow_grpc(cleanup, grpc_client)

    admin.create_flag("Stable", key=STABLE, states={"production": {"enabled": True, "rules": ONLY_U1}})
    admin.create_flag("Moving", key=MOVING, states={"production": {"enabled": True, "rules": []}})
    grpc_events.expect(MOVING, "created")
    assert_answers(STABLE, sdk.evaluate_flag, grpc_client.evaluate)
    assert health(web) == (200, {"status": "ok", "checks": {"database": "ok", "cache": "ok"}})
    assert notice_listeners(private_redis) == 2  # the web node's watcher and the gRPC node's

    private_redis.stop()

    status, body = health(web)
    assert status == 200, body  # degraded, not down: a load balancer keeps the node
    assert (body["status"], body["checks"]["database"]) == ("degraded", "ok")
    assert body["checks"]["cache"] == "unavailable", body
    deadline = time.monotonic() + 1.5  # past the API key cache (5 s by default: keys re-read from PostgreSQL)
    while time.monotonic() < deadline:
        assert_answers(STABLE, sdk.evaluate_flag, grpc_client.evaluate)
    # A write still succeeds: PostgreSQL is the source of truth
    assert admin.toggle_flag(MOVING, enabled=False)["enabled"] is False
    assert flag_row(private_postgres, MOVING)[:2] == (False, False)
    assert audit_actions(private_postgres, MOVING) == ["flag.created", "flag.toggled"]
    assert sdk.evaluate_flag(MOVING, "u1")["reason"] == "DISABLED"
    assert ws_events.expect(MOVING, "toggled")["flag"]["enabled"] is False  # the web node's own poll

    private_redis.start()

    assert wait_until(lambda: health(web)[1]["status"] == "ok", what="health ok after Redis returned")
    wait_until(lambda: notice_listeners(private_redis) == 2, what="both watchers back in the notice group")
    admin.kill_flag(MOVING, reason="fault test", environments=["production"])
    # within 10 s: a notice woke the gRPC node (its own poll runs only every few minutes)
    assert grpc_events.expect(MOVING, "killed", timeout=10)["flag"]["killed"] is True
    assert grpc_client.evaluate(MOVING, "u1")["reason"] == "KILLED"
    assert ws_events.expect(MOVING, "killed")["flag"]["killed"] is True
    assert sdk.evaluate_flag(MOVING, "u1")["reason"] == "KILLED"
    assert private_redis.client().keys("faults:*flags:snapshot:production"), "the snapshot is cached in Redis again"
    assert_answers(STABLE, sdk.evaluate_flag, grpc_client.evaluate)
    assert ws_events.count("hello") == 1 and grpc_events.count("hello") == 1, "a live connection dropped"
