"""Media ingest: stream an upload to storage, prove it is a playable video,
measure it, and take a poster frame.

The pipeline (`Ingestor.ingest`):

1. the body streams into `storage.write_stream` chunk by chunk: constant
   memory whatever the size, SHA-256 computed on the way, the size limit and an
   optional RFC 9530 `Content-Digest` enforced by storage (nothing kept on
   failure, nor when the client goes away mid-upload);
2. ffprobe measures the stored file; ffmpeg decodes a frame near the end (a
   truncated file whose index survived still probes fine, but cannot decode
   its tail) and a poster frame at 10% of the duration, stored as `.jpg`. At
   most `REELGATE_INGEST_CONCURRENCY` uploads per process are in this step at
   once; the others wait for a slot;
3. one transaction points the movie at the new objects, marks it `ready` and
   queues `movie.media_ready`;
4. objects nobody references any more (the replaced media, or this upload
   after a failure) are deleted.

Objects are content-addressed, so two movies with the same file share one
object. Deleting is therefore "delete unless referenced", done under a
per-key advisory lock that attaching takes too: a delete can never remove an
object that a concurrent ingest has just deduplicated onto.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ffmpeg
from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from catalog import schemas, service
from catalog.events import is_postgres
from catalog.models import Movie
from reelgate.config import Settings
from reelgate.db import Database
from reelgate.migrate import ensure_migrated
from reelgate.problems import conflict
from storage import ObjectNotFound, Storage, open_storage

log = logging.getLogger("reelgate.catalog.media")

UPLOAD_CHUNK_BYTES = 256 * 1024

# ffprobe's format names we accept, and the Content-Type each is served with.
# Anything else (playlists such as HLS or concat, image sequences, bare
# streams) is refused: a playlist would make ffmpeg read other files.
_CONTAINER_TYPES = {
    "mov,mp4,m4a,3gp,3g2,mj2": "video/mp4",
    "matroska,webm": "video/x-matroska",
    "avi": "video/x-msvideo",
    "mpegts": "video/mp2t",
    "ogg": "video/ogg",
    "flv": "video/x-flv",
    "mpeg": "video/mpeg",
}
# Handed to ffmpeg/ffprobe as -format_whitelist: any other demuxer (a playlist
# above all) is refused before it opens anything.
_DEMUXERS = ",".join(_CONTAINER_TYPES)
_WEBM_CODECS = {"vp8", "vp9", "av1", "opus", "vorbis"}
_DIGEST_MEMBER_RE = re.compile(r"^\s*sha-256\s*=\s*:([A-Za-z0-9+/=]*):\s*$", re.IGNORECASE)


class Unplayable(Exception):
    """The upload is not a video we can serve; the message says why (for clients)."""


@dataclass(frozen=True)
class MediaTools:
    """How to run ffmpeg/ffprobe, and their limits."""

    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"
    timeout_s: float = 120.0
    poster_width: int = 640
    concurrency: int = 2  # ingests probing and decoding at once (per process)


@dataclass(frozen=True)
class MediaInfo:
    """What the API shows as `media`: measured from the file, never taken from the client."""

    size_bytes: int
    content_type: str
    sha256: str
    width: int
    height: int
    video_codec: str
    audio_codec: str | None
    bitrate: int | None
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Prepared:
    """An upload that is stored and proven playable, not yet attached to a movie."""

    media_key: str
    poster_key: str
    info: MediaInfo

    @property
    def keys(self) -> list[str]:
        return [self.media_key, self.poster_key]


# ---------------------------------------------------------------- pure helpers


def parse_content_digest(header: str | None) -> str | None:
    """The sha-256 of an RFC 9530 `Content-Digest` header, as hex; None when absent.

    Other algorithms in the dictionary are ignored (RFC 9530 §2 lets a
    recipient skip what it does not support). A malformed sha-256 member
    raises ValueError: the client meant to protect the upload and got it wrong.
    """
    if not header:
        return None
    for member in header.split(","):
        name = member.split("=", 1)[0].strip().lower()
        if name != "sha-256":
            continue
        match = _DIGEST_MEMBER_RE.match(member)
        if match is None:
            raise ValueError("sha-256 must be a byte sequence, sha-256=:<base64>:")
        try:
            raw = base64.b64decode(match.group(1), validate=True)
        except binascii.Error:
            raise ValueError("sha-256 is not valid base64") from None
        if len(raw) != 32:
            raise ValueError("sha-256 must be 32 bytes")
        return raw.hex()
    return None


def _number(value: Any) -> float | None:
    """A non-negative finite number from ffprobe's JSON (which spells them as strings)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _video_stream(streams: list[dict[str, Any]]) -> dict[str, Any]:
    for stream in streams:
        # Cover art in audio files is a "video" stream too; it does not play.
        attached = stream.get("disposition", {}).get("attached_pic") == 1
        sized = int(stream.get("width") or 0) > 0 and int(stream.get("height") or 0) > 0
        if stream.get("codec_type") == "video" and sized and not attached:
            return stream
    raise Unplayable("the file has no video stream")


