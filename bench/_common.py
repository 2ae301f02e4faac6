"""Small helpers shared by bench scripts: an own database, data through services, free ports,
server processes and their memory.

Import from a script in bench/ (keep bench/ itself off sys.path: it holds a grpc.py):

    ROOT = Path(__file__).resolve().parent.parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
    sys.path.insert(0, str(ROOT))
    from bench import _common
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"

# The one web process (README command 1 and "Deployment", Dockerfile, docker-compose.yml `web`):
# granian's ASGI interface. Warm evaluations answer on the event loop (flags/fastlane.py), the rest
# of Django and /ws behind it; a worker that dies is replaced at once instead of granian stopping
# every worker (its default).
GRANIAN_FLAGS = ["--interface", "asgi", "--loop", "uvloop", "--respawn-failed-workers"]


def granian_command(port, workers=1, host="127.0.0.1", app="flagsite.asgi:application", extra=()):
    """argv of the web server on host:port; app: another ASGI application (e.g. a wrapper module on
    PYTHONPATH trying a patch), extra: more granian options (e.g. ["--log-level", "warning"])."""
    return [str(Path(sys.executable).parent / "granian"), *GRANIAN_FLAGS, "--host", host, "--port", str(port),
            "--workers", str(workers), *extra, app]


def nginx_binary():
    """Debian's nginx (nginx-light is enough), or None."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def nginx_command(directory, listen_port, web_port):
    """argv running the shipped front proxy config (deploy/nginx.conf) in the foreground on
    127.0.0.1:listen_port in front of granian on web_port (HTTP and /ws): the same file with only
    the addresses, pid and temporary files moved to this host and `directory`."""
    text = NGINX_CONF.read_text()
    for old, new in (("server web:8000;", f"server 127.0.0.1:{web_port};"),
                     ("listen 8000;", f"listen 127.0.0.1:{listen_port};"),
                     ("http {\n", "http {\n" + "".join(f"    {kind}_temp_path {directory}/{kind};\n"
                                                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")))):
        if old not in text:
            raise RuntimeError(f"{NGINX_CONF} no longer contains {old!r}")
        text = text.replace(old, new, 1)
    os.chmod(directory, 0o755)  # run as root, nginx's workers are `nobody`: they write the temp files
    conf = Path(directory) / "nginx.conf"
    conf.write_text(text)
    return [nginx_binary(), "-p", str(directory), "-e", "stderr", "-c", str(conf),
            "-g", f"daemon off; pid {directory}/nginx.pid;"]

# Rule lists of every rule type (the same spread bench/rest.py evaluates).
RULE_SETS = [
    [],
    [{"type": "geo", "operator": "in", "value": ["US", "CA"]}],
    [{"type": "percentage", "operator": "less_than", "value": 50}],
    [{"type": "device", "operator": "in", "value": ["mobile", "desktop"]}],
    [{"type": "user", "operator": "not_in", "value": ["blocked-1", "blocked-2"]}],
    [{"type": "custom", "field": "plan", "operator": "in", "value": ["premium", "gold"]}],
    [{"type": "custom", "field": "appVersion", "operator": "semver_gt", "value": "1.2.0"}],
    [{"type": "segment", "operator": "in", "value": ["bench-premium"]}],
    [{"type": "any", "rules": [{"type": "geo", "operator": "in", "value": ["DE"]},
                               {"type": "custom", "field": "email", "operator": "ends_with", "value": "@example.com"}]}],
    [{"type": "custom", "field": "age", "operator": "gte", "value": 18},
     {"type": "percentage", "operator": "less_than", "value": 80}],
    [{"type": "not", "rule": {"type": "custom", "field": "country", "operator": "equals", "value": "FR"}}],
]


def use_own_database(name):
    """Point DATABASE_URL at a fresh SQLite file artifacts/<name>.sqlite3 unless it is already set
    (PostgreSQL runs bring their own). Returns the URL."""
    if not os.environ.get("DATABASE_URL"):
        ARTIFACTS.mkdir(exist_ok=True)
        db = ARTIFACTS / f"{name}.sqlite3"
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    return os.environ["DATABASE_URL"]


def django_setup(migrate=True):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flagsite.settings")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def create_flags(prefix="bench-flag", count=20, environments=("production",)):
    """`count` boolean flags cycling through RULE_SETS (and the segment they use), through
    services; existing ones are left alone. Returns their keys."""
    from audit.actor import Actor
    from flags import services
    from flags.models import Flag
    from segments import services as segment_services
    from segments.models import Segment

    actor = Actor.system("bench")
    if not Segment.objects.filter(key="bench-premium").exists():
        segment_services.segment_create(actor=actor, key="bench-premium", name="Premium", conditions={"plan": "premium"})
    keys = []
    for i in range(count):
        key = f"{prefix}-{i:02d}"
        if not Flag.objects.filter(key=key).exists():
            services.flag_create(actor=actor, key=key, name=key, states={
                env: {"enabled": True, "rules": RULE_SETS[i % len(RULE_SETS)]} for env in environments})
        keys.append(key)
    return keys


def sdk_key(environment="production", name="bench"):
    from audit.actor import Actor
    from flags import services
    from flags.models import Environment

    return services.api_key_create(actor=Actor.system("bench"), name=name, kind="sdk",
                                   environment=Environment.objects.get(key=environment))[1]


def management_token(username="bench-admin", name="bench"):
    """A management token acting as a superuser (created if missing)."""
    from django.contrib.auth import get_user_model

    from audit.actor import Actor
    from flags import services

    user, _ = get_user_model().objects.get_or_create(
        username=username, defaults={"is_superuser": True, "is_staff": True})
    return services.api_key_create(actor=Actor.system("bench"), name=name, kind="management", user=user)[1]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port, process=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} within {timeout:g}s")


class Server:
    """A child process in its own session (so stop() can reach its children), output to a log file."""

    def __init__(self, name, args, *, env=None, port=None, log=None, timeout=30.0):
        self.name, self.port, self.log = name, port, log
        out = open(log, "w") if log else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if log:
                out.close()
        if port is not None:
            try:
                wait_port(port, self.process, timeout)
            except BaseException:
                self.stop()
                raise

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def stop(self, timeout=15.0):
        """SIGTERM to the process (it stops its own children, e.g. a Celery worker's pool, after
        their current work), SIGKILL to the whole group after `timeout`. Returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(5)
        try:  # anything of its group still there (an orphaned child) goes too
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.process.returncode


def process_tree(pid):
    """pid and all its descendants (Linux /proc)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    todo.extend(int(child) for child in fh.read().split())
        except OSError:
            continue
    return pids


def rss_bytes(pid, tree=False):
    """Resident set size of pid (and, tree=True, its descendants); 0 for a process that is gone."""
    total = 0
    for current in process_tree(pid) if tree else [pid]:
        try:
            with open(f"/proc/{current}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def cpu_seconds(pid, tree=False):
    """user + system CPU seconds of pid (and, tree=True, its live descendants)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for current in process_tree(pid) if tree else [pid]:
        try:
            with open(f"/proc/{current}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            pass
    return total


def percentile(ordered, fraction):
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
