"""Entitlement checks for other nodes (media nodes), in three layers:

1. an in-process cache with a short TTL, emptied by invalidation messages;
2. the shared Redis decision cache (see `entitlements.cache`);
3. the entitlements node over HTTP (`/internal/entitlements/check`).

Concurrent misses for one key share one lookup (single flight).

Degraded mode, when Redis and the node cannot give an answer: the last answer
known for the key is served for at most `stale_grace_s` after it was
obtained, then the check fails closed with `EntitlementUnavailable` (the media
node answers 503 with Retry-After). Both outcomes are counted in
`reelgate_entitlement_degraded_total`; the client never fails open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

import aiohttp

from entitlements import cache
from entitlements.schemas import Decision
from reelgate import metrics
from reelgate.auth import SERVICE_KEY_HEADER
from reelgate.kv import KVError, KeyValue
from reelgate.singleflight import SingleFlight

log = logging.getLogger("reelgate.entitlements.client")

Key = tuple[uuid.UUID, uuid.UUID]


class EntitlementUnavailable(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__("entitlement decision unavailable")
        self.retry_after_s = retry_after_s


@dataclass
class _Entry:
    decision: Decision
    obtained_at: float  # monotonic


class EntitlementClient:
    def __init__(
        self,
        kv: KeyValue,
        base_url: str,
        service_key: str,
        *,
        local_ttl_s: float = 2.0,
        stale_grace_s: float = 30.0,
        request_timeout_s: float = 2.0,
        service: str = "media",
        http: aiohttp.ClientSession | None = None,
        max_entries: int = 100_000,
    ) -> None:
        self.kv = kv
        self.base_url = base_url.rstrip("/")
        self.service_key = service_key
        self.local_ttl_s = local_ttl_s
        self.stale_grace_s = stale_grace_s
        self.request_timeout_s = request_timeout_s
        self.service = service
        self.max_entries = max_entries
        self._http = http
        self._owns_http = http is None
        self._local: dict[Key, _Entry] = {}
        self._flights: SingleFlight[Decision] = SingleFlight()
        # Bumped by every invalidation: an answer fetched before a bump is not
        # stored locally, so a message racing a fetch cannot be undone by it.
        self._epoch = 0
        # Entries obtained before this moment (the invalidation channel was
        # lost since) are never served as fresh, only as degraded mode's
        # last known answers.
        self._fresh_after = float("-inf")
        self._listener: asyncio.Task[None] | None = None
        self.origin_calls = 0  # HTTP calls to the node (observable for tests and metrics)
        # Children of the per-check counters, resolved once: `.labels()` per call takes a
        # lock and builds a key, a visible share of a cached check.
        self._local_hit = metrics.CACHE_LOOKUPS.labels(service, "entitlement", "local", "hit")
        self._local_miss = metrics.CACHE_LOOKUPS.labels(service, "entitlement", "local", "miss")

    async def start(self, ready_timeout_s: float = 5.0) -> None:
        """Subscribe to invalidations; returns once the subscription is live."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.request_timeout_s)
            )
        ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(ready), name="entitlement-invalidations")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), ready_timeout_s)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._owns_http and self._http is not None:
            await self._http.close()

    # ------------------------------------------------------------ invalidation

    async def _listen(self, ready: asyncio.Event) -> None:
        while True:
            try:
                async for raw in self.kv.subscribe(cache.INVALIDATION_CHANNEL, ready):
                    self.apply(cache.Invalidation.from_json(raw))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone: keep trying, trust nothing cached meanwhile
                log.warning("invalidation channel lost (%s); reconnecting", type(exc).__name__)
            # Messages may have been missed while disconnected.
            self.distrust()
            ready = asyncio.Event()
            await asyncio.sleep(0.5)

    def distrust(self) -> None:
        """Nothing cached so far is served as fresh any more; the entries stay
        as the last known answers that degraded mode may serve (clearing them
        would make a Redis outage fail every check closed)."""
        self._epoch += 1
        self._fresh_after = time.monotonic()

    def apply(self, message: cache.Invalidation) -> None:
        self._epoch += 1
        if message.everything:
            self._local.clear()
            return
        for key in [
            key
            for key in self._local
            if str(key[0]) in message.users or str(key[1]) in message.movies
        ]:
            del self._local[key]

    # ------------------------------------------------------------ checks

    async def check(self, user_id: uuid.UUID, movie_id: uuid.UUID) -> Decision:
        key = (user_id, movie_id)
        entry = self._local.get(key)
        if (
            entry is not None
            and entry.obtained_at > self._fresh_after
            and time.monotonic() - entry.obtained_at < self.local_ttl_s
        ):
            self._local_hit.inc()
            return entry.decision
        self._local_miss.inc()
        return await self._flights.run(key, lambda: self._resolve(key, stale=entry))

    async def _resolve(self, key: Key, stale: _Entry | None) -> Decision:
        epoch = self._epoch
        try:
            decision = await self._from_redis(key)
            if decision is None:
                decision = await self._from_origin(key)
        except (*KVError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            return self._degraded(key, stale, exc)
        if epoch == self._epoch:
            self._remember(key, decision)
        return decision

    def _remember(self, key: Key, decision: Decision) -> None:
        now = time.monotonic()
        if len(self._local) >= self.max_entries:
            # Entries past the stale grace are useless even in degraded mode.
            expired = [k for k, e in self._local.items() if now - e.obtained_at > self.stale_grace_s]
            for old in expired or list(self._local)[: self.max_entries // 10]:
                del self._local[old]
        self._local[key] = _Entry(decision, now)

    async def _from_redis(self, key: Key) -> Decision | None:
        try:
            found = await cache.lookup(self.kv, *key)
        except KVError as exc:
            log.warning("redis unavailable for decisions (%s); asking the node", type(exc).__name__)
            return None
        layer_result = "hit" if found.decision is not None else "miss"
        metrics.CACHE_LOOKUPS.labels(self.service, "entitlement", "redis", layer_result).inc()
        return found.decision

    async def _from_origin(self, key: Key) -> Decision:
        assert self._http is not None, "call start() first"
        self.origin_calls += 1
        metrics.CACHE_LOOKUPS.labels(self.service, "entitlement", "origin", "miss").inc()
        async with self._http.get(
            f"{self.base_url}/internal/entitlements/check",
            params={"user_id": str(key[0]), "movie_id": str(key[1])},
            headers={SERVICE_KEY_HEADER: self.service_key},
        ) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message="check failed"
                )
            decision = Decision.model_validate(await response.json())
        metrics.ENTITLEMENT_DECISIONS.labels(self.service, decision.reason).inc()
        return decision

    def _degraded(self, key: Key, stale: _Entry | None, exc: BaseException) -> Decision:
        age = None if stale is None else time.monotonic() - stale.obtained_at
        if stale is not None and age is not None and age <= self.stale_grace_s:
            metrics.ENTITLEMENT_DEGRADED.labels(self.service, "stale_served").inc()
            log.warning("serving a %.0fs old decision: %s", age, type(exc).__name__)
            return stale.decision
        metrics.ENTITLEMENT_DEGRADED.labels(self.service, "failed_closed").inc()
        log.error("no entitlement decision available (%s); failing closed", type(exc).__name__)
        raise EntitlementUnavailable(retry_after_s=5) from exc
