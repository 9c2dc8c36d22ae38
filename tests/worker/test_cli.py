"""`reelgate worker` as operators run it: a real process, real signals."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis_async

from reelgate.config import Settings
from reelgate.db import Database
from tests.harness.ports import free_port
from tests.worker.support import add_plan, add_subscriber, movie_event, publish_and_settle, wait_for

ROOT = Path(__file__).resolve().parents[2]


def worker_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGATE_")}
    env.update({f"REELGATE_{k.upper()}": v for k, v in values.items()})
    return env


async def run_worker(env: dict[str, str], log: Path, *args: str) -> asyncio.subprocess.Process:
    with log.open("wb") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reelgate.cli", "worker", *args,
            cwd=ROOT, env=env, stdout=sink, stderr=sink,
        )


async def test_the_worker_refuses_to_start_without_redis(
    settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    process = await run_worker(
        worker_env(database_url=settings.database_url, redis_url=""), log
    )
    assert await asyncio.wait_for(process.wait(), 30) == 2
    assert "set REELGATE_REDIS_URL" in log.read_text()


async def test_the_worker_refuses_to_start_on_an_unmigrated_database(
    pg_fresh_database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    process = await run_worker(
        worker_env(database_url=pg_fresh_database_dsn, redis_url=redis_url),
        log, "--port", str(free_port()),
    )
    assert await asyncio.wait_for(process.wait(), 30) == 2
    output = log.read_text()
    assert "Run `reelgate migrate` first" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_the_worker_mails_and_stops_cleanly_on_a_signal(
    settings: Settings, db: Database, redis: redis_async.Redis, tmp_path: Path,
    stop_signal: signal.Signals,
) -> None:
    port = free_port()
    var_dir = tmp_path / "var"
    log = tmp_path / "worker.log"
    process = await run_worker(
        worker_env(database_url=settings.database_url, redis_url=settings.redis_url,
                   var_dir=str(var_dir), smtp_url=""),
        log, "--port", str(port),
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                assert process.returncode is None, log.read_text()
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(ready, "the worker to be ready", timeout_s=30)
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert "reelgate_http_requests_total" in await response.text()

        plan = await add_plan(db)
        viewer = await add_subscriber(db, plan)
        await publish_and_settle(redis, movie_event(title="Night Shift"))

        (eml,) = (var_dir / "mail").glob("*.eml")  # no SMTP URL: the demo's mail directory
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        assert message["To"].addresses[0].addr_spec == viewer.email
        assert message["Subject"] == "New on Reelgate: Night Shift"

        process.send_signal(stop_signal)
        assert await asyncio.wait_for(process.wait(), 20) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
