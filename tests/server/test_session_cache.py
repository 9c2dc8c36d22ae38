"""SessionCache: one lease read for concurrent misses, and invalidations never undone by a
read that was already in flight. Leases live in the in-process store the demo uses; a
subclass counts the reads and holds them open so that the races can be staged."""

from __future__ import annotations

import asyncio
import time

from entitlements import cache
from reelgate.leases import Lease, MemoryLeaseStore
from server.access import SessionCache

SESSION, USER = "3f0c8a52-6a4e-4a8e-9a8a-2b1f0d5c7e11", "user-1"


class SlowLeases(MemoryLeaseStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def get(self, session_id: str) -> Lease | None:
        self.reads += 1
        found = await super().get(session_id)  # the answer as of now, delivered later
        await self.gate.wait()
        return found


async def leases_with_session() -> SlowLeases:
    leases = SlowLeases()
    now = time.time()
    lease = Lease(SESSION, USER, "movie", "", now, now + 60)
    await leases.acquire(lease, limit=5, ttl_s=60)
    return leases


async def test_concurrent_misses_share_one_read() -> None:
    leases = await leases_with_session()
    sessions = SessionCache(leases, ttl_s=1.0, stale_grace_s=30.0)
    leases.gate.clear()
    waiting = [asyncio.create_task(sessions.owner(SESSION)) for _ in range(20)]
    await asyncio.sleep(0.01)
    leases.gate.set()
    assert await asyncio.gather(*waiting) == [USER] * 20
    assert leases.reads == 1
    assert await sessions.owner(SESSION) == USER and leases.reads == 1  # cached now


async def test_a_read_in_flight_cannot_undo_an_invalidation() -> None:
    leases = await leases_with_session()
    sessions = SessionCache(leases, ttl_s=60.0, stale_grace_s=30.0)
    leases.gate.clear()
    before = asyncio.create_task(sessions.owner(SESSION))  # reads the lease, still alive
    await asyncio.sleep(0.01)
    await leases.release(SESSION)
    sessions.forget(cache.Invalidation(sessions=frozenset({SESSION})))
    after = asyncio.create_task(sessions.owner(SESSION))  # must not join the older read
    await asyncio.sleep(0.01)
    leases.gate.set()
    assert await before == USER  # answered before the session ended: fine
    assert await after is None
    assert leases.reads == 2
    assert await sessions.owner(SESSION) is None  # the older answer was not kept
