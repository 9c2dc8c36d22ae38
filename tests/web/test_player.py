"""Viewers in a real Chromium against a real demo: sign in, browse, play, seek,
resume, heartbeats, locks and their reasons, subscribing, stream limits."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from playwright.async_api import BrowserContext, Page, Request, Response, expect

from tests.web.conftest import (
    HEARTBEAT_S,
    VIEWER,
    Api,
    Demo,
    open_app,
    screenshot,
    sign_in,
    throttle,
    video_state,
    wait_video,
)
from tests.web.media import keyframe_offset, playback_url

MIDDLE_S = 10.0  # the seeded clips last 20 s


async def _labelled(page: Page) -> list[str]:
    """Form controls without an accessible name (should be none)."""
    return await page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(el => el.type !== 'hidden')
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map(el => el.outerHTML)"""
    )


async def test_sign_in_browse_search_and_filter(context: BrowserContext, demo: Demo) -> None:
    page = await open_app(context, demo)
    await expect(page.locator(".movie-card")).to_have_count(3)
    await expect(page.locator(".movie-card .badge").first).to_contain_text("Sign in to watch")

    await page.get_by_role("link", name="Sign in", exact=True).first.click()
    await page.get_by_label("E-mail").fill(VIEWER[0])
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_label("Password").press("Enter")
    await expect(page.get_by_role("alert")).to_contain_text("e-mail address or password is wrong")
    # Focus goes back to the password field.
    assert await page.evaluate("document.activeElement.name") == "password"
    await sign_in(page, *VIEWER)

    cards = page.locator(".movie-card")
    await expect(cards).to_have_count(3)
    await expect(page.locator(".badge.included")).to_have_count(3)
    await expect(page.locator("[data-subscription=active]")).to_contain_text("Everything")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('.movie-card img.poster')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    # Real posters, no placeholders.
    assert await page.locator(".movie-card img.poster").count() == 3
    assert await _labelled(page) == []
    await screenshot(page, "catalog", docs=True)

    # Search (keyboard only) and the genre filter.
    search = page.get_by_label("Search movies")
    await search.fill("mandelbrot")
    await search.press("Enter")
    await expect(cards).to_have_count(1)
    await expect(cards.first).to_contain_text("The Mandelbrot Chase")
    assert "q=mandelbrot" in page.url
    await search.fill("")
    await search.press("Enter")
    await expect(cards).to_have_count(3)
    await page.get_by_label("Genre").select_option("comedy")
    await expect(cards).to_have_count(1)
    await expect(cards.first).to_contain_text("Life of Cells")


