"""The system in one test process: entitlements, catalog and media nodes as
real aiohttp servers on real ports, over the session's PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from catalog.app import create_app as catalog_app
from entitlements.app import create_app as entitlements_app
from reelgate.config import Settings
from server.app import create_app as media_app
from tests.api import Api, sign


@dataclass
class Stack:
    settings: Settings
    entitlements: TestServer
    catalog: TestServer
    media: list[TestServer] = field(default_factory=list)
    clients: list[TestClient] = field(default_factory=list)

    def api(self, server: TestServer) -> Api:
        client = TestClient(server)
        self.clients.append(client)
        return Api(client)

    async def start_clients(self) -> None:
        for client in self.clients:
            if client._session is None or client._session.closed:  # noqa: SLF001
                await client.start_server()

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for server in [*self.media, self.catalog, self.entitlements]:
            await server.close()


async def start_stack(settings: Settings, *, media_nodes: int = 1) -> Stack:
    entitlements = TestServer(entitlements_app(settings))
    await entitlements.start_server()
    settings = settings.model_copy(
        update={"entitlements_url": str(entitlements.make_url("")).rstrip("/")}
    )
    catalog = TestServer(catalog_app(settings))
    await catalog.start_server()
    settings = settings.model_copy(update={"catalog_url": str(catalog.make_url("")).rstrip("/")})
    stack = Stack(settings, entitlements, catalog)
    for _ in range(media_nodes):
        await add_media_node(stack)
    return stack


async def add_media_node(stack: Stack, **overrides: Any) -> TestServer:
    server = TestServer(media_app(stack.settings.model_copy(update=overrides)))
    await server.start_server()
    stack.media.append(server)
    return server


@dataclass
class Library:
    """An admin, a movie with real media, and an entitled viewer with a session."""

    admin_ent: Api
    admin_cat: Api
    viewer: Api
    movie_id: str
    plan: dict
    subscription: dict
    video: bytes


async def setup_library(stack: Stack, video: Path, *, max_streams: int = 2) -> Library:
    """Plan (every genre), paid viewer, then a movie with real media, waited for
    until the entitlements projection (fed by the catalog's events) allows it."""
    settings = stack.settings
    admin_ent = await stack.api(stack.entitlements).login(settings.admin_email, settings.admin_password)
    admin_cat = stack.api(stack.catalog).as_(admin_ent.token)
    await stack.start_clients()
    plan = await admin_ent.ok("POST", "/api/plans", {
        "name": "All", "price_cents": 1, "currency": "EUR", "max_streams": max_streams,
        "max_height": 2160, "genres": ["*"]}, status=201)
    viewer, user = await admin_ent.as_(None).register_viewer()
    subscription = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    raw = json.dumps({"type": "payment_succeeded", "subscription_id": subscription["id"],
                      "amount_cents": 1, "event_id": uuid.uuid4().hex}).encode()
    await admin_ent.as_(None).ok("POST", "/api/billing/events", data=raw, headers={
        "Content-Type": "application/json",
        "X-Reelgate-Signature": sign(settings.billing_secret, raw)})
    movie = await admin_cat.ok(
        "POST", "/api/movies", {"title": "Stack Movie", "genres": ["drama"]}, status=201
    )
    content = video.read_bytes()
    await admin_cat.ok("PUT", f"/api/movies/{movie['id']}/media", data=content,
                       headers={"Content-Type": "video/mp4"})
    for _ in range(400):
        decision = await admin_ent.ok(
            "GET", f"/api/entitlements/check?user_id={user['id']}&movie_id={movie['id']}"
        )
        if decision["allowed"]:
            break
        await asyncio.sleep(0.025)
    else:
        raise AssertionError(f"movie never became watchable: {decision}")
    return Library(admin_ent, admin_cat, viewer, str(movie["id"]), plan, subscription, content)
