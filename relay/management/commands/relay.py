"""`manage.py relay --upstream URL --token TOKEN`: run this codebase as an edge relay (relay/).

The command re-executes itself with FLAGS_RELAY set (settings then use no database and no Redis),
runs the web server (granian: /api/evaluate, /api/evaluate/bulk, /api/sdk/snapshot, /ofrep/v1/*,
/ws, /api/health, /metrics, and /api/relay/* + /ws/relay for relays of this relay): without
--grpc-port the command becomes granian (exec); with it, granian runs as a child process and the
gRPC server in this process. Each process follows the upstream on its own (relay/follower.py).
SIGTERM/SIGINT stop them and flush the outbox (the web worker flushes at its lifespan shutdown).
"""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def granian_command(host, port, workers):
    """The web server of the Dockerfile's CMD (granian ASGI) on host:port."""
    granian = Path(sys.executable).parent / "granian"
    return [str(granian) if granian.exists() else "granian", "--interface", "asgi", "--loop", "uvloop", "--respawn-failed-workers",
            "--log-level", "warning", "--host", host, "--port", str(port), "--workers", str(workers),
            "flagsite.asgi:application"]


class Command(BaseCommand):
    help = "Run an edge relay following an upstream Flagsite (or another relay) with a relay token."
    requires_system_checks = []  # a relay has no database to check; the web server checks nothing either

    def add_arguments(self, parser):
        parser.add_argument("--upstream", default=os.environ.get("FLAGS_RELAY", ""),
                            help="the upstream's base URL, e.g. https://flags.example.com (env FLAGS_RELAY)")
        parser.add_argument("--token", default=os.environ.get("FLAGS_RELAY_TOKEN", ""),
                            help="a relay token (manage.py create_api_key --kind relay); "
                                 "prefer the env FLAGS_RELAY_TOKEN (not visible in ps)")
        parser.add_argument("--snapshot-file", default=os.environ.get("FLAGS_RELAY_SNAPSHOT_FILE", ""),
                            help="start from this file when the upstream is unreachable; kept current")
        parser.add_argument("--host", default=os.environ.get("RELAY_HOST", "0.0.0.0"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("RELAY_PORT", "8100")))
        parser.add_argument("--workers", type=int, default=1, help="web server processes")
        parser.add_argument("--grpc-port", type=int, default=int(os.environ["RELAY_GRPC_PORT"])
                            if os.environ.get("RELAY_GRPC_PORT") else None, help="also serve gRPC on this port")
        parser.add_argument("--wait", type=float, default=10.0,
                            help="seconds to wait for the first sync before serving gRPC anyway")

    def handle(self, *args, upstream, token, snapshot_file, host, port, workers, grpc_port, wait, **options):
        if not upstream.startswith(("http://", "https://")):
            raise CommandError("--upstream must be an http:// or https:// URL")
        if not token:
            raise CommandError("--token (or FLAGS_RELAY_TOKEN) is required: manage.py create_api_key --kind relay")
        if settings.FLAGS_RELAY != upstream.rstrip("/") or (snapshot_file and not settings.FLAGS_RELAY_SNAPSHOT_FILE):
            # settings were read for a primary (or another upstream): start over in relay mode
            env = {**os.environ, "FLAGS_RELAY": upstream.rstrip("/"), "FLAGS_RELAY_TOKEN": token,
                   "FLAGS_RELAY_SNAPSHOT_FILE": snapshot_file and str(Path(snapshot_file).resolve())}
            argv = [sys.executable, sys.argv[0], "relay", "--upstream", upstream, "--host", host, "--port", str(port),
                    "--workers", str(workers), "--wait", str(wait)]
            if grpc_port:
                argv += ["--grpc-port", str(grpc_port)]
            os.execve(sys.executable, argv, env)
        self.serve(host, port, workers, grpc_port, wait)

    def serve(self, host, port, workers, grpc_port, wait):
        command = granian_command(host, port, workers)
        if not grpc_port:  # nothing else to run here: become the web server (one process less, ~100 MB)
            self.stderr.write(f"relay of {settings.FLAGS_RELAY}: http://{host}:{port}")
            os.chdir(settings.BASE_DIR)
            os.execv(command[0], command)
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        web = subprocess.Popen(command, cwd=settings.BASE_DIR)
        grpc_server = None
        try:
            if grpc_port:
                from grpc_api.server import FlagServer
                from relay.follower import follower

                follower.start(wait=wait)
                grpc_server = FlagServer(f"{host}:{grpc_port}").start()
            self.stderr.write(f"relay of {settings.FLAGS_RELAY}: http://{host}:{port}"
                              + (f", gRPC {host}:{grpc_port}" if grpc_port else ""))
            while not stopping.wait(0.5):
                if web.poll() is not None:
                    raise CommandError(f"the web server exited with {web.returncode}")
        finally:
            if web.poll() is None:
                web.terminate()
                try:
                    web.wait(10)
                except subprocess.TimeoutExpired:
                    web.kill()
            if grpc_server is not None:
                grpc_server.stop(grace=2)
                from relay.follower import follower
                from relay.outbox import outbox

                follower.stop()
                outbox.flush_at_exit()
