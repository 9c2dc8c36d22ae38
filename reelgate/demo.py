"""`reelgate demo`: the whole system in one process on one port.

Embedded defaults: SQLite under ./var, an in-process cache, lease store and
event stream (`memory://`), local storage under ./var/media, mails written to
./var/mail. The same apps as in production are built and their routes are
mounted on one aiohttp application, so the demo runs the real code paths.

On first start it seeds a small library of short real videos (made with
ffmpeg when it is installed, else the sample shipped in `demo/`), a demo
admin and a demo viewer with an active subscription. Data persists across
restarts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from reelgate.balancer import STATIC_ROOT
from reelgate.config import Settings
from reelgate.db import make_engine
from reelgate.http import MAX_BODY_KEY, READINESS_KEY, SERVICE_KEY, base_app
from reelgate.migrate import SERVICES, upgrade

log = logging.getLogger("reelgate.demo")

DEMO_ADMIN = ("admin@reelgate.demo", "demo-admin-password")  # demo login, not a secret
DEMO_VIEWER = ("viewer@reelgate.demo", "demo-viewer-password")  # demo login, not a secret
SAMPLE = Path(__file__).resolve().parent.parent / "demo" / "sample.mp4"
LIBRARY = [
    # title, description, genres, year, ffmpeg video source
    ("Test Pattern Sunrise", "Colour bars greet the morning.", ["documentary"], 2021,
     "testsrc2=size=640x360:rate=25"),
    ("The Mandelbrot Chase", "A thriller at the edge of the set.", ["thriller", "science-fiction"],
     2023, "mandelbrot=size=640x360:rate=25"),
    ("Life of Cells", "A comedy of automata.", ["comedy", "family"], 2022,
     "cellauto=size=640x360:rate=25:rule=110"),
]
CLIP_SECONDS = 20


def demo_settings(settings: Settings) -> Settings:
    """Embedded defaults wherever the operator did not choose otherwise."""
    update: dict[str, Any] = {"redis_url": settings.redis_url or "memory://"}
    if not settings.admin_email:
        update.update(admin_email=DEMO_ADMIN[0], admin_password=DEMO_ADMIN[1])
    base = f"http://127.0.0.1:{settings.port}"
    update.update(entitlements_url=base, catalog_url=base, public_url=base)
    return settings.model_copy(update=update)


async def migrate(settings: Settings) -> None:
    for service in SERVICES:
        engine = make_engine(settings.database_url_for(service))
        try:
            await upgrade(engine, service)
        finally:
            await engine.dispose()


def compose(settings: Settings) -> web.Application:
    """Mount every node's routes, resources and start-up on one application."""
    from catalog.app import create_app as catalog_app
    from entitlements.app import create_app as entitlements_app
    from entitlements.worker import create_worker
    from server.app import create_app as media_app

    root = base_app("demo", max_body_bytes=settings.max_body_bytes)
    parts = [
        entitlements_app(settings),
        catalog_app(settings),
        media_app(settings),
        create_worker(settings).create_app(),
    ]
    shared = {SERVICE_KEY, READINESS_KEY, MAX_BODY_KEY}
    # Probes and the API description (base_app gives every node its own): the root's serve.
    probes = {resource.canonical for resource in root.router.resources()}
    for part in parts:
        for key, value in part.items():
            if key not in shared and key not in root:
                root[key] = value
        for resource in part.router.resources():
            if resource.canonical in probes:
                continue
            # Every route as the node has it, HEAD included: add_route("GET") adds no HEAD.
            for route in resource:
                root.router.add_route(route.method, resource.canonical, route.handler)
        for middleware in part.middlewares:
            if middleware not in root.middlewares:
                root.middlewares.append(middleware)
        root.on_response_prepare.extend(part.on_response_prepare)
        root.cleanup_ctx.extend(part.cleanup_ctx)
    if STATIC_ROOT.is_dir():
        root.router.add_get("/", _index)
        root.router.add_static("/", STATIC_ROOT, show_index=False)
    return root


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_ROOT / "index.html")


# ---------------------------------------------------------------- seeding


def make_clip(path: Path, source: str) -> bool:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            ffmpeg, "-y", "-loglevel", "error",
            "-f", "lavfi", "-i", source,
            "-f", "lavfi", "-i", "sine=frequency=330",
            "-t", str(CLIP_SECONDS),
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "50",
            "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", str(path),
        ],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


