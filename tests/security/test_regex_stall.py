"""One `matches` rule cannot stall a worker.

- The validator refuses patterns whose backtracking is exponential ((a+)+, (a|aa)*, (.*)*, ...) or
  worse than quadratic (.*.*.*=), and patterns over 256 characters: through the engine and through
  the REST write paths (400 with the rule's field path, nothing written).
- The matcher reads at most 4096 characters of a context value (512 for a quadratic pattern).
- The worst patterns the validator allows, against 1 MB adversarial values, evaluate within
  EVALUATION_BOUND each (time.perf_counter, best of REPEATS so a busy machine's scheduling is not
  counted), through the engine and through POST /api/evaluate; and so do random patterns
  (hypothesis, derandomized) whenever the validator accepts them.
"""

import json
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_flag_client.engine import compile_snapshot, regex_safety, validate_rules
from feature_flag_client.engine.operators import MAX_MATCHED_LENGTH, MAX_REGEX_LENGTH, OPERATORS, check_regex
from flags.models import FlagState
from tests.api.conftest import assert_error, create_flag, create_segment, db_state

EVALUATION_BOUND = 0.050  # seconds, per evaluation
REPEATS = 3
MB = 1_000_000

CATASTROPHIC = [
    "(a+)+$", "(a|aa)*$", "(.*)*$", "(a|a)*$", "((a+))+$", "((a)+)+$", "(a*)*b", "(\\w+\\s?)*$", "^(\\w+\\s?)*$",
    "(x+x+)+y", "(?:a|a)*b", "(a|b|ab)*c", "(\\d|\\d\\d)+$", "^(a?){25}a{25}$", "(.*a){20}", "(a{1,100}){1,100}$",
    "(?:(?:a*)b?)*c", "(a*)\\1*$", "(.+)\\1+x", "((?=.?)+[^b]{2})+x", "(?:a?b?)*c", "(a|a?)+b", "([a-z]+\\.?)+@",
    # polynomial, degree 3 and more
    ".*.*x", ".*.*.*=", "a*a*a*a*a*b", "\\d+\\d+\\d+x", "a.*b.*c.*d", "\\w*\\s*\\w*$", "[\\s\\S]*[\\s\\S]*x",
    "^(.*?,){11}P", "(?:.*,){12}x", "a{0,4096}a{0,4096}a{0,4096}b", "^\\S+@\\S+\\.\\S+$", ".*(?=.*x)",
]


def custom_matches(pattern, **extra):
    return {"type": "custom", "field": "v", "operator": "matches", "value": pattern, **extra}


