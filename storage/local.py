"""`LocalStorage`: the storage port over a local directory.

Layout under `root`:

    sha256/<aa>/<bb>/<digest>[suffix]   immutable objects (the key is the relative path)
    .tmp/<random>.part                  uploads in progress; never reachable as a key

Writes go to a temp file on the same filesystem, are hashed while written,
fsynced, then renamed into place, so a reader sees either no object or the
whole object. Every blocking file-system call runs in an executor thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat as stat_mod
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import TypeVar

from storage.base import (
    DigestMismatch,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    StatExists,
    StorageError,
    StoredObject,
    TooLarge,
)
from storage.keys import KEY_PREFIX, is_valid_key, make_key, parse_key, validate_suffix

T = TypeVar("T")

TMP_DIR_NAME = ".tmp"
_WRITE_BATCH = 1024 * 1024  # bytes accumulated before one executor hop for write()
_READ_FILE_CHUNK = 1024 * 1024  # write_file() read size
_DIGEST_RE = re.compile(r"[0-9a-fA-F]{64}")


class LocalStorage(StatExists):
    """Content-addressed objects in a local directory (see the module docstring).

    `executor` runs the blocking file-system calls; None means the loop's default
    executor. A media node streaming many files should pass a dedicated pool so
    file reads cannot starve other users of the default one (e.g. DNS lookups).
    """

    def __init__(
        self,
        root: Path | str,
        chunk_size: int = 256 * 1024,
        *,
        executor: Executor | None = None,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.chunk_size = chunk_size
        self._executor = executor
        # Runs once at startup, before serving, so plain blocking calls are fine here.
        self.root = Path(os.path.realpath(root))
        self._tmp_dir = self.root / TMP_DIR_NAME
        self._tmp_dir.mkdir(parents=True, exist_ok=True)
        (self.root / KEY_PREFIX).mkdir(exist_ok=True)
        # Every object must resolve inside this directory. Resolving it (rather than
        # using root / "sha256") lets an operator symlink the object tree elsewhere.
        self._objects_real = os.path.realpath(self.root / KEY_PREFIX)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    # ---------------------------------------------------------------- writing

    async def write_stream(
        self,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int | None = None,
        expected_sha256: str | None = None,
        suffix: str = "",
    ) -> StoredObject:
        """Store the stream atomically under its content key (see `Storage.write_stream`).

        Raises TooLarge as soon as more than `max_bytes` arrive, DigestMismatch
        after the stream if `expected_sha256` (hex, any case) differs, InvalidKey
        for a bad suffix. On any failure, cancellation included, the temp file is
        removed before the exception propagates.
        """
        validate_suffix(suffix)
        expected = _normalize_digest(expected_sha256)
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")

        part = _PartialObject(self._tmp_dir)
        try:
            await self._run(part.create)
            await self._fill(part, chunks, max_bytes)
            digest = part.hexdigest()
            if expected is not None and digest != expected:
                raise DigestMismatch(f"expected sha256 {expected}, got {digest}")
            key = make_key(digest, suffix)
            await self._run(self._commit, part, key)
        except BaseException:
            # Synchronous on purpose: close + unlink are cheap, and an awaited
            # cleanup could itself be cancelled and leave the temp file behind.
            part.discard()
            raise
        return StoredObject(key=key, size=part.size, sha256=digest)

    async def write_file(
        self,
        path: Path | str,
        *,
        max_bytes: int | None = None,
        expected_sha256: str | None = None,
        suffix: str = "",
    ) -> StoredObject:
        """Store a local file (e.g. an ffmpeg output) through `write_stream`."""
        # aclosing: if write_stream stops early (TooLarge), close the file now, not at GC.
        async with contextlib.aclosing(self._read_file(Path(path))) as chunks:
            return await self.write_stream(
                chunks, max_bytes=max_bytes, expected_sha256=expected_sha256, suffix=suffix
            )

    async def _fill(
        self, part: _PartialObject, chunks: AsyncIterable[bytes], max_bytes: int | None
    ) -> None:
        """Copy the stream into `part`, batching small chunks into ~1 MiB writes."""
        received = 0
        batch = bytearray()
        async for chunk in chunks:
            received += len(chunk)
            # Checked per chunk, before buffering: an oversized upload is refused
            # without writing (or even holding) more than one extra chunk.
            if max_bytes is not None and received > max_bytes:
                raise TooLarge(f"stream exceeds the {max_bytes}-byte limit")
            batch += chunk
            if len(batch) >= _WRITE_BATCH:
                data, batch = batch, bytearray()
                await self._run(part.append, data)
        if batch:
            await self._run(part.append, batch)

    def _commit(self, part: _PartialObject, key: str) -> None:
        """Move the finished temp file to `key` durably (blocking; runs in a thread)."""
        final = self._resolve(key)
        try:
            existing = os.stat(final)
        except FileNotFoundError:
            existing = None
        # Same key means same bytes, so an existing object of the right size is
        # kept (dedup, mtime unchanged). A wrong-sized one is a truncated leftover
        # from before fsync-on-write, or disk damage: replace it.
        if existing is not None and existing.st_size == part.size:
            part.discard()
            return
        part.seal()
        _makedirs_durable(final.parent)
        os.replace(part.path, final)
        _fsync_dir(final.parent)

    async def _read_file(self, path: Path) -> AsyncIterator[bytes]:
        fd = await self._run(os.open, path, os.O_RDONLY | os.O_CLOEXEC, release=os.close)
        try:
            while chunk := await self._run(os.read, fd, _READ_FILE_CHUNK):
                yield chunk
        finally:
            os.close(fd)  # synchronous for the same reason as in _iter_range

    # ---------------------------------------------------------------- reading

    async def stat(self, key: str) -> ObjectInfo:
        """Size and mtime of the object; ObjectNotFound if missing."""
        parse_key(key)
        st = await self._run(self._stat_object, key)
        return ObjectInfo(key=key, size=st.st_size, mtime=st.st_mtime)

    def open_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield bytes `start..end` inclusive in chunks of at most `chunk_size`.

        Key and range syntax are checked here, eagerly. ObjectNotFound, and
        ValueError for an `end` past the object's last byte, come from the first
        iteration (the file is opened then). The file is closed however the
        iteration ends: exhaustion, `aclose()`, cancellation or garbage collection.
        """
        parse_key(key)
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range {start}-{end}")
        return self._iter_range(key, start, end)

    async def _iter_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        fd, size = await self._run(self._open_object, key, release=_close_first)
        try:
            if end >= size:
                raise ValueError(f"byte range {start}-{end} is outside a {size}-byte object")
            pos = start
            while pos <= end:
                want = min(self.chunk_size, end - pos + 1)
                data = await self._run(os.pread, fd, want, pos)
                if not data:
                    # Objects are immutable, so this means the file was damaged underneath us.
                    raise StorageError(f"{key}: unexpected end of file at byte {pos}")
                pos += len(data)
                yield data
        finally:
            # Synchronous close: this also runs from the async-generator finalizer,
            # possibly while the loop shuts down, where no executor hop is possible.
            os.close(fd)

    def local_path(self, key: str) -> Path:
        """The resolved file path of `key`, for sendfile; it may not exist.

        Raises InvalidKey for a malformed key or one that resolves outside the
        object tree. Resolving does a few lstat calls (answered from the kernel's
        dentry cache) on the caller's thread, since the port makes this method sync.
        """
        parse_key(key)
        return self._resolve(key)

    def _stat_object(self, key: str) -> os.stat_result:
        try:
            st = os.stat(self._resolve(key))
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise ObjectNotFound(key)
        return st

    def _open_object(self, key: str) -> tuple[int, int]:
        """Open `key` for reading; return (fd, size). Blocking; runs in a thread."""
        # O_NOFOLLOW: the resolved path has no symlinks left, so one appearing now is
        # a swap racing with us; refuse it. O_NONBLOCK: a FIFO planted under a key
        # must not hang the thread in open() (no effect on regular files).
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self._resolve(key), flags)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ObjectNotFound(key) from None
            raise
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            os.close(fd)
            raise ObjectNotFound(key)
        return fd, st.st_size

    # ---------------------------------------------------------------- maintenance

    async def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        parse_key(key)
        await self._run(self._unlink_object, key)

    def _unlink_object(self, key: str) -> None:
        # Empty fan-out directories are left alone: removing one could race with
        # a concurrent write that has just created it and is about to rename into it.
        try:
            os.unlink(self._resolve(key))
        except (FileNotFoundError, NotADirectoryError):
            pass

    async def iter_keys(self) -> AsyncIterator[str]:
        """Yield the key of every stored object (for garbage collection), in no order.

        One executor hop per fan-out directory. Stray files that are not valid
        keys, and symlinks, are skipped.
        """
        objects = self.root / KEY_PREFIX
        for aa in await self._run(_subdirs, objects):
            for bb in await self._run(_subdirs, objects / aa):
                for name in await self._run(_regular_files, objects / aa / bb):
                    key = f"{KEY_PREFIX}/{aa}/{bb}/{name}"
                    if is_valid_key(key):
                        yield key

    async def cleanup_temp(self, older_than_s: float = 3600.0) -> int:
        """Remove temp files not modified for `older_than_s` seconds; return how many.

        Call at startup to drop uploads interrupted by a crash. Uploads in progress
        touch their file on every write, so a generous age does not hurt them.
        """
        return await self._run(_remove_stale_files, self._tmp_dir, time.time() - older_than_s)

    async def close(self) -> None:
        """Nothing to release; the executor, if any, belongs to the caller."""

    # ---------------------------------------------------------------- helpers

    def _resolve(self, key: str) -> Path:
        """Real path of an already-validated key; InvalidKey if it escapes the tree.

        The key syntax already rules out `..` and friends; this catches symlinks
        inside the tree (an operator's or an attacker's) that point elsewhere,
        including into `.tmp`.
        """
        real = os.path.realpath(self.root / key)
        if os.path.commonpath([real, self._objects_real]) != self._objects_real:
            raise InvalidKey(f"object key {key!r} resolves outside the storage tree")
        return Path(real)

    async def _run(
        self, fn: Callable[..., T], *args: object, release: Callable[[T], object] | None = None
    ) -> T:
        return await run_blocking(fn, *args, executor=self._executor, release=release)


