"""`matches` patterns run on RE2, whose time is linear in the text: one rule can never stall a
worker, whatever the pattern (operators.check_regex refuses, operators._build_matches runs).

Why not a static check of Python's backtracking ``re``: the previous analysis here (a degree
estimate over the parse tree) accepted ``([^x]|a)*x``, which then took minutes on
``"a" * 30 + "!"``. Overlapping alternatives under a repetition are one case of a general
problem (ambiguity of the pattern's automaton, with classes, case folding, anchors and bounded
repetitions all interacting); an analysis that is right for every pattern ``re`` accepts is
a research project, and one missed case pins a CPU. RE2 never backtracks, so the bound holds by
construction (tests/security/test_regex_stall.py checks it on generated patterns).

The pattern keeps Python's meaning: it is parsed by Python's own parser and rewritten into RE2
syntax item by item, every character class spelled out as the code points Python would match
(``\\d``, ``\\w``, ``\\s`` as Unicode, ``caseInsensitive`` with Python's case folding), ``^`` as
the start of the text, ``$`` as the end or before a final newline. What RE2 cannot do is refused
when the rule is written, with the reason: lookarounds, back-references, conditionals, atomic
groups and possessive repetitions, ``$`` followed by more of the pattern, and repetitions over
1000 or patterns too large for RE2's memory budget. One difference is kept rather than refused:
``\\b`` / ``\\B`` count only ASCII letters, digits and _ as word characters (RE2 has no other word
boundary), so they differ from Python's only next to a non-ASCII letter or digit; refusing them
would break every ``\\bword\\b`` rule, Unleash imports included.

The matcher reads at most ``FULL_SCAN`` characters of a context value (the documented limit).
"""

import re
from functools import lru_cache

import re2

try:  # Python 3.11+
    from re import _casefix as _casefix
    from re import _constants as _c
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - older layouts
    import sre_constants as _c
    import sre_parse as _sre_parse

    _casefix = None

FULL_SCAN = 4096  # characters of a context value a pattern reads

LOOKAROUND = "uses a lookahead or lookbehind ((?=...), (?!...), (?<=...), (?<!...)), which is not supported"
BACKREFERENCE = "uses a back-reference or a conditional group (\\1, (?P=name), (?(1)...)), which is not supported"
ATOMIC = "uses an atomic group or a possessive repetition ((?>...), a*+), which is not supported"
DOLLAR = "has $ before more of the pattern: $ is only supported at the end (use \\n or (?m) for lines)"
TOO_LARGE = "is too large for the regular expression engine"  # + RE2's reason

_IGNORECASE = _c.SRE_FLAG_IGNORECASE
_ASCII = _c.SRE_FLAG_ASCII
_DOTALL = _c.SRE_FLAG_DOTALL
_MULTILINE = _c.SRE_FLAG_MULTILINE
_MAXREPEAT = _c.MAXREPEAT
_MAX_CODE = 0x10FFFF
_LAST_CASED = 0x1FFFF  # no code point above has another case (Unicode 15: the last is U+1E943)
_SURROGATES = (0xD800, 0xDFFF)  # not text in UTF-8: RE2 cannot name them
_CATEGORIES = {
    _c.CATEGORY_DIGIT: ("\\d", False), _c.CATEGORY_NOT_DIGIT: ("\\d", True),
    _c.CATEGORY_SPACE: ("\\s", False), _c.CATEGORY_NOT_SPACE: ("\\s", True),
    _c.CATEGORY_WORD: ("\\w", False), _c.CATEGORY_NOT_WORD: ("\\w", True),
}
_UNSUPPORTED = {_c.ASSERT: LOOKAROUND, _c.ASSERT_NOT: LOOKAROUND, _c.GROUPREF: BACKREFERENCE,
                _c.GROUPREF_EXISTS: BACKREFERENCE}
for _name in ("ATOMIC_GROUP", "POSSESSIVE_REPEAT"):
    if hasattr(_c, _name):
        _UNSUPPORTED[getattr(_c, _name)] = ATOMIC


class Refused(Exception):
    pass


# ---- sets of code points: sorted, disjoint, inclusive (low, high) ranges ---------------------------

def _normalize(ranges):
    merged = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _complement(ranges):
    result, start = [], 0
    for low, high in ranges:
        if low > start:
            result.append((start, low - 1))
        start = high + 1
    if start <= _MAX_CODE:
        result.append((start, _MAX_CODE))
    return result


def _points(codes):
    return _normalize((code, code) for code in codes)


