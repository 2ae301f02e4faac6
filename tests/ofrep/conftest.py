import pytest

from tests.api.conftest import (  # noqa: F401  (fixtures shared with the REST API tests)
    _fresh_caches,
    anon,
    editor,
    editor_api,
    keys,
    reader,
    reader_api,
    sdk_api,
)

from tests.live.conftest import sdk_key, server  # noqa: F401  (a live web server)

from .data import build_flags


@pytest.fixture
def flags(db):
    build_flags()
