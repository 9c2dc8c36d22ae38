"""LocalStorage: atomic content-addressed writes, ranged reads, key confinement."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import storage.local as local_mod
from storage import (
    DigestMismatch,
    InvalidKey,
    LocalStorage,
    ObjectNotFound,
    TooLarge,
    make_key,
    open_storage,
)

MiB = 1024 * 1024
GiB = 1024 * MiB


# ---------------------------------------------------------------- helpers


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> LocalStorage:
    return LocalStorage(root)


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def files_under(path: Path) -> list[str]:
    """Every non-directory entry (files, symlinks, FIFOs) below `path`, relative."""
    found = []
    for dirpath, _dirs, names in os.walk(path):
        found += [os.path.relpath(os.path.join(dirpath, n), path) for n in names]
    return sorted(found)


async def read_all(store: LocalStorage, key: str, start: int, end: int) -> list[bytes]:
    return [chunk async for chunk in store.open_range(key, start, end)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def temp_files(root: Path) -> list[str]:
    return os.listdir(root / ".tmp")


# ---------------------------------------------------------------- writing


async def test_round_trip(store: LocalStorage, root: Path) -> None:
    data = os.urandom(3 * MiB + 17)
    obj = await store.write_stream(stream(data[:1000], data[1000:]), suffix=".mp4")

    digest = sha(data)
    assert obj.sha256 == digest
    assert obj.size == len(data)
    assert obj.key == f"sha256/{digest[:2]}/{digest[2:4]}/{digest}.mp4"
    assert (root / obj.key).read_bytes() == data
    assert store.local_path(obj.key) == root / obj.key

    info = await store.stat(obj.key)
    assert (info.key, info.size) == (obj.key, len(data))
    assert info.mtime == pytest.approx(os.stat(root / obj.key).st_mtime)
    assert b"".join(await read_all(store, obj.key, 0, len(data) - 1)) == data
    assert await store.exists(obj.key)
    assert [k async for k in store.iter_keys()] == [obj.key]
    assert temp_files(root) == []


async def test_empty_stream_is_a_valid_object(store: LocalStorage) -> None:
    obj = await store.write_stream(stream())
    assert (obj.size, obj.sha256) == (0, sha(b""))
    assert (await store.stat(obj.key)).size == 0


async def test_same_bytes_twice_gives_one_object(store: LocalStorage, root: Path) -> None:
    data = os.urandom(100_000)
    first = await store.write_stream(stream(data))
    old = time.time() - 86_400
    os.utime(root / first.key, (old, old))

    second = await store.write_stream(stream(data[:7], data[7:]))

    assert second == first
    assert files_under(root) == [first.key]
    # The existing object was kept, not rewritten: its mtime (Last-Modified) is unchanged.
    assert os.stat(root / first.key).st_mtime == pytest.approx(old)


async def test_concurrent_writes_of_same_bytes(store: LocalStorage, root: Path) -> None:
    data = os.urandom(2 * MiB)
    results = await asyncio.gather(*(store.write_stream(stream(data)) for _ in range(8)))
    assert len({r.key for r in results}) == 1
    assert files_under(root) == [results[0].key]
    assert (root / results[0].key).read_bytes() == data


async def test_truncated_existing_object_is_replaced(store: LocalStorage, root: Path) -> None:
    data = b"complete object bytes"
    path = root / make_key(sha(data))
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:5])

    obj = await store.write_stream(stream(data))

    assert path.read_bytes() == data
    assert files_under(root) == [obj.key]


async def test_new_object_is_fsynced_before_and_after_the_rename(
    store: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(local_mod.os, "fsync", recording_fsync)
    obj = await store.write_stream(stream(b"durable bytes"))

    final = root.resolve() / obj.key
    assert len(synced) == 4
    # The data, while still a temp file; then each directory that gained an entry.
    assert Path(synced[0]).parent == root.resolve() / ".tmp"
    assert synced[1:] == [str(final.parents[2]), str(final.parents[1]), str(final.parent)]


async def test_small_chunks_are_batched_into_few_writes(
    store: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = local_mod._PartialObject.append

    def counting_append(self: local_mod._PartialObject, data: bytes) -> None:
        calls.append(len(data))
        original(self, data)

    monkeypatch.setattr(local_mod._PartialObject, "append", counting_append)
    data = os.urandom(2 * MiB + 100)
    chunks = [data[i : i + 512] for i in range(0, len(data), 512)]

    obj = await store.write_stream(stream(*chunks))

    assert obj.sha256 == sha(data)
    assert sum(calls) == len(data)
    assert len(calls) == 3  # 1 MiB + 1 MiB + the 100-byte tail, not 4097 hops


async def test_too_large_stops_reading_and_keeps_nothing(store: LocalStorage, root: Path) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while pulled < 100:  # bounded, so a missing limit check fails instead of hanging
            pulled += 1
            yield b"x" * (256 * 1024)

    with pytest.raises(TooLarge):
        await store.write_stream(endless(), max_bytes=3 * MiB)

    assert pulled == 13  # 12 chunks fill the limit exactly; the 13th exceeds it
    assert files_under(root) == []


async def test_exactly_max_bytes_is_accepted(store: LocalStorage) -> None:
    obj = await store.write_stream(stream(b"abc", b"de"), max_bytes=5)
    assert obj.size == 5
    with pytest.raises(TooLarge):
        await store.write_stream(stream(b"abc", b"def"), max_bytes=5)


async def test_digest_mismatch_keeps_nothing(store: LocalStorage, root: Path) -> None:
    data = os.urandom(2 * MiB)
    with pytest.raises(DigestMismatch):
        await store.write_stream(stream(data), expected_sha256=sha(b"something else"))
    assert files_under(root) == []


async def test_expected_digest_is_case_insensitive(store: LocalStorage) -> None:
    data = b"movie poster"
    obj = await store.write_stream(stream(data), expected_sha256=sha(data).upper())
    assert obj.sha256 == sha(data)


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, sha(b"x") + "0"])
async def test_malformed_expected_digest_is_rejected(
    store: LocalStorage, root: Path, bad: str
) -> None:
    with pytest.raises(ValueError, match="expected_sha256"):
        await store.write_stream(stream(b"data"), expected_sha256=bad)
    assert files_under(root) == []


async def test_stream_error_midway_removes_partial_file(store: LocalStorage, root: Path) -> None:
    seen_on_disk: list[str] = []
    error = ConnectionResetError("client went away")

    async def disconnecting() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(MiB)
        await asyncio.sleep(0)
        seen_on_disk.extend(temp_files(root))  # the partial data really was on disk
        raise error

    with pytest.raises(ConnectionResetError) as exc_info:
        await store.write_stream(disconnecting())

    assert exc_info.value is error
    assert len(seen_on_disk) == 1
    assert files_under(root) == []


async def test_cancellation_midway_removes_partial_file(store: LocalStorage, root: Path) -> None:
    streaming = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield os.urandom(2 * MiB)
        yield b"tail"
        streaming.set()
        await asyncio.Event().wait()  # the client stalls forever
        yield b"never"

    task = asyncio.create_task(store.write_stream(stalled()))
    await asyncio.wait_for(streaming.wait(), 5)
    assert len(temp_files(root)) == 1
    assert os.path.getsize(root / ".tmp" / temp_files(root)[0]) >= 2 * MiB

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert files_under(root) == []


async def test_cancellation_waits_for_the_write_thread(
    store: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while a write runs in a thread: the fd must not be closed under it."""
    in_thread = threading.Event()
    outcome: list[str] = []
    original = local_mod._PartialObject.append

    def slow_append(self: local_mod._PartialObject, data: bytes) -> None:
        in_thread.set()
        time.sleep(0.3)
        try:
            original(self, data)
            outcome.append("written")
        except OSError as exc:  # EBADF if the fd had been closed meanwhile
            outcome.append(f"failed: {exc}")
            raise

    monkeypatch.setattr(local_mod._PartialObject, "append", slow_append)
    task = asyncio.create_task(store.write_stream(stream(os.urandom(2 * MiB))))
    while not in_thread.is_set():
        await asyncio.sleep(0.01)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert outcome == ["written"]  # the thread finished before cleanup ran
    assert files_under(root) == []


