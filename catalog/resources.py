"""The catalog node's shared resources, built once by `app.create_app`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.events import OutboxRelay
from catalog.media import Ingestor
from reelgate.config import Settings
from reelgate.db import Database
from storage import Storage


@dataclass
class Resources:
    settings: Settings
    db: Database
    storage: Storage
    ingestor: Ingestor
    relay: OutboxRelay | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """A transaction for a write that queues events: the relay is woken
        right after the commit instead of at its next poll."""
        async with self.db.transaction() as session:
            yield session
        self.wake_relay()

    def wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.wake()


RESOURCES = web.AppKey("catalog", Resources)