def _content_type(fmt: dict[str, Any], codecs: set[str]) -> str:
    format_name = str(fmt.get("format_name", ""))
    content_type = _CONTAINER_TYPES.get(format_name)
    if content_type is None:
        raise Unplayable(f"unsupported container {format_name or 'unknown'!r}")
    # ffprobe names MP4 and QuickTime alike; the file's brand tells them apart.
    if content_type == "video/mp4" and fmt.get("tags", {}).get("major_brand", "").strip() == "qt":
        return "video/quicktime"
    if content_type == "video/x-matroska" and codecs <= _WEBM_CODECS:
        return "video/webm"
    return content_type


def _looks_truncated(streams: list[dict[str, Any]], size: int) -> bool:
    """True when the streams' declared data cannot fit in the file.

    Containers with an index (MP4) report per-stream bitrates computed from it,
    so bitrate x duration is the data the index points at. More than the
    file holds means the end is missing (1% slack for rounding)."""
    declared = 0.0
    for stream in streams:
        bitrate, duration = _number(stream.get("bit_rate")), _number(stream.get("duration"))
        if bitrate and duration:
            declared += bitrate * duration / 8
    return declared > size * 1.01


def video_duration(probe: dict[str, Any]) -> float:
    stream = _video_stream(probe.get("streams", []))
    return (
        _number(stream.get("duration")) or _number(probe.get("format", {}).get("duration")) or 0.0
    )


def media_info(probe: dict[str, Any], *, size: int, sha256: str) -> MediaInfo:
    """Check an ffprobe result and extract what we keep; Unplayable if it is no video."""
    fmt = probe.get("format", {})
    streams = probe.get("streams", [])
    video = _video_stream(streams)
    duration = _number(fmt.get("duration")) or _number(video.get("duration"))
    if not duration:
        raise Unplayable("the file has no duration")
    if _looks_truncated(streams, size):
        raise Unplayable("the file is truncated")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    codecs = {
        str(s.get("codec_name")) for s in streams if s.get("codec_type") in ("video", "audio")
    }
    bitrate = _number(fmt.get("bit_rate"))
    return MediaInfo(
        size_bytes=size,
        content_type=_content_type(fmt, codecs),
        sha256=sha256,
        width=int(video["width"]),
        height=int(video["height"]),
        video_codec=str(video.get("codec_name", "unknown")),
        audio_codec=str(audio["codec_name"]) if audio and audio.get("codec_name") else None,
        bitrate=int(bitrate) if bitrate else None,
        duration_s=round(duration, 3),
    )


# ---------------------------------------------------------------- ffmpeg / ffprobe


