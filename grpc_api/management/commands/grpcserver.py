"""`manage.py grpcserver [--port 50051] [--workers N] [--metrics-port M]`: flags.v1.FlagService
with plain grpcio.

With --workers N, N processes share the port (SO_REUSEPORT; the kernel spreads connections), so
every core serves: this process supervises them (a worker that dies is started again, see
RESPAWN_FIRST) and forwards SIGTERM / SIGINT. Each worker keeps its own in-memory snapshot and
watcher. SIGTERM: health turns NOT_SERVING, new calls are refused, WatchFlags streams end (clients
reconnect), in-flight calls finish within --grace seconds.

--pin-cpus (or GRPC_PIN_CPUS=1) pins worker i to CPU i (of those the process may use, round robin):
more calls per core and a shorter tail when the workers have the cores to themselves
(grpc_api.transport.pin_to_cpu). Off by default: a pinned worker cannot move away from a core that
something else on the machine keeps busy.

--metrics-port M serves Prometheus metrics (grpc_api/metrics.py) at http://--metrics-host:M/metrics
(127.0.0.1 unless told otherwise; FLAGS_METRICS / FLAGS_METRICS_TOKEN apply as for HTTP /metrics).
Metrics are per process: with --workers N, worker i (0-based) serves them on M + i.
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

from django.core.management.base import BaseCommand, CommandError

# Supervision (--workers N): a worker that dies is started again, at once if it had served for
# STABLE_AFTER seconds, else after a delay doubling from RESPAWN_FIRST up to RESPAWN_MAX; after
# more than GIVE_UP_AFTER quick deaths in a row every worker stops and the command fails, so a
# crash loop (a bad configuration) neither spins nor hides from the process manager.
RESPAWN_FIRST, RESPAWN_MAX, STABLE_AFTER, GIVE_UP_AFTER = 0.5, 8.0, 30.0, 5


class Command(BaseCommand):
    help = "Serve flags.v1.FlagService (gRPC) with health and reflection."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("GRPC_HOST", "0.0.0.0"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("GRPC_PORT", "50051")))
        parser.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
        parser.add_argument("--threads", type=int, default=64,
                            help="threads per process for WatchFlags streams (all but 16), health and reflection")
        parser.add_argument("--unary-threads", type=int, default=None,
                            help="threads per process for Evaluate / EvaluateBulk (default 4: one GIL)")
        parser.add_argument("--grace", type=float, default=10.0, help="seconds in-flight calls get at shutdown")
        parser.add_argument("--reuse-port", action="store_true", help="(set for workers) share the port")
        parser.add_argument("--pin-cpus", action="store_true", default=os.environ.get("GRPC_PIN_CPUS") == "1",
                            help="pin worker i to CPU i (round robin over the CPUs this process may use)")
        parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
        metrics_port = os.environ.get("GRPC_METRICS_PORT")
        parser.add_argument("--metrics-port", type=int, default=int(metrics_port) if metrics_port else None,
                            help="serve Prometheus /metrics on this port (worker i of --workers: port + i)")
        parser.add_argument("--metrics-host", default=os.environ.get("GRPC_METRICS_HOST", "127.0.0.1"))

    def handle(self, *args, host, port, workers, threads, unary_threads, grace, reuse_port, pin_cpus, worker_index,
               metrics_port, metrics_host, **options):
        from grpc_api.transport import UNARY_THREADS

        unary_threads = UNARY_THREADS if unary_threads is None else unary_threads
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        if not 0 < port < 65536:
            raise CommandError("--port must be 1-65535")
        if metrics_port is not None and not 0 <= metrics_port <= 65536 - workers:
            raise CommandError("--metrics-port (+ workers - 1) must be 0-65535")
        if metrics_port and metrics_port <= port < metrics_port + workers:
            raise CommandError("--metrics-port (one per worker) must not take the gRPC --port")
        metrics = (metrics_host, metrics_port) if metrics_port is not None else None
        if workers > 1:
            return self.supervise(host, port, workers, threads, unary_threads, grace, pin_cpus, metrics)
        cpu = None
        if pin_cpus:
            from grpc_api.transport import pin_to_cpu

            try:
                cpu = pin_to_cpu(worker_index)  # before the server's threads start: they inherit it
            except (AttributeError, OSError) as exc:  # no sched_setaffinity / no /proc: not Linux
                raise CommandError(f"--pin-cpus needs Linux CPU affinity ({exc})")
        return self.serve(host, port, threads, unary_threads, grace, reuse_port, metrics, cpu)

    def serve(self, host, port, threads, unary_threads, grace, reuse_port, metrics=None, cpu=None):
        from django.db import DatabaseError

        from grpc_api.server import FlagServer
        from grpc_api.transport import settle_heap

        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        metrics_server = None
        try:
            if metrics is not None:
                import grpc_api.metrics  # noqa: F401 (registers the gRPC collector)
                from flagsite.ops.metrics import start_metrics_server

                metrics_server = start_metrics_server(*metrics)
            server = FlagServer(f"{host}:{port}", threads=threads, unary_threads=unary_threads,
                                reuse_port=reuse_port).start()
        except (OSError, ValueError, RuntimeError) as exc:
            raise CommandError(str(exc))
        except DatabaseError as exc:
            raise CommandError(f"database not ready ({exc}); run `manage.py migrate`")
        settle_heap()
        pinned = "" if cpu is None else f", cpu {cpu}"
        self.stdout.write(f"gRPC flags.v1.FlagService on {host}:{server.port} (pid {os.getpid()}{pinned})")
        if metrics_server is not None:
            self.stdout.write(f"metrics on http://{metrics[0]}:{metrics_server.server_address[1]}/metrics")
        self.stdout.flush()
        # Timed waits: the kernel may deliver SIGTERM to any thread (grpcio's, the watcher's), and
        # the main thread's handler then runs only once it next executes Python; an untimed wait
        # could sleep through the signal and never stop (seen with the workers pinned to CPUs).
        while not stop.wait(0.2):
            pass
        server.stop(grace)
        if metrics_server is not None:
            metrics_server.shutdown()
        self.stdout.write(f"gRPC server {os.getpid()} stopped")

    def supervise(self, host, port, workers, threads, unary_threads, grace, pin_cpus, metrics=None):
        from django.conf import settings

        argv = [sys.executable, str(settings.BASE_DIR / "manage.py"), "grpcserver", "--host", host, "--port", str(port),
                "--threads", str(threads), "--unary-threads", str(unary_threads), "--grace", str(grace), "--reuse-port"]

        def worker_argv(index):
            worker = [*argv, "--pin-cpus", "--worker-index", str(index)] if pin_cpus else argv
            if metrics is None:
                return worker
            metrics_host, metrics_port = metrics
            worker_port = metrics_port + index if metrics_port else 0  # 0: any free port
            return [*worker, "--metrics-host", metrics_host, "--metrics-port", str(worker_port)]

        children = [subprocess.Popen(worker_argv(index)) for index in range(workers)]
        started = [time.monotonic()] * workers
        quick_deaths = [0] * workers  # deaths in a row, each within STABLE_AFTER of its start
        respawn_at = [None] * workers
        stopping = threading.Event()

        def forward(signum, _frame):
            stopping.set()
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, forward)
        failed = False
        while not stopping.is_set() or any(child.poll() is None for child in children):
            now = time.monotonic()
            for index, child in enumerate(children):
                if stopping.is_set() or child.poll() is None:
                    continue
                if respawn_at[index] is None:  # just died: its port and its share of connections are gone
                    quick_deaths[index] = quick_deaths[index] + 1 if now - started[index] < STABLE_AFTER else 0
                    if quick_deaths[index] > GIVE_UP_AFTER:  # a crash loop: stop, let the process manager act
                        failed = True
                        forward(signal.SIGTERM, None)
                        break
                    delay = min(RESPAWN_MAX, RESPAWN_FIRST * 2 ** (quick_deaths[index] - 1)) if quick_deaths[index] else 0
                    respawn_at[index] = now + delay
                    sys.stderr.write(f"gRPC worker {index} (pid {child.pid}) exited with {child.returncode}; "
                                     f"respawning in {delay:g}s\n")
                if now >= respawn_at[index]:
                    children[index], started[index], respawn_at[index] = subprocess.Popen(worker_argv(index)), now, None
            stopping.wait(0.1)
        # A worker still starting when we forwarded SIGTERM dies by the signal: a clean stop too.
        if failed or any(child.returncode not in (0, -signal.SIGTERM) for child in children):
            raise CommandError("a gRPC worker kept failing" if failed else "a gRPC worker exited with an error")
