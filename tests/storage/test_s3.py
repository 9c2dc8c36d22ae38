"""S3Storage specifics against a real S3-compatible server (moto in server mode).

The behaviour shared with the local backend is in test_contract.py (run on both).
Here: multipart uploads and the S3 requests they cost, server-side copies (simple and
multipart), dedup without rewriting, connection release, configuration, maintenance.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

import storage.s3 as s3_mod
from reelgate.config import Settings
from storage import (
    DigestMismatch,
    InvalidKey,
    S3Storage,
    StorageError,
    TooLarge,
    make_key,
    open_storage,
)
from storage.s3 import DEFAULT_REGION, parse_s3_url, resolve_endpoint_url
from tests.storage.s3_fixtures import S3_REGION, MotoServer, list_bucket

MiB = 1024 * 1024
PART = 8 * MiB
MakeStore = Callable[..., S3Storage]


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def read_range(store: S3Storage, key: str, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in store.open_range(key, start, end)])


@dataclass
class Call:
    operation: str
    key: str
    body_size: int | None


@dataclass(eq=False)  # hashable: botocore keys its handlers by identity
class RequestLog:
    """The S3 operations a store's client sends, recorded through botocore's event hooks."""

    calls: list[Call] = field(default_factory=list)

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        body = params.get("body")
        size = len(body) if isinstance(body, bytes | bytearray) else None
        key = params.get("url_path", "").partition("?")[0]
        self.calls.append(Call(model.name, key, size))

    def operations(self) -> list[str]:
        return [c.operation for c in self.calls]

    def clear(self) -> None:
        self.calls.clear()


async def record_requests(store: S3Storage) -> RequestLog:
    log = RequestLog()
    client = await store.client()
    client.meta.events.register("before-call.s3", log)
    return log


@pytest.fixture
def store(make_s3_storage: MakeStore) -> S3Storage:
    return make_s3_storage()


async def contents(store: S3Storage, s3_admin: Any) -> list[str]:
    return await list_bucket(s3_admin, store.bucket, store.prefix)


# ---------------------------------------------------------------- multipart uploads


@pytest.mark.parametrize("chunk", [64 * 1024, MiB + 7, 21 * MiB])  # 21 MiB: one chunk, 3 parts
async def test_multipart_upload_above_one_part(store: S3Storage, s3_admin: Any, chunk: int) -> None:
    data = os.urandom(20 * MiB + 123)
    log = await record_requests(store)

    obj = await store.write_stream(stream(*pieces(data, chunk)), suffix=".mkv")

    assert (obj.key, obj.size, obj.sha256) == (make_key(sha(data), ".mkv"), len(data), sha(data))
    assert log.operations() == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
        "HeadObject",  # dedup check on the final key
        "CopyObject",
        "DeleteObject",  # the temp object
    ]
    # Constant memory: every part is exactly one part size, the last one the rest.
    part_sizes = [c.body_size for c in log.calls if c.operation == "UploadPart"]
    assert part_sizes == [PART, PART, len(data) - 2 * PART]
    temp_names = {c.key for c in log.calls if c.operation != "HeadObject" and ".tmp/" in c.key}
    assert len(temp_names) == 1
    assert await contents(store, s3_admin) == [obj.key]
    assert (await store.stat(obj.key)).size == len(data)
    assert await read_range(store, obj.key, 0, len(data) - 1) == data


async def test_exactly_one_part_is_multipart_without_a_tail(store: S3Storage) -> None:
    data = os.urandom(PART)
    log = await record_requests(store)
    obj = await store.write_stream(stream(data[:100], data[100:]))
    assert log.operations()[:3] == [
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
    ]
    assert await read_range(store, obj.key, 0, PART - 1) == data


async def test_small_object_is_one_put_to_its_final_key(store: S3Storage, s3_admin: Any) -> None:
    log = await record_requests(store)
    obj = await store.write_stream(stream(b"poster ", b"bytes"), suffix=".jpg")
    assert log.operations() == ["HeadObject", "PutObject"]
    assert log.calls[1].key.endswith(f"/{store.prefix}/{obj.key}")
    assert await contents(store, s3_admin) == [obj.key]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (PART - 1, PART),  # the two bytes around the first part boundary
        (PART - 100, 2 * PART + 100),  # across both boundaries
        (PART, 2 * PART - 1),  # exactly the second part
        (2 * PART - 5, 20 * MiB + 122),  # into the short last part, to the last byte
        (0, 20 * MiB + 122),  # everything
        (20 * MiB + 122, 20 * MiB + 122),  # the last byte alone
        (123_457, 123_457 + 256 * 1024),  # one chunk and a byte
    ],
)
async def test_ranged_reads_across_part_boundaries(
    multipart_object: tuple[S3Storage, str, bytes], start: int, end: int
) -> None:
    store, key, data = multipart_object
    chunks = [chunk async for chunk in store.open_range(key, start, end)]
    assert b"".join(chunks) == data[start : end + 1]
    assert all(len(c) == store.chunk_size for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= store.chunk_size


@pytest.fixture(scope="module")
async def multipart_object(
    moto_server: MotoServer, s3_session: Any, s3_bucket: str, s3_admin: Any
) -> AsyncIterator[tuple[S3Storage, str, bytes]]:
    """One 20 MiB object (three parts), shared by the read-only tests of this module."""
    store = S3Storage(
        s3_bucket,
        f"t-{secrets.token_hex(6)}",
        endpoint_url=moto_server.endpoint_url,
        region_name=S3_REGION,
        session=s3_session,
    )
    data = os.urandom(20 * MiB + 123)
    obj = await store.write_stream(stream(*pieces(data, MiB)))
    yield store, obj.key, data
    await store.delete(obj.key)
    await store.close()


async def test_known_digest_uploads_straight_to_the_final_key(
    store: S3Storage, s3_admin: Any
) -> None:
    data = os.urandom(17 * MiB)
    key = make_key(sha(data), ".mp4")
    log = await record_requests(store)

    obj = await store.write_stream(
        stream(*pieces(data, MiB)), expected_sha256=sha(data), suffix=".mp4"
    )

    assert obj.key == key
    assert log.operations() == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "HeadObject",
        "CompleteMultipartUpload",  # no temp object, no copy
    ]
    assert {c.key for c in log.calls} == {f"/{store.prefix}/{key}"}
    assert await contents(store, s3_admin) == [key]
    assert await read_range(store, key, PART - 1, 2 * PART) == data[PART - 1 : 2 * PART + 1]

    modified = (await store.stat(key)).mtime
    log.clear()
    again = await store.write_stream(stream(data), expected_sha256=sha(data), suffix=".mp4")
    assert again == obj
    assert log.operations()[-2:] == ["HeadObject", "AbortMultipartUpload"]  # dedup
    assert (await store.stat(key)).mtime == modified
    assert await contents(store, s3_admin) == [key]


async def test_known_digest_mismatch_is_never_visible(store: S3Storage, s3_admin: Any) -> None:
    data = os.urandom(17 * MiB)
    claimed = sha(b"what the client said it would send")
    seen: list[str] = []

    async def chunks() -> AsyncIterator[bytes]:
        for piece in pieces(data, MiB):
            yield piece
        seen.extend(await contents(store, s3_admin))

    with pytest.raises(DigestMismatch):
        await store.write_stream(chunks(), expected_sha256=claimed)
    assert seen == [f"upload:{make_key(claimed)}"]  # in progress: not an object yet
    assert not await store.exists(make_key(claimed))
    assert await contents(store, s3_admin) == []


async def test_part_size_grows_to_fit_max_bytes(store: S3Storage) -> None:
    assert store._part_size_for(None) == PART
    assert store._part_size_for(20 * 1024**3) == PART  # the default upload limit fits
    big = 200 * 1024**3
    size = store._part_size_for(big)
    assert size % MiB == 0 and size * s3_mod.MAX_PARTS >= big


async def test_more_parts_than_s3_allows_is_too_large(
    store: S3Storage, s3_admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_mod, "MAX_PARTS", 2)
    with pytest.raises(TooLarge, match="parts"):
        await store.write_stream(stream(*pieces(os.urandom(20 * MiB), MiB)))
    assert await contents(store, s3_admin) == []


# ---------------------------------------------------------------- dedup and copies


async def test_dedup_of_a_multipart_object_sends_no_copy(store: S3Storage, s3_admin: Any) -> None:
    data = os.urandom(9 * MiB)
    first = await store.write_stream(stream(data))
    modified = (await store.stat(first.key)).mtime
    log = await record_requests(store)

    second = await store.write_stream(stream(*pieces(data, MiB)))

    assert second == first
    assert "CopyObject" not in log.operations()
    assert log.operations()[-2:] == ["HeadObject", "DeleteObject"]  # found; temp removed
    assert (await store.stat(first.key)).mtime == modified
    assert await contents(store, s3_admin) == [first.key]


async def test_dedup_of_a_small_object_sends_no_put(store: S3Storage) -> None:
    first = await store.write_stream(stream(b"same bytes"))
    log = await record_requests(store)
    second = await store.write_stream(stream(b"same ", b"bytes"))
    assert second == first
    assert log.operations() == ["HeadObject"]


async def test_multipart_copy_above_the_copy_threshold(
    make_s3_storage: MakeStore, s3_admin: Any
) -> None:
    """Objects above CopyObject's 5 GiB limit are copied with UploadPartCopy (scaled down)."""
    store = make_s3_storage(copy_threshold=10 * MiB, copy_part_size=6 * MiB)
    data = os.urandom(20 * MiB + 1)
    log = await record_requests(store)

    obj = await store.write_stream(stream(*pieces(data, MiB)))

    ops = log.operations()
    assert "CopyObject" not in ops
    assert ops.count("UploadPartCopy") == 4  # 6 + 6 + 6 + 2 MiB
    assert ops.count("CompleteMultipartUpload") == 2  # the temp upload, then the copy
    assert await contents(store, s3_admin) == [obj.key]
    assert await read_range(store, obj.key, 0, len(data) - 1) == data
    assert (
        await read_range(store, obj.key, 6 * MiB - 3, 12 * MiB + 3)
        == data[6 * MiB - 3 : 12 * MiB + 4]
    )


