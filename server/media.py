"""Which stored object plays for a movie, as the media node learns it.

The catalog owns that answer (`GET /internal/movies/{id}/media` on the
catalog node). The media node keeps answers in process — found ones for
`ttl_s`, missing ones briefly — and forgets a movie the moment an event about
it appears on the `reelgate:events` stream, which every media node follows
with a plain XREAD (each node needs every event, so no consumer group).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from reelgate import metrics
from reelgate.auth import SERVICE_KEY_HEADER
from reelgate.events import STREAM, Event, redis_client
from reelgate.singleflight import SingleFlight
from server.conditional import make_etag
from storage.base import ObjectNotFound, Storage

log = logging.getLogger("reelgate.media.resolver")

# Resolved once: `.labels()` on every request showed up in py-spy (lock, key building).
_HIT = metrics.CACHE_LOOKUPS.labels("media", "media_object", "local", "hit")
_MISS = metrics.CACHE_LOOKUPS.labels("media", "media_object", "local", "miss")


class CatalogUnavailable(Exception):
    pass


@dataclass(frozen=True)
class MediaObject:
    movie_id: uuid.UUID
    key: str
    size: int
    mtime: float
    content_type: str
    etag: str
    local_path: Path | None


class MediaResolver:
    def __init__(
        self,
        storage: Storage,
        catalog_url: str,
        service_key: str,
        *,
        ttl_s: float = 60.0,
        negative_ttl_s: float = 2.0,
        timeout_s: float = 3.0,
    ) -> None:
        self.storage = storage
        self.catalog_url = catalog_url.rstrip("/")
        self.service_key = service_key
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http: aiohttp.ClientSession | None = None
        self._known: dict[uuid.UUID, tuple[MediaObject | None, float]] = {}
        self._flights: SingleFlight[MediaObject | None] = SingleFlight()
        self._follower: asyncio.Task[None] | None = None

    async def start(self, redis_url: str) -> None:
        self._http = aiohttp.ClientSession(timeout=self._timeout)
        if redis_url:
            self._follower = asyncio.create_task(self._follow(redis_url), name="media-events")

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follower
        if self._http is not None:
            await self._http.close()

    def forget(self, movie_id: uuid.UUID | None = None) -> None:
        if movie_id is None:
            self._known.clear()
        else:
            self._known.pop(movie_id, None)

    async def resolve(self, movie_id: uuid.UUID) -> MediaObject | None:
        known = self._known.get(movie_id)
        if known is not None and known[1] > time.monotonic():
            _HIT.inc()
            return known[0]
        _MISS.inc()
        return await self._flights.run(movie_id, lambda: self._fetch(movie_id))

    async def _fetch(self, movie_id: uuid.UUID) -> MediaObject | None:
        assert self._http is not None, "call start() first"
        url = f"{self.catalog_url}/internal/movies/{movie_id}/media"
        try:
            async with self._http.get(url, headers={SERVICE_KEY_HEADER: self.service_key}) as r:
                if r.status == 404:
                    return self._remember(movie_id, None)
                if r.status != 200:
                    raise CatalogUnavailable(f"catalog answered {r.status}")
                body = await r.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CatalogUnavailable(type(exc).__name__) from exc
        try:
            info = await self.storage.stat(body["key"])
        except ObjectNotFound:
            log.error("movie %s refers to a missing object", movie_id)
            return self._remember(movie_id, None)
        media = MediaObject(
            movie_id=movie_id,
            key=info.key,
            size=info.size,
            mtime=info.mtime,
            content_type=str(body.get("content_type") or "application/octet-stream"),
            etag=make_etag(str(body.get("sha256") or info.key), info.size, info.mtime),
            local_path=self.storage.local_path(info.key),
        )
        return self._remember(movie_id, media)

    def _remember(self, movie_id: uuid.UUID, media: MediaObject | None) -> MediaObject | None:
        ttl = self.ttl_s if media is not None else self.negative_ttl_s
        self._known[movie_id] = (media, time.monotonic() + ttl)
        return media

    async def _follow(self, redis_url: str) -> None:
        client = redis_client(redis_url)
        last_id = "$"
        try:
            while True:
                try:
                    response = await client.xread({STREAM: last_id}, block=2000, count=100)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("event stream unavailable (%s); retrying", type(exc).__name__)
                    self.forget()  # events may be missed meanwhile
                    await asyncio.sleep(1)
                    continue
                for _stream, entries in response or []:
                    for entry_id, fields in entries:
                        last_id = entry_id
                        self._apply(fields.get("event", ""))
        finally:
            await client.aclose()

    def _apply(self, raw: str) -> None:
        try:
            event = Event.from_json(raw)
            if event.type.startswith("movie."):
                self.forget(uuid.UUID(str(event.data["id"])))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable event on the stream")
