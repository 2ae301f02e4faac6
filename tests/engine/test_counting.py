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

def test_on_variant__every_variant_handed_to_a_known_user__counted_the_same():
    flags = FLAGS + [
        {"key": "only-b", "kind": "multivariate", "enabled": True,  # one variant takes everyone
         "variants": [{"key": "a", "weight": 0, "value": "A"}, {"key": "b", "weight": 100, "value": "B"}]},
        {"key": "off-ab", "kind": "multivariate", "enabled": False,
         "variants": [{"key": "a", "weight": 1, "value": "A"}, {"key": "b", "weight": 1, "value": "B"}]},
    ]
    seen = []
    snapshot = compile_snapshot(flags, {}, "production", 1, counting=True,
                                on_variant=lambda result, user: seen.append((result.flag_id, user, result.variant)))
    plain = compile_snapshot(flags, {}, "production", 1)
    for key in ("on", "half", "ab", "only-b", "off-ab", "missing"):
        for user in ("u1", "u2", None):
            assert snapshot.evaluate(key, user, {}) is not None
        snapshot.evaluate(key, None, {"userId": "u3"})  # the user id from the context
    expected = [(key, user, plain.evaluate(key, user).variant) for key in ("ab", "only-b") for user in ("u1", "u2", "u3")]
    assert seen == expected and {variant for *_, variant in seen[3:]} == {"b"}
    assert sum(snapshot.hit_counts().values()) == 6 * 4  # counted as before
