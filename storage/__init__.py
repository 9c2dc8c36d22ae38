"""Object storage for media files: the port (`Storage`) and its backends.

Use `open_storage(settings.storage_url, endpoint_url=settings.s3_endpoint_url)`
rather than a backend class, so the backend is a deployment choice.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from storage.base import (
    DigestMismatch,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    Storage,
    StorageError,
    StoredObject,
    TooLarge,
)
from storage.keys import is_valid_key, make_key, parse_key
from storage.local import LocalStorage
from storage.s3 import S3Storage

__all__ = [
    "DigestMismatch",
    "InvalidKey",
    "LocalStorage",
    "ObjectInfo",
    "ObjectNotFound",
    "S3Storage",
    "Storage",
    "StorageError",
    "StoredObject",
    "TooLarge",
    "is_valid_key",
    "make_key",
    "open_storage",
    "parse_key",
]


def open_storage(url: str, *, endpoint_url: str | None = None) -> Storage:
    """Open the backend named by `url` (synchronous: nothing is connected yet).

    Accepted: `file:///absolute/path` (or `file://localhost/...`; percent escapes
    are decoded) and a plain filesystem path, relative ones taken from the current
    directory: the directory is created if missing. `s3://bucket/prefix`: an
    `S3Storage`; `endpoint_url` (empty = unset) overrides the S3 endpoint, else
    REELGATE_S3_ENDPOINT_URL, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL apply (region
    and credentials: the usual AWS variables). Anything else raises ValueError.
    """
    if "://" in url and urlsplit(url.strip()).scheme.lower() == "s3":
        return S3Storage.from_url(url.strip(), endpoint_url=endpoint_url or None)
    return LocalStorage(_local_root(url))


def _local_root(url: str) -> Path:
    if not url.strip():
        raise ValueError("empty storage URL: give file:///absolute/path or a directory path")
    if "://" not in url and not url.lower().startswith("file:"):
        # A plain path. No other scheme sniffing: "media:v2" is a directory name.
        return Path(os.path.abspath(url))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme != "file":
        raise ValueError(
            f"unsupported storage URL scheme {scheme!r} in {url!r}; "
            "use file:///absolute/path, a directory path or s3://bucket/prefix"
        )
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file:// storage URL must be local, got host {parts.netloc!r} in {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"file:// storage URL takes no query or fragment: {url!r}")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError(f"file:// storage URL needs an absolute path: {url!r}")
    return Path(path)
