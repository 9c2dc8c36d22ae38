"""Catalog events: the transactional outbox and the relay that empties it.

A movie write and its event commit together: `add()` inserts the event into
`catalog_outbox` inside the caller's transaction. The relay then copies unsent
rows to the Redis stream in `seq` order and marks them sent. So an event is
never lost while Redis is down (the row waits) and never published for a write
that rolled back (the row never existed). Delivery is at least once: a crash
between XADD and marking the row sent republishes it, and listeners are
idempotent.

Ordering, on PostgreSQL:
- writers take a transaction-scoped advisory lock before inserting, so `seq`
  is drawn in commit order (without it, a transaction that drew seq 5 could
  commit after one that drew seq 6, and the relay would send 6 first);
- only one relay in the whole deployment works at a time (a second advisory
  lock, tried, not waited for), so several catalog processes never interleave.
SQLite (the single-process demo) serializes writers by itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.models import OutboxEvent
from reelgate.db import Database, utcnow
from reelgate.events import Event

log = logging.getLogger("reelgate.catalog.events")

Publisher = Callable[[Event], Awaitable[object]]

# Advisory lock keys (any two fixed 64-bit numbers no other code uses).
_WRITE_LOCK = 0x7265656C_0001  # "reel" + 1: writers of the outbox
_RELAY_LOCK = 0x7265656C_0002  # "reel" + 2: the one active relay
_PURGE_EVERY_S = 3600.0


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def add(session: AsyncSession, event: Event) -> None:
    """Queue `event` in the caller's transaction (it is published after commit)."""
    if is_postgres(session):
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK})
    session.add(
        OutboxEvent(event_id=uuid.UUID(event.id), type=event.type, envelope=event.to_json())
    )
    await session.flush()


class OutboxRelay:
    """Moves outbox rows to the event stream until stopped.

    Wakes at once when `wake()` is called (after a commit in this process) and
    otherwise polls every `poll_interval_s`, which also picks up rows written
    by other processes (`reelgate ingest`) or left by a relay that died.
    """

    def __init__(
        self,
        db: Database,
        publish: Publisher,
        *,
        poll_interval_s: float = 0.5,
        batch_size: int = 100,
        retry_max_s: float = 2.0,
        retention_s: float = 7 * 24 * 3600,
    ) -> None:
        self.db = db
        self.publish = publish
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self.retry_max_s = retry_max_s
        self.retention_s = retention_s
        self._next_purge = 0.0  # time.monotonic() of the next purge
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        delay = 0.0
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                sent = await self.relay_once()
                await self._purge_when_due()
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any outage
                # Redis or the database is away: back off, the rows are safe where they are.
                delay = min(self.retry_max_s, max(self.poll_interval_s, delay * 2))
                log.warning(
                    "outbox relay: %s: %s; retrying in %.1fs", type(exc).__name__, exc, delay
                )
                await self._sleep(delay, wakeable=False)
                continue
            delay = 0.0
            if sent < self.batch_size:  # a full batch means more may be waiting
                await self._sleep(self.poll_interval_s, wakeable=True)

    async def relay_once(self) -> int:
        """Publish one batch of unsent events in order; returns how many went out.

        Rows published before a failure are still marked sent (committed), then
        the failure is raised, so a retry resumes after them.
        """
        failure: BaseException | None = None
        sent = 0
        async with self.db.transaction() as session:
            if not await self._relay_lock(session):
                return 0
            rows = await session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.sent_at.is_(None))
                .order_by(OutboxEvent.seq)
                .limit(self.batch_size)
            )
            for row in rows:
                try:
                    await self.publish(Event.from_json(row.envelope))
                except Exception as exc:  # noqa: BLE001 - re-raised after the commit below
                    failure = exc
                    break
                row.sent_at = utcnow()
                sent += 1
        if failure is not None:
            raise failure
        return sent

    async def purge_sent(self, older_than_s: float) -> int:
        """Delete rows published more than `older_than_s` ago; returns how many.

        Sent rows are only an audit trail (and what makes a redelivery
        traceable), so they are kept for a while, not forever."""
        cutoff = utcnow() - dt.timedelta(seconds=older_than_s)
        async with self.db.transaction() as session:
            result = await session.execute(delete(OutboxEvent).where(OutboxEvent.sent_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)

    async def _purge_when_due(self) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + _PURGE_EVERY_S
        await self.purge_sent(self.retention_s)

    async def _relay_lock(self, session: AsyncSession) -> bool:
        if not is_postgres(session):
            return True
        got = await session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _RELAY_LOCK}
        )
        return bool(got)

    async def _sleep(self, seconds: float, *, wakeable: bool) -> None:
        waiter = self._wake if wakeable else self._stopping
        try:
            await asyncio.wait_for(waiter.wait(), timeout=seconds)
        except TimeoutError:
            pass
