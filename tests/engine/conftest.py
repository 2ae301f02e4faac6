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
