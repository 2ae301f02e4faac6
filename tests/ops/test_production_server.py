"""The production HTTP command from the README / docker-compose.yml (granian WSGI workers) serves
the API: health, an evaluation with an SDK key over one kept-alive connection, a management read."""

import sys
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import create_flag, make_key
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
GRANIAN = str(Path(sys.executable).parent / "granian")


@pytest.fixture
def granian():
    port = free_port()
    server = ServerProcess([GRANIAN, "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                            "--workers", "1", "--blocking-threads", "1", "flagsite.wsgi:application"], port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_granian_serves_health_evaluations_and_the_management_api(granian):
    create_flag("beta", states={"production": {"enabled": True}})
    sdk_key = make_key("sdk", environment="production")

    with httpx.Client(base_url=granian, timeout=10) as client:
        assert client.get("/api/health").status_code == 200
        answers = [client.post("/api/evaluate", headers={"Authorization": f"Bearer {sdk_key}"},
                               json={"flagId": "beta", "userId": f"user-{i}"}) for i in range(5)]
        unauthenticated = client.get("/api/flags")

    assert [a.status_code for a in answers] == [200] * 5
    assert all(a.json()["enabled"] is True and a.json()["flagId"] == "beta" for a in answers)
    assert all(a.headers.get("connection", "").lower() != "close" for a in answers)  # keep-alive
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "not_authenticated"
