"""Open file descriptors of stored objects, shared by every response that reads them.

Why: opening a file is a blocking call, so each response used to hop to a worker thread and
back just to open (and then close) the object it serves. On a busy node that hop cost more
than everything else in the request together: the thread must take the GIL to run, and the
event loop waits for the GIL again when it wants it back (py-spy showed about a third of
the media node's time in ``ThreadPoolExecutor.submit`` and the worker loop; see
docs/benchmarks.md). Objects are immutable and content-addressed, so one descriptor per
object can serve every request: ``sendfile``/``pread`` take explicit offsets and never use
the shared file position.

Rules:

* at most ``max_open`` idle descriptors are kept, least recently used first out;
* a descriptor is never closed under a response still using it (reference count): an entry
  evicted while in use is closed by its last ``release``;
* descriptors idle for ``max_idle_s`` are closed, so a deleted object's disk space is not
  held for long;
* a cached descriptor whose size differs from the size the caller expects is dropped and the
  path opened again (the object was replaced underneath us);
* ``close()`` (node shutdown) closes everything idle now and the rest on release.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO

__all__ = ["OpenFile", "OpenFiles"]


class OpenFile:
    """One shared, read-only descriptor (wrapped in an unbuffered file object)."""

    __slots__ = ("evicted", "file", "last_used", "path", "refs", "size")

    def __init__(self, path: str, file: IO[bytes], size: int) -> None:
        self.path = path
        self.file = file
        self.size = size
        self.refs = 0
        self.evicted = False
        self.last_used = time.monotonic()


class OpenFiles:
    def __init__(self, max_open: int = 256, max_idle_s: float = 60.0) -> None:
        if max_open < 1:
            raise ValueError("max_open must be >= 1")
        self.max_open = max_open
        self.max_idle_s = max_idle_s
        # Keyed by the path as a string: a Path compares in Python code, and the resolver hands
        # out a new (equal) Path object for an object every time it refreshes its answer.
        self._entries: OrderedDict[str, OpenFile] = OrderedDict()
        self._next_sweep = time.monotonic() + max_idle_s
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    async def acquire(self, path: Path | str, size: int | None = None) -> OpenFile:
        """The shared descriptor of ``path``; pair every call with ``release``.

        Errors opening the file (FileNotFoundError, IsADirectoryError...) propagate.
        """
        path = os.fspath(path)
        entry = self._entries.get(path)
        if entry is not None and size is not None and entry.size != size:
            self._drop(entry)
            entry = None
        if entry is None:
            entry = await self._open(path)
        else:
            self._entries.move_to_end(path)
        entry.refs += 1
        return entry

    def release(self, entry: OpenFile) -> None:
        entry.refs -= 1
        now = entry.last_used = time.monotonic()
        if entry.refs == 0 and (entry.evicted or self._closed):
            entry.file.close()
        if now >= self._next_sweep:
            self._sweep(now)

    def close(self) -> None:
        """Shutdown: close idle descriptors now, those in use when released."""
        self._closed = True
        for entry in list(self._entries.values()):
            self._drop(entry)

    async def _open(self, path: str) -> OpenFile:
        # The only blocking step, so the only executor hop: a cold object, once.
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, _open_regular_file, path)
        try:
            file, size = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)
            raise
        current = self._entries.get(path)
        if current is not None and current.size == size:
            file.close()  # another response opened it meanwhile; share theirs
            self._entries.move_to_end(path)
            return current
        if current is not None:
            self._drop(current)
        entry = OpenFile(path, file, size)
        if self._closed:
            entry.evicted = True  # shutting down: serve this response, keep nothing
            return entry
        self._entries[path] = entry
        while len(self._entries) > self.max_open:
            self._drop(next(iter(self._entries.values())))
        return entry

    def _drop(self, entry: OpenFile) -> None:
        if self._entries.get(entry.path) is entry:
            del self._entries[entry.path]
        entry.evicted = True
        if entry.refs == 0:
            entry.file.close()

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.max_idle_s / 4
        cutoff = now - self.max_idle_s
        for entry in [e for e in self._entries.values() if e.refs == 0 and e.last_used < cutoff]:
            self._drop(entry)


def _open_regular_file(path: str) -> tuple[IO[bytes], int]:
    # Unbuffered: sendfile and pread go to the descriptor, never through a Python buffer.
    file = open(path, "rb", buffering=0)  # noqa: SIM115 - owned by the cache
    try:
        size = os.fstat(file.fileno()).st_size
    except BaseException:
        file.close()
        raise
    return file, size


def _close_opened(opening: asyncio.Future[tuple[IO[bytes], int]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result()[0].close()
