"""A machine without Chromium (or nginx, or Compose) runs the suite to exit 0: the tests that need
the program are deselected and one line says what is missing and how to get it (tests/tools.py)."""

import os
import re
import subprocess
import sys

from tests.ops.conftest import ROOT


def test_missing_program__its_tests_deselected_with_one_line_and_exit_0():
    kept = "tests/ops/test_compose.py::test_dockerfile__installs_sdk_and_app_and_runs_unprivileged"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/pages/test_browser.py", kept],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "FLAGSITE_TESTS_WITHOUT": "chromium"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "chromium" in line]
    assert len(lines) == 1 and re.fullmatch(
        r"not run, missing on this machine: chromium \((\d+) tests; apt-get install chromium\); "
        r"scripts/test installs them when run as root with apt-get", lines[0]), result.stdout
    browser_tests = int(re.search(r"\((\d+) tests", lines[0])[1])
    assert browser_tests >= 1 and f"1 passed, {browser_tests} deselected" in result.stdout
    assert "SKIPPED" not in result.stdout and "rror" not in result.stdout

