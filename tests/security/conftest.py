"""The REST API test fixtures (keys, clients, fresh caches) for the security tests."""

from tests.api.conftest import _fresh_caches, anon, editor, editor_api, keys, reader, sdk_api  # noqa: F401
