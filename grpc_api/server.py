"""Build, start and gracefully stop the gRPC server (used by `manage.py grpcserver` and tests)."""

import logging

from grpc_health.v1 import health_pb2

from flags.live import ThreadWatcher
from flags import snapshot
from grpc_api import metrics
from grpc_api.servicer import FlagService, release_connection
from grpc_api.transport import SERVICE_NAME, UNARY_THREADS, add_flag_service, add_standard_services, build_server

logger = logging.getLogger(__name__)

UNARY_RESERVE = 16  # threads of the server's pool WatchFlags streams leave to health and reflection


class FlagServer:
    """A grpc.Server with FlagService, health and reflection on one port."""

    def __init__(self, address="0.0.0.0:50051", *, threads=64, unary_threads=UNARY_THREADS, reuse_port=False,
                 watcher=None):
        if threads <= UNARY_RESERVE:
            raise ValueError(f"threads must be more than {UNARY_RESERVE}")
        if unary_threads < 1:
            raise ValueError("unary threads must be at least 1")
        self.watcher = watcher or ThreadWatcher()
        self.service = FlagService(self.watcher, max_streams=threads - UNARY_RESERVE)
        self.server, self.executor, self.unary_executor = build_server(threads, reuse_port, unary_threads)
        add_flag_service(self.server, self.service, self.unary_executor)
        metrics.collector.unary_pools.add(self.unary_executor)
        self.health = add_standard_services(self.server, (SERVICE_NAME,))
        self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"could not bind {address}")

    def start(self):
        """Warm every environment's snapshot and the watcher, then accept calls and report SERVING."""
        snapshot.warm_up()
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
        self.unary_executor.shutdown(wait=False)
