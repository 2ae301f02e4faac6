"""The grpcio server shape, with no Django import: `grpc_api.server.FlagServer` builds on it, and so
does bench/grpc.py's do-nothing floor servicer, so both are measured on the same construction."""

import functools
import gc
import os
from concurrent.futures import ThreadPoolExecutor

import grpc
from feature_flag_client._proto import flags_pb2
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

MAX_MESSAGE_BYTES = 1024 * 1024
UNARY_THREADS = 4
SERVICE_NAME = flags_pb2.DESCRIPTOR.services_by_name["FlagService"].full_name


def server_options(reuse_port=False):
    return [
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 30_000),  # pings keep idle WatchFlags streams (and proxies) alive
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def build_server(threads, reuse_port=False, unary_threads=UNARY_THREADS):
    """(grpc.Server, its call-thread executor, the unary executor).

    Two pools: `threads` for WatchFlags streams (each holds its thread while open), health and
    reflection; `unary_threads` for Evaluate and EvaluateBulk (add_flag_service). One process
    runs Python on one GIL, so more unary threads add no throughput, only contention: at 50
    concurrent calls (bench/grpc.py, 2 cores), 4 unary threads instead of the 64 shared ones cut
    the server's CPU per call by ~20-30% and raised calls/s by ~20%, for the do-nothing servicer
    and for Evaluate alike. Calls beyond the pool wait in its queue, in arrival order.
    """
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc-call")
    unary = ThreadPoolExecutor(max_workers=unary_threads, thread_name_prefix="grpc-unary")
    return grpc.server(executor, options=server_options(reuse_port)), executor, unary


def _on(pool, behavior):
    """The behavior, run on `pool` (grpcio's per-method `experimental_thread_pool` hook)."""
    bound = functools.partial(behavior)
    bound.experimental_thread_pool = pool
    return bound


def add_flag_service(server, servicer, unary_pool):
    """flags.v1.FlagService's handlers, as flags_pb2_grpc.add_FlagServiceServicer_to_server adds
    them, with Evaluate, EvaluateBulk and Track on `unary_pool` (WatchFlags on the server's pool)."""
    handlers = {
        "Evaluate": grpc.unary_unary_rpc_method_handler(
            _on(unary_pool, servicer.Evaluate), request_deserializer=flags_pb2.EvaluateRequest.FromString,
            response_serializer=flags_pb2.EvaluateResponse.SerializeToString),
        "EvaluateBulk": grpc.unary_unary_rpc_method_handler(
            _on(unary_pool, servicer.EvaluateBulk), request_deserializer=flags_pb2.EvaluateBulkRequest.FromString,
            response_serializer=flags_pb2.EvaluateBulkResponse.SerializeToString),
        "WatchFlags": grpc.unary_stream_rpc_method_handler(
            servicer.WatchFlags, request_deserializer=flags_pb2.WatchFlagsRequest.FromString,
            response_serializer=flags_pb2.WatchFlagsEvent.SerializeToString),
        "Track": grpc.unary_unary_rpc_method_handler(
            _on(unary_pool, servicer.Track), request_deserializer=flags_pb2.TrackRequest.FromString,
            response_serializer=flags_pb2.TrackReply.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def add_standard_services(server, service_names):
    """Health (answers for "" and every name given) and reflection; returns the HealthServicer."""
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return health_servicer


def settle_heap():
    """After start-up: move everything allocated so far out of the cyclic GC's reach.

    A Django process holds ~150k long-lived objects (modules, models, settings, compiled
    snapshots); each full collection walked all of them (~100 ms with the GIL held, a latency
    spike for every call in flight). Frozen, they are never walked again; new garbage still is.
    The price: a frozen object that later becomes part of an unreachable cycle is never freed (the
    start-up snapshots, once each, when their environment first changes). For a server process
    (`manage.py grpcserver`), not for a test process that starts many servers.
    """
    gc.collect()
    gc.freeze()


def pin_to_cpu(index):
    """Pin every thread of this process to one CPU: the index-th (round robin) of those it may use.

    For `grpcserver --workers N --pin-cpus`, worker i on CPU i. Each call hops between grpcio's
    polling thread and a unary thread under one GIL; left to roam, those threads wake each other
    across cores and migrate. Pinned (bench/grpc.py --workers 2 with and without --pin-cpus, back
    to back, twice, 2 cores), Evaluate served 23-46% more calls/s at 50 concurrent calls with about
    half the p99 (~23 -> 12-14 ms), and 22% more at 1; the do-nothing servicer 39-44% more at 50.
    The price: a worker cannot move off a core that something else keeps busy. Returns the CPU.
    """
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[index % len(allowed)]
    for thread_id in os.listdir("/proc/self/task"):  # threads started so far; later ones inherit it
        try:
            os.sched_setaffinity(int(thread_id), {cpu})
        except ProcessLookupError:  # a thread that ended meanwhile
            pass
    return cpu