@pytest.mark.parametrize(
    "suffix", ["/../x", "..", ".JPG", ".abcdefghi", ".", "jpg", ".j\0", ".a/b", ".jpg\n"]
)
async def test_invalid_suffix_is_rejected(store: LocalStorage, root: Path, suffix: str) -> None:
    with pytest.raises(InvalidKey):
        await store.write_stream(stream(b"data"), suffix=suffix)
    assert files_under(root) == []


async def test_write_file(store: LocalStorage, tmp_path: Path) -> None:
    src = tmp_path / "movie.mp4"
    data = os.urandom(3 * MiB + 5)
    src.write_bytes(data)

    obj = await store.write_file(src, suffix=".mp4")

    assert obj.sha256 == sha(data)
    assert store.local_path(obj.key).read_bytes() == data


async def test_write_file_too_large_closes_source(
    store: LocalStorage, root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * MiB))
    before = open_fd_count()
    with pytest.raises(TooLarge):
        await store.write_file(src, max_bytes=MiB)
    assert open_fd_count() == before
    assert files_under(root) == []


# ---------------------------------------------------------------- reading

DATA = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable mod 256


@pytest.fixture
async def small_chunks(root: Path) -> tuple[LocalStorage, str]:
    store = LocalStorage(root, chunk_size=16)
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
async def test_open_range_edges(
    small_chunks: tuple[LocalStorage, str], start: int, end: int
) -> None:
    store, key = small_chunks
    chunks = await read_all(store, key, start, end)
    assert b"".join(chunks) == DATA[start : end + 1]
    assert all(0 < len(c) <= 16 for c in chunks)
    assert len(chunks) == -(-(end - start + 1) // 16)


@pytest.mark.parametrize(("start", "end"), [(-1, 5), (5, 4), (-3, -1)])
async def test_open_range_rejects_bad_ranges_eagerly(
    small_chunks: tuple[LocalStorage, str], start: int, end: int
) -> None:
    store, key = small_chunks
    with pytest.raises(ValueError):
        store.open_range(key, start, end)


@pytest.mark.parametrize(("start", "end"), [(0, 1024), (1024, 1024), (1000, 5000)])
async def test_open_range_past_the_end(
    small_chunks: tuple[LocalStorage, str], start: int, end: int
) -> None:
    store, key = small_chunks
    before = open_fd_count()
    with pytest.raises(ValueError, match="outside"):
        await read_all(store, key, start, end)
    assert open_fd_count() == before


async def test_missing_object(store: LocalStorage) -> None:
    key = make_key(sha(b"never stored"), ".jpg")
    with pytest.raises(ObjectNotFound):
        await store.stat(key)
    with pytest.raises(ObjectNotFound):
        await read_all(store, key, 0, 0)
    assert not await store.exists(key)
    await store.delete(key)  # idempotent: no error


async def test_delete(store: LocalStorage, root: Path) -> None:
    obj = await store.write_stream(stream(b"to be deleted"))
    await store.delete(obj.key)
    assert not await store.exists(obj.key)
    assert files_under(root) == []
    await store.delete(obj.key)


async def test_early_close_releases_the_file(small_chunks: tuple[LocalStorage, str]) -> None:
    store, key = small_chunks
    before = open_fd_count()

    for _ in range(200):  # explicit aclose after the first chunk
        gen = store.open_range(key, 0, 1023)
        assert await anext(gen) == DATA[:16]
        await gen.aclose()
    assert open_fd_count() == before

    for _ in range(200):  # abandoned generator: the loop's asyncgen finalizer closes it
        gen = store.open_range(key, 0, 1023)
        await anext(gen)
        del gen
    gc.collect()
    for _ in range(5):  # the finalizer schedules aclose() as a task; let those run
        await asyncio.sleep(0)
    assert open_fd_count() == before


async def test_cancelled_consumer_releases_the_file(
    small_chunks: tuple[LocalStorage, str],
) -> None:
    """The handler pattern: aclosing() around open_range, client stalls, request cancelled."""
    store, key = small_chunks
    before = open_fd_count()
    reading = asyncio.Event()

    async def stalled_consumer() -> None:
        async with contextlib.aclosing(store.open_range(key, 0, 1023)) as chunks:
            async for _chunk in chunks:
                reading.set()
                await asyncio.Event().wait()

    for _ in range(200):
        reading.clear()
        task = asyncio.create_task(stalled_consumer())
        await reading.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert open_fd_count() == before


@pytest.mark.parametrize("blocking_call", ["open", "read"])
async def test_cancellation_inside_the_reader_releases_the_file(
    small_chunks: tuple[LocalStorage, str],
    monkeypatch: pytest.MonkeyPatch,
    blocking_call: str,
) -> None:
    """Cancelled while the generator itself waits on a thread (opening or reading):
    the fd opened by that thread must still be closed."""
    store, key = small_chunks
    in_thread = threading.Event()
    finished: list[bool] = []

    def slowed(fn: Callable[..., object]) -> Callable[..., object]:
        def wrapper(*args: object) -> object:
            in_thread.set()
            time.sleep(0.02)
            result = fn(*args)
            finished.append(True)
            return result

        return wrapper

    if blocking_call == "open":
        monkeypatch.setattr(store, "_open_object", slowed(store._open_object))
    else:
        monkeypatch.setattr(local_mod.os, "pread", slowed(os.pread))

    before = open_fd_count()
    for _ in range(50):
        in_thread.clear()
        finished.clear()
        task = asyncio.create_task(read_all(store, key, 0, 1023))
        while not in_thread.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished  # the thread completed before the task reported cancellation
    assert open_fd_count() == before


async def test_sparse_object_above_4gib(store: LocalStorage) -> None:
    key = make_key(sha(b"stand-in for a long film"), ".mkv")
    path = store.local_path(key)
    path.parent.mkdir(parents=True)
    size = 5 * GiB
    marker = b"past the 32-bit boundary"
    offset = 4 * GiB + 123
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: no 5 GiB actually written
        f.seek(offset)
        f.write(marker)

    assert (await store.stat(key)).size == size
    assert b"".join(await read_all(store, key, offset, offset + len(marker) - 1)) == marker
    # Across the 2**32 boundary, with the marker's first bytes at the end.
    got = b"".join(await read_all(store, key, 2**32 - 10, offset + 3))
    assert got == b"\0" * (10 + 123) + marker[:4]
    assert await read_all(store, key, size - 1, size - 1) == [b"\0"]
    with pytest.raises(ValueError):
        await read_all(store, key, size - 1, size)


async def test_fifo_under_a_key_is_not_an_object(store: LocalStorage) -> None:
    key = make_key(sha(b"fifo"))
    path = store.local_path(key)
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    with pytest.raises(ObjectNotFound):
        await store.stat(key)
    with pytest.raises(ObjectNotFound):
        await asyncio.wait_for(read_all(store, key, 0, 0), 5)  # must not hang in open()


# ---------------------------------------------------------------- key confinement

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
    "",
    "sha256",
]


