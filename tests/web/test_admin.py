"""Administrators in a real Chromium: movies (form, cast, upload with progress,
delete and restore) and plans (form, validation, the plan's movies)."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

from playwright.async_api import BrowserContext, expect

from tests.web.conftest import ADMIN, Api, Demo, open_app, run, screenshot, sign_in, throttle


async def _clip(path: Path) -> Path:
    """An 8 s 640x360 H.264/AAC MP4 of about 3 MB: big enough to watch its upload."""
    code, _, err = await run(
        "ffmpeg",
        "-y",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=550",
        "-t",
        "8",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-b:v",
        "2800k",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-movflags",
        "+faststart",
        str(path),
    )
    assert code == 0, err
    return path


async def test_admin_creates_a_movie_uploads_its_video_and_deletes_it(
    context: BrowserContext, demo: Demo, api: Api, tmp_path: Path
) -> None:
    clip = asyncio.ensure_future(_clip(tmp_path / "upload.mp4"))
    page = await open_app(context, demo, "#/admin/movies")
    await sign_in(page, *ADMIN)  # the guard sent us to sign in; ?next= brings us back
    await expect(page.get_by_role("heading", name="Manage movies")).to_be_visible()
    rows = page.locator("tbody tr")
    await expect(rows).to_have_count(3)
    await screenshot(page, "admin-movies", docs=True)

    # Create: title, genres, and a cast member added on the spot.
    await page.get_by_role("link", name="New movie").click()
    title = f"Web Upload {uuid.uuid4().hex[:6]}"
    await page.get_by_role("button", name="Create movie").click()
    await expect(page.get_by_label("Title", exact=True)).to_have_accessible_description(
        "A title is required."
    )
    await expect(page.get_by_label("Title", exact=True)).to_be_focused()
    await page.get_by_label("Title", exact=True).fill(title)
    await page.get_by_label("Description").fill("Uploaded through the web player.")
    await page.get_by_label("Release year").fill("2024")
    await page.get_by_label("Comedy").check()
    await page.get_by_label("Drama").check()
    await page.get_by_label("New actor's name").fill("Ada Lovelace")
    await page.get_by_label("Nationality (2 letters)").fill("gb")
    await page.get_by_role("button", name="Add actor").click()
    await expect(page.get_by_label("Ada Lovelace (GB)")).to_be_checked()
    await page.get_by_role("button", name="Create movie").click()
    await expect(page.get_by_role("heading", name=f"Edit “{title}”")).to_be_visible()
    movie_id = re.search(r"#/admin/movies/([0-9a-f-]{36})", page.url).group(1)  # type: ignore[union-attr]
    movie = await api.call("GET", f"/api/movies/{movie_id}")
    assert movie["status"] == "draft" and movie["genres"] == ["comedy", "drama"]
    assert [a["name"] for a in movie["actors"]] == ["Ada Lovelace"]

    # Upload over a 1 MiB/s line: the bar moves through intermediate values.
    await page.evaluate(
        """() => { window.__progress = [];
            const bar = document.getElementById('upload-progress');
            new MutationObserver(() => window.__progress.push(Number(bar.getAttribute('value'))))
              .observe(bar, {attributes: true, attributeFilter: ['value']}); }"""
    )
    path = await clip
    await page.get_by_label("Video file").set_input_files(str(path))
    await throttle(context, page, up_kib_s=1024)
    await page.get_by_role("button", name="Upload video").click()
    await page.wait_for_function("() => window.__progress.some(v => v >= 25 && v <= 75)")
    await screenshot(page, "upload", docs=True)
    await expect(page.locator("[data-upload=done]")).to_contain_text("ready", timeout=60_000)
    seen = await page.evaluate("window.__progress")
    middle = [v for v in seen if 0 < v < 100]
    assert len(middle) >= 3 and middle == sorted(middle) and seen[-1] == 100, seen
    await expect(page.locator("[data-status]")).to_have_text("ready")
    await page.wait_for_function(
        "() => { const img = document.querySelector('.upload img.poster');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )
    await screenshot(page, "upload-done")
    movie = await api.call("GET", f"/api/movies/{movie_id}")
    assert movie["status"] == "ready"
    assert (
        movie["media"]["video_codec"] == "h264"
        and movie["media"]["size_bytes"] == path.stat().st_size
    )
    assert abs(movie["media"]["duration_s"] - 8) < 0.1

    # Edit: a new title, one genre fewer; the cast stays.
    await page.get_by_label("Title", exact=True).fill(title + " (edited)")
    await page.get_by_label("Drama").uncheck()
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_text("Changes saved.")).to_be_visible()
    movie = await api.call("GET", f"/api/movies/{movie_id}")
    assert movie["title"] == title + " (edited)" and movie["genres"] == ["comedy"]
    assert [a["name"] for a in movie["actors"]] == ["Ada Lovelace"]

    # Delete from the list; it shows again with "include deleted", and comes back.
    await page.get_by_role("link", name="← Manage movies").click()
    row = page.locator("tbody tr", has_text=title)
    await row.get_by_role("button", name=f"Delete {title} (edited)").click()
    await expect(row).to_have_count(0)
    await page.get_by_label("Include deleted movies").check()
    await expect(row.locator(".status")).to_have_text("deleted")
    await row.get_by_role("button", name=re.compile("^Restore")).click()
    await expect(row.locator(".status")).to_have_text("ready")
    assert (await api.call("GET", f"/api/movies/{movie_id}"))["deleted_at"] is None

    # Leave the catalog as the viewer tests expect it.
    admin = await api.login(*ADMIN)
    await api.call("DELETE", f"/api/movies/{movie_id}", admin)


async def test_admin_manages_plans_and_their_movies(
    context: BrowserContext, demo: Demo, api: Api
) -> None:
    page = await open_app(context, demo, "#/signin")
    await sign_in(page, *ADMIN)
    await page.get_by_role("link", name="Manage plans").click()
    await expect(page.locator("tbody tr")).to_have_count(2)
    await page.get_by_role("link", name="New plan").click()

    name = f"Web Plan {uuid.uuid4().hex[:6]}"
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Price per period").fill("3.50")
    await page.get_by_label("Currency").fill("EU")  # the server says what is wrong, at the field
    await page.get_by_label("Simultaneous streams").fill("3")
    await page.get_by_label("Highest video quality (pixels)").select_option("480")
    await page.get_by_label("Drama").check()
    await page.get_by_role("button", name="Create plan").click()
    await expect(page.locator("#main [role=alert]")).to_contain_text("Some fields need attention")
    await expect(page.get_by_label("Currency")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Currency")).to_be_focused()
    await page.get_by_label("Currency").fill("EUR")
    await page.get_by_role("button", name="Create plan").click()
    await expect(page.get_by_role("heading", name=f"Edit plan “{name}”")).to_be_visible()
    plan_id = re.search(r"#/admin/plans/([0-9a-f-]{36})", page.url).group(1)  # type: ignore[union-attr]
    plan = await api.call("GET", f"/api/plans/{plan_id}")
    assert (
        plan["price_cents"],
        plan["currency"],
        plan["max_streams"],
        plan["max_height"],
        plan["genres"],
    ) == (350, "EUR", 3, 480, ["drama"])

    # The plan's movies: one checkbox per movie, saved at once.
    cells = await api.movie("Life of Cells")
    box = page.get_by_label("Life of Cells")
    await expect(page.locator(".plan-movies .count")).to_contain_text("0 of 3 movies included")
    await box.check()
    await expect(page.locator(".plan-movies .count")).to_contain_text("1 of 3 movies included")
    assert (await api.call("GET", f"/api/plans/{plan_id}/movies"))["items"] == [cells["id"]]
    await screenshot(page, "admin-plans", docs=True)
    await box.uncheck()
    await expect(page.locator(".plan-movies .count")).to_contain_text("0 of 3 movies included")
    assert (await api.call("GET", f"/api/plans/{plan_id}/movies"))["items"] == []

    # Rename, then delete and restore from the list.
    await page.get_by_label("Name", exact=True).fill(name + " II")
    await page.get_by_role("button", name="Save plan").click()
    await expect(page.get_by_text("Plan saved.")).to_be_visible()
    assert (await api.call("GET", f"/api/plans/{plan_id}"))["name"] == name + " II"
    await page.get_by_role("link", name="← Manage plans").click()
    await page.get_by_role("button", name=f"Delete plan {name} II").click()
    await expect(page.locator("tbody tr")).to_have_count(2)
    await page.get_by_label("Include deleted plans").check()
    await page.get_by_role("button", name=f"Restore plan {name} II").click()
    await expect(page.get_by_role("button", name=f"Delete plan {name} II")).to_be_visible()

    admin = await api.login(*ADMIN)
    await api.call("DELETE", f"/api/plans/{plan_id}", admin)  # as the viewer tests expect
