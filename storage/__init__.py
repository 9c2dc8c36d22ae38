"""Object storage for media files: the port (`Storage`) and its backends.

Use `open_storage(settings.storage_url)` rather than a backend class, so the
backend is a deployment choice.
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

__all__ = [
    "DigestMismatch",
    "InvalidKey",
    "LocalStorage",
    "ObjectInfo",
    "ObjectNotFound",
    "Storage",
    "StorageError",
    "StoredObject",
    "TooLarge",
    "is_valid_key",
    "make_key",
    "open_storage",
    "parse_key",
]


def open_storage(url: str) -> Storage:
    """Open the backend named by `url`.

    Accepted: `file:///absolute/path` (or `file://localhost/...`; percent escapes
    are decoded) and a plain filesystem path, relative ones taken from the current
    directory. Anything else raises ValueError. The directory is created if missing.
    """
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
        hint = " (s3:// storage is not available yet)" if scheme == "s3" else ""
        raise ValueError(
            f"unsupported storage URL scheme {scheme!r} in {url!r}{hint}; "
            "use file:///absolute/path or a directory path"
        )
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file:// storage URL must be local, got host {parts.netloc!r} in {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"file:// storage URL takes no query or fragment: {url!r}")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError(f"file:// storage URL needs an absolute path: {url!r}")
    return Path(path)
