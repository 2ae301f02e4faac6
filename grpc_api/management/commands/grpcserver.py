"""`manage.py grpcserver [--port 50051] [--workers N]`: flags.v1.FlagService with plain grpcio.

With --workers N, N processes share the port (SO_REUSEPORT; the kernel spreads connections), so
every core serves: this process supervises them and forwards SIGTERM / SIGINT. Each worker keeps
its own in-memory snapshot and watcher. SIGTERM: health turns NOT_SERVING, new calls are refused,
WatchFlags streams end (clients reconnect), in-flight calls finish within --grace seconds.
"""

import os
import signal
import subprocess
import sys
import threading

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Serve flags.v1.FlagService (gRPC) with health and reflection."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("GRPC_HOST", "0.0.0.0"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("GRPC_PORT", "50051")))
        parser.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
        parser.add_argument("--threads", type=int, default=64,
                            help="call threads per process; WatchFlags streams may use all but 16")
        parser.add_argument("--grace", type=float, default=10.0, help="seconds in-flight calls get at shutdown")
        parser.add_argument("--reuse-port", action="store_true", help="(set for workers) share the port")

    def handle(self, *args, host, port, workers, threads, grace, reuse_port, **options):
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        if not 0 < port < 65536:
            raise CommandError("--port must be 1-65535")
        if workers > 1:
            return self.supervise(host, port, workers, threads, grace)
        return self.serve(host, port, threads, grace, reuse_port)

    def serve(self, host, port, threads, grace, reuse_port):
        from django.db import DatabaseError

        from grpc_api.server import FlagServer

        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        try:
            server = FlagServer(f"{host}:{port}", threads=threads, reuse_port=reuse_port).start()
        except (OSError, ValueError, RuntimeError) as exc:
            raise CommandError(str(exc))
        except DatabaseError as exc:
            raise CommandError(f"database not ready ({exc}); run `manage.py migrate`")
        self.stdout.write(f"gRPC flags.v1.FlagService on {host}:{server.port} (pid {os.getpid()})")
        self.stdout.flush()
        stop.wait()
        server.stop(grace)
        self.stdout.write(f"gRPC server {os.getpid()} stopped")

    def supervise(self, host, port, workers, threads, grace):
        from django.conf import settings

        argv = [sys.executable, str(settings.BASE_DIR / "manage.py"), "grpcserver", "--host", host, "--port", str(port),
                "--threads", str(threads), "--grace", str(grace), "--reuse-port"]
        children = [subprocess.Popen(argv) for _ in range(workers)]
        stopping = threading.Event()

        def forward(signum, _frame):
            stopping.set()
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, forward)
        failed = False
        while any(child.poll() is None for child in children):
            for child in children:
                if child.poll() is not None and child.returncode != 0 and not stopping.is_set():
                    failed = True  # one worker died: stop the others, let the supervisor restart us
                    forward(signal.SIGTERM, None)
            stopping.wait(0.2)
        # A worker still starting when we forwarded SIGTERM dies by the signal: a clean stop too.
        clean = (0, -signal.SIGTERM) if stopping.is_set() else (0,)
        if failed or any(child.returncode not in clean for child in children):
            raise CommandError("a gRPC worker exited with an error")
