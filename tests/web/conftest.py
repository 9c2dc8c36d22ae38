"""The web player against a real `reelgate demo`, driven by a real Chromium.

One demo process serves the whole tests/web package (started like
tests/cluster/test_demo.py does: a subprocess on a free port in a temporary
directory; its first start seeds three 20 s H.264/AAC movies, the demo admin
and the demo viewer). Heartbeats are every 2 s there so that tests can watch
them. Playwright drives Debian's /usr/bin/chromium (it cannot download its
own browser here); each `launch()` gets a fresh temporary profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "tests" / "artifacts" / "web"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
UPDATE_DOCS = os.environ.get("REELGATE_UPDATE_SCREENSHOTS") == "1"
BILLING_SECRET = "demo-billing-secret-change-me"  # the demo's default, not a secret
ADMIN = ("admin@reelgate.demo", "demo-admin-password")
VIEWER = ("viewer@reelgate.demo", "demo-viewer-password")
HEARTBEAT_S = 2
VIEWPORT = {"width": 1280, "height": 800}


# ---------------------------------------------------------------- the demo


@dataclass
class Demo:
    base: str
    workdir: Path
    process: subprocess.Popen[bytes]
    log: Path


def _start_demo(workdir: Path, port: int) -> Demo:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGATE_")}
    env.update(
        REELGATE_LOG_LEVEL="WARNING",
        REELGATE_HEARTBEAT_INTERVAL_S=str(HEARTBEAT_S),
        # Many sign-ins from one address in a few seconds; cheaper hashing.
        REELGATE_LOGIN_MAX_PER_ADDRESS="10000",
        REELGATE_PASSWORD_MEMORY_KIB="8192",
        REELGATE_PASSWORD_TIME_COST="1",
    )
    log = workdir / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reelgate.cli", "demo", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Press Ctrl-C" in text:
            return Demo(f"http://127.0.0.1:{port}", workdir, process, log)
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    process.wait()
    raise AssertionError("demo did not come up:\n" + log.read_text(errors="replace")[-4000:])


@pytest.fixture(scope="package")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    for tool in (CHROMIUM, "ffmpeg", "ffprobe"):
        assert shutil.which(tool), f"{tool} is missing: run scripts/install-system-deps.sh"
    running = _start_demo(tmp_path_factory.mktemp("web-demo"), free_port())
    try:
        yield running
    finally:
        running.process.send_signal(signal.SIGINT)
        try:
            running.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()


# ---------------------------------------------------------------- the API, for set-up and checks


class ApiError(AssertionError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Api:
    base: str
    http: aiohttp.ClientSession
    _plans: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            body = await r.read()
            data = (
                json.loads(body) if body and "json" in r.headers.get("Content-Type", "") else body
            )
            if r.status >= 400:
                raise ApiError(r.status, data)
            return data

    async def login(self, email: str, password: str) -> str:
        pair = await self.call(
            "POST", "/api/auth/login", json={"email": email, "password": password}
        )
        return str(pair["access_token"])

    async def plan(self, name: str) -> dict[str, Any]:
        if name not in self._plans:
            plans = await self.call("GET", "/api/plans?per_page=100")
            self._plans.update({p["name"]: p for p in plans["items"]})
        return self._plans[name]

    async def movie(self, title: str) -> dict[str, Any]:
        movies = await self.call("GET", "/api/movies?per_page=100")
        return next(m for m in movies["items"] if m["title"] == title)

    async def new_viewer(self, plan: str | None = None, pay: bool = True) -> tuple[str, str, str]:
        """A fresh viewer (email, password, access token), optionally subscribed and paid."""
        email = f"web-{uuid.uuid4().hex[:10]}@example.com"
        password = "a-long-test-password"
        await self.call(
            "POST",
            "/api/auth/register",
            json={"email": email, "password": password, "name": "Test Viewer"},
        )
        token = await self.login(email, password)
        if plan:
            subscription = await self.call(
                "POST", "/api/subscriptions", token, json={"plan_id": (await self.plan(plan))["id"]}
            )
            if pay:
                await self.pay(subscription["id"])
        return email, password, token

    async def pay(self, subscription_id: str) -> Any:
        """The billing provider's signed webhook: payment_succeeded."""
        raw = json.dumps(
            {
                "type": "payment_succeeded",
                "subscription_id": subscription_id,
                "amount_cents": 499,
                "event_id": f"web-{uuid.uuid4()}",
            }
        ).encode()
        signature = hmac.new(BILLING_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        return await self.call(
            "POST",
            "/api/billing/events",
            data=raw,
            headers={
                "Content-Type": "application/json",
                "X-Reelgate-Signature": f"sha256={signature}",
            },
        )


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def api(demo: Demo) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        yield Api(demo.base, http)


# ---------------------------------------------------------------- the browser


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
        )
        try:
            yield launched
        finally:
            await launched.close()


