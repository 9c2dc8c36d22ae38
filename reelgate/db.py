"""Database engines, portable column types and the migration guard.

Each service owns its tables, its metadata and its Alembic history (version
table `alembic_version_<service>`), whether it shares a database with the
other service or not. PostgreSQL (asyncpg) in production; SQLite (aiosqlite)
for the embedded demo; the same models and migrations serve both.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import DateTime, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so Alembic can drop and alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # pool_pre_ping: a restarted PostgreSQL must not surface as errors on the
    # first requests after it comes back.
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_async_engine(url, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


_SQLITE_UNIQUE_PREFIX = "UNIQUE constraint failed: "


def broken_constraint(exc: IntegrityError) -> str | None:
    """Which rule a refused write broke, so callers map only the races they
    expect: the constraint or index name on PostgreSQL (asyncpg reports it),
    the "table.column" list on SQLite (which names no constraint); else None."""
    driver_error = exc.orig
    for candidate in (driver_error, getattr(driver_error, "__cause__", None)):
        name = getattr(candidate, "constraint_name", None)
        if name:
            return str(name)
    message = str(driver_error)
    if message.startswith(_SQLITE_UNIQUE_PREFIX):
        return message[len(_SQLITE_UNIQUE_PREFIX) :]
    return None


class Database:
    """An engine and its session factory; `transaction()` is the unit of work."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = make_sessionmaker(self.engine)

    def transaction(self) -> Any:
        """`async with db.transaction() as session:` commits on success, rolls back on error."""
        return _Transaction(self.sessions)

    async def ping(self) -> None:
        await ping(self.engine)

    async def dispose(self) -> None:
        await self.engine.dispose()


class _Transaction:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self.sessions = sessions

    async def __aenter__(self) -> AsyncSession:
        self.session = self.sessions()
        await self.session.begin()
        return self.session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.session.commit()
            else:
                await self.session.rollback()
        finally:
            await self.session.close()
