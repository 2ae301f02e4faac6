"""A broadcast writes to every local WebSocket client at once, in order per client, and a client that
cannot be written to does not stop the others (bench/propagation.py: written one after the other, a
kill reached the 1,000th client ~1,000 server round trips late, p99 228-318 ms; at once, 73-108 ms)."""

import asyncio
import json

from flags.live import Watcher


class Client:
    """A consumer whose send takes a server round trip (granian hands each frame to its runtime)."""

    in_flight = 0
    most_in_flight = 0
    delivered = 0

    def __init__(self, fails=False):
        self.frames = []
        self.fails = fails

    async def send(self, text_data):
        Client.in_flight += 1
        Client.most_in_flight = max(Client.most_in_flight, Client.in_flight)
        try:
            await asyncio.sleep(0)
            if self.fails:
                raise ConnectionResetError("the peer went away")
            self.frames.append(text_data)
        finally:
            Client.in_flight -= 1


def test_broadcast__writes_to_all_clients_at_once__in_order__past_a_failing_one():
    watcher = Watcher()
    clients = [Client(fails=(i == 3)) for i in range(200)]
    watcher.clients["production"] = set(clients)
    events = [{"type": "flag.changed", "action": a, "flag": {"key": "f"}, "environment": "production", "version": v}
              for v, a in enumerate(["killed", "restored"], start=1)]

    async def main():
        for event in events:
            await watcher.broadcast(event)

    asyncio.run(main())

    assert Client.most_in_flight == 200
    healthy = [c for c in clients if not c.fails]
    assert all([json.loads(frame)["action"] for frame in c.frames] == ["killed", "restored"] for c in healthy)
    assert clients[3].frames == []
