"""pytest fixtures for real services.  Import with ``from tests.harness.fixtures import *``.

Session-scoped (started once per test session, stopped at its end even on
failure or Ctrl-C; see ``services.py`` for what happens if pytest is killed):

``postgres_server`` -> PostgresServer
    Own throw-away cluster on a free port, or the server of
    ``REELGATE_TEST_DATABASE_URL``.
``pg_admin_dsn`` -> str
    SQLAlchemy URL (``postgresql+asyncpg://...``) of the maintenance database
    (``postgres``, or the database named in the override URL); use it for
    CREATE/DROP DATABASE, never for application tables.
``pg_database_dsn`` -> str
    SQLAlchemy URL of a fresh, uniquely named database created for the session
    and dropped at its end.
``redis_server`` -> RedisServer
    Own ``redis-server`` on a free port, or the server of ``REELGATE_TEST_REDIS_URL``.

Function-scoped:

``pg_fresh_database_dsn`` -> str
    A fresh, uniquely named database for one test, dropped afterwards.
``redis_url`` -> str
    ``redis_server.url`` after a FLUSHDB of its database.

Tests that pause/restart/kill a service should start their own instance
(``PostgresServer.start()`` / ``RedisServer.start()``) instead of disturbing
the shared session ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .services import PostgresServer, RedisServer

__all__ = [
    "pg_admin_dsn",
    "pg_database_dsn",
    "pg_fresh_database_dsn",
    "postgres_server",
    "redis_server",
    "redis_url",
]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer.from_env()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_admin_dsn(postgres_server: PostgresServer) -> str:
    return postgres_server.admin_dsn


@pytest.fixture(scope="session")
def pg_database_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    try:
        yield postgres_server.dsn(name)
    finally:
        if postgres_server.is_running():
            postgres_server.drop_database(name)


@pytest.fixture
def pg_fresh_database_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    try:
        yield postgres_server.dsn(name)
    finally:
        if postgres_server.is_running():
            postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.from_env()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url