async def test_play_seek_resume_heartbeat_and_end(
    context: BrowserContext, demo: Demo, api: Api
) -> None:
    token = await api.login(*VIEWER)
    movie = await api.movie("The Mandelbrot Chase")
    async with playback_url(api, token, movie["id"], "pytest-ffprobe") as url:
        keyframe = await keyframe_offset(url, MIDDLE_S)

    page = await open_app(context, demo, "#/signin")
    ranges: list[tuple[float, int, str]] = []  # (time, status, Content-Range) of /stream answers
    heartbeats: list[tuple[float, float]] = []  # (time, position_s)

    def on_response(response: Response) -> None:
        if "/stream/" in response.url:
            ranges.append(
                (time.monotonic(), response.status, response.headers.get("content-range", ""))
            )

    urls: list[str] = []

    def on_request(request: Request) -> None:
        urls.append(request.url)
        if request.url.endswith("/heartbeat") and request.method == "POST":
            heartbeats.append(
                (time.monotonic(), json.loads(request.post_data or "{}")["position_s"])
            )

    page.on("response", on_response)
    page.on("request", on_request)
    await sign_in(page, *VIEWER)
    await page.locator(".movie-card", has_text="The Mandelbrot Chase").get_by_role("link").click()
    play = page.get_by_role("button", name=re.compile(r"^(Play|Resume from)"))
    await expect(play).to_have_accessible_name("Play")
    # Focus moved to the new page's heading; the next Tab reaches Play, Enter starts it.
    await expect(page.get_by_role("heading", level=1)).to_be_focused()

    # A slow line (200 KiB/s for a ~1.5 Mbit/s clip) so the middle is not buffered yet.
    cdp = await throttle(context, page, down_kib_s=200)
    await page.keyboard.press("Tab")
    await expect(play).to_be_focused()
    await page.keyboard.press("Enter")
    await wait_video(
        page, "v.currentTime > 0.5 && v.getVideoPlaybackQuality().totalVideoFrames > 0"
    )
    state = await video_state(page)
    assert state["frames"] > 0 and state["error"] is None, state
    assert state["audioBytes"] > 0, state  # the AAC track decodes too
    assert (state["width"], state["height"]) == (640, 360)
    assert state["buffered"][-1][1] < MIDDLE_S, f"the middle is already buffered: {state}"
    # The only URL that carries a token is the stream URL, and it is not shown on the page.
    src = await page.evaluate("document.querySelector('video').getAttribute('src')")
    assert src.startswith(f"/stream/{movie['id']}?token=")
    assert "token=" not in (await page.content()).replace(src, "")

    # Seek to the middle: the browser asks for the bytes from there, the video plays on from there.
    seek_at = time.monotonic()
    frames_before = state["frames"]
    await page.evaluate(f"document.querySelector('video').currentTime = {MIDDLE_S}")
    await wait_video(page, f"v.currentTime > {MIDDLE_S + 1} && !v.paused")
    state = await video_state(page)
    assert state["frames"] > frames_before, state
    starts = [
        int(cr.split()[1].split("-")[0])
        for t, status, cr in ranges
        if status == 206 and t >= seek_at
    ]
    assert any(keyframe - 256 * 1024 <= s <= keyframe for s in starts), (
        f"no range request at the middle (keyframe at byte {keyframe}); ranges after the seek: {starts}"
    )
    await cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )

    # Heartbeats keep coming while paused, with the paused position.
    await page.evaluate("document.querySelector('video').pause()")
    paused_at = time.monotonic()
    position = (await video_state(page))["time"]
    await page.wait_for_timeout(int(HEARTBEAT_S * 2.4 * 1000))
    while_paused = [p for t, p in heartbeats if t > paused_at + 0.2]
    assert len(while_paused) >= 2, heartbeats
    assert all(abs(p - position) < 0.2 for p in while_paused), (position, while_paused)
    await page.locator("video").hover()  # the native controls show
    await screenshot(page, "movie-playing", docs=True)

    # Reload: the page offers to resume at the stored position, and does.
    stored = await _stored_position(api, token, movie["id"])
    assert abs(stored - position) < 0.5, (stored, position)
    reload_at = time.monotonic()
    await page.reload()
    await page.wait_for_selector("html[data-ready]")
    resume = page.get_by_role("button", name=re.compile(r"Resume from 0:1\d"))
    await expect(resume).to_be_visible()
    await resume.click()
    await wait_video(page, "!v.paused && v.currentTime > 0")
    state = await video_state(page)
    assert stored - 0.5 <= state["time"] <= stored + 3, (stored, state)
    await expect(page.locator(".player-status")).to_contain_text("Resuming where you stopped")
    # Whether the resumed position arrives by a new range request or by the request
    # from byte 0 reading on is the browser's choice (Chromium keeps reading when the
    # target is close enough, and the seek above may still sit in its media cache):
    # the check is that playback resumed where it stopped, above. Only that the
    # stream was asked for again after the reload is asserted here.
    assert any(status == 206 for t, status, _ in ranges if t > reload_at), ranges

    # No token in any URL but the stream's (access tokens travel in headers only).
    assert [u for u in urls if "token" in u and "/stream/" not in u] == []

    # Leaving the page ends the session (fetch keepalive on pagehide).
    assert len((await api.call("GET", "/api/playback", token))["items"]) == 1
    await page.goto("about:blank")
    for _ in range(50):
        if not (await api.call("GET", "/api/playback", token))["items"]:
            break
        await asyncio.sleep(0.1)
    assert (await api.call("GET", "/api/playback", token))["items"] == []


async def _stored_position(api: Api, token: str, movie_id: str) -> float:
    progress = await api.call("GET", "/api/me/progress", token)
    return float(next(p["position_s"] for p in progress["items"] if p["movie_id"] == movie_id))


