"""Answers built once per engine result, not once per request.

A compiled snapshot prebuilds every result it can return (a handful per flag) and hands out the
same objects on every evaluation, so what a transport makes of a result (REST's JSON bytes, gRPC's
EvaluateResponse) can be made once and shared. Shared answers are never mutated.
"""

from feature_flag_client.engine.model import FLAG_NOT_FOUND
from rest_framework.compat import LONG_SEPARATORS, SHORT_SEPARATORS
from rest_framework.renderers import JSONRenderer


class PerResult:
    """`build(result)`, remembered per result object.

    Keyed by id() with an identity check, so a reused id() never answers for another result;
    results of replaced snapshots are dropped with the rest when the table fills up. FLAG_NOT_FOUND
    is the one result the engine makes per call (an unknown key): it is built and not kept, or a
    bulk call listing 1,000 unknown keys would empty the table for every other caller.
    """

    def __init__(self, build, size=4096):
        self._build = build
        self._size = size
        self._items = {}  # id(result) -> (result, built)

    def __call__(self, result):
        cached = self._items.get(id(result))
        if cached is not None and cached[0] is result:
            return cached[1]
        built = self._build(result)
        if result.reason == FLAG_NOT_FOUND:
            return built
        if len(self._items) >= self._size:
            self._items = {}
        self._items[id(result)] = (result, built)
        return built


_renderer = JSONRenderer()
_encode = _renderer.encoder_class(
    ensure_ascii=_renderer.ensure_ascii, allow_nan=not _renderer.strict,
    separators=SHORT_SEPARATORS if _renderer.compact else LONG_SEPARATORS).encode


def _render(data):
    """The bytes DRF's JSONRenderer().render(data) makes, without its per-call set-up: a bulk call
    listing 1,000 unknown keys renders 2,000 times (19 ms a call through render(), issue 14)."""
    return _encode(data).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def _json(result):
    body = _render(result.as_dict())
    return body, _render(result.flag_id) + b":" + body


_json_per_result = PerResult(_json)


def evaluation_json(result):
    """The REST body of one evaluation: {"flagId": ..., "enabled": ..., ...}."""
    return _json_per_result(result)[0]


def bulk_json(environment, version, results):
    """The REST body of a bulk evaluation: {"environment", "version", "flags": {key: evaluation}};
    a key listed twice appears once."""
    seen = set()
    members = []
    for result in results:
        if result.flag_id not in seen:
            seen.add(result.flag_id)
            members.append(_json_per_result(result)[1])
    head = _render({"environment": environment, "version": version})[:-1]  # open: "flags" follows
    return b"".join((head, b',"flags":{', b",".join(members), b"}}"))
