"""Prometheus metrics of the gRPC process (`manage.py grpcserver --metrics-port N`).

- ``flagsite_grpc_requests_total{method, code}``: FlagService calls by method and status code.
- ``flagsite_grpc_request_duration_seconds{method}``: time in the service (auth, evaluation,
  response), unary methods only, the HTTP histogram's buckets.
- ``flagsite_grpc_watch_streams``: open WatchFlags streams.
- ``flagsite_grpc_unary_queue``: unary calls waiting for a unary thread (the histogram starts
  when a thread takes the call; a queue that stays above zero means the process is saturated).
- Everything flagsite/ops/metrics.py reads at scrape time from in-process state, so the same
  ``flagsite_evaluations_total{environment, flag, enabled, variant}`` (the analytics recorder's
  exact counters), ``flagsite_snapshot_version``, ``flagsite_snapshot_check_age_seconds``,
  ``flagsite_analytics_pending_evaluations`` and the process metrics.

Per call the cost is a few dict operations on the calling thread's own tallies (~0.4 us, no lock;
prometheus_client's Counter + Histogram take a lock each, ~1.1 us, ~10% of an evaluation's own
Python time); the collector sums every thread's tallies at scrape time. Calls grpcio refuses before
the service sees them (a message over the size limit, an unknown method) are not counted.
"""

import threading
import weakref
from bisect import bisect_left

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from flagsite.ops.metrics import BUCKETS

_BOUNDS = tuple(float(bound) for bound in BUCKETS)
_SLOTS = len(_BOUNDS) + 1  # one per bucket, then +Inf


class _Tally:
    """One thread's counts: written only by that thread, read (copied) by the collector."""

    __slots__ = ("calls", "latency")

    def __init__(self):
        self.calls = {}  # (method, code name) -> calls
        self.latency = {}  # method -> [sum of seconds, count per bucket ..., count over the last bound]


_local = threading.local()
_tallies = []  # every thread's _Tally (threads come and go; their counts stay)
_tallies_lock = threading.Lock()


def _tally():
    tally = _Tally()
    with _tallies_lock:
        _tallies.append(tally)
    _local.tally = tally
    return tally


def record_call(method, code_name, seconds=None, _bisect=bisect_left, _bounds=_BOUNDS):
    """Count one call; `seconds` (unary calls) goes into the latency histogram."""
    try:
        tally = _local.tally
    except AttributeError:
        tally = _tally()
    key = (method, code_name)
    calls = tally.calls
    calls[key] = calls.get(key, 0) + 1
    if seconds is not None:
        latency = tally.latency.get(method)
        if latency is None:
            latency = tally.latency[method] = [0.0] + [0] * _SLOTS
        latency[0] += seconds
        latency[_bisect(_bounds, seconds) + 1] += 1


class GrpcCollector:
    def __init__(self):
        self.services = weakref.WeakSet()  # FlagService instances of this process (open stream counts)
        self.unary_pools = weakref.WeakSet()  # their unary ThreadPoolExecutors (queued calls)

    def collect(self):
        calls, latency = {}, {}
        with _tallies_lock:
            tallies = list(_tallies)
        for tally in tallies:
            for key, n in dict(tally.calls).items():  # dict(): one atomic copy under the GIL
                calls[key] = calls.get(key, 0) + n
            for method, values in dict(tally.latency).items():
                values = list(values)
                total = latency.setdefault(method, [0.0] + [0] * _SLOTS)
                for index, value in enumerate(values):
                    total[index] += value
        requests = CounterMetricFamily("flagsite_grpc_requests", "gRPC FlagService calls by method and status code",
                                       labels=["method", "code"])
        for (method, code), n in sorted(calls.items()):
            requests.add_metric([method, code], n)
        yield requests
        histogram = HistogramMetricFamily("flagsite_grpc_request_duration_seconds",
                                          "Time gRPC FlagService unary calls spent in the service", labels=["method"])
        for method, values in sorted(latency.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*map(floatToGoString, _BOUNDS), "+Inf"), values[1:]):
                cumulative += n
                buckets.append((bound, cumulative))
            histogram.add_metric([method], buckets, values[0])
        yield histogram
        streams = GaugeMetricFamily("flagsite_grpc_watch_streams", "Open gRPC WatchFlags streams in this process")
        streams.add_metric([], sum(service.stream_count() for service in list(self.services)))
        yield streams
        queued = GaugeMetricFamily("flagsite_grpc_unary_queue", "gRPC unary calls waiting for a unary thread")
        queued.add_metric([], sum(pool._work_queue.qsize() for pool in list(self.unary_pools)))
        yield queued


collector = GrpcCollector()
REGISTRY.register(collector)