async def test_locked_movies_explain_why(context: BrowserContext, demo: Demo, api: Api) -> None:
    comedy_email, password, _ = await api.new_viewer(plan="Comedy only")
    page = await open_app(context, demo, "#/signin")
    await sign_in(page, comedy_email, password)
    await expect(page.locator(".movie-card")).to_have_count(3)
    cells = page.locator(".movie-card", has_text="Life of Cells")
    sunrise = page.locator(".movie-card", has_text="Test Pattern Sunrise")
    await expect(cells.locator(".badge")).to_have_text("✓ Included in your plan")
    await expect(sunrise.locator("[data-lock=not_in_plan]")).to_contain_text(
        "Not included in your plan “Comedy only”"
    )
    await sunrise.get_by_role("link").click()
    await expect(page.locator(".lock-reason")).to_contain_text(
        "Not included in your plan “Comedy only”"
    )
    await expect(page.locator(".overlay.locked .hint")).to_contain_text("Included in: Everything")
    await expect(page.get_by_role("button", name=re.compile("Play"))).to_have_count(0)
    await screenshot(page, "movie-locked", docs=True)

    # No subscription, and a payment still pending: each says so.
    for plan, pay, reason, text in [
        (None, False, "no_subscription", "You have no subscription"),
        ("Everything", False, "subscription_inactive", "Payment pending"),
    ]:
        email, password, _ = await api.new_viewer(plan=plan, pay=pay)
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.locator("#account").get_by_role("link", name="Sign in")).to_be_visible()
        await sign_in(page, email, password)
        await expect(page.locator(f".movie-card [data-lock={reason}]")).to_have_count(3)
        await expect(page.locator(".movie-card .badge").first).to_contain_text(text)


async def test_subscribe_in_the_page_and_the_billing_provider_confirms(
    context: BrowserContext, demo: Demo, api: Api
) -> None:
    page = await open_app(context, demo, "#/plans")
    await page.get_by_role("link", name="Sign up to subscribe").first.click()
    email = f"signup-{time.time_ns()}@example.com"
    await page.get_by_label("Your name").fill("New Viewer")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill("short")
    await page.get_by_role("button", name="Create account").click()
    # Too short: said at the field.
    await expect(page.locator("#main .field-error:visible")).to_have_count(1)
    await page.get_by_label("Password").fill("a-long-enough-password")
    await page.get_by_role("button", name="Create account").click()
    await page.get_by_role("button", name="Sign out").wait_for()
    # Back where the sign-up started (?next=).
    await expect(page.get_by_role("heading", name="Plans", level=1)).to_be_visible()

    await page.get_by_role("button", name="Subscribe to Comedy only").click()
    status = page.locator("[data-subscription]")
    await expect(status).to_have_attribute("data-subscription", "pending_payment")
    await expect(status).to_contain_text("billing provider")
    # Only one live subscription: the other plans offer no button now.
    await expect(page.get_by_role("button", name=re.compile("^Subscribe to"))).to_have_count(0)

    token = await api.login(email, "a-long-enough-password")
    subscription = (await api.call("GET", "/api/subscriptions", token))["items"][0]
    await api.pay(subscription["id"])
    await expect(status).to_have_attribute("data-subscription", "active", timeout=15_000)
    await expect(page.locator(".plan-card.current")).to_contain_text("Comedy only")
    await screenshot(page, "plans", docs=True)


