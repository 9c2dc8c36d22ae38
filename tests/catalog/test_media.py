"""Media ingest with real videos, real ffmpeg and real storage: what is
measured, what is refused, and that a refused upload leaves nothing behind."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_async
from aiohttp.test_utils import TestClient

from catalog import media
from catalog.app import create_app
from catalog.media import Ingestor, Unplayable
from catalog.resources import Resources
from reelgate.config import Settings
from reelgate.tokens import TokenSigner
from storage import LocalStorage, make_key
from tests.api import Api
from tests.catalog.conftest import Videos
from tests.catalog.support import (
    assert_invalid,
    assert_problem,
    assert_unauthenticated,
    make_movie,
    outbox_rows,
    stored_files,
    upload,
    wait_events,
)
from tests.harness.services import require_binary


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [require_binary("ffprobe"), "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def content_digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


async def assert_nothing_kept(admin: Api, resources: Resources, movie_id: str) -> None:
    assert stored_files(resources) == []  # no object, no temp file
    movie = await admin.ok("GET", f"/api/movies/{movie_id}")
    assert (movie["status"], movie["media"], movie["poster_url"]) == ("draft", None, None)
    assert [row.type for row in await outbox_rows(resources)] == ["movie.created"]


async def test_ingest_measures_the_file(
    admin: Api, api: Api, resources: Resources, videos: Videos, stream: redis_async.Redis
) -> None:
    movie = await make_movie(admin, genres=["drama"])
    data = videos.mp4.read_bytes()
    status, ready, _ = await upload(
        admin, movie["id"], data, {"Content-Digest": content_digest(data)}
    )
    assert status == 200, ready
    truth = ffprobe(videos.mp4)
    video = next(s for s in truth["streams"] if s["codec_type"] == "video")
    audio = next(s for s in truth["streams"] if s["codec_type"] == "audio")
    assert ready["status"] == "ready"
    assert ready["media"] == {
        "size_bytes": len(data),
        "content_type": "video/mp4",
        "sha256": hashlib.sha256(data).hexdigest(),
        "width": 320,
        "height": 240,
        "video_codec": video["codec_name"],
        "audio_codec": audio["codec_name"],
        "bitrate": int(truth["format"]["bit_rate"]),
        "duration_s": pytest.approx(float(truth["format"]["duration"]), abs=0.001),
    }
    assert ready["duration_s"] == ready["media"]["duration_s"]
    assert ready["poster_url"] == f"/api/movies/{movie['id']}/poster"
    assert await api.ok("GET", f"/api/movies/{movie['id']}") == ready
    # The object sits under its content key, byte for byte.
    key = make_key(ready["media"]["sha256"])
    assert resources.storage.local_path(key).read_bytes() == data
    events = await wait_events(stream, 2)
    assert [e["type"] for e in events] == ["movie.created", "movie.media_ready"]
    assert events[1]["data"]["media"]["height"] == 240
    assert events[1]["data"]["status"] == "ready"
    assert (await api.ok("GET", "/api/movies?status=ready"))["total"] == 1


async def test_poster_is_a_real_jpeg_with_validators(
    admin: Api, api: Api, resources: Resources, videos: Videos, tmp_path: Path
) -> None:
    movie = await make_movie(admin)
    path = f"/api/movies/{movie['id']}/poster"
    assert_problem(await api.call("GET", path), 404)
    await admin.ok("PUT", f"/api/movies/{movie['id']}/media", data=videos.wide.read_bytes())
    status, body, headers = await api.call("GET", path)
    assert status == 200
    assert headers["Content-Type"] == "image/jpeg"
    assert body[:3] == b"\xff\xd8\xff" and body[-2:] == b"\xff\xd9"
    assert headers["ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    assert "max-age" in headers["Cache-Control"]
    poster = tmp_path / "poster.jpg"
    poster.write_bytes(body)
    stream = ffprobe(poster)["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 640, 360)
    status, _, _ = await api.call("GET", path, headers={"If-None-Match": headers["ETag"]})
    assert status == 304
    await admin.ok("DELETE", f"/api/movies/{movie['id']}", status=204)
    assert_problem(await api.call("GET", path), 404)


@pytest.mark.parametrize("sample", ["text", "truncated", "audio", "playlist", "empty"])
async def test_unplayable_uploads_are_refused_and_leave_nothing(
    admin: Api, resources: Resources, videos: Videos, sample: str
) -> None:
    movie = await make_movie(admin)
    data = b"" if sample == "empty" else getattr(videos, sample).read_bytes()
    assert_problem(await upload(admin, movie["id"], data), 422, "unplayable_media")
    await assert_nothing_kept(admin, resources, movie["id"])


async def test_webm_is_measured_and_typed(admin: Api, videos: Videos) -> None:
    movie = await make_movie(admin)
    ready = await admin.ok("PUT", f"/api/movies/{movie['id']}/media", data=videos.webm.read_bytes())
    media = ready["media"]
    assert (media["content_type"], media["video_codec"], media["audio_codec"]) == (
        "video/webm",
        "vp8",
        "opus",
    )
    assert (media["width"], media["height"]) == (160, 120)


async def test_digest_mismatch_is_refused_and_leaves_nothing(
    admin: Api, resources: Resources, videos: Videos
) -> None:
    movie = await make_movie(admin)
    data = videos.mp4.read_bytes()
    wrong = content_digest(data + b"x")
    assert_problem(
        await upload(admin, movie["id"], data, {"Content-Digest": wrong}), 422, "digest_mismatch"
    )
    await assert_nothing_kept(admin, resources, movie["id"])
    # Other algorithms are ignored; a broken sha-256 member is the client's error.
    ok = await upload(
        admin, movie["id"], data, {"Content-Digest": "sha-512=:AAAA:, " + content_digest(data)}
    )
    assert ok[0] == 200, ok[1]
    for bad in ("sha-256=abc", "sha-256=:bm90IGEgZGlnZXN0:", "sha-256=:!!!:"):
        assert_invalid(
            await upload(admin, movie["id"], data, {"Content-Digest": bad}), "Content-Digest"
        )


@pytest.fixture
def catalog_settings(settings: Settings, signer: Any, request: pytest.FixtureRequest) -> Settings:
    limit = getattr(request, "param", None)
    if limit is None:
        return settings
    return settings.model_copy(update={"max_upload_bytes": limit})


@pytest.mark.parametrize("catalog_settings", [50_000], indirect=True)
async def test_uploads_over_the_limit_are_413_and_leave_nothing(
    admin: Api, resources: Resources, videos: Videos
) -> None:
    movie = await make_movie(admin)
    data = videos.mp4.read_bytes()
    assert len(data) > 50_000
    # Announced by Content-Length: refused before reading a byte.
    assert_problem(await upload(admin, movie["id"], data), 413, "payload_too_large")

    async def chunked():  # no Content-Length: caught while streaming
        for start in range(0, len(data), 8192):
            yield data[start : start + 8192]

    assert_problem(await upload(admin, movie["id"], chunked()), 413, "payload_too_large")  # type: ignore[arg-type]
    await assert_nothing_kept(admin, resources, movie["id"])


async def test_media_upload_is_not_limited_by_the_json_body_limit(
    admin: Api, settings: Settings, videos: Videos
) -> None:
    movie = await make_movie(admin)
    data = videos.mp4.read_bytes() + b"\0" * (
        settings.max_body_bytes * 2
    )  # padding after moov/mdat
    status, ready, _ = await upload(admin, movie["id"], data)
    assert status == 200, ready
    assert ready["media"]["size_bytes"] == len(data)


async def test_a_client_that_disconnects_mid_upload_leaves_nothing(
    cat_client: TestClient, admin: Api, resources: Resources, videos: Videos
) -> None:
    movie = await make_movie(admin)
    tmp_dir = Path(resources.storage.root) / ".tmp"  # type: ignore[attr-defined]
    _, writer = await asyncio.open_connection(cat_client.host, cat_client.port)
    head = (
        f"PUT /api/movies/{movie['id']}/media HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {admin.token}\r\nContent-Type: video/mp4\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
    )
    writer.write(head.encode() + videos.mp4.read_bytes())
    await writer.drain()
    for _ in range(200):  # the upload is in progress once its temp file exists
        if any(tmp_dir.iterdir()):
            break
        await asyncio.sleep(0.01)
    assert any(tmp_dir.iterdir())
    writer.transport.abort()
    for _ in range(200):
        if not any(tmp_dir.iterdir()):
            break
        await asyncio.sleep(0.01)
    await assert_nothing_kept(admin, resources, movie["id"])


async def test_shared_objects_are_deleted_only_when_nobody_uses_them(
    admin: Api, resources: Resources, videos: Videos
) -> None:
    first, second = await make_movie(admin, "First"), await make_movie(admin, "Second")
    data = videos.mp4.read_bytes()
    a = await admin.ok("PUT", f"/api/movies/{first['id']}/media", data=data)
    b = await admin.ok("PUT", f"/api/movies/{second['id']}/media", data=data)
    shared = resources.storage.local_path(make_key(a["media"]["sha256"]))
    assert b["media"]["sha256"] == a["media"]["sha256"]
    assert len(stored_files(resources)) == 2  # one video, one poster, shared
    # Replacing the first movie's media keeps the object the second still uses.
    replaced = await admin.ok(
        "PUT", f"/api/movies/{first['id']}/media", data=videos.wide.read_bytes()
    )
    assert (replaced["media"]["width"], replaced["media"]["audio_codec"]) == (1280, None)
    assert shared.exists()
    # A soft-deleted movie keeps its media (it can be restored).
    await admin.ok("DELETE", f"/api/movies/{second['id']}", status=204)
    assert shared.exists()
    await admin.ok("POST", f"/api/movies/{second['id']}/restore")
    # Once the second moves on too, nothing refers to the old file: it goes.
    await admin.ok("PUT", f"/api/movies/{second['id']}/media", data=videos.wide.read_bytes())
    assert not shared.exists()
    assert len(stored_files(resources)) == 2  # the wide video and its poster


@pytest.mark.parametrize(("concurrency", "peak"), [(1, 1), (2, 2)])
async def test_ingests_beyond_the_concurrency_wait_their_turn(
    aiohttp_client: Any, settings: Settings, signer: TokenSigner, videos: Videos,
    monkeypatch: pytest.MonkeyPatch, concurrency: int, peak: int,
) -> None:
    """REELGATE_INGEST_CONCURRENCY caps the ffprobe/ffmpeg runs of uploads sent
    together; at 2 the same uploads do overlap (the check can see an overlap)."""
    client = await aiohttp_client(
        create_app(settings.model_copy(update={"ingest_concurrency": concurrency}))
    )
    admin = Api(client, signer.access_token(uuid.uuid4(), "admin", 900))
    real_run, running, seen = media._run, [0], [0]

    async def counted_run(argv: list[str], timeout_s: float) -> tuple[int, bytes, bytes]:
        running[0] += 1
        seen[0] = max(seen[0], running[0])
        try:
            await asyncio.sleep(0.2)  # widens the window an overlap would show in
            return await real_run(argv, timeout_s)
        finally:
            running[0] -= 1

    monkeypatch.setattr(media, "_run", counted_run)
    movies = [await make_movie(admin, f"Movie {n}") for n in range(2)]
    files = [videos.mp4, videos.wide]
    responses = await asyncio.gather(
        *(upload(admin, movie["id"], file.read_bytes()) for movie, file in zip(movies, files))
    )
    assert [status for status, _, _ in responses] == [200, 200], responses
    assert seen[0] == peak


async def test_hostile_paths_fail_safely(
    api: Api, admin: Api, resources: Resources, videos: Videos, cat_client: TestClient
) -> None:
    data = videos.mp4.read_bytes()
    movie = await make_movie(admin)
    for movie_id in [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "..",
        "sha256%2F00",
        "0" * 64,
        f"{movie['id']}%00",
        f"{movie['id']}%2F..%2F..%2Fx",
    ]:
        status, body, _ = await upload(admin, movie_id, data)
        assert status in (404, 405), (movie_id, status, body)
        status, _, _ = await api.call("GET", f"/api/movies/{movie_id}/poster")
        assert status == 404, movie_id
    # Raw request targets with dot segments, which a client would normalize away.
    for target in [
        "/api/movies/../../../etc/passwd/media",
        f"/api/movies/{movie['id']}/../../x/media",
    ]:
        reader, writer = await asyncio.open_connection(cat_client.host, cat_client.port)
        writer.write(
            f"PUT {target} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {admin.token}\r\n"
            f"Content-Length: 4\r\nConnection: close\r\n\r\nabcd".encode()
        )
        status_line = await reader.readline()
        writer.close()
        assert int(status_line.split()[1]) in (400, 404, 405), status_line
    # A file name, a Content-Type or a Content-Disposition never reaches a path either.
    hostile = {
        "Content-Type": "../../x",
        "Content-Disposition": 'attachment; filename="../../../x.mp4"',
        "X-File-Name": "/etc/passwd",
    }
    ok = await admin.ok("PUT", f"/api/movies/{movie['id']}/media", data=data, headers=hostile)
    assert ok["media"]["content_type"] == "video/mp4"
    root = Path(resources.storage.root)  # type: ignore[attr-defined]
    assert all(path.resolve().is_relative_to(root) for path in stored_files(resources))
    assert len(stored_files(resources)) == 2


async def test_media_needs_an_admin_and_a_live_movie(
    api: Api, viewer: Api, admin: Api, resources: Resources, videos: Videos
) -> None:
    movie = await make_movie(admin)
    data = videos.mp4.read_bytes()
    assert_unauthenticated(await upload(api, movie["id"], data))
    assert_problem(await upload(viewer, movie["id"], data), 403)
    await admin.ok("DELETE", f"/api/movies/{movie['id']}", status=204)
    assert_problem(await upload(admin, movie["id"], data), 404)
    assert stored_files(resources) == []


async def test_ingest_from_a_storage_without_local_paths(
    resources: Resources, videos: Videos, tmp_path: Path
) -> None:
    class ObjectStoreLike(LocalStorage):
        """Like S3: no file path, so ffmpeg must work on a temporary copy."""

        def local_path(self, key: str) -> None:  # type: ignore[override]
            return None

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        yield data

    copies = set(Path(tempfile.gettempdir()).glob("reelgate-ingest-*"))
    storage = ObjectStoreLike(tmp_path / "remote")
    ingestor = Ingestor(resources.db, storage, resources.ingestor.tools)
    prepared = await ingestor.prepare(chunks(videos.mp4.read_bytes()), max_bytes=None)
    assert (prepared.info.width, prepared.info.height) == (320, 240)
    assert await storage.exists(prepared.media_key) and await storage.exists(prepared.poster_key)
    with pytest.raises(Unplayable):
        await ingestor.prepare(chunks(videos.truncated.read_bytes()), max_bytes=None)
    assert set(Path(tempfile.gettempdir()).glob("reelgate-ingest-*")) == copies
