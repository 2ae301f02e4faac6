"""How long can a `matches` pattern take? A static bound on Python's backtracking, so one rule can
never stall a worker (operators.check_regex refuses, operators._build_matches bounds the input).

Python's ``re`` backtracks. What makes it slow is ambiguity: text that the pattern can split
between its repetitions in many ways, all tried before a search fails.

- Exponential: a repetition whose body can match the same text in more than one way, across its
  iterations: ``(a+)+``, ``(a|a)*``, ``(a|aa)*``, ``(.*)*``, ``(\\w+\\s?)*``, ``((a+))+``,
  ``(a?){25}``, a repeated group that can match empty text, a repeated back-reference. Refused.
- Polynomial: unbounded repetitions in a row that can trade characters (``.*.*.*=`` is n^3 on a
  line without "="); a search also tries every start position, one more factor of n unless the
  pattern starts with ``^`` or ``\\A``. The degree D is estimated below; D <= 2 is allowed.

Worst case after that: n^2 steps for a pattern of degree 2 on n characters, so the matcher scans
at most ``scan_length()`` characters: 4096 (the documented limit) for a pattern of degree 1, 512
for degree 2. tests/security/test_regex_stall.py times the worst allowed patterns on adversarial
1 MB values.

The estimate works on the parse tree (``re._parser``). Repetitions of single characters are
"units"; two units are linked (can trade characters) when their character sets overlap and no
mandatory item between them ends the first or starts the second with a character it cannot
match (``[a-z]+@[a-z]+`` has two unlinked units: "@" separates them), and when some character can
both end the first and start the second. A group of k linked unbounded units costs n^k at one
start position and leaves n^(k-1) ways for the rest of the pattern to retry, so D = 1 (the start
positions, unless anchored) + sum(k - 1) + 1, plus the degree of a lookaround (it runs at every
position the units before it reach). A repeated group is one unit when its iterations cannot split
the same text two ways (checked on two copies in a row); a repetition that ends the pattern is not
retried (once reached it succeeds). Bounded repetitions and overlapping alternatives count as
constant factors, capped per degree (MAX_FACTOR). Character sets
are compared exactly on every character the pattern names, all of ASCII, the case-folding
specials and a few non-ASCII representatives; any other characters only as "some other" (so two
sets that both may contain other characters count as overlapping). Where unsure, it assumes the
worse case: it may refuse a pattern that is in fact fast, never the reverse (up to the constant
factors, which the timing tests bound).
"""

import re
from functools import lru_cache

try:  # Python 3.11+
    from re import _casefix as _casefix
    from re import _constants as _c
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - older layouts
    import sre_constants as _c
    import sre_parse as _sre_parse

    _casefix = None

MAX_DEGREE = 2
FULL_SCAN = 4096  # characters scanned by a pattern of degree <= 1
QUADRATIC_SCAN = 512  # ... and by a pattern of degree 2
MAX_FACTOR = {0: 65536, 1: 64, 2: 2}  # constant factors (bounded repetitions, overlapping branches)
_UNBOUNDED_SPAN = 16  # a{0,16} and wider count as unbounded
_MAX_UNROLL = 16  # (x){2,16}: unrolled into copies
_MAX_ATOMS = 400  # after unrolling: beyond, "too complex to check"

EXPONENTIAL = ("has a repetition that can match the same text in more than one way, such as (a+)+, "
               "(a|aa)* or (.*)*, which can take exponential time")
POLYNOMIAL = ("has repetitions that can trade the same characters, such as .*.*= (each one more "
              "multiplies the time by the length of the text): anchor it with ^, or make the repeated "
              "parts match different characters")
TOO_COMPLEX = "is too complex to check for slow matching (too many repetitions or alternatives)"

_IGNORECASE = _c.SRE_FLAG_IGNORECASE
_ASCII = _c.SRE_FLAG_ASCII
_DOTALL = _c.SRE_FLAG_DOTALL
_MULTILINE = _c.SRE_FLAG_MULTILINE
_MAXREPEAT = _c.MAXREPEAT
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT}
if hasattr(_c, "POSSESSIVE_REPEAT"):
    _REPEATS.add(_c.POSSESSIVE_REPEAT)
