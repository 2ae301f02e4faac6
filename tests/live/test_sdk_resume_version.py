"""The SDK's WebSocket client remembers the version it has been brought up to, which is the one
it resumes from after a drop (?since=): a change counts once its frame arrived, not when the
server's hello announced it."""

import json

from feature_flag_client import WebSocketClient


def frames(client, *sent):
    for frame in sent:
        client._dispatch(json.dumps(frame))
    return client.version


def changed(version, action="killed"):
    return {"type": "flag.changed", "action": action, "flag": {"key": "f"}, "environment": "production",
            "version": version}


def hello(version):
    return {"type": "hello", "environment": "production", "version": version}


def test_new_client__starts_at_the_hellos_version():
    assert frames(WebSocketClient(), hello(7)) == 7
    assert frames(WebSocketClient(), hello(7), changed(8)) == 8


def test_resuming__a_drop_between_the_hello_and_the_missed_changes__resumes_from_where_it_was():
    client = WebSocketClient(since=5)
    assert frames(client, hello(7)) == 5  # 6 and 7 not received yet
    assert client._url().endswith("since=5")
    assert frames(client, changed(6, "toggled"), changed(7)) == 7


def test_resuming__a_server_behind_the_client__followed_from_where_the_server_is():
    client = WebSocketClient(since=40)  # the server's database was reset
    assert frames(client, hello(3)) == 3
    assert frames(client, changed(4)) == 4


def test_old_frames_never_move_it_back():
    client = WebSocketClient(since=9)
    assert frames(client, changed(8), {"type": "snapshot", "version": 9}) == 9