def key_operations(store: LocalStorage) -> dict[str, Callable[[str], object]]:
    """Each key-taking method, as a call that raises synchronously or via a coroutine."""
    return {
        "stat": store.stat,
        "exists": store.exists,
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
async def test_malformed_keys_are_refused(store: LocalStorage, key: str, method: str) -> None:
    with pytest.raises(InvalidKey):
        await call(key_operations(store)[method], key)


async def test_open_range_refuses_bad_key_before_iterating(store: LocalStorage) -> None:
    with pytest.raises(InvalidKey):
        store.open_range("../etc/passwd", 0, 0)


def plant_outside_file(tmp_path: Path) -> tuple[Path, bytes]:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    content = b"outside the storage root"
    secret.write_bytes(content)
    return secret, content


async def assert_refused_everywhere(store: LocalStorage, key: str) -> None:
    """Every method refuses `key`; none of them may serve, report or delete the target."""
    with pytest.raises((InvalidKey, ObjectNotFound)):
        await store.stat(key)
    with pytest.raises((InvalidKey, ObjectNotFound)):
        await read_all(store, key, 0, 3)
    with pytest.raises(InvalidKey):
        store.local_path(key)
    try:
        found = await store.exists(key)
    except InvalidKey:
        found = False
    assert found is False
    with pytest.raises(InvalidKey):
        await store.delete(key)


async def test_symlinked_object_pointing_outside_is_refused(
    store: LocalStorage, root: Path, tmp_path: Path
) -> None:
    secret, content = plant_outside_file(tmp_path)
    key = make_key(sha(b"innocent"))
    link = root / key
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)

    await assert_refused_everywhere(store, key)

    assert secret.read_bytes() == content
    assert link.is_symlink()
    assert [k async for k in store.iter_keys()] == []


