"""The storage port's behaviour, asserted identically on every backend (local and S3).

Content-addressed keys, dedup, TooLarge / DigestMismatch / stream errors / cancellation
leaving nothing behind, open_range edges, early close, key validation. Each test runs
once per backend (the `backend` fixture, tests/storage/conftest.py); backend-specific
behaviour lives in test_local.py and test_s3.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from storage import DigestMismatch, InvalidKey, ObjectNotFound, Storage, TooLarge, make_key
from tests.storage.backends import Backend, open_fd_count

MiB = 1024 * 1024


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def read_all(store: Storage, key: str, start: int, end: int) -> list[bytes]:
    return [chunk async for chunk in store.open_range(key, start, end)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- writing


async def test_round_trip(backend: Backend) -> None:
    store = backend.store
    data = os.urandom(3 * MiB + 17)
    obj = await store.write_stream(stream(data[:1000], data[1000:]), suffix=".mp4")

    digest = sha(data)
    assert obj.sha256 == digest
    assert obj.size == len(data)
    assert obj.key == f"sha256/{digest[:2]}/{digest[2:4]}/{digest}.mp4"
    assert await backend.raw_bytes(obj.key) == data
    assert store.local_path(obj.key) == backend.expected_local_path(obj.key)

    info = await store.stat(obj.key)
    assert (info.key, info.size) == (obj.key, len(data))
    assert info.mtime == pytest.approx(await backend.raw_mtime(obj.key))
    assert b"".join(await read_all(store, obj.key, 0, len(data) - 1)) == data
    assert await store.exists(obj.key)
    assert [k async for k in store.iter_keys()] == [obj.key]
    assert await backend.temp_entries() == []
    assert await backend.leftovers() == [obj.key]


async def test_empty_stream_is_a_valid_object(backend: Backend) -> None:
    obj = await backend.store.write_stream(stream())
    assert (obj.size, obj.sha256) == (0, sha(b""))
    assert (await backend.store.stat(obj.key)).size == 0


async def test_same_bytes_twice_gives_one_object(backend: Backend) -> None:
    data = os.urandom(100_000)
    first = await backend.store.write_stream(stream(data))
    old = await backend.age(first.key)

    second = await backend.store.write_stream(stream(data[:7], data[7:]))

    assert second == first
    assert await backend.leftovers() == [first.key]
    # The existing object was kept, not rewritten: its mtime (Last-Modified) is unchanged.
    assert await backend.raw_mtime(first.key) == pytest.approx(old)


async def test_concurrent_writes_of_same_bytes(backend: Backend) -> None:
    data = os.urandom(2 * MiB)
    results = await asyncio.gather(*(backend.store.write_stream(stream(data)) for _ in range(8)))
    assert len({r.key for r in results}) == 1
    assert await backend.leftovers() == [results[0].key]
    assert await backend.raw_bytes(results[0].key) == data


async def test_truncated_existing_object_is_replaced(backend: Backend) -> None:
    data = b"complete object bytes"
    key = make_key(sha(data))
    await backend.plant(key, data[:5])

    obj = await backend.store.write_stream(stream(data))

    assert await backend.raw_bytes(key) == data
    assert await backend.leftovers() == [obj.key]


async def test_too_large_stops_reading_and_keeps_nothing(backend: Backend) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while pulled < 100:  # bounded, so a missing limit check fails instead of hanging
            pulled += 1
            yield b"x" * (256 * 1024)

    with pytest.raises(TooLarge):
        await backend.store.write_stream(endless(), max_bytes=3 * MiB)

    assert pulled == 13  # 12 chunks fill the limit exactly; the 13th exceeds it
    assert await backend.leftovers() == []


async def test_too_large_after_several_parts_keeps_nothing(backend: Backend) -> None:
    """Past S3's part size: parts were already uploaded when the limit is hit."""
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while pulled < 100:
            pulled += 1
            yield os.urandom(MiB)

    with pytest.raises(TooLarge):
        await backend.store.write_stream(endless(), max_bytes=20 * MiB)

    assert pulled == 21
    assert await backend.leftovers() == []


async def test_exactly_max_bytes_is_accepted(backend: Backend) -> None:
    obj = await backend.store.write_stream(stream(b"abc", b"de"), max_bytes=5)
    assert obj.size == 5
    with pytest.raises(TooLarge):
        await backend.store.write_stream(stream(b"abc", b"def"), max_bytes=5)


