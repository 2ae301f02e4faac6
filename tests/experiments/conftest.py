"""Events and exposures: the in-process buffers start empty in every test (the analytics
recorder's reset, done by tests/conftest.py, resets them too)."""

import pytest

from tests.api.conftest import (  # noqa: F401  (fixtures)
    _fresh_caches,
    editor,
    editor_api,
    keys,
    reader,
    reader_api,
    sdk_api,
)


@pytest.fixture(autouse=True)
def _eager_writes(settings):
    """Flushes write in this process (the embedded mode), on the Redis leg too."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
