"""Build, start and gracefully stop the gRPC server (used by `manage.py grpcserver` and tests)."""

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from flags.live import ThreadWatcher
from flags.models import Environment
from flags.snapshot import get_snapshot
from grpc_api.servicer import FlagService, release_connection
from grpc_api.stubs import flags_pb2, flags_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = flags_pb2.DESCRIPTOR.services_by_name["FlagService"].full_name
MAX_MESSAGE_BYTES = 1024 * 1024
UNARY_RESERVE = 16  # pool threads WatchFlags streams may never take, so evaluations keep flowing


class FlagServer:
    """A grpc.Server with FlagService, health and reflection on one port."""

    def __init__(self, address="0.0.0.0:50051", *, threads=64, reuse_port=False, watcher=None):
        if threads <= UNARY_RESERVE:
            raise ValueError(f"threads must be more than {UNARY_RESERVE}")
        self.watcher = watcher or ThreadWatcher()
        self.service = FlagService(self.watcher, max_streams=threads - UNARY_RESERVE)
        self.health = health.HealthServicer()
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc-call")
        self.server = grpc.server(self.executor, options=[
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),  # pings keep idle WatchFlags streams (and proxies) alive
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ])
        flags_pb2_grpc.add_FlagServiceServicer_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"could not bind {address}")

    def start(self):
        """Warm every environment's snapshot and the watcher, then accept calls and report SERVING."""
        for environment in Environment.objects.values_list("key", flat=True):
            get_snapshot(environment)
        self.watcher.start()
        release_connection()
        self.server.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self

    def stop(self, grace=10.0):
        """Graceful: report NOT_SERVING, refuse new calls, end watch streams, finish in-flight calls."""
        self.health.enter_graceful_shutdown()
        self.service.close_streams()
        self.server.stop(grace).wait()
        self.watcher.stop()
        self.executor.shutdown(wait=False)
