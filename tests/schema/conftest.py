from tests.api.conftest import _fresh_caches, keys, reader, editor, reader_api  # noqa: F401
