"""docker-compose.yml: every process, healthchecks, env configuration (no engine runs here;
`docker compose config` is not installed either, so the file is checked structurally)."""

import re

import yaml

from tests.ops.conftest import ROOT, production_env, run


def load():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose__services_healthchecks_and_dependencies():
    compose = load()
    services = compose["services"]
    assert {"web", "ws", "grpc", "worker", "beat", "postgres", "redis", "migrate"} <= set(services)
    for name in ("web", "ws", "grpc", "worker", "beat", "postgres", "redis"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["interval"], name
    for name in ("web", "ws", "grpc", "worker", "beat"):
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert "daphne" in services["ws"]["command"] and "gunicorn" in services["web"]["command"]
    assert "grpcserver" in services["grpc"]["command"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "flagsite", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "flagsite", "beat"]


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
                if k not in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DB_POOL")}
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(**resolved))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile__installs_sdk_and_app_and_runs_unprivileged():
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install /app/python-sdk" in text and '"/app[prod]"' in text
    assert "collectstatic" in text and re.search(r"^USER flagsite$", text, re.M)