class PageErrors(list[str]):
    """Uncaught exceptions in the page: a test fails if any appear."""


async def _new_context(browser: Browser, errors: PageErrors) -> BrowserContext:
    ctx = await browser.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(20_000)
    ctx.on("page", lambda page: page.on("pageerror", lambda exc: errors.append(str(exc))))
    return ctx


async def _close_contexts(contexts: list[BrowserContext], request: pytest.FixtureRequest) -> None:
    for n, ctx in enumerate(contexts):
        if getattr(request.node, "rep_call_failed", False):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for i, page in enumerate(ctx.pages):
                with contextlib.suppress(Exception):  # best effort
                    await page.screenshot(
                        path=str(ARTIFACTS / f"FAILED-{request.node.name}-{n}-{i}.png")
                    )
        await ctx.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(
    browser: Browser, request: pytest.FixtureRequest
) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (cookies, storage) for one test; fails it on page errors."""
    errors = PageErrors()
    ctx = await _new_context(browser, errors)
    try:
        yield ctx
    finally:
        await _close_contexts([ctx], request)
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest_asyncio.fixture(loop_scope="session")
async def browser_contexts(
    browser: Browser, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[BrowserContext, BrowserContext]]:
    """Two independent browsers (two client_ids) for one user."""
    errors = PageErrors()
    contexts = (await _new_context(browser, errors), await _new_context(browser, errors))
    try:
        yield contexts
    finally:
        await _close_contexts(list(contexts), request)
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call_failed = report.failed  # type: ignore[attr-defined]
    return report


async def open_app(context: BrowserContext, demo: Demo, hash_: str = "#/") -> Page:
    page = await context.new_page()
    await page.goto(f"{demo.base}/{hash_}")
    await page.wait_for_selector("html[data-ready]")
    return page


async def sign_in(page: Page, email: str, password: str) -> None:
    """Through the sign-in form, with the keyboard (Enter submits)."""
    if "#/signin" not in page.url:
        await page.get_by_role("link", name="Sign in", exact=True).first.click()
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_label("Password").press("Enter")
    await page.get_by_role("button", name="Sign out").wait_for()


async def screenshot(page: Page, name: str, *, docs: bool = False) -> Path:
    """Save under tests/artifacts/web/; with REELGATE_UPDATE_SCREENSHOTS=1 also
    refresh docs/screenshots/<name>.png (the viewport, 1280x800, palette PNG)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    if docs and UPDATE_DOCS:
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = DOCS_SCREENSHOTS / f"{name}.png"
        # A 256-colour palette keeps the committed files small.
        palette = "split[a][b];[a]palettegen=max_colors=256:stats_mode=full[p];[b][p]paletteuse=dither=none"
        code, _, _ = await run(
            "ffmpeg", "-y", "-loglevel", "error", "-i", str(path), "-vf", palette, str(target)
        )
        if code != 0 or target.stat().st_size > path.stat().st_size:
            shutil.copyfile(path, target)
    return path


async def run(*argv: str, timeout: float = 60) -> tuple[int, str, str]:
    """A program's exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def video_state(page: Page) -> dict[str, Any]:
    return await page.evaluate(
        """() => {
            const v = document.querySelector('video');
            if (!v) return null;
            const q = v.getVideoPlaybackQuality();
            const buffered = [];
            for (let i = 0; i < v.buffered.length; i++) buffered.push([v.buffered.start(i), v.buffered.end(i)]);
            return {time: v.currentTime, duration: v.duration, paused: v.paused, frames: q.totalVideoFrames,
                    dropped: q.droppedVideoFrames, error: v.error && v.error.code, readyState: v.readyState,
                    width: v.videoWidth, height: v.videoHeight, buffered,
                    audioBytes: v.webkitAudioDecodedByteCount, videoBytes: v.webkitVideoDecodedByteCount};
        }"""
    )


async def wait_video(page: Page, condition: str, timeout: float = 20_000) -> None:
    """Wait until a JS condition over `v` (the <video>) holds."""
    await page.wait_for_function(
        f"() => {{ const v = document.querySelector('video'); return !!v && ({condition}); }}",
        timeout=timeout,
    )


async def throttle(
    context: BrowserContext, page: Page, *, down_kib_s: float = -1, up_kib_s: float = -1
) -> Any:
    """Emulate a slower network for this page (Chrome DevTools protocol)."""
    cdp = await context.new_cdp_session(page)
    await cdp.send("Network.enable")
    await cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": down_kib_s * 1024 if down_kib_s > 0 else -1,
            "uploadThroughput": up_kib_s * 1024 if up_kib_s > 0 else -1,
        },
    )
    return cdp