@pytest.mark.parametrize("size", [2 * MiB, 17 * MiB])  # one PutObject / multipart on S3
async def test_digest_mismatch_keeps_nothing(backend: Backend, size: int) -> None:
    data = os.urandom(size)
    with pytest.raises(DigestMismatch):
        await backend.store.write_stream(stream(data), expected_sha256=sha(b"something else"))
    assert await backend.leftovers() == []


async def test_expected_digest_is_case_insensitive(backend: Backend) -> None:
    data = b"movie poster"
    obj = await backend.store.write_stream(stream(data), expected_sha256=sha(data).upper())
    assert obj.sha256 == sha(data)


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, sha(b"x") + "0"])
async def test_malformed_expected_digest_is_rejected(backend: Backend, bad: str) -> None:
    with pytest.raises(ValueError, match="expected_sha256"):
        await backend.store.write_stream(stream(b"data"), expected_sha256=bad)
    assert await backend.leftovers() == []


async def test_stream_error_midway_removes_partial_data(backend: Backend) -> None:
    seen_stored: list[str] = []
    error = ConnectionResetError("client went away")

    async def disconnecting() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(3 * MiB)  # 9 MiB: more than one S3 part
        await asyncio.sleep(0)
        seen_stored.extend(await backend.temp_entries())  # the partial data really was stored
        raise error

    with pytest.raises(ConnectionResetError) as exc_info:
        await backend.store.write_stream(disconnecting())

    assert exc_info.value is error
    assert len(seen_stored) == 1
    assert await backend.leftovers() == []


async def test_cancellation_midway_removes_partial_data(backend: Backend) -> None:
    streaming = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield os.urandom(9 * MiB)  # more than one S3 part
        yield b"tail"
        streaming.set()
        await asyncio.Event().wait()  # the client stalls forever
        yield b"never"

    task = asyncio.create_task(backend.store.write_stream(stalled()))
    await asyncio.wait_for(streaming.wait(), 30)
    assert len(await backend.temp_entries()) == 1
    assert await backend.partial_bytes() >= 8 * MiB

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await backend.leftovers() == []


@pytest.mark.parametrize(
    "suffix", ["/../x", "..", ".JPG", ".abcdefghi", ".", "jpg", ".j\0", ".a/b", ".jpg\n"]
)
async def test_invalid_suffix_is_rejected(backend: Backend, suffix: str) -> None:
    with pytest.raises(InvalidKey):
        await backend.store.write_stream(stream(b"data"), suffix=suffix)
    assert await backend.leftovers() == []


async def test_write_file(backend: Backend, tmp_path: Path) -> None:
    src = tmp_path / "movie.mp4"
    data = os.urandom(3 * MiB + 5)
    src.write_bytes(data)

    obj = await backend.store.write_file(src, suffix=".mp4")

    assert obj.sha256 == sha(data)
    assert await backend.raw_bytes(obj.key) == data


async def test_write_file_too_large_closes_source(backend: Backend, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * MiB))
    before = await backend.open_resources()
    with pytest.raises(TooLarge):
        await backend.store.write_file(src, max_bytes=MiB)
    assert await backend.open_resources() == before
    assert await backend.leftovers() == []


# ---------------------------------------------------------------- reading

DATA = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable mod 256


