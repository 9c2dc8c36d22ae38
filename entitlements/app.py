"""The entitlements node: building the app and its shared resources."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from entitlements import service
from entitlements.playback import PlaybackPolicy
from entitlements.resources import RESOURCES, Resources
from entitlements.events import ProjectionListener
from entitlements.routes import routes
from reelgate import auth
from reelgate.config import Settings
from reelgate.db import Database
from reelgate.events import StreamConsumer, redis_client
from reelgate.http import READINESS_KEY, base_app
from reelgate.kv import KeyValue, open_kv
from reelgate.leases import open_leases
from reelgate.migrate import ensure_migrated
from reelgate.tokens import TokenSigner, load_or_create_private_key

log = logging.getLogger("reelgate.entitlements")


def create_app(settings: Settings, *, kv: KeyValue | None = None) -> web.Application:
    app = base_app("entitlements", max_body_bytes=settings.max_body_bytes)
    signer = TokenSigner(load_or_create_private_key(settings.private_key_path), settings.jwt_issuer)
    app[auth.VERIFIER_KEY] = signer.verifier()
    app[auth.SERVICE_KEY_KEY] = settings.service_key
    passwords = service.Passwords(settings.password_memory_kib, settings.password_time_cost)
    app[RESOURCES] = Resources(
        settings=settings,
        db=Database(settings.database_url_for("entitlements")),
        kv=kv or open_kv(settings.redis_url),
        signer=signer,
        passwords=passwords,
        issuer=service.TokenIssuer(signer, settings.access_token_ttl_s, settings.refresh_token_ttl_s),
        leases=open_leases(settings.redis_url),
        playback=PlaybackPolicy(settings.heartbeat_interval_s, settings.playback_token_ttl_s),
    )
    app.add_routes(routes)
    app.cleanup_ctx.append(_lifespan)
    return app


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    resources = app[RESOURCES]
    await ensure_migrated(resources.db.engine, "entitlements")
    await _bootstrap_admin(resources)
    app[READINESS_KEY].extend([_named(resources.db.ping, "database"), _named(resources.kv.ping, "redis")])
    consumer = None
    if resources.settings.redis_url:
        consumer = StreamConsumer(
            redis_client(resources.settings.redis_url),
            "entitlements",
            ProjectionListener(resources).handle,
            service="entitlements",
        )
        resources.tasks.append(asyncio.create_task(consumer.run(), name="entitlements-events"))
    yield
    if consumer is not None:
        consumer.stop()
    await _cancel_all(resources.tasks)
    if consumer is not None:
        await consumer.client.aclose()
    await resources.kv.close()
    await resources.leases.close()
    await resources.db.dispose()


async def _cancel_all(tasks: list[asyncio.Task]) -> None:
    """Cancel the tasks and wait for them. On Python 3.11 `asyncio.wait_for`
    (used inside redis-py) can swallow a cancellation that races with the
    awaited operation finishing, leaving the consumer in its next blocking read;
    so cancel again until every task has ended."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task %s ended with %r", task.get_name(), task.exception())


def _named(check, name: str):  # type: ignore[no-untyped-def]
    async def probe() -> None:
        await check()

    probe.__name__ = name
    return probe


async def _bootstrap_admin(resources: Resources) -> None:
    settings = resources.settings
    if not (settings.admin_email and settings.admin_password):
        return
    async with resources.db.transaction() as session:
        await service.ensure_admin(
            session, resources.passwords, settings.admin_email, settings.admin_password
        )
