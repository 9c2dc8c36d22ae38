"""The storage backends under test, behind one small interface for the shared tests.

Each `Backend` holds a fresh, empty store and can look at what the store really keeps
(files under the root, objects and pending multipart uploads in the bucket), so the
shared tests in test_contract.py assert the same behaviour on every backend: content
keys, nothing left behind after a failure, ranges, released resources.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storage import LocalStorage, S3Storage
from tests.storage.s3_fixtures import list_bucket

BACKENDS = ("local", "s3")


def files_under(path: Path) -> list[str]:
    """Every non-directory entry (files, symlinks, FIFOs) below `path`, relative."""
    found = []
    for dirpath, _dirs, names in os.walk(path):
        found += [os.path.relpath(os.path.join(dirpath, n), path) for n in names]
    return sorted(found)


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class LocalBackend:
    name = "local"
    repeat = 200  # iterations of the resource-leak loops

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = LocalStorage(root)

    def make_store(self, **kwargs: Any) -> LocalStorage:
        """Another store on the same objects (e.g. with another chunk_size)."""
        return LocalStorage(self.root, **kwargs)

    async def leftovers(self) -> list[str]:
        """Everything stored: objects and temp files, relative to the root."""
        return files_under(self.root)

    async def temp_entries(self) -> list[str]:
        return os.listdir(self.root / ".tmp")

    async def partial_bytes(self) -> int:
        return sum(os.path.getsize(self.root / ".tmp" / n) for n in await self.temp_entries())

    async def raw_bytes(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    async def raw_mtime(self, key: str) -> float:
        return os.stat(self.root / key).st_mtime

    async def age(self, key: str) -> float:
        """Backdate the object by a day; return its mtime."""
        old = time.time() - 86_400
        os.utime(self.root / key, (old, old))
        return old

    async def plant(self, key: str, data: bytes) -> None:
        """Put raw bytes under `key`, bypassing the store."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def expected_local_path(self, key: str) -> Path | None:
        return self.root / key

    async def open_resources(self) -> int:
        return open_fd_count()


class UnclosedResponses:
    """Counts aiohttp responses garbage-collected while still holding their connection.

    Dropping the last reference to an unclosed response releases its connection from
    `__del__`, which would hide a missing close from a descriptor count alone.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = aiohttp.ClientResponse.__del__

        def counting_del(response: aiohttp.ClientResponse, *args: Any) -> None:
            if not response._closed and response._connection is not None:
                self.count += 1
            original(response, *args)

        monkeypatch.setattr(aiohttp.ClientResponse, "__del__", counting_del)


class S3Backend:
    name = "s3"
    repeat = 50  # each iteration is a real HTTP request to moto

    def __init__(
        self,
        make: Callable[..., S3Storage],
        admin: Any,
        bucket: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self._make = make
        self.admin = admin
        self.bucket = bucket
        self.store = make()
        self.unclosed = UnclosedResponses(monkeypatch)

    def make_store(self, **kwargs: Any) -> S3Storage:
        return self._make(prefix=self.store.prefix, **kwargs)

    async def leftovers(self) -> list[str]:
        """Everything stored under the prefix: object names and `upload:<name>` entries."""
        return await list_bucket(self.admin, self.bucket, self.store.prefix)

    async def temp_entries(self) -> list[str]:
        return [n for n in await self.leftovers() if n.startswith((".tmp/", "upload:"))]

    async def partial_bytes(self) -> int:
        total = 0
        base = f"{self.store.prefix}/"
        uploads = await self.admin.list_multipart_uploads(Bucket=self.bucket, Prefix=base)
        for upload in uploads.get("Uploads", []):
            parts = await self.admin.list_parts(
                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
            total += sum(p["Size"] for p in parts.get("Parts", []))
        return total

    def name_of(self, key: str) -> str:
        return f"{self.store.prefix}/{key}"

    async def raw_bytes(self, key: str) -> bytes:
        response = await self.admin.get_object(Bucket=self.bucket, Key=self.name_of(key))
        async with response["Body"] as body:
            return await body.read()

    async def raw_mtime(self, key: str) -> float:
        head = await self.admin.head_object(Bucket=self.bucket, Key=self.name_of(key))
        return head["LastModified"].timestamp()

    async def age(self, key: str) -> float:
        # S3 cannot backdate an object; test_s3 proves dedup by the requests sent instead.
        return await self.raw_mtime(key)

    async def plant(self, key: str, data: bytes) -> None:
        await self.admin.put_object(Bucket=self.bucket, Key=self.name_of(key), Body=data)

    def expected_local_path(self, key: str) -> Path | None:
        return None

    async def open_resources(self) -> tuple[int, int]:
        """(open descriptors, responses never closed): sockets are descriptors too."""
        gc.collect()  # responses kept alive by reference cycles (tracebacks) are counted too
        # A closed transport releases its socket on a later loop iteration.
        for _ in range(5):
            await asyncio.sleep(0)
        return open_fd_count(), self.unclosed.count


Backend = LocalBackend | S3Backend
