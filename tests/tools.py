"""Programs some tests need from the machine, not from pip: `@pytest.mark.needs("chromium")`.

scripts/test installs them when it can (root with apt-get). Where it cannot, tests/conftest.py
deselects the tests that need a missing program and prints one line saying what is missing and how
to get it: the suite still exits 0. FLAGSITE_TESTS_WITHOUT=chromium,nginx,compose,curl treats programs
as missing (to run the suite as a machine without them would)."""

import os
import shutil
import subprocess
from functools import cache

from bench._common import nginx_binary

CHROMIUM = "/usr/bin/chromium"  # Debian's browser; Playwright never downloads one


@cache
def compose_command():
    """`docker compose` (plugin) or `docker-compose` (Debian's standalone Compose), or None."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


# name: (is it there?, the Debian package that provides it)
TOOLS = {
    "chromium": (lambda: os.access(CHROMIUM, os.X_OK), "chromium"),
    "nginx": (lambda: nginx_binary() is not None, "nginx-light"),
    "compose": (lambda: compose_command() is not None, "docker-compose"),
    "curl": (lambda: shutil.which("curl") is not None, "curl"),  # the README's shell snippets
}


def missing(name):
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r} in @pytest.mark.needs (known: {', '.join(TOOLS)})")
    forced = {tool.strip() for tool in os.environ.get("FLAGSITE_TESTS_WITHOUT", "").split(",")}
    return name in forced or not TOOLS[name][0]()
