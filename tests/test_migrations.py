"""Migrations and models agree, on SQLite (the demo) and PostgreSQL (production)."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from reelgate.db import make_engine
from reelgate.migrate import SERVICES, ensure_migrated, upgrade, version_table


def _diff(connection, service: str) -> list:
    metadata = importlib.import_module(f"{service}.models").Base.metadata
    context = MigrationContext.configure(
        connection, opts={"version_table": version_table(service), "compare_type": True}
    )
    return [
        change
        for change in compare_metadata(context, metadata)
        # The other service's tables share the database: not this service's business.
        if _table_of(change) in metadata.tables
        # PostgreSQL-only search structures are created by hand in the migration.
        and not (change[0] in ("remove_index", "remove_column") and "search" in str(change))
    ]


def _table_of(change: tuple) -> str | None:
    if isinstance(change, list):  # column modifications come grouped
        return _table_of(change[0])
    kind, target = change[0], change[1]
    if kind.endswith("_table"):
        return target.name
    if kind.endswith("_index") or kind.endswith("_constraint"):
        return target.table.name
    return str(change[2]) if len(change) > 2 else None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_models_match_the_migrations(backend, tmp_path, pg_fresh_database_dsn):
    url = (
        f"sqlite+aiosqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else pg_fresh_database_dsn
    )
    engine = make_engine(url)
    try:
        for service in SERVICES:
            await upgrade(engine, service)
            await ensure_migrated(engine, service)
            async with engine.connect() as connection:
                assert await connection.run_sync(_diff, service) == []
    finally:
        await engine.dispose()
