"""What a web server process (a granian ASGI worker; daphne under runserver) does before it takes requests."""

import gc
import logging

from django.db import connection

logger = logging.getLogger(__name__)


def prepare_web_process():
    """Import the views and compile every environment's snapshot (or the first request pays it: 0.8 s with device
    rules, bench/attack.py's slowest request after a worker restart), then settle the heap.

    Warming is an optimisation, never a reason to refuse to start (a database not reachable or not
    migrated yet, or a test process that imports the app with the database blocked): the first
    request compiles then, as before. As grpc_api.transport.settle_heap: the loaded app (~150k
    objects that never become garbage) is moved out of the collector's reach, so full collections
    stop pausing requests for tens of ms (bench/rest.py: p99 at c=50 from ~30-80 ms to ~20 ms)."""
    from django.urls import get_resolver

    from flags import snapshot
    from flagsite import sso

    sso.refuse_bad_settings()  # the web server runs no `manage.py check`: a broken sign-in stops it here
    get_resolver().url_patterns  # imports every view now (0.1 s), not on the first request
    try:
        snapshot.warm_up()
    except Exception as exc:
        logger.warning("snapshots not compiled at start-up (%s): the first request compiles them", exc)
    finally:
        if not connection.in_atomic_block:  # (a test importing the app inside its transaction)
            connection.close()  # this thread serves no request; a forked worker must not share the socket
    gc.collect()
    gc.freeze()