_CHARS = {_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN}
_CATEGORIES = {
    _c.CATEGORY_DIGIT: "\\d", _c.CATEGORY_NOT_DIGIT: "\\D", _c.CATEGORY_SPACE: "\\s",
    _c.CATEGORY_NOT_SPACE: "\\S", _c.CATEGORY_WORD: "\\w", _c.CATEGORY_NOT_WORD: "\\W",
}
_POSITIVE_CATEGORIES = {_c.CATEGORY_DIGIT, _c.CATEGORY_SPACE, _c.CATEGORY_WORD}
# Characters compared exactly besides ASCII and the pattern's own: case-folding specials (sre's
# extra cases: Kelvin sign, long s, dotless i, ...) and one representative of the non-ASCII
# digits, spaces, letters, symbols and line breaks.
_SPECIALS = {"\u0130", "\u0131", "\u017f", "\u212a", "\u00b5", "\u03bc", "\u00df", "\u1e9e", "\u00e9",
             "\u0661", "\u00a0", "\u2028", "\u0085", "\u4e2d", "\U0001F600", "\u00c9", "\u03a3"}
if _casefix is not None:
    for _code, _others in _casefix._EXTRA_CASES.items():
        _SPECIALS.add(chr(_code))
        _SPECIALS.update(chr(other) for other in _others)


class Unsafe(Exception):
    pass


class _Chars:
    """A character set: ``known`` (exact, over the probe characters) and ``other`` (it may contain
    characters outside them)."""

    __slots__ = ("known", "other")

    def __init__(self, known, other):
        self.known = known
        self.other = other

    def overlaps(self, that):
        return bool(self.known & that.known) or (self.other and that.other)

    def __or__(self, that):
        return _Chars(self.known | that.known, self.other or that.other)


_NOTHING = _Chars(frozenset(), False)


class _Atom:
    """One item of a flattened sequence."""

    __slots__ = ("chars", "first", "last", "min", "max", "weight", "span", "look", "factor", "anchor", "simple")

    def __init__(self, chars=None, first=None, last=None, min=0, max=0, weight=0, span=1, look=0, factor=1,
                 anchor=None, simple=False):
        self.chars = chars  # None: zero width
        self.first = first if first is not None else chars
        self.last = last if last is not None else chars
        self.min = min
        self.max = max  # None: unbounded
        self.weight = weight  # > 0: an unbounded unit (its degree)
        self.span = span  # > 1: a bounded unit (that many ways to end)
        self.look = look  # degree of a lookaround's body
        self.factor = factor  # constant ways through (overlapping branches)
        self.anchor = anchor  # AT code for anchors
        self.simple = simple  # a repetition of one character set


class _Summary:
    __slots__ = ("atoms", "degree", "rescan", "factor", "ways", "ambiguous", "min", "max", "chars", "first",
                 "last")


