"""The media node: stateless; any node can answer any request."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from entitlements.client import EntitlementClient
from reelgate.config import Settings
from reelgate.http import READINESS_KEY, base_app
from reelgate.kv import KeyValue, open_kv
from reelgate.leases import LeaseStore, open_leases
from reelgate.tokens import load_verifier
from server.access import SessionCache, StreamAccess, TokenCache
from server.media import MediaResolver
from server.open_files import OpenFiles
from server.resources import RESOURCES, Resources
from server.routes import record_time_to_first_byte, routes
from storage import open_storage
from storage.base import Storage


def create_app(
    settings: Settings,
    *,
    kv: KeyValue | None = None,
    leases: LeaseStore | None = None,
    storage: Storage | None = None,
) -> web.Application:
    app = base_app("media", max_body_bytes=64 * 1024)
    storage = storage or open_storage(settings.resolved_storage_url)
    app[RESOURCES] = Resources(
        settings=settings,
        kv=kv or open_kv(settings.redis_url),
        leases=leases or open_leases(settings.redis_url),
        storage=storage,
        resolver=MediaResolver(storage, settings.catalog_url, settings.service_key),
        use_sendfile=settings.media_sendfile,
        open_files=OpenFiles(),
    )
    app.add_routes(routes)
    app.on_response_prepare.append(record_time_to_first_byte)
    app.cleanup_ctx.append(_lifespan)
    return app


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    res = app[RESOURCES]
    settings = res.settings
    verifier = await load_verifier(
        settings.jwt_public_key_file,
        settings.private_key_path,
        settings.entitlements_url.rstrip("/") + "/api/auth/jwks",
        settings.jwt_issuer,
    )
    client = EntitlementClient(
        res.kv,
        settings.entitlements_url,
        settings.service_key,
        local_ttl_s=settings.entitlement_local_ttl_s,
        stale_grace_s=settings.entitlement_stale_grace_s,
    )
    res.access = StreamAccess(
        TokenCache(verifier),
        SessionCache(res.leases, settings.entitlement_local_ttl_s, settings.entitlement_stale_grace_s),
        client,
        res.kv,
    )
    await res.access.start()
    await res.resolver.start(settings.redis_url)
    app[READINESS_KEY].append(_redis_probe(res.kv))
    yield
    await res.resolver.close()
    await res.access.close()
    res.open_files.close()
    await res.leases.close()
    await res.kv.close()
    await res.storage.close()


def _redis_probe(kv: KeyValue):  # type: ignore[no-untyped-def]
    async def redis() -> None:
        await kv.ping()

    return redis
