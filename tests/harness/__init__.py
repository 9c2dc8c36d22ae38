"""Test harness: real PostgreSQL / Redis servers on free ports, binary checks.

Fixtures live in :mod:`tests.harness.fixtures` (``from tests.harness.fixtures import *``).
"""

from .ports import free_port, port_is_free
from .services import (
    DATABASE_URL_ENV,
    INSTALL_HINT,
    REDIS_URL_ENV,
    PostgresServer,
    RedisServer,
    cleanup_all,
    pg_bindir,
    require_binary,
    runtime_root,
    unique_name,
)

__all__ = [
    "DATABASE_URL_ENV",
    "INSTALL_HINT",
    "REDIS_URL_ENV",
    "PostgresServer",
    "RedisServer",
    "cleanup_all",
    "free_port",
    "pg_bindir",
    "port_is_free",
    "require_binary",
    "runtime_root",
    "unique_name",
]
