"""Alembic, driven from code: one history per service, one guard at start-up.

`reelgate migrate` upgrades every service to head. A node checks at start-up
that its database is at head and refuses to start otherwise, naming the
command that fixes it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

SERVICES = ("entitlements", "catalog")  # each service with a migrations/ history


class NotMigrated(RuntimeError):
    pass


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def alembic_config(service: str, url: str | None = None) -> Config:
    package = importlib.import_module(service)
    location = Path(package.__file__).parent / "migrations"  # type: ignore[arg-type]
    config = Config()
    config.set_main_option("script_location", str(location))
    config.attributes["service"] = service
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision(service: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(service)).get_current_head()


def _upgrade_on(connection: Connection, service: str) -> None:
    config = alembic_config(service)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(engine: AsyncEngine, service: str) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_on, service)


def _current_revision(connection: Connection, service: str) -> str | None:
    context = MigrationContext.configure(
        connection, opts={"version_table": version_table(service)}
    )
    return context.get_current_revision()


async def ensure_migrated(engine: AsyncEngine, service: str) -> None:
    async with engine.connect() as connection:
        current = await connection.run_sync(_current_revision, service)
    head = head_revision(service)
    if current != head:
        raise NotMigrated(
            f"The {service} database is at revision {current or 'none'}, "
            f"but this code needs {head}. Run `reelgate migrate` first."
        )


def run_env(target_metadata: MetaData, context: Any) -> None:
    """Body of every service's migrations/env.py (online mode only)."""
    config = context.config
    service = config.attributes["service"]
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run through reelgate.migrate, e.g. `reelgate migrate`")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=version_table(service),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
