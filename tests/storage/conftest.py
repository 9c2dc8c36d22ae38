"""Storage test fixtures: a real S3-compatible server (moto) and the `backend` parameter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storage import S3Storage
from tests.storage.backends import BACKENDS, Backend, LocalBackend, S3Backend
from tests.storage.s3_fixtures import *  # noqa: F403  (moto server, bucket, S3 stores)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each shared test runs once per backend, on a fresh empty store (the S3 fixtures
    are only requested, and moto only started, for the S3 runs)."""
    if request.param == "local":
        return LocalBackend(tmp_path / "store")
    make: Callable[..., S3Storage] = request.getfixturevalue("make_s3_storage")
    admin: Any = request.getfixturevalue("s3_admin")
    bucket: str = request.getfixturevalue("s3_bucket")
    return S3Backend(make, admin, bucket, request.getfixturevalue("monkeypatch"))
