"""The storage port: what the catalog (writer) and media nodes (readers) need.

Objects are immutable and content-addressed: the key is derived from the
SHA-256 of the bytes, so a key never changes meaning and readers may cache
freely. Backends: `storage.local.LocalStorage` (a directory, sendfile-able)
and, later, an S3-compatible object store.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class StorageError(Exception):
    """Base class of storage failures."""


class InvalidKey(StorageError):
    """The key is malformed or would escape the storage root."""


class ObjectNotFound(StorageError):
    """No object under this key."""


class TooLarge(StorageError):
    """The stream exceeded the allowed size; nothing was kept."""


class DigestMismatch(StorageError):
    """The stream's SHA-256 differs from the expected one; nothing was kept."""


@dataclass(frozen=True)
class StoredObject:
    """Result of a completed write."""

    key: str
    size: int
    sha256: str  # lowercase hex


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata needed to serve an object over HTTP."""

    key: str
    size: int
    mtime: float  # seconds since the epoch, for Last-Modified


class Storage(Protocol):
    async def write_stream(
        self,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int | None = None,
        expected_sha256: str | None = None,
        suffix: str = "",
    ) -> StoredObject:
        """Store the stream atomically under a content-derived key.

        Raises TooLarge / DigestMismatch (nothing kept). If the stream raises
        (client went away), the partial data is removed and the error
        propagates. Writing bytes that already exist returns the same key.
        """
        ...

    async def stat(self, key: str) -> ObjectInfo: ...

    def open_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield bytes start..end inclusive in bounded chunks."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A file path for zero-copy sendfile, or None for remote backends."""
        ...

    async def close(self) -> None: ...


class StatExists:
    """`exists` for any backend whose `stat` raises ObjectNotFound for a missing object."""

    async def stat(self, key: str) -> ObjectInfo:
        raise NotImplementedError

    async def exists(self, key: str) -> bool:
        """True if the object exists. InvalidKey still raises: a bad key is a bug, not 'no'."""
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        return True
