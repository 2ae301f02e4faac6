"""The relay's parts without servers: the outbox (bounded, retried with the same batch id), the
ingest validation, the state's staleness and its snapshot file."""

import json
import time

import pytest

from flags.errors import ValidationFailed
from relay import ingest
from relay.outbox import Outbox
from relay.state import RelayState

HOUR = int(time.time()) // 3600


def counts(n, env="production"):
    return {"counts": [[env, "f", None, True, HOUR, n]], "users": []}


def test_outbox__bounded__oldest_dropped_and_counted(settings):
    settings.FLAGS_RELAY_OUTBOX_MAX = 2
    outbox = Outbox()
    outbox.start = lambda: None  # no sender thread here
    for n in (1, 2, 3):
        outbox.put("counts", counts(n))
    assert outbox.pending() == 2 and outbox.dropped == 1 and outbox.dropped_items == 1
    assert [b["counts"]["counts"][0][-1] for b in outbox._batches] == [2, 3]


def test_outbox__failed_post_kept__retried_with_the_same_batch_id(settings):
    settings.FLAGS_RELAY_OUTBOX_MAX = 10
    outbox = Outbox()
    outbox.start = lambda: None
    outbox.put("counts", counts(5))
    outbox.put("events", [["production", "buy", "u1", None, 1.0, {}, "e1", 1.0]])
    posted, answers = [], [RuntimeError("upstream down"), None, None]

    def post(batch):
        posted.append(batch["batch"])
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    outbox._post = post
    assert outbox.send_pending() == 0 and outbox.pending() == 2 and outbox.failures == 1
    assert outbox.send_pending() == 2 and outbox.pending() == 0
    assert posted[0] == posted[1] != posted[2]  # the retry carried the same id: counted once upstream


def test_ingest_parse__clear_field_errors_and_environment_scope():
    with pytest.raises(ValidationFailed) as refused:
        ingest.parse({"batch": "short", "counts": {"counts": [["production", "f", None, "yes", HOUR, 1]]},
                      "events": "nope", "extra": 1}, ["production"])
    assert set(refused.value.fields) == {"batch", "counts", "events", "extra"}
    with pytest.raises(ValidationFailed):
        ingest.parse({"batch": "b" * 10, "counts": {"counts": [], "users": [["production", "f", HOUR, "!!"]]}},
                     ["production"])
    with pytest.raises(PermissionError, match="staging"):
        ingest.parse({"batch": "b" * 10, "counts": counts(1, "staging")}, ["production"])
    batch = ingest.parse({"batch": "b" * 10, "counts": counts(2), "exposures": []}, ["production"])
    assert batch == {"batch": "b" * 10, "counts": counts(2), "events": [], "exposures": []}


def test_state__stale_after_the_threshold__and_through_a_chain(settings):
    settings.FLAGS_RELAY_STALE_SECONDS = 5
    state = RelayState()
    state.mark_connected(True)
    assert state.age() == 0 and not state.stale()
    state.upstream_synced_at = time.time() - 10  # our upstream lost its own upstream 10 s ago
    assert state.stale() and 9 < state.age() < 12
    state.upstream_synced_at = None
    state.mark_connected(False)
    state.disconnected_at = state.synced_at = time.time() - 6
    assert state.stale() and state.age() >= 6


def test_state__snapshot_file_round_trip__and_refuses_another_file(tmp_path, settings):
    settings.FLAGS_RELAY = "http://upstream"
    state = RelayState()
    payload = {"environment": "production", "version": 7, "flags": [], "segments": {}}
    state.put_payload(payload)
    state.put_keys([{"hash": "ab" * 32, "kind": "sdk", "id": 1, "prefix": "sdk_prod", "environment": "production",
                     "project": "default", "environments": []}], "v1")
    path = tmp_path / "snapshot.json"
    state.save(path)
    loaded = RelayState()
    assert loaded.load(path) is True
    assert loaded.payload("production") == payload and loaded.key("ab" * 32)["prefix"] == "sdk_prod"
    assert loaded.loaded_from_file and loaded.keys_version == "v1"
    assert RelayState().load(tmp_path / "missing.json") is False
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"flags": []}))
    with pytest.raises(ValueError):
        RelayState().load(other)