async def test_failed_multipart_copy_leaves_nothing(
    make_s3_storage: MakeStore, s3_admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_s3_storage(copy_threshold=10 * MiB, copy_part_size=6 * MiB)
    original = s3_mod._MultipartUpload.copy_part
    copied = 0

    async def failing_copy_part(self: Any, number: int, *args: Any) -> None:
        nonlocal copied
        if number == 3:
            raise ConnectionResetError("object store went away")
        await original(self, number, *args)
        copied += 1

    monkeypatch.setattr(s3_mod._MultipartUpload, "copy_part", failing_copy_part)
    with pytest.raises(ConnectionResetError):
        await store.write_stream(stream(*pieces(os.urandom(20 * MiB), MiB)))
    assert await contents(store, s3_admin) == []  # temp object deleted, both uploads aborted


async def test_failed_copy_leaves_nothing(
    store: S3Storage, s3_admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await store.client()

    async def refused_copy(**kwargs: Any) -> None:
        error = {"Error": {"Code": "AccessDenied", "Message": "no"}}
        raise ClientError(error, "CopyObject")

    monkeypatch.setattr(client, "copy_object", refused_copy)
    with pytest.raises(StorageError, match="AccessDenied"):
        await store.write_stream(stream(os.urandom(9 * MiB)))
    assert await contents(store, s3_admin) == []


async def test_second_cancellation_does_not_abandon_the_cleanup(
    store: S3Storage, s3_admin: Any
) -> None:
    """Cancelled again while aborting: the abort finishes in the background; close() waits."""
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield os.urandom(9 * MiB)
        started.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(store.write_stream(stalled()))
    await asyncio.wait_for(started.wait(), 30)
    assert len(await contents(store, s3_admin)) == 1
    task.cancel()
    await asyncio.sleep(0)  # the task is now inside its clean-up
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()
    assert await contents(store, s3_admin) == []


# ---------------------------------------------------------------- reading: connections


async def test_early_close_returns_the_connection_to_a_pool_of_one(
    make_s3_storage: MakeStore,
) -> None:
    """With a single pooled connection, any response left open would block the next request."""
    store = make_s3_storage(max_pool_connections=1, chunk_size=64 * 1024)
    data = os.urandom(4 * MiB)
    key = (await store.write_stream(stream(data))).key
    kept = []  # generators stay referenced: only an explicit close can release them

    for i in range(20):
        gen = store.open_range(key, i, len(data) - 1)
        first = await asyncio.wait_for(anext(gen), 5)
        assert first == data[i : i + 64 * 1024]
        await gen.aclose()  # type: ignore[attr-defined]
        kept.append(gen)

    async def stalled_consumer(started: asyncio.Event) -> None:
        async with contextlib.aclosing(store.open_range(key, 0, len(data) - 1)) as chunks:  # type: ignore[type-var]
            async for _chunk in chunks:
                started.set()
                await asyncio.Event().wait()

    for _ in range(10):
        started = asyncio.Event()
        task = asyncio.create_task(stalled_consumer(started))
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        kept.append(task)

    assert await asyncio.wait_for(read_range(store, key, 0, len(data) - 1), 10) == data


async def test_cancellation_while_the_request_is_in_flight(make_s3_storage: MakeStore) -> None:
    store = make_s3_storage(max_pool_connections=1, chunk_size=64 * 1024)
    data = os.urandom(2 * MiB)
    key = (await store.write_stream(stream(data))).key

    for delay in [0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02] * 3:
        task = asyncio.create_task(read_range(store, key, 0, len(data) - 1))
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert await asyncio.wait_for(read_range(store, key, 0, len(data) - 1), 10) == data


# ---------------------------------------------------------------- layout and maintenance


async def test_objects_live_under_the_prefix(
    make_s3_storage: MakeStore, s3_admin: Any, s3_bucket: str
) -> None:
    prefix = f"t-{secrets.token_hex(4)}/media/v1"
    store = make_s3_storage(prefix=f"/{prefix}/")
    other = make_s3_storage()
    obj = await store.write_stream(stream(b"in a nested prefix"))

    assert store.prefix == prefix
    assert store.object_name(obj.key) == f"{prefix}/{obj.key}"
    assert await list_bucket(s3_admin, s3_bucket, prefix) == [obj.key]
    assert not await other.exists(obj.key)
    assert [k async for k in other.iter_keys()] == []


async def test_empty_prefix_uses_the_bucket_root(
    moto_server: MotoServer, s3_session: Any, s3_admin: Any
) -> None:
    bucket = f"reelgate-root-{secrets.token_hex(4)}"
    await s3_admin.create_bucket(Bucket=bucket)
    store = S3Storage(
        bucket, endpoint_url=moto_server.endpoint_url, region_name=S3_REGION, session=s3_session
    )
    try:
        obj = await store.write_stream(stream(os.urandom(9 * MiB)))
        assert await list_bucket(s3_admin, bucket) == [obj.key]
        assert [k async for k in store.iter_keys()] == [obj.key]
        await store.delete(obj.key)
        assert await list_bucket(s3_admin, bucket) == []
    finally:
        await store.close()
        await s3_admin.delete_bucket(Bucket=bucket)


async def test_iter_keys_skips_junk(store: S3Storage, s3_admin: Any) -> None:
    a = await store.write_stream(stream(b"a"), suffix=".jpg")
    b = await store.write_stream(stream(b"b"))
    base = f"{store.prefix}/"
    for junk in ["sha256/README", f"{a.key}.bak", a.key.replace(a.sha256, "not-a-key"), ".tmp/x"]:
        await s3_admin.put_object(Bucket=store.bucket, Key=base + junk, Body=b"junk")
    await s3_admin.put_object(Bucket=store.bucket, Key=f"{store.prefix}-sibling/{b.key}", Body=b"b")
    try:
        assert sorted([k async for k in store.iter_keys()]) == sorted([a.key, b.key])
    finally:
        await s3_admin.delete_object(Bucket=store.bucket, Key=f"{store.prefix}-sibling/{b.key}")


async def test_cleanup_temp_removes_only_stale_uploads(store: S3Storage, s3_admin: Any) -> None:
    obj = await store.write_stream(stream(b"kept object"))
    tmp = f"{store.prefix}/.tmp/"
    # What a crashed writer leaves: an upload with a part, and a completed temp object.
    upload = await s3_admin.create_multipart_upload(Bucket=store.bucket, Key=tmp + "crashed")
    await s3_admin.upload_part(
        Bucket=store.bucket,
        Key=tmp + "crashed",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"x" * 1000,
    )
    await s3_admin.put_object(Bucket=store.bucket, Key=tmp + "completed", Body=b"y")
    assert len(await contents(store, s3_admin)) == 3

    assert await store.cleanup_temp(older_than_s=3600) == 0  # all of it is recent
    assert len(await contents(store, s3_admin)) == 3
    assert await store.cleanup_temp(older_than_s=-60) == 2
    assert await contents(store, s3_admin) == [obj.key]
    assert await store.cleanup_temp(older_than_s=-60) == 0


async def test_missing_bucket_is_a_storage_error(moto_server: MotoServer, s3_session: Any) -> None:
    store = S3Storage(
        "reelgate-no-such-bucket",
        endpoint_url=moto_server.endpoint_url,
        region_name=S3_REGION,
        session=s3_session,
    )
    try:
        with pytest.raises(StorageError, match="NoSuchBucket"):
            await store.write_stream(stream(b"nowhere to go"))
        with pytest.raises(StorageError, match="NoSuchBucket"):
            await store.write_stream(stream(os.urandom(9 * MiB)))
    finally:
        await store.close()


async def test_local_path_is_none_but_validates(store: S3Storage) -> None:
    assert store.local_path(make_key(sha(b"x"))) is None
    with pytest.raises(InvalidKey):
        store.local_path("../../etc/passwd")


# ---------------------------------------------------------------- configuration


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> pytest.MonkeyPatch:
    for name in [
        *s3_mod.ENDPOINT_ENV_VARS,
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return monkeypatch


def test_open_storage_s3_url(clean_aws_env: pytest.MonkeyPatch) -> None:
    store = open_storage("s3://media-bucket/reelgate/v1", endpoint_url="http://127.0.0.1:9")
    assert isinstance(store, S3Storage)  # synchronous: nothing connected yet
    assert (store.bucket, store.prefix) == ("media-bucket", "reelgate/v1")
    assert store.endpoint_url == "http://127.0.0.1:9"
    assert store.region_name == DEFAULT_REGION
    assert store._config.s3 == {"addressing_style": "path"}
    assert "s3://media-bucket/reelgate/v1" in repr(store)

    bare = open_storage("s3://media-bucket")
    assert isinstance(bare, S3Storage)
    assert (bare.prefix, bare.endpoint_url) == ("", None)  # AWS itself
    assert bare._config.s3 is None  # botocore's default addressing for AWS
    assert open_storage("s3://media-bucket/a%20b/", endpoint_url="").prefix == "a b"


def test_endpoint_precedence(clean_aws_env: pytest.MonkeyPatch) -> None:
    env = {
        "REELGATE_S3_ENDPOINT_URL": "http://reelgate:9000",
        "AWS_ENDPOINT_URL_S3": "http://s3-specific:9000",
        "AWS_ENDPOINT_URL": "http://generic:9000",
    }
    assert resolve_endpoint_url("http://explicit:1", env) == "http://explicit:1"
    assert resolve_endpoint_url(None, env) == "http://reelgate:9000"
    assert resolve_endpoint_url(None, {**env, "REELGATE_S3_ENDPOINT_URL": ""}) == (
        "http://s3-specific:9000"
    )
    assert resolve_endpoint_url(None, {"AWS_ENDPOINT_URL": "http://generic:9000"}) == (
        "http://generic:9000"
    )
    assert resolve_endpoint_url(None, {}) is None

    clean_aws_env.setenv("AWS_ENDPOINT_URL_S3", "http://from-env:9000")
    assert open_storage("s3://media-bucket").endpoint_url == "http://from-env:9000"  # type: ignore[attr-defined]
    store = open_storage("s3://media-bucket", endpoint_url="http://setting:9000")
    assert store.endpoint_url == "http://setting:9000"  # type: ignore[attr-defined]


def test_region_precedence(clean_aws_env: pytest.MonkeyPatch) -> None:
    assert S3Storage("media-bucket").region_name == "us-east-1"
    clean_aws_env.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert S3Storage("media-bucket").region_name == "eu-west-3"
    clean_aws_env.setenv("AWS_REGION", "eu-central-1")
    assert S3Storage("media-bucket").region_name == "eu-central-1"
    assert S3Storage("media-bucket", region_name="ap-south-1").region_name == "ap-south-1"


def test_settings_read_the_endpoint(clean_aws_env: pytest.MonkeyPatch) -> None:
    clean_aws_env.setenv("REELGATE_S3_ENDPOINT_URL", "http://minio:9000")
    clean_aws_env.setenv("REELGATE_STORAGE_URL", "s3://media-bucket/prefix")
    settings = Settings()
    assert settings.s3_endpoint_url == "http://minio:9000"
    store = open_storage(settings.storage_url, endpoint_url=settings.s3_endpoint_url)
    assert isinstance(store, S3Storage)
    assert store.endpoint_url == "http://minio:9000"


async def test_env_configured_store_round_trip(
    clean_aws_env: pytest.MonkeyPatch, moto_server: MotoServer, s3_bucket: str, s3_admin: Any
) -> None:
    """Endpoint, region and credentials from the environment only (botocore's chain)."""
    clean_aws_env.setenv("REELGATE_S3_ENDPOINT_URL", moto_server.endpoint_url)
    clean_aws_env.setenv("AWS_ACCESS_KEY_ID", "env-key")
    clean_aws_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    clean_aws_env.setenv("AWS_REGION", "eu-west-1")
    prefix = f"t-env-{secrets.token_hex(4)}"
    store = open_storage(f"s3://{s3_bucket}/{prefix}")
    try:
        obj = await store.write_stream(stream(b"configured from the environment"))
        assert await read_range(store, obj.key, 0, 9) == b"configured"  # type: ignore[arg-type]
        assert await list_bucket(s3_admin, s3_bucket, prefix) == [obj.key]
        await store.delete(obj.key)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://", "invalid bucket"),
        ("s3:///prefix", "invalid bucket"),
        ("s3://ab/prefix", "invalid bucket"),  # too short
        ("s3://user@bucket/prefix", "invalid bucket"),
        ("s3://bucket:9000/prefix", "invalid bucket"),
        ("s3://bucket/prefix?versionId=1", "no query"),
        ("s3://bucket/prefix#frag", "no query"),
        ("s3://bucket/a/../b", "invalid prefix segment '..'"),
        ("s3://bucket/a/./b", "invalid prefix segment '.'"),
        ("s3://bucket/a//b", "invalid prefix segment ''"),
        ("s3://bucket/a%00b", "invalid prefix segment"),
        ("s3://bucket/a%2F..%2Fb", "invalid prefix segment '..'"),
        ("s3://bucket/a\\b", "invalid prefix segment"),
    ],
)
def test_bad_s3_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_storage(url)


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("S3://bucket/") == ("bucket", "")
    assert parse_s3_url("s3://my.bucket-1/a/b/c/") == ("my.bucket-1", "a/b/c")


def test_bad_tuning_is_refused() -> None:
    with pytest.raises(ValueError, match="part_size"):
        S3Storage("media-bucket", part_size=MiB)
    with pytest.raises(ValueError, match="chunk_size"):
        S3Storage("media-bucket", chunk_size=0)
    with pytest.raises(ValueError, match="copy_threshold"):
        S3Storage("media-bucket", copy_threshold=6 * 1024**3)
