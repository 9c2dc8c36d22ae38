"""The catalog node: building the app and its shared resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import redis.asyncio as redis_async
from aiohttp import web

from catalog.events import OutboxRelay, Publisher
from catalog.media import Ingestor, media_tools, open_media_storage
from catalog.resources import RESOURCES, Resources
from catalog.routes import routes
from reelgate import auth
from reelgate.config import Settings
from reelgate.db import Database
from reelgate.events import Event, publish, redis_client
from reelgate.http import READINESS_KEY, base_app
from reelgate.migrate import ensure_migrated
from reelgate.tokens import TokenVerifier, load_verifier
from storage import LocalStorage

log = logging.getLogger("reelgate.catalog")

KEY_RETRY_MAX_S = 10.0


def create_app(settings: Settings) -> web.Application:
    app = base_app("catalog", max_body_bytes=settings.max_body_bytes)
    # Keys are loaded at startup, possibly from the entitlements node's JWKS;
    # a started app cannot swap objects, so this verifier is filled in place.
    app[auth.VERIFIER_KEY] = TokenVerifier([], settings.jwt_issuer)
    app[auth.SERVICE_KEY_KEY] = settings.service_key
    db = Database(settings.database_url_for("catalog"))
    storage = open_media_storage(settings)
    resources = Resources(
        settings=settings,
        db=db,
        storage=storage,
        ingestor=Ingestor(db, storage, media_tools(settings)),
    )
    resources.ingestor.on_commit = resources.wake_relay
    app[RESOURCES] = resources
    app.add_routes(routes)
    app.cleanup_ctx.append(_lifespan)
    return app


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    resources = app[RESOURCES]
    settings = resources.settings
    verifier = app[auth.VERIFIER_KEY]
    await ensure_migrated(resources.db.engine, "catalog")
    if isinstance(resources.storage, LocalStorage):
        await resources.storage.cleanup_temp()  # uploads cut short by a crash
    if not await _load_keys(verifier, settings):
        resources.tasks.append(asyncio.create_task(_keep_loading_keys(verifier, settings)))
    # Redis is not a readiness dependency: writes go to the outbox meanwhile.
    app[READINESS_KEY].extend(
        [_named(resources.db.ping, "database"), _named(_keys_check(verifier), "token_keys")]
    )
    # memory:// (the demo) gives the in-process stream, with the same API.
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    _start_relay(resources, _redis_publisher(redis) if redis is not None else None)
    yield
    await _shutdown(resources)
    if redis is not None:
        await redis.aclose()


def _start_relay(resources: Resources, send: Publisher | None) -> None:
    if send is None:
        log.warning("no REELGATE_REDIS_URL: catalog events wait in the outbox")
        return
    resources.relay = OutboxRelay(
        resources.db, send, poll_interval_s=resources.settings.outbox_poll_interval_s
    )
    resources.tasks.append(asyncio.create_task(resources.relay.run(), name="catalog-outbox"))


async def _shutdown(resources: Resources) -> None:
    if resources.relay is not None:
        resources.relay.stop()
    for task in resources.tasks:
        task.cancel()
    for task in resources.tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await resources.storage.close()
    await resources.db.dispose()


def _redis_publisher(redis: redis_async.Redis) -> Publisher:
    async def send(event: Event) -> None:
        await publish(redis, event, service="catalog")

    return send


async def _load_keys(verifier: TokenVerifier, settings: Settings) -> bool:
    """Fill the verifier; False (logged) when no key can be had yet."""
    try:
        loaded = await load_verifier(
            settings.jwt_public_key_file,
            settings.private_key_path,
            settings.entitlements_url + "/api/auth/jwks",
            settings.jwt_issuer,
        )
    except (OSError, ValueError, RuntimeError, aiohttp.ClientError) as exc:
        log.warning(
            "token keys unavailable (%s: %s); admin writes get 401", type(exc).__name__, exc
        )
        return False
    verifier.keys.update(loaded.keys)
    return True


async def _keep_loading_keys(verifier: TokenVerifier, settings: Settings) -> None:
    """The entitlements node may start after us (`reelgate cluster`): reads are
    served meanwhile, writes answer 401 and /readyz 503 until the keys arrive."""
    delay = 1.0
    while True:
        await asyncio.sleep(delay)
        if await _load_keys(verifier, settings):
            log.info("token keys loaded")
            return
        delay = min(KEY_RETRY_MAX_S, delay * 2)


def _keys_check(verifier: TokenVerifier) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        if not verifier.keys:
            raise RuntimeError("no token verification keys yet")

    return check


def _named(check: Callable[[], Awaitable[None]], name: str) -> Callable[[], Awaitable[None]]:
    async def probe() -> None:
        await check()

    probe.__name__ = name
    return probe
