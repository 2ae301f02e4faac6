"""docker-compose.yml: every process, healthchecks, env configuration. No container engine runs
here: Compose itself validates and resolves the file (`docker compose config` needs no daemon;
.ci/run installs Debian's docker-compose when no Compose is present), and the structure is checked."""

import json
import os
import re
import subprocess
import tempfile

import pytest
import yaml

from bench._common import granian_command, nginx_command
from tests.ops.conftest import ROOT, production_env, run, settings_under
from tests.tools import compose_command


def load():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_config(**env):
    """`docker compose config` (plugin) or `docker-compose config` (Debian's standalone Compose)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "POSTGRES_PASSWORD", "FLAGS_AUDIT_KEY")}
    return subprocess.run([*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"], cwd=ROOT,
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.needs("compose")
def test_compose_config__valid_and_resolves_with_the_required_secrets():
    result = compose_config(SECRET_KEY="s" * 50, POSTGRES_PASSWORD="pw", FLAGS_AUDIT_KEY="a" * 32)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["services"]["web"]["environment"]["SECRET_KEY"] == "s" * 50
    assert "pw@postgres:5432" in resolved["services"]["grpc"]["environment"]["DATABASE_URL"]


@pytest.mark.needs("compose")
def test_compose_config__local_http_by_two_documented_settings():
    """HTTPS redirect and secure cookies stay on unless .env turns them off, as the README says for
    plain http://localhost:8000; the settings then really are off in the app's process."""
    secrets = {"SECRET_KEY": "s" * 50, "POSTGRES_PASSWORD": "pw", "FLAGS_AUDIT_KEY": "a" * 32}
    default = yaml.safe_load(compose_config(**secrets).stdout)["services"]["web"]["environment"]
    assert (default["SECURE_SSL_REDIRECT"], default["SECURE_COOKIES"]) == ("true", "true")
    result = compose_config(**secrets, SECURE_SSL_REDIRECT="false", SECURE_COOKIES="false")
    assert result.returncode == 0, result.stderr
    local = yaml.safe_load(result.stdout)["services"]["web"]["environment"]
    assert (local["SECURE_SSL_REDIRECT"], local["SECURE_COOKIES"]) == ("false", "false")
    readme = (ROOT / "README.md").read_text()
    assert "`SECURE_SSL_REDIRECT=false` and `SECURE_COOKIES=false`" in readme
    assert "docker compose run --rm web python manage.py createsuperuser" in readme
    probed = settings_under(production_env(SECURE_SSL_REDIRECT="false", SECURE_COOKIES="false"),
                            "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")
    assert probed == {"SECURE_SSL_REDIRECT": False, "SESSION_COOKIE_SECURE": False, "CSRF_COOKIE_SECURE": False}


@pytest.mark.needs("compose")
def test_compose_config__refuses_to_resolve_without_a_secret_key():
    result = compose_config(POSTGRES_PASSWORD="pw", FLAGS_AUDIT_KEY="a" * 32)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.mark.needs("compose")
def test_compose_config__refuses_to_resolve_without_an_audit_key():
    result = compose_config(SECRET_KEY="s" * 50, POSTGRES_PASSWORD="pw")
    assert result.returncode != 0
    assert "FLAGS_AUDIT_KEY" in result.stderr


