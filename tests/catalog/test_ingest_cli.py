"""`reelgate ingest FILE`: an operator's library on disk, through the same
pipeline and outbox as the API (the running node's relay publishes)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import redis.asyncio as redis_async

from catalog.resources import Resources
from reelgate.cli import build_parser, cmd_ingest
from reelgate.config import Settings
from tests.api import Api
from tests.catalog.conftest import Videos
from tests.catalog.support import movie_count, stored_files, wait_events


async def reelgate(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "REELGATE_DATABASE_URL": settings.database_url,
        "REELGATE_VAR_DIR": str(settings.var_dir),
        "REELGATE_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reelgate.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_ingest_command_creates_a_ready_movie(
    api: Api, resources: Resources, settings: Settings, videos: Videos, stream: redis_async.Redis
) -> None:
    code, out, err = await reelgate(
        settings, "ingest", str(videos.mp4), "--title", "From Disk", "--genre", "drama",
        "--genre", "war", "--year", "2020",
    )  # fmt: skip
    assert code == 0, err
    movie_id = out.split()[0]
    movie = await api.ok("GET", f"/api/movies/{movie_id}")
    assert (movie["title"], movie["genres"], movie["release_year"]) == (
        "From Disk",
        ["drama", "war"],
        2020,
    )
    assert (movie["status"], movie["media"]["width"], movie["media"]["size_bytes"]) == (
        "ready", 320, videos.mp4.stat().st_size,
    )  # fmt: skip
    assert (await api.call("GET", f"/api/movies/{movie_id}/poster"))[0] == 200
    events = await wait_events(stream, 2)  # relayed by the node on its next poll
    assert [(e["type"], e["data"]["id"]) for e in events] == [
        ("movie.created", movie_id), ("movie.media_ready", movie_id),
    ]  # fmt: skip


async def test_ingest_command_refuses_what_is_not_a_video(
    resources: Resources,
    settings: Settings,
    videos: Videos,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def ingest(*argv: str) -> int:
        args = build_parser().parse_args(["ingest", *argv])
        # In a thread: the command runs its own event loop, as from a shell.
        return await asyncio.to_thread(cmd_ingest, args, settings)

    assert await ingest(str(videos.truncated), "--title", "Broken") == 1
    assert "not a playable video" in capsys.readouterr().err
    assert await ingest(str(videos.mp4), "--title", "X", "--genre", "opera") == 2
    assert "genres" in capsys.readouterr().err
    assert await ingest(str(tmp_path / "missing.mp4"), "--title", "X") == 2
    assert await movie_count(resources) == 0
    assert stored_files(resources) == []