class _Analyzer:
    def __init__(self, pattern, flags, parsed=()):
        self.flags = flags
        self.probes = self._probes(pattern, parsed)
        self.atoms = 0

    @staticmethod
    def _probes(pattern, parsed):
        """ASCII, the specials, the pattern's characters and every character of its small ranges
        (so "[Ā-ă]" and "[ā-ą]" compare exactly), each with its simple case variants."""
        chars = {chr(code) for code in range(128)} | _SPECIALS | set(pattern)
        stack = [parsed]
        while stack:
            for op, av in stack.pop():
                if op is _c.IN:
                    for item_op, item_av in av:
                        if item_op is _c.RANGE and item_av[1] - item_av[0] < 512:
                            chars.update(chr(code) for code in range(item_av[0], item_av[1] + 1))
                        elif item_op is _c.RANGE:
                            chars.update((chr(item_av[0]), chr(item_av[1])))
                elif op is _c.LITERAL or op is _c.NOT_LITERAL:
                    chars.add(chr(av))
                elif isinstance(av, (tuple, list)):
                    stack.extend(part for part in av if isinstance(part, _sre_parse.SubPattern))
                    for part in av:  # BRANCH: (None, [alternatives])
                        if isinstance(part, list):
                            stack.extend(alt for alt in part if isinstance(alt, _sre_parse.SubPattern))
                elif isinstance(av, _sre_parse.SubPattern):
                    stack.append(av)
        for ch in list(chars):
            for variant in (ch.lower(), ch.upper(), ch.casefold(), ch.swapcase()):
                if len(variant) == 1:
                    chars.add(variant)
        return "".join(sorted(chars))

    # ---- character sets -----------------------------------------------------------------------

    def charset(self, op, av, flags):
        source, other = self._class_source(op, av, flags)
        return self._members(source, flags & (_IGNORECASE | _ASCII | _DOTALL), other)

    @lru_cache(maxsize=1024)
    def _members(self, source, flags, other):
        match = re.compile(source, flags).fullmatch
        return _Chars(frozenset(ch for ch in self.probes if match(ch)), other)

    def _class_source(self, op, av, flags):
        ignorecase = bool(flags & _IGNORECASE)
        if op is _c.ANY:
            return ".", True
        if op is _c.LITERAL:
            return _escape(av), ignorecase and not chr(av).isascii() and _cased(chr(av))
        if op is _c.NOT_LITERAL:
            return "[^" + _escape(av) + "]", True
        parts, other = [], False
        for item_op, item_av in av:
            if item_op is _c.NEGATE:
                parts.insert(0, "^")
                other = True
            elif item_op is _c.LITERAL:
                parts.append(_escape(item_av))
                other = other or (ignorecase and not chr(item_av).isascii() and _cased(chr(item_av)))
            elif item_op is _c.RANGE:
                low, high = item_av
                parts.append(_escape(low) + "-" + _escape(high))
                inside = sum(1 for ch in self.probes if low <= ord(ch) <= high)
                other = other or inside < high - low + 1 or (ignorecase and high > 127)
            elif item_op is _c.CATEGORY:
                parts.append(_CATEGORIES.get(item_av, "."))
                other = other or not (flags & _ASCII and item_av in _POSITIVE_CATEGORIES)
            else:
                raise Unsafe(TOO_COMPLEX)
        return "[" + "".join(parts) + "]" if parts else "[^\\s\\S]", other

    # ---- the tree -----------------------------------------------------------------------------

    def sequence(self, items, flags):
        """The flattened atoms of a parsed sequence."""
        atoms = []
        for op, av in items:
            if op in _CHARS:
                chars = self.charset(op, av, flags)
                atoms.append(_Atom(chars, min=1, max=1))
            elif op is _c.AT:
                atoms.append(_Atom(anchor=av))
            elif op is _c.SUBPATTERN:
                _group, add, remove, body = av
                atoms.extend(self.sequence(body, (flags | add) & ~remove))
            elif hasattr(_c, "ATOMIC_GROUP") and op is _c.ATOMIC_GROUP:
                atoms.extend(self.sequence(av, flags))
            elif op is _c.BRANCH:
                atoms.append(self.branch([self.summary(self.sequence(alt, flags)) for alt in av[1]]))
            elif op is _c.GROUPREF_EXISTS:
                _group, yes, no = av[:3]
                alternatives = [self.summary(self.sequence(yes, flags)),
                                self.summary(self.sequence(no, flags) if no is not None else [])]
                atoms.append(self.branch(alternatives))
            elif op in _REPEATS:
                atoms.extend(self.repeat(av, flags))
            elif op in (_c.ASSERT, _c.ASSERT_NOT):
                inner = self.summary(self.sequence(av[1], flags))
                atoms.append(_Atom(look=max(inner.degree, 0), factor=inner.factor))
            elif op is _c.GROUPREF:  # a back-reference: any text, any length
                everything = _Chars(frozenset(self.probes), True)
                atoms.append(_Atom(everything, min=0, max=None, weight=1))
            elif op is _c.FAILURE:
                continue
            else:
                raise Unsafe(TOO_COMPLEX)
            self.atoms += 1
            if self.atoms > _MAX_ATOMS:
                raise Unsafe(TOO_COMPLEX)
        return atoms

    def branch(self, alternatives):
        chars = first = last = _NOTHING
        for alt in alternatives:
            chars, first, last = chars | alt.chars, first | alt.first, last | alt.last
        exclusive = all(alt.min > 0 for alt in alternatives) and all(
            not a.first.overlaps(b.first) for i, a in enumerate(alternatives) for b in alternatives[i + 1:])
        factor = max(alt.factor for alt in alternatives) * (1 if exclusive else len(alternatives))
        maxes = [alt.max for alt in alternatives]
        return _Atom(chars, first, last, min=min(alt.min for alt in alternatives),
                     max=None if None in maxes else max(maxes), weight=max(alt.degree for alt in alternatives),
                     factor=factor)

    def repeat(self, av, flags):
        low, high, body_items = av
        if high == 0:
            return []
        body_atoms = self.sequence(body_items, flags)
        body = self.summary(body_atoms)
        unbounded = high == _MAXREPEAT or high - low >= _UNBOUNDED_SPAN
        single = (len(body_atoms) == 1 and body_atoms[0].chars is not None and body_atoms[0].min == 1
                  and body_atoms[0].max == 1 and body_atoms[0].weight == 0 and body_atoms[0].span == 1)
        if single:
            atom = body_atoms[0]
            if low == high:
                return [_Atom(atom.chars, min=low, max=high)]
            if unbounded:
                return [_Atom(atom.chars, min=low, max=None, weight=1, simple=True)]
            return [_Atom(atom.chars, min=low, max=high, span=high - low + 1, simple=True)]
        if body.max == 0:  # zero width (anchors, lookarounds)
            if high > 1:  # (?=x)+ inside a repetition: every count of it matches the same (no) text
                raise Unsafe(EXPONENTIAL)
            return [_Atom(look=max(body.degree, 0), factor=2 * body.factor)]
        if high == 1:  # (x)?: absent, or any of the ways x can end
            return [_Atom(body.chars, body.first, body.last, min=0, max=body.max, weight=body.degree,
                          span=body.ways + 1, factor=body.factor)]
        if not unbounded and high <= _MAX_UNROLL:
            atoms = []
            for _ in range(low):
                atoms.extend(self.sequence(body_items, flags))
            optional = _Atom(body.chars, body.first, body.last, min=0, max=body.max, weight=body.degree,
                             span=body.ways + 1, factor=body.factor)
            atoms.extend([optional] * (high - low))
            self.atoms += high
            if self.atoms > _MAX_ATOMS:
                raise Unsafe(TOO_COMPLEX)
            return atoms
        # Many or unbounded iterations of a group: fine only if the iterations cannot split the
        # same text in more than one way (each one non-empty, two in a row unambiguous).
        if body.min == 0:
            raise Unsafe(EXPONENTIAL)
        twice = self.summary(body_atoms + self.sequence(body_items, flags))
        if twice.ambiguous or body.ambiguous:
            raise Unsafe(EXPONENTIAL)
        # Each iteration consumes its own part of the text (linear in all); a lookaround in the body
        # re-reads beyond it on every iteration: one more factor of n per degree of the lookaround.
        return [_Atom(body.chars, body.first, body.last, min=low * body.min, max=None, weight=1 + body.rescan)]

    def summary(self, atoms):
        """Degree, factor and shape of a sequence of atoms, analyzed on its own."""
        result = _Summary()
        result.atoms = atoms
        consuming = [i for i, atom in enumerate(atoms) if atom.chars is not None]
        units = [i for i in consuming if atoms[i].weight or atoms[i].span > 1]
        # Barriers: a mandatory item whose first character the unit before it cannot match ends
        # that unit there; one whose last character the unit after it cannot match starts it there.
        ends_before = {}
        for u in units:
            ends_before[u] = len(atoms)
            for m in consuming:
                if m > u and atoms[m].min > 0 and not atoms[m].first.overlaps(atoms[u].chars):
                    ends_before[u] = m
                    break
        starts_after = {}
        for v in units:
            starts_after[v] = -1
            for m in reversed(consuming):
                if m < v and atoms[m].min > 0 and not atoms[m].last.overlaps(atoms[v].chars):
                    starts_after[v] = m
                    break
        parent = {u: u for u in units}

        def root(u):
            while parent[u] != u:
                parent[u] = parent[parent[u]]
                u = parent[u]
            return u

        for i, u in enumerate(units):
            for v in units[i + 1:]:
                # Trading characters moves their boundary: a character both can take must be able to
                # end the first and start the second.
                if (v < ends_before[u] and u > starts_after[v] and atoms[u].chars.overlaps(atoms[v].first)
                        and atoms[u].last.overlaps(atoms[v].chars)):
                    parent[root(v)] = root(u)
        groups = {}
        for u in units:
            groups.setdefault(root(u), []).append(atoms[u])
        degree = sum(max(0, sum(a.weight for a in group) - 1) for group in groups.values())
        factor = 1
        ambiguous = False
        for group in groups.values():
            if len(group) > 1:
                ambiguous = True
                for atom in group:
                    factor *= atom.span
        # Scanning: n for the units; a lookaround runs at every position the units before it reach
        # (n of them), each time at its own degree: added, not the larger of the two.
        work = (1 if any(atoms[u].weight for u in units) else 0) + max([a.look for a in atoms] + [0])
        ways = 1  # how many ends the bounded choices give, linked or not (for (x)? around it)
        for atom in atoms:
            factor *= atom.factor
            ways *= atom.span * atom.factor
        result.ways = min(ways, 10**6)
        result.degree = degree + work
        result.rescan = degree + max([a.look for a in atoms] + [a.weight - 1 for a in atoms if a.weight > 1] + [0])
        result.factor = factor
        result.ambiguous = ambiguous or factor > 1
        result.min = sum(a.min for a in atoms if a.chars is not None)
        maxes = [a.max for a in atoms if a.chars is not None]
        result.max = None if None in maxes else sum(maxes)
        chars = _NOTHING
        for i in consuming:
            chars = chars | atoms[i].chars
        result.chars = chars
        result.first = self._edge(atoms, consuming, "first")
        result.last = self._edge(atoms, list(reversed(consuming)), "last")
        return result

    @staticmethod
    def _edge(atoms, order, side):
        edge = _NOTHING
        for i in order:
            edge = edge | getattr(atoms[i], side)
            if atoms[i].min > 0:
                break
        return edge


