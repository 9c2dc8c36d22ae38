"""`S3Storage`: the storage port over an S3-compatible object store (aiobotocore).

Layout under `s3://<bucket>/<prefix>`:

    <prefix>/sha256/<aa>/<bb>/<digest>[suffix]   immutable objects (prefix + "/" + key)
    <prefix>/.tmp/<uuid>                         uploads in progress; never reachable as a key

Writing: the key is only known once the whole stream has been hashed, so a
stream of at least one part (8 MiB) is sent as a multipart upload to a temp
name, one part at a time (at most one part is buffered), hashing as it goes.
Only when size and digest are acceptable is the upload completed, copied
server-side to its content key (CopyObject; UploadPartCopy above 5 GiB) unless
that key already holds the object, and the temp object deleted. Two shortcuts
skip the temp name: with `expected_sha256` the key is known up front, so the
multipart upload goes straight to it and is completed only if the digest
matches (S3 shows nothing under a name before completion); and a stream
shorter than one part is fully buffered anyway, so it is hashed first and sent
to its final key in one PutObject (atomic in S3). Every
failure (TooLarge, DigestMismatch, a stream error, cancellation) aborts the
multipart upload or deletes the temp object, so nothing is left behind;
`cleanup_temp` catches what a crash leaves (a bucket lifecycle rule aborting
incomplete multipart uploads after a day is a good second net).

Reading: `open_range` is one ranged GetObject whose body is streamed in
`chunk_size` chunks; the HTTP response is closed however the iteration ends.

Configuration comes from the URL, the arguments and the usual AWS environment
(see `S3Storage.__init__`); credentials come from botocore's default chain
(environment, shared config/credentials files, container or instance roles).
They need s3:GetObject, s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload,
s3:ListMultipartUploadParts, s3:ListBucket (without it S3 answers 403 instead
of 404 for a missing object) and s3:ListBucketMultipartUploads (cleanup_temp).
The client is created on first use, in the running event loop, so constructing
an `S3Storage` is cheap and synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from storage.base import (
    DigestMismatch,
    ObjectInfo,
    ObjectNotFound,
    StatExists,
    StorageError,
    StoredObject,
    TooLarge,
)
from storage.keys import KEY_PREFIX, is_valid_key, make_key, parse_key, validate_suffix
from storage.local import run_blocking

__all__ = [
    "DEFAULT_REGION",
    "ENDPOINT_ENV_VARS",
    "S3Storage",
    "parse_s3_url",
    "resolve_endpoint_url",
]

log = logging.getLogger("reelgate.storage")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

TMP_DIR_NAME = ".tmp"
DEFAULT_REGION = "us-east-1"
# Looked up in this order when no endpoint is passed explicitly.
ENDPOINT_ENV_VARS = ("REELGATE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")

DEFAULT_PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's maximum number of parts per multipart upload
MAX_COPY_OBJECT_SIZE = 5 * GiB  # CopyObject's limit; larger objects need UploadPartCopy
DEFAULT_COPY_PART_SIZE = 512 * MiB
_COPY_CONCURRENCY = 4
_HASH_INLINE_MAX = 256 * KiB  # smaller buffers are hashed on the loop, larger in a thread
_READ_FILE_CHUNK = 1 * MiB  # write_file() read size

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-_]{1,253}[a-z0-9]", re.IGNORECASE)
_SEGMENT_RE = re.compile(r"[^\x00-\x1f\x7f/\\]+")
_DIGEST_RE = re.compile(r"[0-9a-fA-F]{64}")
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


# ---------------------------------------------------------------- configuration


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split `s3://bucket[/prefix]` into (bucket, prefix); prefix has no outer slashes.

    Percent escapes in the prefix are decoded. Refused with ValueError: other
    schemes, a missing or malformed bucket, user info or port, a query or
    fragment, and prefix segments that are empty, `.`/`..`, or contain control
    characters or backslashes.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3":
        raise ValueError(f"not an s3:// URL: {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"s3:// storage URL takes no query or fragment: {url!r}")
    return _check_bucket(parts.netloc, url), _check_prefix(unquote(parts.path), url)


def _check_bucket(bucket: str, where: str) -> str:
    if not bucket or _BUCKET_RE.fullmatch(bucket) is None:
        raise ValueError(
            f"invalid bucket {bucket!r} in {where!r}: expected s3://bucket/prefix "
            "(3-255 of letters, digits, '.', '-', '_')"
        )
    return bucket


def _check_prefix(prefix: str, where: str) -> str:
    """The prefix without outer slashes; ValueError for a segment that is empty, `.`,
    `..`, or has control characters or backslashes."""
    prefix = prefix.strip("/")
    if prefix:
        for segment in prefix.split("/"):
            if segment in (".", "..") or _SEGMENT_RE.fullmatch(segment) is None:
                raise ValueError(f"invalid prefix segment {segment!r} in {where!r}")
    return prefix


def resolve_endpoint_url(
    explicit: str | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The endpoint override: `explicit`, else the first of ENDPOINT_ENV_VARS set; else None
    (AWS's regional endpoint). Empty strings count as unset."""
    if explicit:
        return explicit
    env = os.environ if environ is None else environ
    for name in ENDPOINT_ENV_VARS:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def _resolve_region(
    explicit: str | None, session: AioSession, environ: Mapping[str, str] | None = None
) -> str:
    """`explicit`, else AWS_REGION, else botocore's own setting (AWS_DEFAULT_REGION or the
    profile's `region`), else us-east-1."""
    if explicit:
        return explicit
    env = os.environ if environ is None else environ
    region = env.get("AWS_REGION", "").strip() or session.get_config_variable("region")
    return region or DEFAULT_REGION


