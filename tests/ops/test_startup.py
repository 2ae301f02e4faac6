"""A web server process compiles its snapshots before its first request (flagsite/ops/startup.py)."""

import gc
import logging

import pytest
from django.db import OperationalError

from flags import snapshot
from flagsite.ops import startup

DEVICE_RULE = [{"type": "device", "operator": "in", "value": ["mobile"]}]


@pytest.fixture
def unfreeze():
    yield
    gc.unfreeze()  # prepare_web_process froze this test process's heap


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the demo environments stay for later tests
def test_prepare_web_process__every_environment_compiled_before_the_first_request(make_flag, unfreeze):
    make_flag("mobile-only", rules=DEVICE_RULE)
    snapshot.reset()  # a new worker: nothing compiled yet

    startup.prepare_web_process()

    assert set(snapshot._entries) == {"development", "staging", "production"}
    compiled = snapshot._entries["production"].snapshot
    served = snapshot.get_snapshot("production")  # the first request: a version check at most
    assert served is compiled
    result = served.evaluate(
        "mobile-only", "u1", {"userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"})
    assert (result.enabled, result.reason) == (True, "TARGETING_MATCH")


def test_prepare_web_process__database_down__starts_and_says_why(monkeypatch, unfreeze, caplog):
    def down():
        raise OperationalError("connection refused")

    monkeypatch.setattr(snapshot, "warm_up", down)
    with caplog.at_level(logging.WARNING, logger="flagsite.ops.startup"):
        startup.prepare_web_process()
    assert "snapshots not compiled at start-up (connection refused)" in caplog.text
