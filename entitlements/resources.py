"""The entitlements node's shared resources, built once by `app.create_app`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiohttp import web

from entitlements import cache, service
from entitlements.playback import PlaybackPolicy
from reelgate.config import Settings
from reelgate.db import Database
from reelgate.kv import KVError, KeyValue
from reelgate.leases import LeaseStore
from reelgate.tokens import TokenSigner

log = logging.getLogger("reelgate.entitlements")


@dataclass
class Resources:
    settings: Settings
    db: Database
    kv: KeyValue
    signer: TokenSigner
    passwords: service.Passwords
    issuer: service.TokenIssuer
    leases: LeaseStore
    playback: PlaybackPolicy
    tasks: list[asyncio.Task] = field(default_factory=list)

    async def invalidate(self, **scope: object) -> None:
        """Tell every cache a decision may have changed. The change has already
        committed; if Redis is down we log and move on (decisions carry a TTL)."""
        try:
            await cache.invalidate(self.kv, **scope)  # type: ignore[arg-type]
        except KVError as exc:
            log.error("could not publish an invalidation (%s): caches expire by TTL", exc)


RESOURCES = web.AppKey("entitlements", Resources)