async def _run(argv: list[str], timeout_s: float) -> tuple[int, bytes, bytes]:
    """Run a tool with a deadline; the process dies with us if we are cancelled."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await asyncio.shield(process.wait())
        raise
    return process.returncode or 0, out, err


async def probe(tools: MediaTools, path: Path) -> dict[str, Any]:
    """ffprobe's JSON for `path`.

    The arguments are the ones `ffmpeg.probe` (ffmpeg-python) uses; the process
    is run here instead because ffmpeg-python 0.2 has no timeout and blocks a
    thread that cannot be cancelled: a hostile file must not pin either. Only
    the `file` protocol and our containers are allowed, so no upload (say, an
    HLS playlist) can make ffprobe fetch URLs or read other files.
    """
    argv = [tools.ffprobe, "-v", "error", "-protocol_whitelist", "file"]
    argv += ["-format_whitelist", _DEMUXERS]
    argv += ["-show_format", "-show_streams", "-of", "json", f"file:{path}"]
    try:
        code, out, err = await _run(argv, tools.timeout_s)
    except TimeoutError:
        raise Unplayable("probing the file took too long") from None
    if code != 0:
        log.info("ffprobe refused %s: %s", path.name, err.decode(errors="replace")[-300:])
        raise Unplayable("the file is not a readable video")
    try:
        return dict(json.loads(out))
    except ValueError:
        raise Unplayable("the file is not a readable video") from None


async def extract_frame(tools: MediaTools, path: Path, at_s: float, out: Path) -> bytes:
    """Decode one frame at `at_s` into a JPEG at most `poster_width` wide."""
    stream = (
        ffmpeg.input(
            f"file:{path}", ss=f"{at_s:.3f}", protocol_whitelist="file", format_whitelist=_DEMUXERS
        )
        .output(
            str(out),
            vframes=1,
            vf=f"scale='min({tools.poster_width},iw)':-2",
            format="image2",
            vcodec="mjpeg",
            **{"q:v": 3},
        )
        .overwrite_output()
        .global_args("-v", "error", "-nostdin")
    )
    try:
        code, _, err = await _run(stream.compile(cmd=tools.ffmpeg), tools.timeout_s)
    except TimeoutError:
        raise Unplayable("decoding the file took too long") from None
    # ffmpeg exits 0 with no output when the frame's data is missing.
    data = out.read_bytes() if out.exists() else b""
    if code != 0 or not data:
        log.info(
            "no frame at %.2fs of %s: %s", at_s, path.name, err.decode(errors="replace")[-300:]
        )
        raise Unplayable(f"no frame can be decoded at {at_s:.1f}s")
    return data


async def inspect(
    tools: MediaTools, path: Path, *, size: int, sha256: str
) -> tuple[MediaInfo, bytes]:
    """Measure the file and prove it decodes to its end; returns (info, poster JPEG)."""
    result = await probe(tools, path)
    info = media_info(result, size=size, sha256=sha256)
    length = video_duration(result) or info.duration_s
    with tempfile.TemporaryDirectory(prefix="reelgate-frames-") as scratch:
        tail_at = max(0.0, min(length * 0.95, length - 0.5))
        await extract_frame(tools, path, tail_at, Path(scratch) / "tail.jpg")
        poster = await extract_frame(tools, path, length * 0.1, Path(scratch) / "poster.jpg")
    return info, poster


# ---------------------------------------------------------------- the pipeline


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@contextlib.asynccontextmanager
async def local_file(storage: Storage, key: str, size: int) -> AsyncIterator[Path]:
    """A path ffmpeg can read: the object itself when storage is local, else a temp copy."""
    path = storage.local_path(key)
    if path is not None:
        yield path
        return
    fd, name = tempfile.mkstemp(prefix="reelgate-ingest-")
    try:
        with os.fdopen(fd, "wb") as handle:
            async for chunk in storage.open_range(key, 0, max(0, size - 1)):
                await asyncio.to_thread(handle.write, chunk)
        yield Path(name)
    finally:
        os.unlink(name)


def media_tools(settings: Settings) -> MediaTools:
    return MediaTools(
        ffmpeg=settings.ffmpeg_path,
        ffprobe=settings.ffprobe_path,
        timeout_s=settings.media_tool_timeout_s,
        poster_width=settings.poster_width,
        concurrency=settings.ingest_concurrency,
    )


def open_media_storage(settings: Settings) -> Storage:
    return open_storage(
        settings.resolved_storage_url, endpoint_url=settings.s3_endpoint_url or None
    )


class Ingestor:
    """Runs the pipeline for one node; see the module docstring."""

    def __init__(
        self,
        db: Database,
        storage: Storage,
        tools: MediaTools,
        *,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.storage = storage
        self.tools = tools
        self.on_commit = on_commit
        # ffmpeg is CPU-bound: a burst of uploads queues here instead of
        # forking a process per upload and starving the node.
        self._tool_slots = asyncio.Semaphore(tools.concurrency)

    async def prepare(
        self,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int | None,
        expected_sha256: str | None = None,
    ) -> Prepared:
        """Store and check an upload. TooLarge/DigestMismatch/Unplayable leave nothing."""
        stored = await self.storage.write_stream(
            chunks, max_bytes=max_bytes, expected_sha256=expected_sha256
        )
        keys = [stored.key]
        try:
            if stored.size == 0:
                raise Unplayable("the body is empty")
            # The temporary copy (storage without local paths) is made inside the
            # slot too, so waiting uploads do not each hold a copy on disk.
            async with self._tool_slots, local_file(self.storage, stored.key, stored.size) as path:
                info, poster = await inspect(
                    self.tools, path, size=stored.size, sha256=stored.sha256
                )
            poster_object = await self.storage.write_stream(_once(poster), suffix=".jpg")
            keys.append(poster_object.key)
        except BaseException:
            await self.release(keys)
            raise
        return Prepared(media_key=stored.key, poster_key=poster_object.key, info=info)

    async def attach(
        self, prepared: Prepared, movie: Callable[[AsyncSession], Awaitable[Movie]]
    ) -> schemas.MovieOut:
        """Point a movie at the prepared objects and release what it pointed at
        before. `movie` finds (or creates) it inside the attaching transaction."""
        try:
            async with self.db.transaction() as session:
                await self._lock_objects(session, prepared.keys)
                await self._ensure_stored(prepared.keys)
                target = await movie(session)
                previous = [key for key in (target.media_key, target.poster_key) if key]
                view = await service.attach_media(
                    session,
                    target,
                    prepared.media_key,
                    prepared.poster_key,
                    prepared.info.as_dict(),
                )
        except BaseException:
            await self.release(prepared.keys)
            raise
        self.on_commit()
        await self.release([key for key in previous if key not in prepared.keys])
        return view

    async def ingest(
        self,
        movie_id: uuid.UUID,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int | None,
        expected_sha256: str | None = None,
    ) -> schemas.MovieOut:
        prepared = await self.prepare(chunks, max_bytes=max_bytes, expected_sha256=expected_sha256)

        async def existing(session: AsyncSession) -> Movie:
            # Locked: a concurrent update of the movie queues its event before or after ours.
            return await service.get_movie(session, movie_id, for_update=True)

        return await self.attach(prepared, existing)

    async def release(self, keys: list[str]) -> None:
        """Delete each object unless a movie (deleted ones included) still refers to it."""
        for key in dict.fromkeys(keys):
            async with self.db.transaction() as session:
                await self._lock_objects(session, [key])
                used = await session.scalar(
                    select(Movie.id)
                    .where(or_(Movie.media_key == key, Movie.poster_key == key))
                    .limit(1)
                )
                if used is None:
                    await self.storage.delete(key)

    async def _lock_objects(self, session: AsyncSession, keys: list[str]) -> None:
        if not is_postgres(session):
            return  # SQLite: one process, one writer at a time already
        for key in sorted(keys):  # a fixed order: two ingests cannot deadlock
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
            )

    async def _ensure_stored(self, keys: list[str]) -> None:
        """Under the lock: the objects still exist (a concurrent release did not win)."""
        try:
            for key in keys:
                await self.storage.stat(key)
        except ObjectNotFound:
            raise conflict(
                "media_conflict", "The upload was removed concurrently; send it again."
            ) from None


# ---------------------------------------------------------------- from the command line


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, 1024 * 1024):
            yield chunk
    finally:
        handle.close()


async def ingest_file(settings: Settings, path: Path, movie: schemas.MovieIn) -> schemas.MovieOut:
    """`reelgate ingest`: create a movie and ingest a file in one go. Both events
    go through the outbox; a running catalog node's relay publishes them."""
    db = Database(settings.database_url_for("catalog"))
    storage = open_media_storage(settings)
    try:
        await ensure_migrated(db.engine, "catalog")
        ingestor = Ingestor(db, storage, media_tools(settings))
        prepared = await ingestor.prepare(_file_chunks(path), max_bytes=None)

        async def create(session: AsyncSession) -> Movie:
            created = await service.create_movie(session, movie)
            return await service.get_movie(session, created.id, for_update=True)

        return await ingestor.attach(prepared, create)
    finally:
        await storage.close()
        await db.dispose()
