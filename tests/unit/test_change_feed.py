"""The change feed wakes a waiting long poll from the thread that committed the change."""

from __future__ import annotations

import asyncio
import threading
import time

from tongdao.gateway.changes import ChangeFeed


def test_a_commit_in_another_thread_wakes_the_waiter_at_once() -> None:
    feed = ChangeFeed()

    async def main() -> float:
        seen = feed.generation
        threading.Timer(0.05, feed.notify).start()
        start = time.monotonic()
        await feed.wait(seen, 5.0)
        return time.monotonic() - start

    waited = asyncio.run(main())
    assert 0.04 <= waited < 2.0  # woken by the notify, not by the 5 s limit
    assert feed.generation == 1


def test_without_a_change_the_wait_ends_at_its_limit_and_leaves_no_waiter() -> None:
    feed = ChangeFeed()

    async def main() -> None:
        await feed.wait(feed.generation, 0.05)
        await feed.wait(feed.generation - 1, 5.0)  # already moved: returns at once

    asyncio.run(main())
    assert not feed._waiters
    feed.notify()  # nobody waits: nothing to wake, nothing raised
