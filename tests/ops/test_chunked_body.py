"""Request bodies sent with `Transfer-Encoding: chunked` (no Content-Length) through the real
servers: granian WSGI and granian ASGI (the web server). They arrived empty (400 "not valid JSON" on
evaluate); now they are read to their end, within DATA_UPLOAD_MAX_MEMORY_SIZE (413 past it)."""

import json
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.api.conftest import create_flag, make_key
from tests.servers import ServerProcess, free_port, start_web

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
GRANIAN = str(Path(sys.executable).parent / "granian")


@pytest.fixture(params=["granian-wsgi", "granian-asgi"])
def server_port(request):
    port = free_port()
    if request.param == "granian-wsgi":
        server = ServerProcess([GRANIAN, "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                                "--workers", "1", "--blocking-threads", "1", "flagsite.wsgi:application"], port)
    else:
        server = start_web(port)
    yield port
    server.stop()


def chunked_post(port, path, key, body, chunk=7):
    """POST body in chunks of `chunk` bytes by hand; (status, parsed JSON body)."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode())
        for start in range(0, len(body), chunk):
            piece = body[start:start + chunk]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"transfer-encoding: chunked" in head.lower():  # the answer may be chunked too
        decoded, rest = b"", payload
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            if int(size, 16) == 0:
                break
            decoded, rest = decoded + rest[:int(size, 16)], rest[int(size, 16) + 2:]
        payload = decoded
    return status, json.loads(payload)


def test_chunked_body__evaluated_like_a_sized_one__too_large_is_413(server_port, settings):
    create_flag("chunky", states={"production": {"enabled": True}})
    sdk_key = make_key("sdk", environment="production")

    # the server compiled its snapshot at start; it sees the new flag within FLAGS_MAX_STALENESS_MS
    deadline = time.monotonic() + 5
    while True:
        status, body = chunked_post(server_port, "/api/evaluate", sdk_key,
                                    json.dumps({"flagId": "chunky", "userId": "u1"}).encode())
        if body.get("reason") != "FLAG_NOT_FOUND" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (status, body["flagId"], body["enabled"]) == (200, "chunky", True), body

    too_large = json.dumps({"flagId": "chunky", "userId": "u" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    status, body = chunked_post(server_port, "/api/evaluate", sdk_key, too_large.encode(), chunk=65536)
    assert (status, body["error"]["code"]) == (413, "payload_too_large"), body
