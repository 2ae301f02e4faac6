"""Engine tests need no database. The summary counts the shared-vector cases that passed."""

from collections import Counter


def pytest_terminal_summary(terminalreporter):
    counts = Counter()
    files = set()
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if report.when == "call" or outcome in ("error", "skipped"):
                if "test_vectors.py::test_vector[" in nodeid:
                    counts[outcome] += 1
                    files.add(nodeid.split("[", 1)[1].split("::", 1)[0])
    total = sum(counts.values())
    if total:
        terminalreporter.write_line(
            f"tests/vectors: {counts['passed']}/{total} cases passed ({len(files)} files)"
            + (f" ({counts['failed']} failed)" if counts["failed"] else "")
        )
    _unleash_summary(terminalreporter)


def _unleash_summary(terminalreporter):
    """Per-file passing cases of Unleash's client specification (test_unleash_conformance.py)."""
    per_file = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if "test_unleash_conformance.py::test_unleash_case[" not in nodeid:
                continue
            if report.when == "call" or outcome in ("error", "skipped"):
                name = nodeid.split("[", 1)[1].split("::", 1)[0]
                per_file.setdefault(name, Counter())[outcome] += 1
    if not per_file:
        return
    terminalreporter.write_sep("-", "Unleash client specification")
    passed = total = 0
    for name in sorted(per_file):
        counts = per_file[name]
        if counts["skipped"] and not (counts["passed"] or counts["failed"] or counts["error"]):
            terminalreporter.write_line(f"{name}: excluded ({counts['skipped']} cases skipped)")
            continue
        run = counts["passed"] + counts["failed"] + counts["error"]
        passed += counts["passed"]
        total += run
        terminalreporter.write_line(f"{name}: {counts['passed']}/{run} cases passed")
    from tests.engine.test_unleash_conformance import EXCLUDED

    for name, reason in sorted(EXCLUDED.items()):
        terminalreporter.write_line(f"{name}: not run ({reason})")
    terminalreporter.write_line(f"Unleash client specification: {passed}/{total} cases passed")
