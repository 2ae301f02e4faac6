"""A client reconnecting with ?since= hears each missed change exactly once, in order, even when it
connects between the watcher's poll (its thread has already put the change in the feed) and the
broadcast of that change on the event loop. Before the fix the resume sent the change and the
broadcast sent it again: the SDK's reconnect test saw ["toggled", "killed", "killed"] in CI.

In this process, through the real ASGI application (flagsite.asgi), with a watcher of its own whose
loop is not started, so the test decides when the feed moves and when a broadcast happens."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from flags import services
from flags.models import Flag
from flagsite.api.authentication import forget_api_key
from flagsite.asgi import application
from tests.live.conftest import SYSTEM

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def own_watcher(in_process_consumers, monkeypatch):
    """A watcher that only moves when the test polls it."""
    async def started():
        return None

    monkeypatch.setattr(in_process_consumers, "start", started)
    forget_api_key()
    yield in_process_consumers
    forget_api_key()


async def frames(communicator):
    """Every frame the socket has been sent so far."""
    received = []
    while not await communicator.receive_nothing(timeout=0.2):
        received.append(json.loads(await communicator.receive_from()))
    return received


def changes(received):
    return [(frame["action"], frame["version"]) for frame in received if frame["type"] == "flag.changed"]


def test_resume_between_poll_and_broadcast__each_missed_change_once(own_watcher, sdk_key, make_live_flag):
    make_live_flag("resume-race")
    own_watcher.feed.poll()  # the baseline
    flag = Flag.objects.get(key="resume-race")
    seen = own_watcher.feed.current("production")["version"]
    services.flag_toggle(actor=SYSTEM, flag=flag, environment="production")
    [toggled] = own_watcher.feed.poll()  # broadcast before the client comes back: it missed it
    services.flag_kill(actor=SYSTEM, flag=flag, reason="during the reconnect", environments=["production"])
    [killed] = own_watcher.feed.poll()  # in the feed; its broadcast has not run yet

    def restore_and_poll():
        services.flag_restore(actor=SYSTEM, flag=flag, environments=["production"])
        return own_watcher.feed.poll()

    async def main():
        await own_watcher.broadcast(toggled)
        communicator = WebsocketCommunicator(application, f"/ws?since={seen}",
                                             headers=[(b"authorization", f"Bearer {sdk_key}".encode())])
        assert (await communicator.connect(timeout=5))[0]
        on_connect = await frames(communicator)
        await own_watcher.broadcast(killed)  # the lagging broadcast of what the resume already sent
        after_broadcast = await frames(communicator)
        [restored] = await sync_to_async(restore_and_poll)()  # the next change still arrives live
        await own_watcher.broadcast(restored)
        live = await frames(communicator)
        await communicator.disconnect()
        return on_connect, after_broadcast, live

    on_connect, after_broadcast, live = asyncio.run(main())

    assert on_connect[0] == {"type": "hello", "environment": "production", "version": seen + 2}
    assert changes(on_connect) == [("toggled", seen + 1), ("killed", seen + 2)]
    assert after_broadcast == []
    assert changes(live) == [("restored", seen + 3)]


def test_new_follower__hears_a_broadcast_that_lags_its_hello(own_watcher, sdk_key, make_live_flag):
    """Without ?since= nothing changes: a client registered before a broadcast hears it."""
    make_live_flag("follow-lag")
    own_watcher.feed.poll()
    flag = Flag.objects.get(key="follow-lag")

    async def main():
        communicator = WebsocketCommunicator(application, "/ws",
                                             headers=[(b"authorization", f"Bearer {sdk_key}".encode())])
        assert (await communicator.connect(timeout=5))[0]
        hello = await frames(communicator)
        [killed] = await sync_to_async(kill_and_poll)()
        await own_watcher.broadcast(killed)
        live = await frames(communicator)
        await communicator.disconnect()
        return hello, live

    def kill_and_poll():
        services.flag_kill(actor=SYSTEM, flag=flag, reason="live", environments=["production"])
        return own_watcher.feed.poll()

    hello, live = asyncio.run(main())

    assert [frame["type"] for frame in hello] == ["hello"]
    assert changes(live) == [("killed", hello[0]["version"] + 1)]
