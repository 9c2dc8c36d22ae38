"""Fixtures of the catalog tests: the node on the real test PostgreSQL and
Redis, tokens minted with the test signing key (the catalog only verifies),
and real short videos made by ffmpeg once per session."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_async
from aiohttp.test_utils import TestClient

from catalog.app import create_app
from catalog.resources import RESOURCES, Resources
from reelgate.config import Settings
from reelgate.tokens import TokenSigner, load_or_create_private_key
from tests.api import Api
from tests.harness.services import require_binary


@pytest.fixture(scope="session")
def signer(keys_dir: Path) -> TokenSigner:
    # The same file the `settings` fixture names, so the catalog finds the key.
    return TokenSigner(load_or_create_private_key(keys_dir / "jwt-ed25519.pem"), "reelgate")


@pytest.fixture
def catalog_settings(settings: Settings, signer: TokenSigner) -> Settings:
    return settings


@pytest.fixture
async def cat_client(aiohttp_client: Any, catalog_settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(catalog_settings))


@pytest.fixture
def resources(cat_client: TestClient) -> Resources:
    return cat_client.app[RESOURCES]


@pytest.fixture
def api(cat_client: TestClient) -> Api:
    return Api(cat_client)


@pytest.fixture
def admin(api: Api, signer: TokenSigner) -> Api:
    return api.as_(signer.access_token(uuid.uuid4(), "admin", 900))


@pytest.fixture
def viewer(api: Api, signer: TokenSigner) -> Api:
    return api.as_(signer.access_token(uuid.uuid4(), "viewer", 900))


@pytest.fixture
async def stream(redis_url: str) -> AsyncIterator[redis_async.Redis]:
    client = redis_async.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


# ---------------------------------------------------------------- videos


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [require_binary("ffmpeg"), "-v", "error", "-y", *args], check=True, capture_output=True
    )


class Videos:
    """Sample files, made once per session (about a second of ffmpeg in total)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mp4 = root / "sample.mp4"  # 3 s, 320x240, h264 + aac, faststart
        self.wide = root / "wide.mp4"  # 1 s, 1280x720, h264, no audio
        self.truncated = root / "truncated.mp4"  # first half of sample.mp4
        self.webm = root / "clip.webm"  # 1 s, 160x120, vp8 + opus
        self.audio = root / "audio.m4a"  # aac only
        self.playlist = root / "list.m3u8"  # an HLS playlist pointing at sample.mp4
        self.text = root / "notes.txt"

    def make(self) -> None:
        _ffmpeg(
            "-f", "lavfi", "-i", "testsrc=duration=3:size=320x240:rate=25",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(self.mp4),
        )  # fmt: skip
        _ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=duration=1:size=1280x720:rate=25",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", str(self.wide),
        )  # fmt: skip
        _ffmpeg(
            "-f", "lavfi", "-i", "testsrc=duration=1:size=160x120:rate=10",
            "-f", "lavfi", "-i", "sine=frequency=330:duration=1",
            "-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus", "-shortest",
            str(self.webm),
        )  # fmt: skip
        _ffmpeg(
            "-f", "lavfi", "-i", "sine=frequency=220:duration=2", "-c:a", "aac", str(self.audio)
        )
        self.playlist.write_text(
            f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\n{self.mp4}\n#EXT-X-ENDLIST\n"
        )
        data = self.mp4.read_bytes()
        self.truncated.write_bytes(data[: len(data) // 2])
        self.text.write_text("This is not a video.\n" * 200)


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Videos:
    samples = Videos(tmp_path_factory.mktemp("videos"))
    samples.make()
    return samples
