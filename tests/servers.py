"""Real server processes for tests: the web server (granian ASGI: HTTP + /ws) started on a free port, sharing the test
database with the test process (tests that use them need committed data: transaction=True), the front
proxy (nginx) in front of it, and the gRPC server."""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
_random = random.SystemRandom()  # not the module's generator, which tests may seed


def _port_range():
    low, _, high = os.environ.get("FLAGSITE_TEST_PORTS", "20000-31999").partition("-")
    return int(low), int(high)


def free_port(span=1):
    """A port P with P .. P + span - 1 free now, for a server a test starts (span 2: a server that
    takes P + its worker index). Drawn at random from FLAGSITE_TEST_PORTS ("low-high"), below the
    ephemeral range (32768+) from which bind(0) and every client connection take theirs: .ci/run
    gives its two legs, which run side by side, a range each. With bind(0) both legs drew from one
    pool, and once a WebSocket test of one leg reached the other leg's gRPC server on the same port
    (its HTTP/2 frames, then a closed connection)."""
    low, high = _port_range()
    for _attempt in range(1000):
        port = _random.randint(low, high - span + 1)
        if all(_bindable(candidate) for candidate in range(port, port + span)):
            return port
    raise RuntimeError(f"no {span} free port(s) in a row in {low}-{high} (FLAGSITE_TEST_PORTS)")


def _bindable(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:  # in use, or lingering after a server that just stopped
            return False
        return True


def database_url():
    """DATABASE_URL pointing a child process at the database this test run uses."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(settings['NAME']).resolve()}"
    auth = settings["USER"] or "postgres"
    if settings.get("PASSWORD"):
        auth += f":{settings['PASSWORD']}"
    return f"postgres://{auth}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"


def child_env(**extra):
    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1"}
    env.update({key: str(value) for key, value in extra.items()})
    return env


def wait_for_port(port, process, timeout=60.0):
    """Polls until the port accepts (a loaded machine can take tens of seconds to import Django)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else "(see its log file)"
            raise RuntimeError(f"server exited with {process.returncode}: {output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s")


class ServerProcess:
    """output: an open file for the server's stdout + stderr (default: a pipe nobody reads, fine
    for quiet servers; a server that logs a lot, e.g. while a dependency is down, needs a file)."""

    def __init__(self, args, port, output=None, **env):
        self.port = port
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=child_env(**env), stdout=output or subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,  # its own process group: the server and its workers
        )
        wait_for_port(port, self.process)

    def signal(self, signum):
        """Signal the server and every worker it started (granian's workers are child processes:
        signalling the main process alone would leave them serving, orphaned)."""
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self):
        """A crash: SIGKILL to the whole server, workers included."""
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self):
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


def start_web(port=None, output=None, workers=1, **env):
    """The web server command of README command 1 and production (bench/_common.granian_command)."""
    from bench._common import granian_command

    port = port or free_port()
    server = ServerProcess(granian_command(port, workers), port, output, **env)
    server.http_url = f"http://127.0.0.1:{port}"
    server.ws_url = f"ws://127.0.0.1:{port}/ws"
    return server


def start_proxy(web_port, directory, port=None, output=None):
    """The shipped front proxy (deploy/nginx.conf through bench._common.nginx_command, Debian's
    nginx) on 127.0.0.1:<port> in front of the web server on web_port; its pid file and temporary
    files go to `directory` (a fresh directory nginx's workers may write to)."""
    from bench._common import nginx_command

    port = port or free_port()
    proxy = ServerProcess(nginx_command(directory, port, web_port), port, output)
    proxy.http_url = f"http://127.0.0.1:{port}"
    proxy.ws_url = f"ws://127.0.0.1:{port}/ws"
    return proxy


def start_grpcserver(port=None, output=None, **env):
    """`manage.py grpcserver` on 127.0.0.1:<port>, returned once its health service says SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = port or free_port()
    server = ServerProcess([sys.executable, "manage.py", "grpcserver", "--host", "127.0.0.1", "--port", str(port)],
                           port, output, **env)
    server.target = f"127.0.0.1:{port}"
    with grpc.insecure_channel(server.target) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=60, wait_for_ready=True)
    return server


def manage(*args, wait=True, **env):
    """Run a manage.py command in another process (as an operator would); wait=False returns the
    running Popen, for tests that watch its effect while it runs."""
    process = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=child_env(**env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return process
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def start_relay(upstream, token, port=None, grpc_port=None, output=None, snapshot_file=None, extra=(), **env):
    """`manage.py relay` (an edge relay of `upstream`, relay/) on 127.0.0.1:<port> (HTTP + /ws) and,
    with grpc_port, gRPC; returned once the port listens (its /api/health says when it is synced)."""
    port = port or free_port()
    args = [sys.executable, "manage.py", "relay", "--upstream", upstream, "--host", "127.0.0.1", "--port", str(port)]
    if grpc_port:
        args += ["--grpc-port", str(grpc_port)]
    if snapshot_file:
        args += ["--snapshot-file", str(snapshot_file)]
    # FLAGS_RELAY set: the command starts in relay mode at once (no re-exec to get there)
    server = ServerProcess([*args, *extra], port, output, FLAGS_RELAY=upstream, FLAGS_RELAY_TOKEN=token,
                           FLAGS_RELAY_SNAPSHOT_FILE=snapshot_file or "", **env)
    server.http_url = f"http://127.0.0.1:{port}"
    server.ws_url = f"ws://127.0.0.1:{port}/ws"
    server.target = f"127.0.0.1:{grpc_port}" if grpc_port else None
    return server
