"""Who may read this stream: token, session and entitlement, cheapest check first.

Per request the media node verifies the playback token (signature checks are
cached per token), checks that the token's session is still alive (a lease in
Redis, cached for at most `session_ttl_s` and dropped at once by
invalidation messages), and asks the entitlement client. Each failure maps to
the status the contract names: 401 for the token, 403 for a session or an
entitlement that is gone, 503 when the answer cannot be known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web

from entitlements import cache
from entitlements.client import EntitlementClient, EntitlementUnavailable
from reelgate import metrics
from reelgate.auth import bearer_token
from reelgate.kv import KVError, KeyValue
from reelgate.leases import LeaseStore
from reelgate.problems import Problem, forbidden, not_found, unauthorized
from reelgate.singleflight import SingleFlight
from reelgate.tokens import PLAYBACK_AUDIENCE, InvalidToken, TokenVerifier

log = logging.getLogger("reelgate.media.access")

# Resolved once: `.labels()` on every request showed up in py-spy (lock, key building).
_TOKEN_HIT = metrics.CACHE_LOOKUPS.labels("media", "token", "local", "hit")
_TOKEN_MISS = metrics.CACHE_LOOKUPS.labels("media", "token", "local", "miss")


@dataclass(frozen=True)
class Grant:
    user_id: uuid.UUID
    movie_id: uuid.UUID
    session_id: str
    max_height: int | None


class TokenCache:
    """Verified playback tokens, so the Ed25519 check runs once per token, not per range."""

    def __init__(self, verifier: TokenVerifier, max_entries: int = 50_000) -> None:
        self.verifier = verifier
        self.max_entries = max_entries
        self._verified: OrderedDict[str, tuple[uuid.UUID, uuid.UUID, str, float]] = OrderedDict()

    def verify(self, token: str) -> tuple[uuid.UUID, uuid.UUID, str]:
        entry = self._verified.get(token)
        if entry is not None and entry[3] > time.time():
            self._verified.move_to_end(token)
            _TOKEN_HIT.inc()
            return entry[0], entry[1], entry[2]
        _TOKEN_MISS.inc()
        claims = self.verifier.verify(token, audience=PLAYBACK_AUDIENCE, token_type="playback")
        try:
            movie_id = uuid.UUID(str(claims.raw["mid"]))
            session_id = str(uuid.UUID(str(claims.raw["sid"])))
        except (KeyError, ValueError):
            raise InvalidToken("playback token without movie or session") from None
        self._verified[token] = (claims.subject, movie_id, session_id, float(claims.raw["exp"]))
        if len(self._verified) > self.max_entries:
            self._verified.popitem(last=False)
        return claims.subject, movie_id, session_id


class SessionCache:
    """Is this playback session alive? Redis is the truth; this keeps it for
    `ttl_s` and forgets a session the moment its end is announced."""

    def __init__(self, leases: LeaseStore, ttl_s: float, stale_grace_s: float) -> None:
        self.leases = leases
        self.ttl_s = ttl_s
        self.stale_grace_s = stale_grace_s
        self._alive: dict[str, tuple[str, float]] = {}  # session -> (user, checked_at)
        self._fresh_after = float("-inf")  # see distrust()
        # Bumped by every invalidation: a read that began before one is neither stored nor
        # shared with requests that arrive after it (see owner()).
        self._epoch = 0
        self._flights: SingleFlight[str | None] = SingleFlight()

    def forget(self, message: cache.Invalidation) -> None:
        self._epoch += 1
        if message.everything:
            self._alive.clear()
        for session_id in message.sessions:
            self._alive.pop(session_id, None)

    def distrust(self) -> None:
        """Invalidations may have been missed: check every session again, but
        keep what was known as the last answer for degraded mode."""
        self._epoch += 1
        self._fresh_after = time.monotonic()

    async def owner(self, session_id: str) -> str | None:
        """The user owning the live session, or None if it has ended."""
        now = time.monotonic()
        known = self._alive.get(session_id)
        if known is not None and known[1] > self._fresh_after and now - known[1] < self.ttl_s:
            return known[0]
        # When the cached answer expires, every range request of the stream in flight misses
        # at once; one Redis read answers them all (without this, lease reads were ~5% of the
        # media node's CPU under load, docs/benchmarks.md). Keyed by epoch: a request that
        # arrives after an invalidation never joins a read that began before it.
        epoch = self._epoch
        return await self._flights.run(
            (session_id, epoch), lambda: self._read(session_id, known, now, epoch)
        )

    async def _read(
        self, session_id: str, known: tuple[str, float] | None, now: float, epoch: int
    ) -> str | None:
        try:
            lease = await self.leases.get(session_id)
        except KVError as exc:
            if known is not None and now - known[1] < self.stale_grace_s:
                metrics.ENTITLEMENT_DEGRADED.labels("media", "stale_served").inc()
                return known[0]
            metrics.ENTITLEMENT_DEGRADED.labels("media", "failed_closed").inc()
            raise EntitlementUnavailable(retry_after_s=5) from exc
        if lease is None:
            self._alive.pop(session_id, None)
            return None
        if epoch == self._epoch:  # else an invalidation raced this read: do not keep it
            if len(self._alive) > 100_000:
                self._alive.clear()
            self._alive[session_id] = (lease.user_id, now)
        return lease.user_id


class StreamAccess:
    def __init__(
        self, tokens: TokenCache, sessions: SessionCache, entitlements: EntitlementClient,
        kv: KeyValue,
    ) -> None:
        self.tokens = tokens
        self.sessions = sessions
        self.entitlements = entitlements
        self.kv = kv
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.entitlements.start()
        ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(ready), name="session-invalidations")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 5)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self.entitlements.close()

    async def _listen(self, ready: asyncio.Event) -> None:
        while True:
            try:
                async for raw in self.kv.subscribe(cache.INVALIDATION_CHANNEL, ready):
                    self.sessions.forget(cache.Invalidation.from_json(raw))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("session invalidations lost (%s); reconnecting", type(exc).__name__)
            self.sessions.distrust()
            ready = asyncio.Event()
            await asyncio.sleep(0.5)

    async def authorize(self, request: web.Request, movie_id: uuid.UUID) -> Grant:
        token = request.query.get("token") or bearer_token(request)
        if not token:
            raise unauthorized("A playback token is required (?token= or Authorization: Bearer).")
        try:
            user_id, token_movie, session_id = self.tokens.verify(token)
        except InvalidToken:
            raise unauthorized("The playback token is invalid or has expired.") from None
        if token_movie != movie_id:
            raise forbidden("This playback token is for another movie.", code="wrong_movie")
        try:
            owner = await self.sessions.owner(session_id)
            if owner != str(user_id):
                raise forbidden("This playback session has ended.", code="session_ended")
            decision = await self.entitlements.check(user_id, movie_id)
        except EntitlementUnavailable as exc:
            raise Problem(
                503, "entitlements_unavailable",
                "Access cannot be verified right now; try again shortly.",
                headers={"Retry-After": str(exc.retry_after_s)},
            ) from None
        if decision.reason == "movie_unavailable":
            raise not_found("Movie")
        if not decision.allowed:
            raise forbidden("You are not entitled to this movie now.", code="not_entitled",
                            reason=decision.reason)
        return Grant(user_id, movie_id, session_id, decision.max_height)