@lru_cache(maxsize=2)
def _categories(ascii_only):
    """Python's own \\d, \\w and \\s (Unicode unless ASCII mode) as ranges: found by running ``re``
    over every code point, once."""
    if ascii_only:
        text, flags = "".join(map(chr, range(128))), re.ASCII
    else:
        text, flags = "".join(map(chr, range(_MAX_CODE + 1))), 0
    return {name: tuple((m.start(), m.end() - 1) for m in re.finditer(f"{name}+", text, flags))
            for name in ("\\d", "\\w", "\\s")}


@lru_cache(maxsize=1)
def _cased():
    """(cased, the ranges of all other code points): the cased code points are those whose
    case-insensitive matching can differ from their exact matching: those with another case (sre's
    simple mappings), their images and sre's extra cases."""
    import _sre

    codes = set()
    for code in range(_LAST_CASED + 1):
        ch = chr(code)
        # more than sre's simple mappings is harmless: these code points are only asked of re
        images = {_sre.unicode_tolower(code)} | {ord(v) for v in (ch.lower(), ch.upper(), ch.casefold()) if len(v) == 1}
        if images != {code}:
            codes.add(code)
            codes.update(images)
    if _casefix is not None:
        for code, others in _casefix._EXTRA_CASES.items():
            codes.add(code)
            codes.update(others)
    cased = tuple(sorted(codes))
    return cased, tuple(_complement(_points(cased)))


def _escape(code):
    return f"\\U{code:08x}"


# ---- Python's parse tree -> RE2 syntax ------------------------------------------------------------

class _Translator:
    def __init__(self):
        self.ascii_boundary = False

    def sequence(self, items, flags, at_end):
        out = []
        items = list(items)
        for index, (op, av) in enumerate(items):
            # "at the end": only more (non-multiline) $ follow this item in the whole pattern
            rest_is_dollars = all(o is _c.AT and a is _c.AT_END for o, a in items[index + 1:])
            out.append(self.item(op, av, flags, at_end and rest_is_dollars))
        return "".join(out)

    def item(self, op, av, flags, at_end):
        if op in _UNSUPPORTED:
            raise Refused(_UNSUPPORTED[op])
        if op in (_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN):
            return _class(_members(op, _freeze(av), flags & (_IGNORECASE | _ASCII | _DOTALL)))
        if op is _c.AT:
            return self.anchor(av, flags, at_end)
        if op is _c.SUBPATTERN:
            _group, add, remove, body = av
            return "(?:" + self.sequence(body, (flags | add) & ~remove, at_end) + ")"
        if op is _c.BRANCH:
            return "(?:" + "|".join(self.sequence(alt, flags, at_end) for alt in av[1]) + ")"
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            low, high, body = av
            inner = self.sequence(body, flags, at_end and high <= 1)
            if high == _MAXREPEAT:
                count = {0: "*", 1: "+"}.get(low, f"{{{low},}}")
            else:
                count = "?" if (low, high) == (0, 1) else f"{{{low},{high}}}"
            return "(?:" + inner + ")" + count + ("?" if op is _c.MIN_REPEAT else "")
        if op is _c.FAILURE:
            return "[^\\x00-\\x{10FFFF}]"
        raise Refused(f"uses {op}, which is not supported")

    def anchor(self, code, flags, at_end):
        multiline = bool(flags & _MULTILINE)
        if code is _c.AT_BEGINNING:
            return "(?m:^)" if multiline else "\\A"
        if code is _c.AT_BEGINNING_STRING:
            return "\\A"
        if code is _c.AT_END_STRING:
            return "\\z"
        if code is _c.AT_END:
            if multiline:
                return "(?m:$)"
            if not at_end:  # RE2 has no "before a final newline" that more pattern can follow
                raise Refused(DOLLAR)
            return "(?:\\n?\\z)"  # Python's $: the end, or before a final newline
        if code in (_c.AT_BOUNDARY, _c.AT_NON_BOUNDARY):
            # RE2's word boundary knows ASCII word characters only: the same as Python's on ASCII
            # text and in ASCII mode; next to a non-ASCII letter or digit, the one difference.
            return "\\b" if code is _c.AT_BOUNDARY else "\\B"
        raise Refused(f"uses {code}, which is not supported")


def _freeze(av):
    return tuple(av) if isinstance(av, list) else av


