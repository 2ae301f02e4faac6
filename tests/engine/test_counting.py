"""Counting snapshots: every evaluation counted exactly, from any number of threads."""

import threading

from feature_flag_client.engine import compile_snapshot

FLAGS = [
    {"key": "on", "enabled": True},
    {"key": "half", "enabled": True, "rules": [{"type": "percentage", "operator": "less_than", "value": 50}]},
    {"key": "ab", "kind": "multivariate", "enabled": True,
     "variants": [{"key": "a", "weight": 1, "value": "A"}, {"key": "b", "weight": 1, "value": "B"}]},
]


def test_counting_snapshot__threads_evaluating__counts_exact_per_flag_variant_and_outcome():
    snapshot = compile_snapshot(FLAGS, {}, "production", 1, counting=True)
    plain = compile_snapshot(FLAGS, {}, "production", 1)
    expected = {}

    def work(offset):
        for i in range(20_000):
            for key in ("on", "half", "ab", "missing"):
                snapshot.evaluate(key, f"user-{offset}-{i}", {})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in range(4):
        for i in range(20_000):
            for key in ("on", "half", "ab", "missing"):
                result = plain.evaluate(key, f"user-{n}-{i}", {})
                slot = (result.flag_id, result.variant, result.enabled)
                expected[slot] = expected.get(slot, 0) + 1

    assert dict(snapshot.hit_counts()) == expected
    assert sum(expected.values()) == 4 * 20_000 * 4


def test_plain_snapshot__counts_nothing():
    snapshot = compile_snapshot(FLAGS, {}, "production", 1)
    snapshot.evaluate("on", "u1", {})
    assert snapshot.hit_counts() == {}
