"""A serving process is killed with SIGKILL while it counts evaluations and takes writes."""

import threading
import time

import httpx
import pytest

from .conftest import audit_actions, flag_row, server_env, verify_audit, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.usefixtures("stores_up")]

FLAG = "sigkill-counted"
FLUSH_SECONDS = 1.0
SLACK = 1.0  # a flush's own duration, and the scheduling of a busy machine


FLUSH_WAITING = """SELECT 1 FROM pg_stat_activity
    WHERE wait_event_type = 'Lock' AND starts_with(query, 'INSERT INTO "analytics_evaluationrollup"')"""


def rollup_total(postgres):
    return postgres.query("SELECT coalesce(sum(evaluations), 0) FROM analytics_evaluationrollup WHERE flag_key = %s",
                          FLAG)[0][0]


class Evaluator(threading.Thread):
    """Evaluates FLAG in a loop, keeping the time of every answered evaluation."""

    def __init__(self, url, key):
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=5)
        self.answered, self.stop = [], threading.Event()

    def run(self):
        with self.http:
            while not self.stop.is_set():
                try:
                    response = self.http.post("/api/evaluate", json={"flagId": FLAG, "userId": "u1"})
                except httpx.TransportError:  # the process is gone
                    return
                assert response.status_code == 200, response.text
                self.answered.append(time.monotonic())


def test_sigkill__loses_at_most_one_flush_interval_of_counts__never_a_flag_change_or_audit_entry(
        private_postgres, site, servers, cleanup):
    """Evaluation counts are flushed every FLAGS_ANALYTICS_FLUSH_SECONDS: a crash in the middle of
    a flush (SIGKILL, so no atexit flush either) loses at most the last interval's counts and
    counts nothing twice; every flag change answered before the crash is in PostgreSQL with its
    audit entry, and the audit chain verifies."""
    web = servers("web", **server_env(private_postgres, FLAGS_ANALYTICS_FLUSH_SECONDS=FLUSH_SECONDS))  # eager rollups
    admin = cleanup.enter_context(httpx.Client(base_url=f"{web.http_url}/api", timeout=10,
                                               params={"environment": "production"},
                                               headers={"Authorization": f"Bearer {site['token']}"}))
    response = admin.post("/flags", json={"key": FLAG, "name": "Counted", "states": {"production": {"enabled": True}}})
    assert response.status_code == 201, response.text

    evaluator = Evaluator(web.http_url, site["sdk"])
    evaluator.start()
    cleanup.callback(evaluator.stop.set)
    wait_until(lambda: rollup_total(private_postgres) > 0, timeout=10, what="a first flush")
    toggled = []
    for enabled in (False, True, False, True):  # flag changes while counting, each answered 200
        response = admin.patch(f"/flags/{FLAG}/toggle", json={"enabled": enabled})
        assert response.status_code == 200, response.text
        toggled.append(enabled)
    time.sleep(2 * FLUSH_SECONDS)  # more flushes: most of what was answered so far must be counted

    # Hold the rollup table so that the next flush blocks inside its transaction, then kill there.
    with private_postgres.connect() as lock:
        lock.autocommit = False
        lock.execute("LOCK TABLE analytics_evaluationrollup IN EXCLUSIVE MODE")
        wait_until(lambda: private_postgres.query(FLUSH_WAITING), timeout=FLUSH_SECONDS + 10, what="a flush waiting")
        web.kill()  # the granian server and its worker, mid-flush
        killed_at = time.monotonic()
        lock.rollback()  # the killed flush's transaction can never commit: its client is gone
    evaluator.join(10)

    counted = rollup_total(private_postgres)
    answered = len(evaluator.answered)
    old_enough = sum(at < killed_at - FLUSH_SECONDS - SLACK for at in evaluator.answered)
    print(f"answered {answered}, counted {counted}, lost {answered - counted}, "
          f"answered more than {FLUSH_SECONDS + SLACK}s before the kill {old_enough}")
    assert old_enough <= counted <= answered
    assert flag_row(private_postgres, FLAG)[0] is toggled[-1]
    assert audit_actions(private_postgres, FLAG) == ["flag.created"] + ["flag.toggled"] * len(toggled)
    verify_audit(private_postgres)
