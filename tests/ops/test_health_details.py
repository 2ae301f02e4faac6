"""Anonymous /api/health names the failed dependency, never its error text (host, port, driver
message); the details go to the logs and to the token-protected /metrics."""

import httpx

from tests.servers import free_port, start_web


def test_health__database_unreachable__anonymous_body_says_unavailable__metrics_and_logs_say_why(tmp_path):
    port = free_port()  # nothing listens there: a real connection failure, refused by the kernel
    log = open(tmp_path / "daphne.log", "w")
    server = start_web(output=log, DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/flagsite_gone",
                          REDIS_URL="", FLAGS_METRICS="true", FLAGS_METRICS_TOKEN="health-test-token")
    try:
        response = httpx.get(f"{server.http_url}/api/health", timeout=20)
        assert response.status_code == 503, response.text
        assert response.json() == {
            "status": "unavailable", "checks": {"database": "unavailable", "cache": "ok"},
            "error": {"code": "unavailable", "message": "Unavailable: database.", "fields": {}}}
        assert str(port) not in response.text and "127.0.0.1" not in response.text
        assert httpx.get(f"{server.http_url}/metrics", timeout=20).status_code == 401
        metrics = httpx.get(f"{server.http_url}/metrics", timeout=20,
                            headers={"Authorization": "Bearer health-test-token"}).text
        line = next(line for line in metrics.splitlines() if line.startswith("flagsite_health_check_failed{"))
        assert 'check="database"' in line and str(port) in line, line
    finally:
        server.stop()
        log.close()
    assert "health check database failed: OperationalError" in (tmp_path / "daphne.log").read_text()
