"""Experiments: events, exposures, metrics and results (issue 20). `experiments.stats` is the pure
statistics engine (numpy/scipy, no Django), usable and testable without a database."""