class DemoClient:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            body = await r.read()
            if r.status >= 400:
                raise RuntimeError(f"{method} {path}: {r.status} {body[:300]!r}")
            return json.loads(body) if body else None

    async def login(self, email: str, password: str) -> str:
        pair = await self.call("POST", "/api/auth/login", json={"email": email, "password": password})
        return str(pair["access_token"])


async def seed(settings: Settings, base: str) -> None:
    marker = settings.resolved_var_dir / "demo-seeded"
    if marker.exists():
        return
    async with aiohttp.ClientSession() as http:
        client = DemoClient(http, base)
        admin = await client.login(settings.admin_email, settings.admin_password)
        plan = await client.call("POST", "/api/plans", admin, json={
            "name": "Everything", "price_cents": 999, "currency": "EUR", "max_streams": 2,
            "max_height": 1080, "genres": ["*"]})
        await client.call("POST", "/api/plans", admin, json={
            "name": "Comedy only", "price_cents": 499, "currency": "EUR", "max_streams": 1,
            "max_height": 720, "genres": ["comedy"]})
        for title, description, genres, year, source in LIBRARY:
            await _seed_movie(client, admin, settings, title, description, genres, year, source)
        await client.call("POST", "/api/auth/register", json={
            "email": DEMO_VIEWER[0], "password": DEMO_VIEWER[1], "name": "Demo Viewer"})
        viewer = await client.login(*DEMO_VIEWER)
        subscription = await client.call("POST", "/api/subscriptions", viewer,
                                         json={"plan_id": plan["id"]})
        await _pay(client, settings, subscription["id"])
    marker.write_text("seeded\n")


async def _seed_movie(
    client: DemoClient, admin: str, settings: Settings, title: str, description: str,
    genres: list[str], year: int, source: str,
) -> None:
    movie = await client.call("POST", "/api/movies", admin, json={
        "title": title, "description": description, "genres": genres, "release_year": year})
    clip = settings.resolved_var_dir / "demo-src" / f"{movie['id']}.mp4"
    if not make_clip(clip, source):
        clip = SAMPLE
    with clip.open("rb") as body:
        await client.call("PUT", f"/api/movies/{movie['id']}/media", admin, data=body,
                          headers={"Content-Type": "video/mp4"})


async def _pay(client: DemoClient, settings: Settings, subscription_id: str) -> None:
    import hashlib
    import hmac
    import uuid

    raw = json.dumps({"type": "payment_succeeded", "subscription_id": subscription_id,
                      "amount_cents": 999, "event_id": f"demo-{uuid.uuid4()}"}).encode()
    signature = hmac.new(settings.billing_secret.encode(), raw, hashlib.sha256).hexdigest()
    await client.call("POST", "/api/billing/events", data=raw, headers={
        "Content-Type": "application/json", "X-Reelgate-Signature": f"sha256={signature}"})


# ---------------------------------------------------------------- running


async def serve(settings: Settings) -> AsyncIterator[str]:
    """Start the demo; yields its base URL while it runs."""
    settings = demo_settings(settings)
    await migrate(settings)
    runner = web.AppRunner(compose(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    base = f"http://{settings.host}:{settings.port}"
    try:
        await seed(settings, f"http://127.0.0.1:{settings.port}")
        yield base
    finally:
        await runner.cleanup()


def banner(settings: Settings, base: str) -> str:
    settings = demo_settings(settings)
    return "\n".join([
        "",
        f"Reelgate demo is running: {base}",
        f"  web player:   {base}/",
        f"  catalog API:  {base}/api/movies",
        f"  admin login:  {settings.admin_email} / {settings.admin_password if settings.admin_email == DEMO_ADMIN[0] else '(from REELGATE_ADMIN_PASSWORD)'}",
        f"  viewer login: {DEMO_VIEWER[0]} / {DEMO_VIEWER[1]}",
        f"  billing webhook secret (demo value): {settings.billing_secret}",
        f"  data: {settings.resolved_var_dir}  (mails in {settings.resolved_var_dir / 'mail'})",
        "Press Ctrl-C to stop.",
        "",
    ])


async def run_demo(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async for base in serve(settings):
        print(banner(settings, base), flush=True)
        await stop.wait()
    print("Reelgate demo stopped.", flush=True)
    return 0