# ---------------------------------------------------------------- the backend


class S3Storage(StatExists):
    """Content-addressed objects in an S3 bucket under a prefix (see the module docstring).

    `endpoint_url`: an S3-compatible service (MinIO, Ceph, R2, moto...); None resolves
    it from REELGATE_S3_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS
    itself. With an endpoint override, path-style addressing is used (what such
    services expect). `region_name`: None means AWS_REGION, AWS_DEFAULT_REGION or the
    profile's region, else us-east-1. `session`: an aiobotocore session (credentials
    and profile); None creates a default one.

    `chunk_size` bounds the chunks `open_range` yields; `part_size` is the multipart
    part size (raised automatically when `max_bytes` needs more than 10,000 parts);
    `copy_threshold` and `copy_part_size` control the server-side multipart copy used
    for objects above CopyObject's 5 GiB limit.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        session: AioSession | None = None,
        chunk_size: int = 256 * KiB,
        part_size: int = DEFAULT_PART_SIZE,
        copy_threshold: int = MAX_COPY_OBJECT_SIZE,
        copy_part_size: int = DEFAULT_COPY_PART_SIZE,
        max_pool_connections: int = 50,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE}, got {part_size}")
        if not 0 < copy_threshold <= MAX_COPY_OBJECT_SIZE:
            raise ValueError(f"copy_threshold must be in 1..{MAX_COPY_OBJECT_SIZE}")
        if not MIN_PART_SIZE <= copy_part_size <= MAX_COPY_OBJECT_SIZE:
            raise ValueError(f"copy_part_size must be in {MIN_PART_SIZE}..{MAX_COPY_OBJECT_SIZE}")
        self.bucket = _check_bucket(bucket, bucket)
        self.prefix = prefix = _check_prefix(prefix, prefix)
        self.chunk_size = chunk_size
        self.part_size = part_size
        self.copy_threshold = copy_threshold
        self.copy_part_size = copy_part_size
        self._session = session or get_session()
        self.endpoint_url = resolve_endpoint_url(endpoint_url)
        self.region_name = _resolve_region(region_name, self._session)
        s3_options = {"addressing_style": "path"} if self.endpoint_url else None
        self._config = AioConfig(
            signature_version="s3v4",
            s3=s3_options,
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Loads botocore's JSON models in a thread instead of blocking the loop.
            warm_up_loader_caches=True,
        )
        base = f"{prefix}/" if prefix else ""
        self._objects_prefix = f"{base}{KEY_PREFIX}/"
        self._tmp_prefix = f"{base}{TMP_DIR_NAME}/"
        self._base = base
        self._client: Any = None
        self._client_stack: contextlib.AsyncExitStack | None = None
        self._client_lock = asyncio.Lock()
        self._cleanups: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3Storage:
        """`S3Storage(bucket, prefix, **kwargs)` for `s3://bucket/prefix`."""
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **kwargs)

    def __repr__(self) -> str:
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Storage('s3://{self.bucket}/{self.prefix}'{where})"

    def object_name(self, key: str) -> str:
        """The S3 object name (within the bucket) of a valid key."""
        parse_key(key)
        return self._base + key

    # ---------------------------------------------------------------- client

    async def client(self) -> Any:
        """The aiobotocore S3 client, created on first use (also for tests and tools)."""
        if self._client is not None:
            return self._client
        async with self._client_lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                self._client = await stack.enter_async_context(
                    self._session.create_client(
                        "s3",
                        region_name=self.region_name,
                        endpoint_url=self.endpoint_url,
                        config=self._config,
                    )
                )
                self._client_stack = stack
        return self._client

    async def close(self) -> None:
        """Wait for pending clean-ups, then close the client (a later call reopens it)."""
        while self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        async with self._client_lock:
            stack, self._client_stack, self._client = self._client_stack, None, None
            if stack is not None:
                await stack.aclose()

    # ---------------------------------------------------------------- writing

    async def write_stream(
        self,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int | None = None,
        expected_sha256: str | None = None,
        suffix: str = "",
    ) -> StoredObject:
        """Store the stream under its content key (see `Storage.write_stream`).

        Raises TooLarge as soon as more than `max_bytes` arrive (or the stream needs
        more than S3's 10,000 parts), DigestMismatch after the stream if
        `expected_sha256` (hex, any case) differs, InvalidKey for a bad suffix,
        StorageError when S3 fails. On any failure, cancellation included, the
        multipart upload is aborted / the temp object deleted before the exception
        propagates.
        """
        validate_suffix(suffix)
        expected = _normalize_digest(expected_sha256)
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        part_size = self._part_size_for(max_bytes)

        client = await self.client()
        if expected is not None:
            # The key is known up front: upload straight to it. Nothing is visible
            # there before CompleteMultipartUpload, which only a matching digest reaches.
            name = self._base + make_key(expected, suffix)
        else:
            name = f"{self._tmp_prefix}{uuid.uuid4().hex}"
        upload = _MultipartUpload(client, self.bucket, name)
        hasher = hashlib.sha256()
        size = 0
        buf = bytearray()  # the part being filled: at most one part is held
        try:
            async for chunk in chunks:
                size += len(chunk)
                # Checked per chunk, before buffering: an oversized upload is refused
                # without holding more than one extra chunk.
                if max_bytes is not None and size > max_bytes:
                    raise TooLarge(f"stream exceeds the {max_bytes}-byte limit")
                with memoryview(chunk) as view:
                    pos = 0
                    while len(view) - pos >= part_size - len(buf):
                        room = part_size - len(buf)
                        buf += view[pos : pos + room]
                        pos += room
                        part, buf = buf, bytearray()  # handed over whole: no copy
                        await _hash(hasher, part)
                        await self._s3(upload.add_part(part), "uploading a part")
                        del part
                    buf += view[pos:]
            tail, buf = buf, bytearray()
            await _hash(hasher, tail)
            digest = hasher.hexdigest()
            if expected is not None and digest != expected:
                raise DigestMismatch(f"expected sha256 {expected}, got {digest}")
            key = make_key(digest, suffix)
            if upload.started:
                if tail:
                    await self._s3(upload.add_part(tail), "uploading the last part")
                if expected is not None:
                    await self._s3(self._complete_in_place(client, upload, size), "storing")
                else:
                    await self._s3(upload.complete(), "completing the upload")
                    await self._s3(self._promote(client, upload.name, key, size), "storing")
                    await self._s3(upload.delete_completed(), "removing the temp object")
            else:
                await self._s3(self._put_small(client, key, tail), "storing")
        except BaseException:
            # Awaited, but shielded: a second cancellation leaves it running in the
            # background (close() waits for it) instead of abandoning the upload.
            await self._run_cleanup(upload.discard())
            raise
        return StoredObject(key=key, size=size, sha256=digest)

    async def write_file(
        self,
        path: Path | str,
        *,
        max_bytes: int | None = None,
        expected_sha256: str | None = None,
        suffix: str = "",
    ) -> StoredObject:
        """Store a local file (e.g. an ffmpeg output) through `write_stream`."""
        async with contextlib.aclosing(_read_file(Path(path))) as chunks:
            return await self.write_stream(
                chunks, max_bytes=max_bytes, expected_sha256=expected_sha256, suffix=suffix
            )

    def _part_size_for(self, max_bytes: int | None) -> int:
        """The configured part size, raised (in whole MiB) so `max_bytes` fits in MAX_PARTS."""
        if max_bytes is None or max_bytes <= self.part_size * MAX_PARTS:
            return self.part_size
        return math.ceil(max_bytes / MAX_PARTS / MiB) * MiB

    async def _put_small(self, client: Any, key: str, data: bytes | bytearray) -> None:
        """Store a fully buffered object directly under its final key, unless present."""
        name = self._base + key
        # Same key means same bytes: keep an existing object of the right size
        # (Last-Modified unchanged). A wrong-sized one is damage: replace it.
        if await self._size_of(client, name) == len(data):
            return
        await client.put_object(Bucket=self.bucket, Key=name, Body=data)

    async def _complete_in_place(self, client: Any, upload: _MultipartUpload, size: int) -> None:
        """Finish an upload made under its final name, unless the object is already there."""
        if await self._size_of(client, upload.name) == size:
            await upload.abort()  # dedup: keep the existing object (Last-Modified unchanged)
        else:
            await upload.complete()
            upload.keep = True

    async def _promote(self, client: Any, tmp_name: str, key: str, size: int) -> None:
        """Server-side copy of the completed temp object to `key`, unless already there."""
        name = self._base + key
        if await self._size_of(client, name) == size:
            return
        source = {"Bucket": self.bucket, "Key": tmp_name}
        if size <= self.copy_threshold:
            await client.copy_object(Bucket=self.bucket, Key=name, CopySource=source)
        else:
            await self._multipart_copy(client, source, name, size)

    async def _multipart_copy(
        self, client: Any, source: dict[str, str], name: str, size: int
    ) -> None:
        """UploadPartCopy in parallel parts, for sources above CopyObject's limit."""
        part_size = max(self.copy_part_size, math.ceil(size / MAX_PARTS))
        upload = _MultipartUpload(client, self.bucket, name)
        try:
            await upload.start()
            semaphore = asyncio.Semaphore(_COPY_CONCURRENCY)

            async def copy_part(number: int, first: int, last: int) -> None:
                async with semaphore:
                    await upload.copy_part(number, source, first, last)

            try:
                async with asyncio.TaskGroup() as group:
                    for number, first in enumerate(range(0, size, part_size), start=1):
                        last = min(first + part_size, size) - 1
                        group.create_task(copy_part(number, first, last))
            except BaseExceptionGroup as group_error:
                # The first failure stands for the group (the others were its siblings'
                # reactions, or the same outage); callers expect a plain exception.
                raise group_error.exceptions[0] from None
            await upload.complete()
        except BaseException:
            await self._run_cleanup(upload.discard())
            raise

    async def _run_cleanup(self, cleanup: Awaitable[None]) -> None:
        task = asyncio.ensure_future(cleanup)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        await asyncio.shield(task)

    # ---------------------------------------------------------------- reading

    async def stat(self, key: str) -> ObjectInfo:
        """Size and mtime (Last-Modified) of the object; ObjectNotFound if missing."""
        name = self.object_name(key)
        client = await self.client()
        try:
            head = await self._s3(client.head_object(Bucket=self.bucket, Key=name), key)
        except _NotFound:
            raise ObjectNotFound(key) from None
        return ObjectInfo(
            key=key, size=head["ContentLength"], mtime=head["LastModified"].timestamp()
        )

    def open_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield bytes `start..end` inclusive in chunks of exactly `chunk_size` (the last
        one may be shorter), from one ranged GetObject.

        Key and range syntax are checked here, eagerly. ObjectNotFound, and
        ValueError for an `end` past the object's last byte, come from the first
        iteration (the request is sent then). The HTTP response is closed however
        the iteration ends: exhaustion, `aclose()`, cancellation or garbage collection.
        """
        name = self.object_name(key)
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range {start}-{end}")
        return self._iter_range(key, name, start, end)

    async def _iter_range(self, key: str, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        client = await self.client()
        request = client.get_object(Bucket=self.bucket, Key=name, Range=f"bytes={start}-{end}")
        try:
            response = await self._s3(request, key)
        except _NotFound:
            raise ObjectNotFound(key) from None
        except _RangeNotSatisfiable as exc:
            raise ValueError(
                f"byte range {start}-{end} is outside a {exc.size or '?'}-byte object"
            ) from None
        async with response["Body"] as body:
            _check_content_range(key, response.get("ContentRange"), start, end)
            pos = start
            while pos <= end:
                want = min(self.chunk_size, end - pos + 1)
                data = await self._s3(_read_exactly(body, want), key)
                if len(data) != want:
                    raise StorageError(f"{key}: unexpected end of object at byte {pos + len(data)}")
                pos += want
                yield data

    def local_path(self, key: str) -> None:
        """Always None (no sendfile from an object store); InvalidKey for a bad key."""
        parse_key(key)

    # ---------------------------------------------------------------- maintenance

    async def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        name = self.object_name(key)
        client = await self.client()
        await self._s3(client.delete_object(Bucket=self.bucket, Key=name), key)

    async def iter_keys(self) -> AsyncIterator[str]:
        """Yield the key of every stored object (for garbage collection), in listing order.

        Names under the prefix that are not valid keys are skipped.
        """
        async for item in self._list_objects(self._objects_prefix):
            key = item["Key"][len(self._base) :]
            if is_valid_key(key):
                yield key

    async def cleanup_temp(self, older_than_s: float = 3600.0) -> int:
        """Abort multipart uploads and delete temp objects left by crashed writers that
        show no activity for `older_than_s` seconds; return how many were removed.

        An upload's activity is its latest part (or its start when it has none), so a
        long upload still sending parts is left alone.
        """
        client = await self.client()
        cutoff = time.time() - older_than_s
        removed = 0
        uploads = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self._tmp_prefix
        )
        async for page in _pages(self, uploads, "listing uploads"):
            for upload in page.get("Uploads", []):
                last = upload["Initiated"].timestamp()
                parts = client.get_paginator("list_parts").paginate(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                try:
                    async for parts_page in _pages(self, parts, "listing parts"):
                        for part in parts_page.get("Parts", []):
                            last = max(last, part["LastModified"].timestamp())
                except _UploadGone:
                    continue  # completed or aborted meanwhile
                if last < cutoff:
                    await self._s3(
                        _abort(client, self.bucket, upload["Key"], upload["UploadId"]),
                        "aborting an upload",
                    )
                    removed += 1
        async for item in self._list_objects(self._tmp_prefix):
            if item["LastModified"].timestamp() < cutoff:
                await self._s3(
                    client.delete_object(Bucket=self.bucket, Key=item["Key"]), "deleting"
                )
                removed += 1
        return removed

    async def _list_objects(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        client = await self.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        async for page in _pages(self, pages, "listing objects"):
            for item in page.get("Contents", []):
                yield item

    # ---------------------------------------------------------------- helpers

    async def _size_of(self, client: Any, name: str) -> int | None:
        """ContentLength of `name`, or None if there is no such object."""
        try:
            head = await self._s3(client.head_object(Bucket=self.bucket, Key=name), name)
        except _NotFound:
            return None
        return int(head["ContentLength"])

    async def _s3(self, call: Awaitable[Any], what: str) -> Any:
        """Await an S3 call, translating botocore errors into storage errors."""
        try:
            return await call
        except ClientError as exc:
            raise _translate(exc, what) from exc
        except BotoCoreError as exc:
            raise StorageError(f"{what}: {exc}") from exc


# ---------------------------------------------------------------- multipart uploads


@dataclass(frozen=True)
class _Part:
    number: int
    etag: str
    checksums: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"PartNumber": self.number, "ETag": self.etag, **self.checksums}


_CHECKSUM_FIELDS = (
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
)


class _MultipartUpload:
    """One multipart upload of `name`; `discard()` leaves nothing behind, whatever the
    state, except a completed object marked `keep`."""

    def __init__(self, client: Any, bucket: str, name: str) -> None:
        self.client = client
        self.bucket = bucket
        self.name = name
        self.upload_id: str | None = None
        self.parts: list[_Part] = []
        self.completed = False
        self.deleted = False
        self.keep = False

    @property
    def started(self) -> bool:
        return self.upload_id is not None

    async def start(self) -> None:
        response = await self.client.create_multipart_upload(Bucket=self.bucket, Key=self.name)
        self.upload_id = response["UploadId"]

    async def add_part(self, data: bytes | bytearray) -> None:
        if self.upload_id is None:
            await self.start()
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise TooLarge(f"stream needs more than {MAX_PARTS} parts of {len(data)} bytes")
        response = await self.client.upload_part(
            Bucket=self.bucket, Key=self.name, UploadId=self.upload_id, PartNumber=number, Body=data
        )
        checksums = {f: response[f] for f in _CHECKSUM_FIELDS if response.get(f)}
        self.parts.append(_Part(number, response["ETag"], checksums))

    async def copy_part(self, number: int, source: dict[str, str], first: int, last: int) -> None:
        response = await self.client.upload_part_copy(
            Bucket=self.bucket,
            Key=self.name,
            UploadId=self.upload_id,
            PartNumber=number,
            CopySource=source,
            CopySourceRange=f"bytes={first}-{last}",
        )
        result = response["CopyPartResult"]
        checksums = {f: result[f] for f in _CHECKSUM_FIELDS if result.get(f)}
        self.parts.append(_Part(number, result["ETag"], checksums))

    async def complete(self) -> None:
        parts = sorted(self.parts, key=lambda p: p.number)
        await self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.name,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": [p.as_dict() for p in parts]},
        )
        self.completed = True

    async def abort(self) -> None:
        if self.upload_id is not None:
            await _abort(self.client, self.bucket, self.name, self.upload_id)
            self.upload_id = None

    async def delete_completed(self) -> None:
        await self.client.delete_object(Bucket=self.bucket, Key=self.name)
        self.deleted = True

    async def discard(self) -> None:
        """Abort the upload, or delete the object it produced. Logs instead of raising:
        it runs while another exception propagates."""
        try:
            if self.upload_id is not None and not self.completed:
                await self.abort()
            elif self.completed and not self.deleted and not self.keep:
                await self.client.delete_object(Bucket=self.bucket, Key=self.name)
                self.deleted = True
        except Exception:
            log.warning("could not clean up s3://%s/%s", self.bucket, self.name, exc_info=True)


async def _abort(client: Any, bucket: str, name: str, upload_id: str) -> None:
    try:
        await client.abort_multipart_upload(Bucket=bucket, Key=name, UploadId=upload_id)
    except ClientError as exc:
        if _error_code(exc) != "NoSuchUpload":  # already aborted or completed
            raise


# ---------------------------------------------------------------- errors


class _NotFound(ObjectNotFound):
    """404 from S3 for an object; callers turn it into ObjectNotFound(key) or None."""


class _UploadGone(StorageError):
    """NoSuchUpload: the multipart upload was completed or aborted meanwhile."""


class _RangeNotSatisfiable(StorageError):
    def __init__(self, message: str, size: int | None) -> None:
        super().__init__(message)
        self.size = size


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _translate(exc: ClientError, what: str) -> StorageError:
    code = _error_code(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _NOT_FOUND_CODES:
        return _NotFound(what)
    if code == "NoSuchUpload":
        return _UploadGone(f"{what}: the multipart upload no longer exists")
    if code == "InvalidRange" or status == 416:
        actual = exc.response.get("Error", {}).get("ActualObjectSize")
        return _RangeNotSatisfiable(what, int(actual) if str(actual).isdigit() else None)
    return StorageError(f"{what}: S3 error {code or status}: {exc}")


def _check_content_range(key: str, header: str | None, start: int, end: int) -> None:
    """The response must be exactly the requested range; ValueError if `end` is past the
    object's end (S3 then answers with a shorter range rather than 416)."""
    m = _CONTENT_RANGE_RE.fullmatch(header or "")
    if m is None:
        raise StorageError(f"{key}: no usable Content-Range in a ranged response ({header!r})")
    got_start, got_end, total = int(m[1]), int(m[2]), m[3]
    if total != "*" and end >= int(total):
        raise ValueError(f"byte range {start}-{end} is outside a {total}-byte object")
    if (got_start, got_end) != (start, end):
        raise StorageError(f"{key}: asked for bytes {start}-{end}, got {got_start}-{got_end}")


# ---------------------------------------------------------------- small helpers


async def _read_exactly(body: Any, n: int) -> bytes:
    """Up to `n` bytes from a streaming body: fewer only at its end."""
    data = await body.read(n)
    if len(data) == n or not data:
        return bytes(data)
    parts = [data]
    got = len(data)
    while got < n:
        more = await body.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


async def _hash(hasher: Any, data: bytes | bytearray) -> None:
    # hashlib releases the GIL on large buffers: hash whole parts off the loop.
    if len(data) <= _HASH_INLINE_MAX:
        hasher.update(data)
    else:
        await asyncio.to_thread(hasher.update, data)


async def _pages(
    storage: S3Storage, pages: AsyncIterable[dict[str, Any]], what: str
) -> AsyncIterator[dict[str, Any]]:
    iterator = aiter(pages)
    while True:
        try:
            page = await storage._s3(anext(iterator), what)
        except StopAsyncIteration:
            return
        yield page


async def _read_file(path: Path, chunk: int = _READ_FILE_CHUNK) -> AsyncGenerator[bytes, None]:
    fd = await run_blocking(os.open, path, os.O_RDONLY | os.O_CLOEXEC, release=os.close)
    try:
        while data := await run_blocking(os.read, fd, chunk):
            yield data
    finally:
        os.close(fd)  # synchronous: also runs from the async-generator finalizer


def _normalize_digest(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or _DIGEST_RE.fullmatch(value) is None:
        raise ValueError(f"expected_sha256 must be 64 hex digits, got {value!r}")
    return value.lower()
