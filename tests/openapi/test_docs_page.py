"""The reference page at /api/docs renders the description in a real browser
(Debian's chromium, driven by Playwright), offline, under its own CSP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright

from reelgate.openapi import merged_openapi

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture
async def docs_url(settings) -> AsyncIterator[str]:
    from catalog.app import create_app

    app = create_app(settings)
    app.cleanup_ctx.clear()  # the routes only: the page and the description need nothing else
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("/api/docs"))
    finally:
        await server.close()


async def test_the_reference_page_renders_every_operation(docs_url):
    document = merged_openapi()
    operations = sum(
        1
        for item in document["paths"].values()
        for method in item
        if method in ("get", "head", "post", "put", "patch", "delete")
    )
    errors: list[str] = []
    outside: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on(
                "request",
                lambda r: (
                    outside.append(r.url)
                    if not r.url.startswith(docs_url.rsplit("/api/", 1)[0])
                    else None
                ),
            )
            await page.goto(docs_url)
            await page.wait_for_selector("details.op")
            assert await page.locator("section.tag details.op[id^=op-]").count() == operations
            assert await page.locator("#nav a").count() >= operations

            # Open one operation: its parameters, body and responses are shown.
            create_plan = page.locator("#op-create_plan")
            await create_plan.locator("> summary").click()
            body = await create_plan.inner_text()
            for text in (
                "role: admin",
                "PlanIn",
                "application/json",
                "422",
                "admin_required",
                "WWW-Authenticate",
            ):
                assert text in body, text

            # The filter narrows the list.
            await page.fill("#filter", "heartbeat")
            visible = page.locator("section.tag details.op[id^=op-]:not(.hidden)")
            assert await visible.count() == 1

            # One node's own description: the media node's stream, probes included.
            await page.fill("#filter", "")
            await page.select_option("#service", "media")
            await page.wait_for_selector("#op-stream_head")
            assert await page.locator("#op-metrics_endpoint").count() == 1
        finally:
            await browser.close()
    assert errors == []
    assert outside == []  # nothing fetched from anywhere but the node itself
