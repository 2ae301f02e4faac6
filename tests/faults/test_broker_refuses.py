"""The Celery broker (Redis) refuses analytics batches for a while: no real services needed."""

import base64
from types import SimpleNamespace

from analytics import tasks
from analytics.counters import Recorder
from analytics.hll import HyperLogLog


def evaluation(flag):
    return SimpleNamespace(reason="STATIC", environment="production", flag_id=flag, variant=None, enabled=True)


def test_broker_down__counts_are_kept_one_row_per_key__and_sent_once_when_it_returns(monkeypatch):
    """Evaluations counted while the broker is down reach the rollups after it returns, each
    once; the batch kept meanwhile does not grow with every failed flush (a long outage would
    otherwise cost memory per flush and one huge batch at the end)."""
    recorder, sent = Recorder(), []

    def broker_down(batch):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.rollup_batch, "delay", broker_down)
    for flush in range(3):
        for user in ("u1", "u2", f"only-in-flush-{flush}"):
            recorder.record(evaluation("a"), user)
        recorder.record(evaluation("b"), "u1")
        assert recorder.flush() == 0
    pending = recorder._pending
    assert sorted(row[1] for row in pending["counts"]) == ["a", "b"] and len(pending["users"]) == 2
    assert recorder.pending_evaluations() == 12

    monkeypatch.setattr(tasks.rollup_batch, "delay", sent.append)
    assert recorder.flush() == 12
    assert recorder.pending_evaluations() == 0 and recorder.flush() == 0
    [batch] = sent
    assert {row[1]: row[-1] for row in batch["counts"]} == {"a": 9, "b": 3}
    users = {row[1]: HyperLogLog.from_bytes(base64.b64decode(row[-1])).count() for row in batch["users"]}
    assert users == {"a": 5, "b": 1}