def test_compose__services_healthchecks_and_dependencies():
    compose = load()
    services = compose["services"]
    assert set(services) == {"proxy", "web", "grpc", "worker", "beat", "postgres", "redis", "migrate"}
    for name in ("proxy", "web", "grpc", "worker", "beat", "postgres", "redis"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["interval"], name
    for name in ("web", "grpc", "worker", "beat"):
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert services["proxy"]["depends_on"] == {"web": {"condition": "service_healthy"}}
    assert "grpcserver" in services["grpc"]["command"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "flagsite", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "flagsite", "beat"]


WEB_COMMAND = ["granian", "--interface", "asgi", "--loop", "uvloop", "--host", "0.0.0.0", "--port", "8000", "--workers", "4",
               "--respawn-failed-workers", "--access-log", "flagsite.asgi:application"]


def test_compose__one_web_server__granian_asgi_serves_http_and_ws():
    """Issue 15: one granian ASGI server serves everything, /ws included (no daphne service); the
    Dockerfile's default command is the same one, and granian_command (tests, bench, command 1)
    runs the same interface and application."""
    services = load()["services"]
    assert services["web"]["command"] == WEB_COMMAND
    assert not any("daphne" in " ".join(map(str, s.get("command") or ())) for s in services.values())
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "CMD " + json.dumps(WEB_COMMAND) in dockerfile and "8001" not in dockerfile
    command = granian_command(8000)
    assert command[command.index("--interface") + 1] == "asgi" and command[-1] == "flagsite.asgi:application"


def test_compose__clients_reach_http_only_through_the_proxy__and_dead_web_workers_are_respawned():
    """The proxy (deploy/nginx.conf; tests/ops/test_slow_clients.py and test_production_server.py
    run it) reads whole requests under timeouts before granian sees them, so web publishes no port
    of its own; granian replaces a worker that dies instead of stopping
    (tests/faults/test_worker_death.py)."""
    services = load()["services"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert proxy["volumes"] == ["./deploy/nginx.conf:/etc/nginx/nginx.conf:ro"]
    assert proxy["ports"] == ["8000:8000"]
    assert "ports" not in services["web"]
    assert "--respawn-failed-workers" in services["web"]["command"]
    assert "--respawn-failed-workers" in (ROOT / "Dockerfile").read_text()


def test_proxy_config__one_upstream__and_ws_sets_every_header_itself():
    """One upstream (granian), both locations pass to it. nginx gives a location that sets any
    proxy_set_header of its own none of the server's: /ws must set Host (ALLOWED_HOSTS and the
    origin check), X-Forwarded-For (NUM_PROXIES: the client's address in logs and failed-key
    buckets), and the upgrade headers itself."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.findall(r"^\s*upstream (\S+) \{ server ([^;]+);", conf, re.M) == [("flagsite_web", "web:8000")]
    locations = dict(re.findall(r"location (\S+) \{(.*?)\n        \}", conf, re.S))
    assert set(locations) == {"/", "/ws"}
    for body in locations.values():
        assert "proxy_pass http://flagsite_web;" in body
    http_level = conf.split("\n    upstream ", 1)[0]

    def headers(text):
        return dict(re.findall(r"^\s*proxy_set_header (\S+) (\S+);", text, re.M))

    assert "proxy_set_header" not in locations["/"]  # inherits the http level's
    inherited, ws = headers(http_level), headers(locations["/ws"])
    assert inherited == {"Connection": '""', "Host": "$http_host", "X-Forwarded-For": "$proxy_add_x_forwarded_for"}
    assert ws == {"Host": "$http_host", "X-Forwarded-For": "$proxy_add_x_forwarded_for",
                  "Upgrade": "$http_upgrade", "Connection": "$connection_upgrade"}


@pytest.mark.needs("nginx")
def test_proxy_config__nginx_accepts_it():
    """`nginx -t` on deploy/nginx.conf as shipped, but for the upstream host name (`web` resolves
    only inside Compose's network) and the pid and temporary paths, which
    bench._common.nginx_command moves to this host (the same rewrite test_slow_clients.py runs)."""
    with tempfile.TemporaryDirectory(prefix="flagsite-nginx-") as directory:
        command = nginx_command(directory, 18000, 18001)
        result = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


def test_compose__app_env_is_production_and_points_at_the_stores():
    env = load()["services"]["web"]["environment"]
    assert env["FLAGS_PRODUCTION"] == "true"
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert re.fullmatch(r"\$\{SECRET_KEY:\?.+\}", env["SECRET_KEY"])  # compose refuses to start without it
    assert "localhost" in env["ALLOWED_HOSTS"]  # the healthchecks' Host header


def test_compose__env_settings_pass_check_deploy():
    """The settings the compose file sets, with a real secret, satisfy check --deploy."""
    env = load()["services"]["web"]["environment"]
    resolved = {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()
                if k not in ("SECRET_KEY", "FLAGS_AUDIT_KEY", "DATABASE_URL", "REDIS_URL", "DB_POOL")}
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(**resolved))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile__installs_sdk_and_app_and_runs_unprivileged():
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install /app/python-sdk" in text and '"/app[prod]"' in text
    assert "collectstatic" in text and re.search(r"^USER flagsite$", text, re.M)
