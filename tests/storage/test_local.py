"""LocalStorage specifics: fsync, executor threads, sparse files, symlinks, open_storage.

The behaviour every backend shares (content keys, dedup, failures leaving nothing,
ranges, early close, key validation) is tested once per backend in test_contract.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import storage.local as local_mod
from storage import (
    InvalidKey,
    LocalStorage,
    ObjectNotFound,
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


# ---------------------------------------------------------------- reading

DATA = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable mod 256


@pytest.fixture
async def small_chunks(root: Path) -> tuple[LocalStorage, str]:
    store = LocalStorage(root, chunk_size=16)
    obj = await store.write_stream(stream(DATA))
    return store, obj.key


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
        ("http://example.com/x", "unsupported storage URL scheme 'http'"),
        ("ftp://example.com/x", "use file:///absolute/path, a directory path or s3://"),
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