async def run_blocking(
    fn: Callable[..., T],
    *args: object,
    executor: Executor | None = None,
    release: Callable[[T], object] | None = None,
) -> T:
    """Run `fn(*args)` in an executor thread; on cancellation, wait for it to finish.

    A thread cannot be interrupted. If the awaiting task were cancelled and then
    closed a file descriptor the thread is still writing to, the fd number could
    be reused by an unrelated open() and receive our bytes. So cancellation is
    deferred until the thread has returned, then re-raised. A result that nobody
    will receive (e.g. a freshly opened fd) is passed to `release`.
    """
    fut = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        while not fut.done():
            try:
                await asyncio.wait({fut})
            except asyncio.CancelledError:
                pass  # already cancelling; the re-raise below carries it
        if not fut.cancelled() and fut.exception() is None and release is not None:
            release(fut.result())
        raise


class _PartialObject:
    """A temp file being written and hashed. Methods other than `hexdigest` and
    `discard` block and are meant for an executor thread; calls never overlap."""

    def __init__(self, tmp_dir: Path) -> None:
        self.path = tmp_dir / f"{secrets.token_hex(16)}.part"
        self.size = 0
        self.fd: int | None = None
        self._hash = hashlib.sha256()

    def create(self) -> None:
        # O_EXCL: never write into a file someone else (or a stale crash) owns.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o644)

    def append(self, data: bytes | bytearray) -> None:
        assert self.fd is not None
        # Hashing here, off the event loop: hashlib releases the GIL for large buffers.
        self._hash.update(data)
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def seal(self) -> None:
        """Flush to disk and close; the file may then be renamed into place."""
        assert self.fd is not None
        os.fsync(self.fd)
        self._close()

    def discard(self) -> None:
        """Close and remove the file; idempotent, and harmless after a rename."""
        self._close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


def _normalize_digest(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or _DIGEST_RE.fullmatch(value) is None:
        raise ValueError(f"expected_sha256 must be 64 hex digits, got {value!r}")
    return value.lower()


def _close_first(fd_and_size: tuple[int, int]) -> None:
    os.close(fd_and_size[0])


def _makedirs_durable(path: Path) -> None:
    """Create `path` and its missing parents, fsyncing each parent that gained an
    entry, so the new object's directory survives a crash."""
    if path.is_dir():
        return
    _makedirs_durable(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return  # a concurrent writer created it (and fsyncs the parent itself)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _subdirs(path: Path) -> list[str]:
    """Names of the real (non-symlink) subdirectories of `path`; [] if it is missing."""
    try:
        with os.scandir(path) as it:
            return [e.name for e in it if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _regular_files(path: Path) -> list[str]:
    try:
        with os.scandir(path) as it:
            return [e.name for e in it if e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _remove_stale_files(directory: Path, cutoff: float) -> int:
    removed = 0
    for name in _regular_files(directory):
        path = directory / name
        try:
            if os.lstat(path).st_mtime < cutoff:
                os.unlink(path)
                removed += 1
        except FileNotFoundError:
            pass  # finished or cleaned up concurrently
    return removed
