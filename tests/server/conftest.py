from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reelgate.config import Settings
from tests.harness.services import require_binary
from tests.stack import Library, Stack, setup_library, start_stack


@pytest.fixture(scope="session")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 4-second H.264/AAC MP4 (a few hundred KB)."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    subprocess.run(
        [require_binary("ffmpeg"), "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=f=440",
         "-t", "4", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-movflags", "+faststart", str(path)],
        check=True, capture_output=True,
    )
    return path


@pytest.fixture
async def stack(settings: Settings, tmp_path: Path) -> AsyncIterator[Stack]:
    settings = settings.model_copy(update={"storage_url": str(tmp_path / "media")})
    stack = await start_stack(settings, media_nodes=2)
    yield stack
    await stack.close()


@pytest.fixture
async def library(stack: Stack, video: Path) -> Library:
    return await setup_library(stack, video)