async def test_too_many_streams_lists_sessions_and_stop_frees_one(
    browser_contexts: Any, demo: Demo, api: Api
) -> None:
    first, second = browser_contexts
    email, password, token = await api.new_viewer(plan="Comedy only")  # max_streams 1
    movie = await api.movie("Life of Cells")

    page_a = await open_app(first, demo, "#/signin")
    await sign_in(page_a, email, password)
    await page_a.goto(f"{demo.base}/#/movies/{movie['id']}")
    await page_a.get_by_role("button", name="Play", exact=True).click()  # a fresh viewer: no resume
    await wait_video(page_a, "v.currentTime > 0.3")

    page_b = await open_app(second, demo, "#/signin")  # another browser: another client_id
    await sign_in(page_b, email, password)
    await page_b.goto(f"{demo.base}/#/movies/{movie['id']}")
    await page_b.get_by_role("button", name=re.compile(r"^(Play|Resume from)")).click()
    blocked = page_b.get_by_role("region", name="Too many streams")
    await expect(blocked).to_be_visible()
    await expect(blocked).to_contain_text("simultaneous streams")
    sessions = blocked.locator(".sessions li")
    await expect(sessions).to_have_count(1)
    await expect(sessions.first).to_contain_text("Life of Cells — on another device")
    await screenshot(page_b, "too-many-streams")
    stop = blocked.get_by_role("button", name="Stop “Life of Cells”")
    await expect(stop).to_be_focused()  # focus moved to the panel's first action
    await stop.click()
    await wait_video(page_b, "v.currentTime > 0.3 && !v.paused")

    # The first browser's session is gone; its next heartbeat finds out and it
    # shows the limit in turn instead of taking the stream back.
    await expect(page_a.get_by_role("region", name="Too many streams")).to_be_visible(
        timeout=HEARTBEAT_S * 3 * 1000
    )
    live = (await api.call("GET", "/api/playback", token))["items"]
    assert len(live) == 1


async def test_failed_requests_recover_and_expired_tokens_refresh(
    context: BrowserContext, demo: Demo
) -> None:
    page = await context.new_page()
    failures = {"movies": 0, "refresh": 0, "unauthorized": 0}

    async def flaky_catalog(route: Any) -> None:
        if failures["movies"] < 3:  # the client retries GETs twice by itself
            failures["movies"] += 1
            await route.fulfill(
                status=503,
                content_type="application/problem+json",
                body=json.dumps(
                    {
                        "type": "x",
                        "title": "Service Unavailable",
                        "status": 503,
                        "detail": "down for a moment",
                        "code": "catalog_unavailable",
                    }
                ),
            )
        else:
            await route.continue_()

    await page.route(re.compile(r".*/api/movies\?.*"), flaky_catalog)
    await page.goto(f"{demo.base}/#/")
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("The movie cannot be located right now")
    await alert.get_by_role("button", name="Try again").click()
    await expect(page.locator(".movie-card")).to_have_count(3)
    assert failures["movies"] == 3

    # An access token the server stops accepting: one refresh, then the request again.
    await sign_in(page, *VIEWER)

    async def expired_once(route: Any) -> None:
        if failures["unauthorized"] == 0:
            failures["unauthorized"] += 1
            await route.fulfill(
                status=401,
                content_type="application/problem+json",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                body=json.dumps(
                    {
                        "type": "x",
                        "title": "Unauthorized",
                        "status": 401,
                        "detail": "expired",
                        "code": "invalid_token",
                    }
                ),
            )
        else:
            await route.continue_()

    def count_refresh(request: Request) -> None:
        if request.url.endswith("/api/auth/refresh"):
            failures["refresh"] += 1

    page.on("request", count_refresh)
    await page.route(re.compile(r".*/api/me/movies.*"), expired_once)
    await page.get_by_role("link", name="Plans").click()
    await page.get_by_role("link", name="Movies", exact=True).click()
    await expect(page.locator(".badge.included")).to_have_count(3)
    assert failures == {"movies": 3, "refresh": 1, "unauthorized": 1}
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def test_phone_sized_screen(browser: Any, demo: Demo, api: Api) -> None:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=1,
    )
    try:
        page = await open_app(context, demo, "#/signin")
        await sign_in(page, *VIEWER)
        await expect(page.locator(".movie-card")).to_have_count(3)
        overflow = "document.documentElement.scrollWidth - window.innerWidth"
        assert await page.evaluate(overflow) <= 0
        boxes = [await card.bounding_box() for card in await page.locator(".movie-card").all()]
        assert len({round(b["x"]) for b in boxes if b}) == 1  # one column
        await screenshot(page, "phone-catalog")
        await page.locator(".movie-card").first.get_by_role("link").click()
        await expect(page.get_by_role("button", name="Play", exact=True)).to_be_visible()
        assert await page.evaluate(overflow) <= 0
        await screenshot(page, "phone-movie")
    finally:
        await context.close()
