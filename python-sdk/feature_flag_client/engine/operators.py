"""Custom-attribute operators: how each checks its rule value and how it tests a context value.

One table (``OPERATORS``) serves both the validator and the compiler. A test built here gets a
context value that is present (not None) and answers True (match), False (no match) or None (the
value has the wrong type for this operator). Positive operators match on True only; the negated
ones (``not_equals``, ``not_in``) match on False only, so a wrong-typed value matches neither.
"""

import ipaddress
import re
from datetime import datetime, timezone
from functools import lru_cache

from . import regex_safety

MAX_REGEX_LENGTH = 256
# A regex never scans more than this much of a context value (it runs on RE2: linear time).
MAX_MATCHED_LENGTH = regex_safety.FULL_SCAN
MAX_LIST_LENGTH = 10000

_SCALARS = (str, int, float, bool)


class Operator:
    __slots__ = ("name", "check", "build", "negated", "needs_value")

    def __init__(self, name, check, build, negated=False, needs_value=True):
        self.name = name
        self.check = check  # rule value -> error message or None
        self.build = build  # (rule value, case_insensitive) -> test(context value)
        self.negated = negated
        self.needs_value = needs_value


# ---- value checks (write time) -------------------------------------------------------------

def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_scalar(value):
    if not isinstance(value, _SCALARS):
        return "must be a string, number or boolean"
    return None


def _check_scalar_list(value):
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of strings or numbers"
    if len(value) > MAX_LIST_LENGTH:
        return f"must have at most {MAX_LIST_LENGTH} items"
    if not all(isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in value):
        return "must be a non-empty list of strings or numbers"
    return None


def _check_strings(value):
    if isinstance(value, str):
        return None
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return None
    return "must be a string or a non-empty list of strings"


def _check_number(value):
    return None if _is_number(value) else "must be a number"


def _check_date(value):
    if isinstance(value, str) and parse_datetime(value) is not None:
        return None
    return "must be an ISO-8601 date or datetime, e.g. 2025-01-31 or 2025-01-31T12:00:00Z"


def _check_semver(value):
    if isinstance(value, str) and parse_semver(value) is not None:
        return None
    return "must be a semantic version such as 1.2.3 or 2.0.0-beta.1"


def _check_cidrs(value):
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of CIDR blocks or IP addresses"
    for item in value:
        if not isinstance(item, str) or _network(item) is None:
            return f"{item!r} is not a CIDR block or IP address"
    return None


def check_regex(value, case_insensitive=True):
    """Why a `matches` pattern is refused, or None: not a string, over 256 characters, invalid, or
    using what the linear-time engine cannot run (regex_safety: lookarounds, back-references, ...).
    ``case_insensitive``: the rule's caseInsensitive (the default, True, makes the larger program)."""
    if not isinstance(value, str):
        return "must be a regular expression string"
    if len(value) > MAX_REGEX_LENGTH:
        return f"is longer than {MAX_REGEX_LENGTH} characters"
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"is not a valid regular expression: {exc}"
    return regex_safety.problem(value, case_insensitive)


def _check_nothing(value):
    return None


# ---- parsing helpers -------------------------------------------------------------------------

