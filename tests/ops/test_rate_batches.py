"""Rate limits in batches (flagsite/api/throttling.py, issue 15): each process takes units from the
shared counter (the Django cache: Redis when REDIS_URL is set) limit/100 at a time and spends them
locally. Every test runs against the real shared counter on a frozen clock: behaviour, not timing."""

import random
import threading
import uuid

import pytest
from django.core.cache import cache

from flagsite.api import throttling
from flagsite.api.throttling import Allowance

START = 3600.0 * 300  # the start of an hour (and of a second): windows are whole periods from here


@pytest.fixture
def clock(monkeypatch):
    now = [START]
    monkeypatch.setattr(throttling.time, "time", lambda: now[0])
    return now


@pytest.fixture
def cache_calls(monkeypatch):
    """Every call the limiter makes to the shared cache, by name."""
    calls = []
    for name in ("incr", "add"):
        def wrapped(*args, _real=getattr(cache, name), _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)
        monkeypatch.setattr(cache, name, wrapped)
    return calls


@pytest.fixture
def ident():
    return f"key:{uuid.uuid4().hex}"


def spend(allowance, ident, calls, weight=1):
    """Charge ``calls`` calls: how many went ahead, and the Retry-After of the refused ones."""
    answers = [allowance.charge("evaluate", ident, weight) for _ in range(calls)]
    return sum(answer is None for answer in answers), {answer for answer in answers if answer is not None}


def test_batch_sized_limit__calls_past_it_answer_retry_after_without_asking_the_cache(settings, clock, cache_calls,
                                                                                     ident):
    # Given 1005/h: batches of 10, the last one only half within the limit
    settings.FLAGS_RATE_LIMIT_EVALUATE = "1005/h"
    allowance = Allowance()

    allowed, _ = spend(allowance, ident, 1005)
    asked = len(cache_calls)
    refused, waits = spend(allowance, ident, 50)

    assert allowed == 1005 and refused == 0
    assert waits == {3600}  # the rest of the window
    assert asked == 101 + 1  # 101 batches, plus the `add` that opened the window
    assert len(cache_calls) == asked  # refusals are this process's own: no round trip


def test_batch__a_call_heavier_than_what_is_left_takes_a_batch_big_enough(settings, clock, ident):
    settings.FLAGS_RATE_LIMIT_EVALUATE = "1000/h"
    allowance = Allowance()
    key = f"flags:rate:evaluate:{ident}:3600:{int(START // 3600)}"

    assert allowance.charge("evaluate", ident) is None
    assert cache.get(key) == 10  # one batch taken, 9 left here
    assert allowance.charge("evaluate", ident, 25) is None
    assert cache.get(key) == 10 + 16  # what was left, plus the 16 more the call needed
    assert allowance.charge("evaluate", ident, 3) is None
    assert cache.get(key) == 36  # nothing was left: a whole batch


def test_two_processes__never_over_the_limit_and_short_of_it_by_at_most_batch_minus_one_each(settings, clock, ident):
    settings.FLAGS_RATE_LIMIT_EVALUATE = "1000/h"
    limit, batch, processes = 1000, 10, [Allowance(), Allowance()]

    # calls spread at random over both processes, past the limit
    rng = random.Random(15)
    allowed = sum(rng.choice(processes).charge("evaluate", ident) is None for _ in range(3000))
    assert limit - len(processes) * (batch - 1) <= allowed <= limit

    # the worst case: one process takes a batch, spends one unit of it and sees no more calls
    other = f"{ident}-idle"
    first, second = Allowance(), Allowance()
    assert first.charge("evaluate", other) is None
    allowed, _ = spend(second, other, 2000)
    assert 1 + allowed == limit - (batch - 1)


def test_round_trips__about_one_per_hundred_calls_at_10000_per_second(settings, clock, cache_calls, ident):
    settings.FLAGS_RATE_LIMIT_EVALUATE = "10000/s"
    allowance = Allowance()

    allowed, _ = spend(allowance, ident, 10_000)

    assert allowed == 10_000
    assert cache_calls.count("incr") == 100 and cache_calls.count("add") == 1


def test_window_rollover__resets_the_budget_and_forgets_old_windows(settings, clock, ident):
    settings.FLAGS_RATE_LIMIT_EVALUATE = "300/s"
    allowance = Allowance()
    assert spend(allowance, ident, 310) == (300, {1})

    clock[0] += 1
    assert spend(allowance, ident, 310) == (300, {1})

    for _ in range(50):
        clock[0] += 1
        allowance.charge("evaluate", ident)
    assert len(allowance._windows) <= 2  # this window and the previous one, whatever ran before


def test_cache_down__calls_go_ahead_and_the_cache_is_asked_once(settings, clock, monkeypatch, ident):
    settings.FLAGS_RATE_LIMIT_EVALUATE = "1000/s"
    asked = []

    def down(*args, **kwargs):
        asked.append(args)
        raise ConnectionError("redis down")

    monkeypatch.setattr(cache, "incr", down)
    monkeypatch.setattr(cache, "add", down)

    assert spend(Allowance(), ident, 2000) == (2000, set())
    assert len(asked) == 1  # then left alone for CACHE_RETRY_SECONDS


def test_threads__one_allowance_shared_by_threads_admits_exactly_the_limit(settings, clock, ident):
    settings.FLAGS_RATE_LIMIT_EVALUATE = "1000/h"
    allowance, allowed = Allowance(), []

    def worker():
        allowed.append(spend(allowance, ident, 750)[0])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(allowed) == 1000


def test_batch_one__exact_as_before(settings, clock, cache_calls, ident):
    """Under 200 a window the batch is 1: one incr per call, weights charged as they are."""
    settings.FLAGS_RATE_LIMIT_EVALUATE = "12/h"
    allowance = Allowance()

    assert allowance.charge("evaluate", ident, 11) is None
    assert spend(allowance, ident, 3) == (1, {3600})
    assert cache_calls.count("incr") == 3  # the 11, the 1, the refused 1; then nothing