async def test_symlinked_fanout_dir_pointing_outside_is_refused(
    store: LocalStorage, root: Path, tmp_path: Path
) -> None:
    secret, content = plant_outside_file(tmp_path)
    digest = sha(b"innocent")
    outside_dir = tmp_path / "outside" / "aa"
    (outside_dir / digest[2:4]).mkdir(parents=True)
    (outside_dir / digest[2:4] / digest).write_bytes(content)
    (root / "sha256" / digest[:2]).symlink_to(outside_dir, target_is_directory=True)

    await assert_refused_everywhere(store, make_key(digest))

    assert (outside_dir / digest[2:4] / digest).read_bytes() == content
    assert [k async for k in store.iter_keys()] == []


async def test_symlink_into_temp_dir_is_refused(store: LocalStorage, root: Path) -> None:
    partial = root / ".tmp" / "upload.part"
    partial.write_bytes(b"half an upload")
    key = make_key(sha(b"innocent"))
    (root / key).parent.mkdir(parents=True)
    (root / key).symlink_to(partial)

    await assert_refused_everywhere(store, key)
    assert partial.exists()


async def test_write_never_dedups_into_a_planted_symlink(
    store: LocalStorage, root: Path, tmp_path: Path
) -> None:
    secret, content = plant_outside_file(tmp_path)
    link = root / make_key(sha(content))
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)

    with pytest.raises(InvalidKey):
        await store.write_stream(stream(content))

    assert secret.read_bytes() == content
    assert temp_files(root) == []