@pytest.fixture
async def small_chunks(backend: Backend) -> tuple[Storage, str]:
    store = backend.make_store(chunk_size=16)
    obj = await store.write_stream(stream(DATA))
    return store, obj.key


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 0),  # first byte
        (1023, 1023),  # last byte
        (0, 1023),  # whole file
        (0, 15),  # exactly one chunk
        (0, 16),  # one chunk and one byte
        (15, 16),  # straddles a chunk boundary
        (16, 31),  # second chunk exactly
        (500, 500),  # start == end
        (1, 1022),  # unaligned both ends
        (1000, 1023),  # tail
    ],
)
async def test_open_range_edges(small_chunks: tuple[Storage, str], start: int, end: int) -> None:
    store, key = small_chunks
    chunks = await read_all(store, key, start, end)
    assert b"".join(chunks) == DATA[start : end + 1]
    assert all(0 < len(c) <= 16 for c in chunks)
    assert len(chunks) == -(-(end - start + 1) // 16)


@pytest.mark.parametrize(("start", "end"), [(-1, 5), (5, 4), (-3, -1)])
async def test_open_range_rejects_bad_ranges_eagerly(
    small_chunks: tuple[Storage, str], start: int, end: int
) -> None:
    store, key = small_chunks
    with pytest.raises(ValueError):
        store.open_range(key, start, end)


@pytest.mark.parametrize(("start", "end"), [(0, 1024), (1024, 1024), (1000, 5000)])
async def test_open_range_past_the_end(
    backend: Backend, small_chunks: tuple[Storage, str], start: int, end: int
) -> None:
    store, key = small_chunks
    before = await backend.open_resources()
    with pytest.raises(ValueError, match="outside"):
        await read_all(store, key, start, end)
    assert await backend.open_resources() == before


async def test_missing_object(backend: Backend) -> None:
    store = backend.store
    key = make_key(sha(b"never stored"), ".jpg")
    with pytest.raises(ObjectNotFound):
        await store.stat(key)
    with pytest.raises(ObjectNotFound):
        await read_all(store, key, 0, 0)
    assert not await store.exists(key)
    await store.delete(key)  # idempotent: no error


async def test_delete(backend: Backend) -> None:
    store = backend.store
    obj = await store.write_stream(stream(b"to be deleted"))
    await store.delete(obj.key)
    assert not await store.exists(obj.key)
    assert await backend.leftovers() == []
    await store.delete(obj.key)


async def test_early_close_releases_the_stream(
    backend: Backend, small_chunks: tuple[Storage, str]
) -> None:
    store, key = small_chunks
    before = await backend.open_resources()

    for _ in range(backend.repeat):  # explicit aclose after the first chunk
        gen = store.open_range(key, 0, 1023)
        assert await anext(gen) == DATA[:16]
        await gen.aclose()  # type: ignore[attr-defined]
    assert await backend.open_resources() == before

    for _ in range(backend.repeat):  # abandoned generator: the loop's asyncgen finalizer closes it
        gen = store.open_range(key, 0, 1023)
        await anext(gen)
        del gen
    gc.collect()
    for _ in range(5):  # the finalizer schedules aclose() as a task; let those run
        await asyncio.sleep(0)
    assert await backend.open_resources() == before


async def test_cancelled_consumer_releases_the_stream(
    backend: Backend, small_chunks: tuple[Storage, str]
) -> None:
    """The handler pattern: aclosing() around open_range, client stalls, request cancelled."""
    store, key = small_chunks
    before = await backend.open_resources()
    reading = asyncio.Event()

    async def stalled_consumer() -> None:
        async with contextlib.aclosing(store.open_range(key, 0, 1023)) as chunks:  # type: ignore[type-var]
            async for _chunk in chunks:
                reading.set()
                await asyncio.Event().wait()

    for _ in range(backend.repeat):
        reading.clear()
        task = asyncio.create_task(stalled_consumer())
        await reading.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await backend.open_resources() == before


async def test_early_close_of_a_large_object_releases_the_stream(backend: Backend) -> None:
    """Most of the object is still unread (on S3: in flight) when the reader stops."""
    store = backend.make_store(chunk_size=64 * 1024)
    data = os.urandom(6 * MiB)
    key = (await store.write_stream(stream(data))).key
    before = await backend.open_resources()

    for i in range(backend.repeat // 5):
        start = i * 1000
        gen = store.open_range(key, start, len(data) - 1)
        assert await anext(gen) == data[start : start + 64 * 1024]
        if i % 2:
            await gen.aclose()  # type: ignore[attr-defined]
        del gen  # else: abandoned, the finalizer closes it
    gc.collect()
    for _ in range(5):
        await asyncio.sleep(0)
    assert await backend.open_resources() == before

    async def stalled_consumer(started: asyncio.Event) -> None:
        async with contextlib.aclosing(store.open_range(key, 0, len(data) - 1)) as chunks:  # type: ignore[type-var]
            async for _chunk in chunks:
                started.set()
                await asyncio.Event().wait()

    for _ in range(backend.repeat // 5):
        started = asyncio.Event()
        task = asyncio.create_task(stalled_consumer(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await backend.open_resources() == before


async def test_close_is_harmless(backend: Backend) -> None:
    store = backend.store
    await store.close()
    obj = await store.write_stream(stream(b"after close"))
    assert await store.exists(obj.key)


# ---------------------------------------------------------------- key validation

HEX = sha(b"some object")
BAD_KEYS = [
    "../etc/passwd",
    "sha256/../../x",
    "/etc/passwd",
    f"/{make_key(HEX)}",
    "sha256%2f..",
    "%2e%2e/x",
    f"sha256%2F{HEX[:2]}%2F{HEX[2:4]}%2F{HEX}",
    f"sha256/{HEX[:2]}/{HEX[2:4]}/%2e%2e",
    f"sha256/{HEX[:2]}/{HEX[2:4]}/{HEX}\0",
    f"sha256/{HEX[:2]}/{HEX[2:4]}/{HEX}\0.jpg",
    f"sha256\\{HEX[:2]}\\{HEX[2:4]}\\{HEX}",
    f"sha256/{HEX[:2]}/{HEX[2:4]}\\..\\..\\{HEX}",
    make_key(HEX).upper(),
    f"sha256/{HEX[:2]}/{HEX[2:4]}/{HEX.upper()}",
    f"sha256/{HEX[:2]}/{HEX[2:4]}/{HEX[:63]}",
    f"sha256/{HEX[:2]}/{HEX[2:4]}/{HEX}0",
    f"sha256/00/00/{HEX}",  # fan-out does not match the digest
    f"sha256//{HEX[:2]}/{HEX[2:4]}/{HEX}",
    f"sha256/{HEX[:2]}/{HEX[2:4]}//{HEX}",
    f"sha256/{HEX[:2]}/{HEX[2:4]}/{HEX}/",
    f"sha256/{HEX[:2]}/{HEX[2:4]}/{HEX}\n",
    f"sha256/{HEX[:2]}/{HEX[2:4]}/../../../../etc/passwd",
    f"sha256/{HEX[:2]}/{HEX[2:4]}/{HEX}.JPG",
    f"sha256/{HEX[:2]}/{HEX[2:4]}/{HEX}.toolongext",
    f"sha256/{HEX[:2]}/{HEX[2:4]}/{HEX}..jpg",
    f"./{make_key(HEX)}",
    f".tmp/{HEX}.part",
    f".tmp/{HEX}",
    "",
    "sha256",
]


def key_operations(store: Storage) -> dict[str, Callable[[str], object]]:
    """Each key-taking method, as a call that raises synchronously or via a coroutine."""
    return {
        "stat": store.stat,
        "exists": store.exists,  # type: ignore[attr-defined]
        "delete": store.delete,
        "local_path": store.local_path,
        "open_range": lambda key: read_all(store, key, 0, 0),
    }


async def call(op: Callable[[str], object], key: str) -> object:
    result = op(key)
    if asyncio.iscoroutine(result):
        result = await result
    return result


@pytest.mark.parametrize("key", BAD_KEYS)
@pytest.mark.parametrize("method", ["stat", "exists", "delete", "local_path", "open_range"])
async def test_malformed_keys_are_refused(backend: Backend, key: str, method: str) -> None:
    with pytest.raises(InvalidKey):
        await call(key_operations(backend.store)[method], key)


async def test_open_range_refuses_bad_key_before_iterating(backend: Backend) -> None:
    with pytest.raises(InvalidKey):
        backend.store.open_range("../etc/passwd", 0, 0)


async def test_malformed_keys_never_reach_the_backend(backend: Backend) -> None:
    """A temp upload is not reachable through any key-taking method."""
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield os.urandom(9 * MiB)
        started.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(backend.store.write_stream(stalled()))
    await asyncio.wait_for(started.wait(), 30)
    try:
        (temp,) = await backend.temp_entries()
        for candidate in (temp, temp.removeprefix("upload:"), f".tmp/{temp}"):
            for method in ("stat", "exists", "delete", "local_path", "open_range"):
                with pytest.raises(InvalidKey):
                    await call(key_operations(backend.store)[method], candidate)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await backend.leftovers() == []


def test_open_fd_count_works() -> None:
    assert open_fd_count() > 0