@lru_cache(maxsize=1024)
def _members(op, av, flags):
    """The code points one character item matches in Python: exactly from the parse tree, then,
    when case-insensitive, Python's own answer for every code point that has other cases."""
    source, ranges = _exact(op, av, flags)
    if not flags & _IGNORECASE:
        return tuple(ranges)
    match = re.compile(source, flags).fullmatch
    cased, uncased = _cased()
    kept = [(max(low, a), min(high, b)) for low, high in ranges for a, b in uncased
            if max(low, a) <= min(high, b)]
    return tuple(_normalize(kept + _points(code for code in cased if match(chr(code)))))


def _exact(op, av, flags):
    """(Python source for the item, its code points without case folding)."""
    if op is _c.ANY:
        return ".", [(0, _MAX_CODE)] if flags & _DOTALL else _complement([(10, 10)])
    if op is _c.LITERAL:
        return _escape(av), [(av, av)]
    if op is _c.NOT_LITERAL:
        return "[^" + _escape(av) + "]", _complement([(av, av)])
    parts, ranges, negate = [], [], False
    for item_op, item_av in av:
        if item_op is _c.NEGATE:
            negate = True
        elif item_op is _c.LITERAL:
            parts.append(_escape(item_av))
            ranges.append((item_av, item_av))
        elif item_op is _c.RANGE:
            parts.append(_escape(item_av[0]) + "-" + _escape(item_av[1]))
            ranges.append(tuple(item_av))
        elif item_op is _c.CATEGORY and item_av in _CATEGORIES:
            name, negated = _CATEGORIES[item_av]
            parts.append(name.upper() if negated else name)
            table = list(_categories(bool(flags & _ASCII))[name])
            ranges.extend(_complement(table) if negated else table)
        else:
            raise Refused(f"uses {item_op}, which is not supported")
    ranges = _normalize(ranges)
    source = "[" + ("^" if negate else "") + "".join(parts) + "]" if parts else ("[\\s\\S]" if negate else "[^\\s\\S]")
    return source, _complement(ranges) if negate else ranges


def _class(ranges):
    """RE2 syntax for a set of code points (surrogates left out: they are not UTF-8 text)."""
    low_s, high_s = _SURROGATES
    pieces = []
    for low, high in ranges:
        for a, b in ((low, min(high, low_s - 1)), (max(low, high_s + 1), high)):
            if a <= b:
                pieces.append(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}")
    if not pieces:
        return "[^\\x00-\\x{10FFFF}]"  # matches nothing
    if len(pieces) == 1 and "-" not in pieces[0]:
        return pieces[0]
    return "[" + "".join(pieces) + "]"


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported to the writer, not logged by RE2
_OPTIONS.never_capture = True  # only "is there a match" is asked
_UNANCHORED = re2._Anchor.UNANCHORED


def translate(pattern, case_insensitive=False):
    """The RE2 pattern that matches what Python's ``re`` would (``search``), or Refused(reason)."""
    parsed = _sre_parse.parse(pattern, re.IGNORECASE if case_insensitive else 0)
    return _Translator().sequence(parsed, parsed.state.flags, True)


@lru_cache(maxsize=4096)
def _compiled(pattern, case_insensitive):
    try:
        translated = translate(pattern, case_insensitive)
    except RecursionError:
        raise Refused(f"{TOO_LARGE} (nested too deeply)") from None
    # The binding's RE2 object itself: re2.compile's search() wraps every call in a generator and
    # a match object (5 us against 1 us for an email address), and only "found or not" is used.
    regexp = re2._re2.RE2(translated.encode(), _OPTIONS)
    if not regexp.ok():
        raise Refused(f"{TOO_LARGE} ({regexp.error().decode(errors='replace')})")
    return regexp


def problem(pattern, case_insensitive=False):
    """Why the (``re``-compilable) pattern cannot run on RE2, or None."""
    try:
        _compiled(pattern, case_insensitive)
    except Refused as exc:
        return str(exc)
    return None


def compile_search(pattern, case_insensitive=False):
    """test(text) -> whether the pattern occurs in the first FULL_SCAN characters of text, in time
    linear in them; None when the pattern is refused (a stored rule validated before it was)."""
    try:
        match = _compiled(pattern, case_insensitive).Match
    except Exception:  # Refused, or anything unforeseen: the rule matches nobody rather than fail
        return None

    def test(text):
        text = text[:FULL_SCAN]
        try:
            data = text.encode()
        except UnicodeEncodeError:  # lone surrogates are not UTF-8: they match as U+FFFD would
            data = re.sub("[\ud800-\udfff]", "\ufffd", text).encode()
        return match(_UNANCHORED, data, 0, len(data))[0][0] >= 0

    return test
