"""A web server process (granian ASGI worker) runs one watch loop however many WebSocket clients connect at once (each
consumer calls watcher.start() before accepting; the first baseline poll takes a while)."""

import asyncio
import threading
import time

from flags.live import Watcher


class SlowFeed:
    def __init__(self):
        self.polls = 0
        self.lock = threading.Lock()

    def poll(self):
        with self.lock:
            self.polls += 1
        time.sleep(0.05)  # a baseline poll on a busy database
        return []


def test_concurrent_starts__one_baseline_poll_and_one_loop(monkeypatch):
    watcher = Watcher()
    watcher.feed = SlowFeed()
    loops = []
    original_run = watcher._run

    async def counting_run():
        loops.append(1)
        await original_run()

    monkeypatch.setattr(watcher, "_run", counting_run)

    async def main():
        await asyncio.gather(*(watcher.start() for _ in range(50)))
        await asyncio.sleep(0)  # let the loop task begin
        polls_at_start = watcher.feed.polls
        await watcher.start()  # a later client: nothing new
        watcher._task.cancel()
        return polls_at_start

    polls_at_start = asyncio.run(main())

    assert polls_at_start == 1
    assert len(loops) == 1
