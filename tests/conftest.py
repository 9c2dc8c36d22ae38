"""Fixtures shared by the whole suite.

One real PostgreSQL and one real Redis per test session (tests/harness); the
schema is migrated once, and every test starts from empty tables and an empty
Redis database, so tests never see each other's rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from reelgate.config import Settings
from reelgate.db import make_engine
from reelgate.migrate import SERVICES, upgrade
from tests.harness.fixtures import *  # noqa: F403  (real PostgreSQL and Redis)

KEEP_TABLES_PREFIX = "alembic_version"


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
async def migrated_database(pg_database_dsn: str) -> AsyncIterator[str]:
    engine = make_engine(pg_database_dsn)
    try:
        for service in SERVICES:
            await upgrade(engine, service)
    finally:
        await engine.dispose()
    yield pg_database_dsn


async def _truncate_all(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            names = await connection.scalars(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            tables = [n for n in names if not n.startswith(KEEP_TABLES_PREFIX)]
            if tables:
                quoted = ", ".join(f'"{name}"' for name in tables)
                await connection.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture
async def database_url(migrated_database: str) -> AsyncIterator[str]:
    """The migrated test database, emptied before each test that uses it."""
    await _truncate_all(migrated_database)
    yield migrated_database


@pytest.fixture
def settings(database_url: str, redis_url: str, keys_dir: Path, tmp_path: Path) -> Iterator[Settings]:
    yield Settings(
        var_dir=tmp_path / "var",
        database_url=database_url,
        redis_url=redis_url,
        jwt_private_key_file=keys_dir / "jwt-ed25519.pem",
        billing_secret="test-billing-secret",
        service_key="test-service-key",
        # Cheap KDF parameters keep the suite fast; production uses the defaults.
        password_memory_kib=1024,
        password_time_cost=1,
        admin_email="admin@example.com",
        admin_password="admin-password-1",
    )