def adversarial_values(scan):
    """1 MB values whose first ``scan`` characters are runs of one character (or pair) ending with a
    character that fails (a pattern ending in $ or a literal then backtracks through all of it)."""
    values = []
    for run in ["a", "1", " ", ".", "@", "b", "x", "ab", "a@", "a.", "a ", "1.", "A", "aa=", "@."]:
        head = (run * scan)[: scan - 1] + "!"
        values.append(head + run * ((MB - scan) // len(run)))
    return values


def best_time(function, *args):
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        function(*args)
        best = min(best, time.perf_counter() - started)
    return best


# ---- the validator ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", CATASTROPHIC)
@pytest.mark.parametrize("case_insensitive", [False, True])
def test_catastrophic_pattern__refused_with_the_reason(pattern, case_insensitive):
    errors = validate_rules([custom_matches(pattern, caseInsensitive=case_insensitive)])

    assert [path for path, _ in errors] == ["rules[0].value"], errors
    assert "exponential" in errors[0][1] or "trade the same characters" in errors[0][1]


def test_pattern_over_256_characters__refused_before_any_analysis():
    assert MAX_REGEX_LENGTH == 256
    assert "256" in check_regex("a" * 257)
    assert check_regex("a" * 256) is None


def test_quadratic_only_when_case_insensitive__refused_then_only():
    """[a-z]+ and [A-Z]+ trade characters only when case folds: the rule's caseInsensitive counts."""
    pattern = "[a-z]+[A-Z]+x"

    assert validate_rules([custom_matches(pattern)]) == []
    assert validate_rules([custom_matches(pattern, caseInsensitive=True)])[0][0] == "rules[0].value"


@pytest.mark.parametrize("pattern", [
    "^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$", "@example\\.com$", ".*@example\\.com", "^user-\\d+$", "\\d+",
    "^(free|pro|enterprise)$", "Chrome/(\\d+)", "(iPhone|iPad).*OS (\\d+)_(\\d+)", "^https?://[^/]+/checkout",
    "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", "^(\\d{1,3}\\.){3}\\d{1,3}$",
    "^v?\\d+\\.\\d+\\.\\d+(-[0-9A-Za-z.-]+)?$", "^(?:[a-z0-9-]+\\.)+example\\.com$", "^[a-z]+(-[a-z]+)*$",
    "^(?!test-).*", "^(\\w+)\\s\\1$", ".+@.+", "^.+\\.(png|jpe?g)$", "(?i)googlebot|bingbot", "^\\s*$",
    "^((25[0-5]|2[0-4]\\d|1?\\d?\\d)\\.){3}(25[0-5]|2[0-4]\\d|1?\\d?\\d)$", "^[\\w.+-]+@[\\w-]+\\.[\\w.]+$",
])
def test_everyday_patterns__accepted_either_case(pattern):
    assert check_regex(pattern, case_insensitive=False) is None
    assert check_regex(pattern, case_insensitive=True) is None


# ---- the matcher's window --------------------------------------------------------------------------


def test_matcher__reads_at_most_4096_characters():
    assert MAX_MATCHED_LENGTH == regex_safety.FULL_SCAN == 4096
    test = OPERATORS["matches"].build("needle", False)  # degree 1: the full window

    assert test("x" * 4090 + "needle" + "x" * MB) is True
    assert test("x" * 4091 + "needle" + "x" * MB) is False  # would end past character 4096


def test_matcher__quadratic_pattern_reads_512():
    assert regex_safety.scan_length(".*needle", False) == regex_safety.QUADRATIC_SCAN == 512
    test = OPERATORS["matches"].build(".*needle", False)

    assert test("x" * 506 + "needle") is True
    assert test("x" * 507 + "needle") is False


def test_stored_unsafe_pattern__compiles_to_a_rule_that_matches_nobody_fast():
    """A rule stored before these checks (or written around the validator) never runs its regex."""
    snapshot = compile_snapshot(flags=[{"key": "legacy", "enabled": True, "rules": [custom_matches("(a|aa)*$")]}],
                                segments={}, environment="production", version=1)

    elapsed = best_time(snapshot.evaluate, "legacy", "u1", {"v": "a" * MB})

    assert snapshot.evaluate("legacy", "u1", {"v": "a" * 40 + "!"}).enabled is False
    assert elapsed < EVALUATION_BOUND


# ---- the worst allowed patterns, timed -------------------------------------------------------------

# Found by exploring random patterns (the worst constant factors: capturing groups, case folding,
# lookaheads, bounded repetitions next to unbounded ones) plus the classic quadratic shapes.
WORST_ALLOWED = [
    ".*x", "[a-z]+@", "(\\w|\\d)+$", "(?i)[a-z]+x", "([a-z]+)x", "\\s*$", "[^b]*b{3,}$", "(a*?)?a\\.+?",
    "([A-Za-z0-9._%+-]{2}[a-z]{3,}((\\.[a-z]*){2})+?\\s?)", "^.*.*x", "^(\\w+)\\s\\1$", "(?=.*x)", "(?=\\w*x)\\w",
    ".*b{2}(?i:A){0,20}\\W{2}", "(?i)(a|b)+x", "(?:ab|cd)+x", "[^@]+@[^@]+\\.x", "^[ab]*a?a?a?a?a?a?x",
    "^.*[ab]{0,15}[bc]{0,3}x", "^(a?){16}a{16}$", "^(a|a){16}x", "^(\\d{1,3}\\.){3}\\d{1,3}x",
    "^((25[0-5]|2[0-4]\\d|1?\\d?\\d)\\.){3}(25[0-5]|2[0-4]\\d|1?\\d?\\d)$", "^(?:(?=\\w)\\w)+x",
]


@pytest.mark.parametrize("pattern", WORST_ALLOWED)
def test_worst_allowed_pattern__1mb_adversarial_values__each_evaluation_within_bound(pattern):
    assert check_regex(pattern, case_insensitive=True) is None
    flags = [{"key": f"f{i}", "enabled": True, "rules": [custom_matches(pattern, caseInsensitive=ci)]}
             for i, ci in enumerate((False, True))]
    snapshot = compile_snapshot(flags=flags, segments={}, environment="production", version=1)
    scan = regex_safety.scan_length(pattern, True)

    slowest = 0.0
    for value in adversarial_values(scan) + adversarial_values(regex_safety.FULL_SCAN):
        for flag in ("f0", "f1"):
            slowest = max(slowest, best_time(snapshot.evaluate, flag, "u1", {"v": value}))

    assert slowest < EVALUATION_BOUND, f"{pattern!r}: {slowest * 1000:.1f} ms"


@pytest.mark.django_db
def test_worst_allowed_patterns__through_post_api_evaluate__each_within_bound(sdk_api):
    for index, pattern in enumerate(WORST_ALLOWED):
        create_flag(f"re-{index}", states={"production": {"enabled": True, "rules": [custom_matches(pattern)]}})
    bodies = []
    for index, pattern in enumerate(WORST_ALLOWED):
        for value in adversarial_values(regex_safety.scan_length(pattern, False))[:6]:
            bodies.append((pattern, json.dumps({"flagId": f"re-{index}", "userId": "u1", "context": {"v": value}})))
    # The same 1 MB request with a pattern that only scans: the cost of the request itself.
    create_flag("plain", states={"production": {"enabled": True, "rules": [custom_matches("^zz")]}})
    baseline = json.dumps({"flagId": "plain", "userId": "u1", "context": {"v": "a" * MB}})

    def post(body):
        response = sdk_api.post("/api/evaluate", body)
        assert response.status_code == 200, response.content[:300]

    request_cost = best_time(post, baseline)
    slowest, total = 0.0, 0.0
    for pattern, body in bodies:
        elapsed = best_time(post, body)
        total += elapsed
        slowest = max(slowest, elapsed)
        assert elapsed < EVALUATION_BOUND + request_cost, f"{pattern!r}: {elapsed * 1000:.1f} ms"
    assert total / len(bodies) < EVALUATION_BOUND


@pytest.mark.django_db
@pytest.mark.parametrize("method, path, body, field", [
    ("patch", "/api/flags/existing", {"rules": [custom_matches("(a+)+$")]}, "rules[0].value"),
    ("patch", "/api/flags/existing", {"rules": [{"type": "all", "rules": [custom_matches("(a|aa)*$")]}]},
     "rules[0].rules[0].value"),
    ("post", "/api/flags", {"name": "x", "rules": [custom_matches("(.*)*$")]}, "rules[0].value"),
    ("post", "/api/flags", {"name": "x", "states": {"staging": {"rules": [custom_matches(".*.*.*=")]}}},
     "states.staging.rules[0].value"),
    ("put", "/api/flags/existing", {"name": "x", "enabled": True, "rules": [custom_matches("((a+))+")]},
     "rules[0].value"),
    ("post", "/api/segments", {"name": "s", "conditions": [custom_matches("(\\w+\\s?)*$")]}, "conditions[0].value"),
    ("patch", "/api/segments/existing-segment", {"conditions": [custom_matches("(a|a)*$")]}, "conditions[0].value"),
    ("patch", "/api/flags/existing", {"rules": [custom_matches("[a-z]+[A-Z]+x", caseInsensitive=True)]},
     "rules[0].value"),
    ("patch", "/api/flags/existing", {"rules": [custom_matches("a" * 257)]}, "rules[0].value"),
])
def test_rest_write__catastrophic_pattern__400_with_field_path_and_nothing_written(
        editor_api, method, path, body, field):
    create_segment("existing-segment", {"plan": "premium"})
    create_flag("existing", states={"production": {"enabled": True}})
    before = db_state()

    response = getattr(editor_api, method)(path + "?environment=production", body)

    error = assert_error(response, 400, "validation_error", field)
    assert error["message"].startswith(field)
    assert db_state() == before


@pytest.mark.django_db
def test_rest_write__same_pattern_case_sensitive__accepted(editor_api):
    create_flag("existing", states={"production": {"enabled": True}})

    response = editor_api.patch("/api/flags/existing?environment=production",
                                {"rules": [custom_matches("[a-z]+[A-Z]+x")]})

    assert response.status_code == 200
    state = FlagState.objects.get(flag__key="existing", environment__key="production")
    assert state.rules[0]["value"] == "[a-z]+[A-Z]+x"


# ---- random patterns: whatever the validator accepts is fast ----------------------------------------

PIECES = ["a", "b", ".", "[ab]", "[a-z]", "\\w", "\\d", "\\s", "[^b]", "\\W", "x", "@", "\\.", "[^@]", "(?i:A)",
          "\\b", "$", "\\1", "[A-Za-z0-9._%+-]"]
QUANTIFIERS = ["*", "+", "?", "{1,3}", "{2}", "{0,20}", "*?", "+?", "{3,}", "", "", ""]


@st.composite
def patterns(draw, depth=0):
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["piece"] * 5 + ["group", "alternation", "lookahead"] if depth < 2 else ["piece"]))
        if kind == "piece":
            item = draw(st.sampled_from(PIECES))
        elif kind == "group":
            item = "(" + draw(patterns(depth + 1)) + ")"
        elif kind == "alternation":
            item = "(?:" + "|".join(draw(st.lists(patterns(depth + 1), min_size=2, max_size=3))) + ")"
        else:
            item = "(?=" + draw(patterns(depth + 1)) + ")"
        parts.append(item + draw(st.sampled_from(QUANTIFIERS)))
    prefix = draw(st.sampled_from(["", "", "^"])) if depth == 0 else ""
    return prefix + "".join(parts)


@settings(max_examples=300, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(pattern=patterns(), case_insensitive=st.booleans())
def test_any_pattern_the_validator_accepts__evaluates_within_bound(pattern, case_insensitive):
    try:
        re.compile(pattern)
    except re.error:
        return
    if check_regex(pattern, case_insensitive=case_insensitive) is not None:
        return
    test = OPERATORS["matches"].build(pattern, case_insensitive)
    runs = sorted(set(re.findall(r"[a-zA-Z@.0-9 ]", pattern)) | {"a", "ab", "a@"})
    scan = regex_safety.scan_length(pattern, case_insensitive)
    for run in runs:
        value = ((run * scan)[: scan - 1] + "!") + run * ((MB - scan) // len(run))
        elapsed = best_time(test, value)
        assert elapsed < EVALUATION_BOUND, f"{pattern!r} on {run!r}...: {elapsed * 1000:.1f} ms"