def parse_datetime(text):
    """Aware UTC datetime from ISO-8601 text, or None."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


@lru_cache(maxsize=4096)
def parse_semver(text):
    """A sortable key for a semantic version (SemVer 2.0 precedence), or None."""
    if not isinstance(text, str) or len(text) > 256:
        return None
    match = _SEMVER.match(text)
    if not match:
        return None
    major, minor, patch, pre = match.groups()
    if pre is None:
        # A release sorts after every pre-release of the same version.
        return (int(major), int(minor), int(patch), 1, ())
    identifiers = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split(".")
    )
    return (int(major), int(minor), int(patch), 0, identifiers)


@lru_cache(maxsize=4096)
def _network(text):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


@lru_cache(maxsize=65536)
def _address(text):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _as_number(value):
    if value.__class__ is int or value.__class__ is float:
        return value
    if value.__class__ is str and len(value) < 64:
        try:
            return float(value)
        except ValueError:
            return None
    return None


# ---- test builders (compile time) -------------------------------------------------------------

def _fold(value):
    return value.casefold() if isinstance(value, str) else value


def _build_equals(expected, case_insensitive):
    if case_insensitive and isinstance(expected, str):
        folded = expected.casefold()

        def test(v):
            if v.__class__ is str:
                return v.casefold() == folded
            return False if isinstance(v, _SCALARS) else None

        return test
    if isinstance(expected, bool):
        def test(v):
            if v.__class__ is bool:
                return v is expected
            return False if isinstance(v, _SCALARS) else None

        return test

    def test(v):
        if v.__class__ is bool and not isinstance(expected, bool):
            return False  # True == 1 in Python; not in JSON
        if isinstance(v, _SCALARS):
            return v == expected
        return None

    return test


def _build_in(values, case_insensitive):
    if case_insensitive:
        members = frozenset(_fold(item) for item in values)

        def test(v):
            if isinstance(v, _SCALARS) and v.__class__ is not bool:
                return _fold(v) in members
            return False if v.__class__ is bool else None

        return test
    members = frozenset(values)

    def test(v):
        if v.__class__ is str:
            return v in members
        if v.__class__ is bool:
            return False
        if v.__class__ is int or v.__class__ is float:
            return v in members
        return None

    return test


def _string_builder(method):
    def build(value, case_insensitive):
        needles = tuple([value] if isinstance(value, str) else value)
        if case_insensitive:
            needles = tuple(needle.casefold() for needle in needles)

            def test(v):
                if v.__class__ is not str:
                    return None
                v = v.casefold()
                return any(method(v, needle) for needle in needles)

            return test

        def test(v):
            if v.__class__ is not str:
                return None
            return any(method(v, needle) for needle in needles)

        return test

    return build


def _build_matches(pattern, case_insensitive):
    search = regex_safety.compile_search(pattern, case_insensitive)
    if search is None:  # stored before these checks existed: never run it (matches nobody)
        return lambda v: None

    def test(v):
        if v.__class__ is not str:
            return None
        return search(v)

    return test


def _numeric_builder(compare):
    def build(threshold, case_insensitive):
        def test(v):
            number = _as_number(v)
            if number is None:
                return None
            return compare(number, threshold)

        return test

    return build


def _date_builder(compare):
    def build(value, case_insensitive):
        threshold = parse_datetime(value)

        def test(v):
            moment = parse_datetime(v)
            if moment is None:
                return None
            return compare(moment, threshold)

        return test

    return build


def _semver_builder(compare):
    def build(value, case_insensitive):
        threshold = parse_semver(value)

        def test(v):
            # parse_semver is lru_cached: an unhashable context value (list, object) must not reach it.
            version = parse_semver(v) if v.__class__ is str else None
            if version is None:
                return None
            return compare(version, threshold)

        return test

    return build


def _build_in_cidr(value, case_insensitive):
    networks = tuple(_network(item) for item in value)

    def test(v):
        if v.__class__ is not str:
            return None
        address = _address(v.strip())
        if address is None:
            return None
        return any(address.version == net.version and address in net for net in networks)

    return test


def _build_exists(value, case_insensitive):
    return lambda v: True


def _operators():
    table = [
        Operator("equals", _check_scalar, _build_equals),
        Operator("not_equals", _check_scalar, _build_equals, negated=True),
        Operator("in", _check_scalar_list, _build_in),
        Operator("not_in", _check_scalar_list, _build_in, negated=True),
        Operator("contains", _check_strings, _string_builder(str.__contains__)),
        Operator("starts_with", _check_strings, _string_builder(str.startswith)),
        Operator("ends_with", _check_strings, _string_builder(str.endswith)),
        Operator("matches", check_regex, _build_matches),
        Operator("gt", _check_number, _numeric_builder(lambda a, b: a > b)),
        Operator("gte", _check_number, _numeric_builder(lambda a, b: a >= b)),
        Operator("lt", _check_number, _numeric_builder(lambda a, b: a < b)),
        Operator("lte", _check_number, _numeric_builder(lambda a, b: a <= b)),
        Operator("before", _check_date, _date_builder(lambda a, b: a < b)),
        Operator("after", _check_date, _date_builder(lambda a, b: a > b)),
        Operator("semver_eq", _check_semver, _semver_builder(lambda a, b: a == b)),
        Operator("semver_gt", _check_semver, _semver_builder(lambda a, b: a > b)),
        Operator("semver_lt", _check_semver, _semver_builder(lambda a, b: a < b)),
        Operator("in_cidr", _check_cidrs, _build_in_cidr),
        Operator("exists", _check_nothing, _build_exists, needs_value=False),
        Operator("not_exists", _check_nothing, _build_exists, negated=True, needs_value=False),
    ]
    return {operator.name: operator for operator in table}


OPERATORS = _operators()
CASE_INSENSITIVE_OPERATORS = frozenset(
    ("equals", "not_equals", "in", "not_in", "contains", "starts_with", "ends_with", "matches")
)