async def test_symlinked_root_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    store = LocalStorage(tmp_path / "link")
    obj = await store.write_stream(stream(b"via a symlinked root"))
    assert (real / obj.key).read_bytes() == b"via a symlinked root"
    assert (await store.stat(obj.key)).size == len(b"via a symlinked root")


# ---------------------------------------------------------------- maintenance


async def test_cleanup_temp_removes_only_stale_files(store: LocalStorage, root: Path) -> None:
    obj = await store.write_stream(stream(b"kept object"))
    stale = root / ".tmp" / "crashed.part"
    fresh = root / ".tmp" / "in-progress.part"
    stale.write_bytes(b"left by a crash")
    fresh.write_bytes(b"still uploading")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    # An old object is not a temp file and must survive.
    os.utime(root / obj.key, (two_hours_ago, two_hours_ago))

    assert await store.cleanup_temp(older_than_s=3600) == 1

    assert sorted(temp_files(root)) == ["in-progress.part"]
    assert await store.exists(obj.key)
    assert await store.cleanup_temp(older_than_s=3600) == 0
    assert await store.cleanup_temp(older_than_s=0) == 1
    assert temp_files(root) == []


async def test_iter_keys_skips_junk(store: LocalStorage, root: Path) -> None:
    a = await store.write_stream(stream(b"a"), suffix=".jpg")
    b = await store.write_stream(stream(b"b"))
    (root / "sha256" / "README").write_text("junk")
    (root / a.key).with_name("not-a-key").write_text("junk")
    (root / ".tmp" / "x.part").write_text("partial")

    assert sorted([k async for k in store.iter_keys()]) == sorted([a.key, b.key])


async def test_close_is_harmless(store: LocalStorage) -> None:
    await store.close()
    obj = await store.write_stream(stream(b"after close"))
    assert await store.exists(obj.key)


# ---------------------------------------------------------------- open_storage


def test_open_storage_file_url(tmp_path: Path) -> None:
    store = open_storage(f"file://{tmp_path}/media")
    assert isinstance(store, LocalStorage)
    assert store.root == tmp_path.resolve() / "media"
    assert (tmp_path / "media" / ".tmp").is_dir()


def test_open_storage_file_url_localhost_and_escapes(tmp_path: Path) -> None:
    store = open_storage(f"file://localhost{tmp_path}/my%20media")
    assert isinstance(store, LocalStorage)
    assert store.root == tmp_path.resolve() / "my media"


def test_open_storage_plain_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = open_storage(str(tmp_path / "abs"))
    assert isinstance(absolute, LocalStorage)
    assert absolute.root == tmp_path.resolve() / "abs"

    monkeypatch.chdir(tmp_path)
    relative = open_storage("var/storage")
    assert isinstance(relative, LocalStorage)
    assert relative.root == tmp_path.resolve() / "var" / "storage"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://bucket/prefix", "unsupported storage URL scheme 's3'.*not available yet"),
        ("http://example.com/x", "unsupported storage URL scheme 'http'"),
        ("file://fileserver/share", "must be local"),
        ("file:relative/path", "absolute path"),
        ("file:///srv/media?x=1", "no query"),
        ("", "empty storage URL"),
        ("   ", "empty storage URL"),
    ],
)
def test_open_storage_rejects(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_storage(url)
