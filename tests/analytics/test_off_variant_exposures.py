"""An off variant (served while a flag is off) is not an exposure: on_variant sees variants served on."""

from feature_flag_client.engine import compile_snapshot

from analytics.counters import Recorder

VARIANTS = [{"key": "new", "weight": 100, "value": 2}, {"key": "old", "weight": 0, "value": 1}]


def test_off_variant_results_do_not_reach_on_variant():
    recorder = Recorder()
    seen = []
    recorder.on_variant = lambda evaluation, user_id, second: seen.append((evaluation.variant, user_id))
    snapshot = compile_snapshot([
        {"key": "off", "kind": "multivariate", "enabled": False, "rules": [], "variants": VARIANTS, "offVariant": "old"},
        {"key": "on", "kind": "multivariate", "enabled": True, "rules": [], "variants": VARIANTS, "offVariant": "old"},
    ], environment="production", version=1)
    for key in ("off", "on"):
        recorder.record(snapshot.evaluate(key, "alice"), "alice", {})
    assert seen == [("new", "alice")]
