"""Latency of `EntitlementClient.check` in its three regimes.

Starts a throwaway PostgreSQL and Redis (tests/harness) and an entitlements
node in this process, then times sequential checks:

- warm in-process: the answer is in the client's local cache;
- warm Redis: the local layer is off, the answer is in Redis (one MGET);
- cold: a new key each time (Redis miss, HTTP call to the node, database).

Prints p50/p99 per regime. Not a pass/fail test: machines are noisy.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from aiohttp import web

from entitlements.app import create_app
from entitlements.client import EntitlementClient
from reelgate.config import Settings
from reelgate.db import make_engine
from reelgate.kv import RedisKV
from reelgate.migrate import upgrade
from tests.harness.ports import free_port
from tests.harness.services import PostgresServer, RedisServer


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p50 = statistics.median(ordered) / 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] / 1000
    return p50, p99


async def timed(calls: int, check) -> list[int]:  # type: ignore[no-untyped-def]
    samples = []
    for index in range(calls):
        started = time.perf_counter_ns()
        await check(index)
        samples.append(time.perf_counter_ns() - started)
    return samples


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="reelgate-bench-"))
    postgres, redis = PostgresServer.start(), RedisServer.start()
    try:
        database = postgres.dsn(postgres.create_database())
        engine = make_engine(database)
        await upgrade(engine, "entitlements")
        await engine.dispose()
        settings = Settings(var_dir=work, database_url=database, redis_url=redis.url,
                            service_key="bench-key")
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        user, movie = uuid.uuid4(), uuid.uuid4()

        local = EntitlementClient(RedisKV(redis.url), f"http://127.0.0.1:{port}", "bench-key")
        await local.start()
        await local.check(user, movie)
        warm_local = await timed(20000, lambda _: local.check(user, movie))

        shared = EntitlementClient(RedisKV(redis.url), f"http://127.0.0.1:{port}", "bench-key",
                                   local_ttl_s=0.0)
        await shared.start()
        warm_redis = await timed(5000, lambda _: shared.check(user, movie))
        cold = await timed(1000, lambda _: shared.check(uuid.uuid4(), uuid.uuid4()))

        print(f"{'regime':<20}{'calls':>8}{'p50 µs':>12}{'p99 µs':>12}")
        for name, samples in (("warm in-process", warm_local), ("warm Redis", warm_redis),
                              ("cold (node + DB)", cold)):
            p50, p99 = percentiles(samples)
            print(f"{name:<20}{len(samples):>8}{p50:>12.1f}{p99:>12.1f}")
        for client in (local, shared):
            await client.close()
            await client.kv.close()
        await runner.cleanup()
    finally:
        redis.stop()
        postgres.stop()


if __name__ == "__main__":
    asyncio.run(main())
