"""Tests of the test harness itself: real servers, real connections, no skips."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.harness import (
    PostgresServer,
    RedisServer,
    _reaper,
    free_port,
    port_is_free,
    require_binary,
)
from tests.harness.fixtures import *  # noqa: F403  (postgres_server, redis_server, pg_admin_dsn, ...)

REPO = Path(__file__).resolve().parents[1]


def _redis_client(url: str) -> aioredis.Redis:
    # no retries: a stopped server must fail fast
    return aioredis.from_url(url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2)


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _reaper.proc_alive(pid):
            return True
        time.sleep(0.05)
    return False


# ----------------------------------------------------------------------------- plumbing


def test_free_port_distinct_and_bindable() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    assert not ports & {5432, 6379}
    assert all(port_is_free(p) for p in ports)


@pytest.mark.parametrize("name", ["ffmpeg", "ffprobe", "nginx", "redis-server", "initdb", "pg_ctl"])
def test_require_binary_finds_installed(name: str) -> None:
    path = require_binary(name)
    assert os.path.isabs(path) and os.access(path, os.X_OK)
    if name in ("initdb", "pg_ctl"):
        assert path.startswith("/usr/lib/postgresql/")


def test_require_binary_missing_raises_not_skips() -> None:
    with pytest.raises(
        RuntimeError, match=r"^no-such-tool-xyz not found: run scripts/install-system-deps\.sh"
    ):
        require_binary("no-such-tool-xyz")


def test_install_script_is_quick_and_idempotent() -> None:
    t0 = time.monotonic()
    res = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-system-deps.sh")],
        check=False, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert "system deps OK: postgresql" in res.stdout
    assert elapsed < 5, f"took {elapsed:.2f}s with everything installed"


# ----------------------------------------------------------------------------- PostgreSQL


async def test_postgres_select_1(postgres_server: PostgresServer) -> None:
    assert postgres_server.port not in (5432,)
    assert (
        postgres_server.dsn("app")
        == f"postgresql+asyncpg://postgres@127.0.0.1:{postgres_server.port}/app"
    )
    conn = await asyncpg.connect(postgres_server.libpq_dsn("postgres"))
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SHOW port") == str(postgres_server.port)
        assert await conn.fetchval("SHOW fsync") == "off"
        assert await conn.fetchval("SHOW max_connections") == "200"
        assert await conn.fetchval("SELECT current_user") == "postgres"
    finally:
        await conn.close()


async def test_sqlalchemy_async_engine(pg_admin_dsn: str) -> None:
    engine = create_async_engine(pg_admin_dsn)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_create_and_drop_database(postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database()
    assert name.startswith("reelgate_test_")
    assert postgres_server.database_exists(name)
    conn = await asyncpg.connect(postgres_server.libpq_dsn(name))
    try:
        await conn.execute("CREATE TABLE t (x int)")
        await conn.execute("INSERT INTO t VALUES (42)")
        assert await conn.fetchval("SELECT x FROM t") == 42
    finally:
        await conn.close()
    explicit = postgres_server.create_database("Harness-Explicit")  # needs quoting
    assert postgres_server.database_exists(explicit)
    postgres_server.drop_database(explicit)
    postgres_server.drop_database(name)
    assert not postgres_server.database_exists(name)
    assert not postgres_server.database_exists(explicit)


async def test_fresh_database_fixture(pg_fresh_database_dsn: str) -> None:
    engine = create_async_engine(pg_fresh_database_dsn)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE movies (id int primary key, title text)"))
            await conn.execute(text("INSERT INTO movies VALUES (1, 'Metropolis')"))
            assert (await conn.execute(text("SELECT title FROM movies"))).scalar() == "Metropolis"
    finally:
        await engine.dispose()


async def test_postgres_restart_keeps_port_and_data(postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database()
    conn = await asyncpg.connect(postgres_server.libpq_dsn(name))
    await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before restart')")
    port, old_pid = postgres_server.port, postgres_server.pid

    postgres_server.pause()
    assert not postgres_server.is_running()
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await asyncpg.connect(postgres_server.libpq_dsn(name), timeout=2)
    postgres_server.resume()

    assert postgres_server.port == port and postgres_server.pid not in (None, old_pid)
    # the old connection is dead ...
    with pytest.raises(Exception):  # noqa: B017 - exact asyncpg error depends on timing
        await conn.fetchval("SELECT 1")
    conn.terminate()
    # ... a new one sees the data
    conn = await asyncpg.connect(postgres_server.libpq_dsn(name))
    try:
        assert await conn.fetchval("SELECT v FROM kept") == "before restart"
    finally:
        await conn.close()

    postgres_server.restart(mode="immediate")  # crash + recovery
    conn = await asyncpg.connect(postgres_server.libpq_dsn(name))
    try:
        assert await conn.fetchval("SELECT count(*) FROM kept") == 1
    finally:
        await conn.close()
    postgres_server.drop_database(name)


def test_postgres_stop_removes_everything() -> None:
    srv = PostgresServer.start()
    pid, inst = srv.pid, srv.dir
    assert pid and inst and inst.is_dir()
    assert (inst / "data" / "PG_VERSION").is_file()
    if os.geteuid() == 0:
        assert (inst / "data").stat().st_uid != 0  # runs as the postgres user
    srv.stop()
    assert _wait_gone(pid, 5)
    assert not inst.exists()
    assert port_is_free(srv.port)
    srv.stop()  # idempotent


# ----------------------------------------------------------------------------- Redis


async def test_redis_ping_set_get(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_server.port != 6379
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = _redis_client(redis_url)
    try:
        assert await client.ping() is True
        await client.set("reelgate:harness", "ok")
        assert await client.get("reelgate:harness") == b"ok"
    finally:
        await client.aclose()


async def test_redis_url_fixture_flushes(redis_url: str) -> None:
    client = _redis_client(redis_url)
    try:
        assert await client.dbsize() == 0  # the previous test's key is gone
    finally:
        await client.aclose()


async def test_redis_pause_resume_same_port(redis_server: RedisServer) -> None:
    port, old_pid = redis_server.port, redis_server.pid
    client = _redis_client(redis_server.url)
    try:
        await client.set("k", "v")
        redis_server.pause()
        assert not redis_server.is_running()
        assert port_is_free(port)
        with pytest.raises(RedisConnectionError):
            await client.ping()
        redis_server.resume()
        assert redis_server.port == port and redis_server.pid not in (None, old_pid)
        assert await client.ping() is True  # same client, same URL: reconnects
        assert await client.get("k") is None  # no persistence

        redis_server.kill()
        with pytest.raises(RedisConnectionError):
            await client.ping()
        redis_server.resume()
        assert await client.ping() is True
    finally:
        await client.aclose()


# ----------------------------------------------------------------------------- overrides


async def test_database_url_override(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend the harness' own server is an externally provided one.
    monkeypatch.setenv("REELGATE_TEST_DATABASE_URL", postgres_server.libpq_dsn("postgres"))
    ext = PostgresServer.from_env()
    assert ext.external and ext.port == postgres_server.port
    name = ext.create_database()
    assert name.startswith("reelgate_test_")
    conn = await asyncpg.connect(ext.libpq_dsn(name))
    assert await conn.fetchval("SELECT current_database()") == name
    await conn.close()
    with pytest.raises(RuntimeError, match="external PostgreSQL"):
        ext.restart()
    ext.stop()  # drops what it created, leaves the server alone
    assert not postgres_server.database_exists(name)
    assert postgres_server.is_running()

    monkeypatch.setenv("REELGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/postgres")
    with pytest.raises(RuntimeError, match="cannot connect"):
        PostgresServer.from_env()


async def test_redis_url_override(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _redis_client(f"redis://127.0.0.1:{redis_server.port}/0")
    db15 = _redis_client(f"redis://127.0.0.1:{redis_server.port}/15")
    try:
        await plain.set("untouched", "1")
        await db15.set("stale", "1")
        monkeypatch.setenv("REELGATE_TEST_REDIS_URL", f"redis://127.0.0.1:{redis_server.port}")
        ext = RedisServer.from_env()
        assert ext.external and ext.url == f"redis://127.0.0.1:{redis_server.port}/15"
        assert await db15.get("stale") is None  # flushed at start
        assert await plain.get("untouched") == b"1"  # other dbs untouched
        with pytest.raises(RuntimeError, match="external Redis"):
            ext.pause()
        await db15.set("x", "1")
        ext.stop()
        assert await db15.dbsize() == 0
        assert redis_server.is_running()
    finally:
        await plain.aclose()
        await db15.aclose()


# ----------------------------------------------------------------------------- clean-up


def test_sweep_cleans_roots_of_dead_owners(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    root = base / f"{_reaper.ROOT_PREFIX}999999-test"
    (root / "services").mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (root / "owner.json").write_text(json.dumps({"pid": dead.pid, "starttime": 1}))
    rdir = root / "redis-x"
    rdir.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not _redis_answers(port):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    (root / "services" / "redis-x.json").write_text(
        json.dumps({"kind": "redis", "expect": "redis-server", "pid": proc.pid, "dir": str(rdir)})
    )
    # a root whose owner is alive (us) must be left alone
    live = base / f"{_reaper.ROOT_PREFIX}{os.getpid()}-live"
    live.mkdir()
    (live / "owner.json").write_text(json.dumps(_reaper.owner_record()))

    cleaned = _reaper.sweep(str(base))
    assert cleaned == [str(root)]
    assert proc.wait(5) is not None
    assert not root.exists() and live.exists()


def test_services_die_with_a_killed_pytest(tmp_path: Path) -> None:
    """SIGKILL the owning process: the watchdog must stop postgres and redis."""
    script = textwrap.dedent(
        f"""
        import json, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from tests.harness import PostgresServer, RedisServer, runtime_root
        pg = PostgresServer.start()
        rd = RedisServer.start()
        print(json.dumps({{"pg": [pg.pid, pg.port], "redis": [rd.pid, rd.port],
                          "root": str(runtime_root())}}), flush=True)
        time.sleep(600)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGATE_TEST_")}
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(tmp_path),
    )
    try:
        line = child.stdout.readline()
        assert line, "child did not start its services"
        info = json.loads(line)
        (pg_pid, pg_port), (rd_pid, rd_port) = info["pg"], info["redis"]
        assert _reaper.proc_alive(pg_pid) and _reaper.proc_alive(rd_pid)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert _wait_gone(pg_pid), "postgres outlived its owner"
    assert _wait_gone(rd_pid), "redis outlived its owner"
    deadline = time.monotonic() + 10
    while Path(info["root"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(info["root"]).exists()
    assert port_is_free(pg_port) and port_is_free(rd_port)
