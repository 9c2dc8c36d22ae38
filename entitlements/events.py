"""What the entitlements node does with catalog events: keep its movie projection."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from entitlements import service
from reelgate.events import Event

if TYPE_CHECKING:
    from entitlements.app import Resources

log = logging.getLogger("reelgate.entitlements.events")


class ProjectionListener:
    """Consumer-group handler for `movie.*` events. Idempotent: every event is
    an upsert of the movie's current state plus set-like plan joins."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    async def handle(self, event: Event) -> None:
        if not event.type.startswith("movie."):
            return
        movie_id = uuid.UUID(str(event.data["id"]))
        async with self.resources.db.transaction() as session:
            await service.project_movie_event(session, event.type, event.data)
        await self.resources.invalidate(movies=[movie_id])