def _escape(code):
    return f"\\U{code:08x}"


def _cased(ch):
    return ch.lower() != ch.upper()


@lru_cache(maxsize=4096)
def analyze(pattern, case_insensitive=False):
    """(degree, factor) of a compilable pattern; raises Unsafe with the reason when refused."""
    parsed = _sre_parse.parse(pattern, re.IGNORECASE if case_insensitive else 0)
    flags = parsed.state.flags
    analyzer = _Analyzer(pattern, flags, parsed)
    atoms = analyzer.sequence(parsed, flags)
    # A repetition of one character set that ends the pattern never makes the rest retry: once
    # reached with its minimum available it succeeds (and fails at once otherwise). It costs what a
    # plain character does ("\\d+" scans once; ".+@.+" has one trading pair fewer than it seems).
    while atoms and atoms[-1].simple:
        last = atoms.pop()
        if last.min:
            atoms.append(_Atom(last.chars, min=1, max=1))
            break
    summary = analyzer.summary(atoms)
    first = next((atom for atom in atoms if atom.chars is not None or atom.anchor is not None), None)
    anchored = first is not None and first.anchor is not None and (
        first.anchor == _c.AT_BEGINNING_STRING or (first.anchor == _c.AT_BEGINNING and not flags & _MULTILINE))
    degree = summary.degree + (0 if anchored else 1)
    if degree > MAX_DEGREE:
        raise Unsafe(POLYNOMIAL)
    if summary.factor > MAX_FACTOR[degree]:
        raise Unsafe(POLYNOMIAL if degree else TOO_COMPLEX)
    return degree, summary.factor


def problem(pattern, case_insensitive=True):
    """Why the (compilable) pattern could stall a worker, or None. Case-insensitive by default: the
    stricter analysis, right whatever the rule's caseInsensitive says."""
    try:
        analyze(pattern, case_insensitive)
    except Unsafe as exc:
        return str(exc)
    except Exception:  # anything unforeseen in the analysis refuses the pattern, never a 500
        return TOO_COMPLEX
    return None


def scan_length(pattern, case_insensitive=False):
    """How much of a context value the pattern may scan, or None when it must not run at all (a
    stored rule validated before these checks existed)."""
    try:
        degree, _factor = analyze(pattern, case_insensitive)
    except Exception:  # Unsafe, or unforeseen: the rule matches nobody rather than risk a stall
        return None
    return FULL_SCAN if degree <= 1 else QUADRATIC_SCAN
