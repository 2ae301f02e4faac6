"""The edge relay (relay/, issue 21) as real processes: primary -> relay A -> relay B."""

import httpx

from tests.relay.conftest import wait_until


def evaluate(server, key, flag, user="u1", context=None):
    return httpx.post(f"{server.http_url}/api/evaluate", json={"flagId": flag, "userId": user, "context": context or {}},
                      headers={"Authorization": f"Bearer {key}"}, timeout=5)


def test_relays__evaluate__same_answer_as_primary(topology):
    answers = [evaluate(server, topology.sdk_key, "relay-flag").json() for server in topology.servers]
    assert answers[0]["enabled"] is True
    assert answers[1] == answers[0] and answers[2] == answers[0]
