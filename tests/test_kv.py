"""The Redis clients' connection pool under a burst (real Redis, tests/harness)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import MaxConnectionsError

from reelgate import kv


async def test_a_burst_larger_than_the_pool_waits_for_connections(redis_url: str) -> None:
    # 300 viewers stopping at once sent 300 session DELETEs to one node, more than
    # its 100 connections: they must queue for a connection, not fail.
    client = kv.connect(redis_url, max_connections=5, decode_responses=True)
    try:
        # BLPOP with a short timeout holds each connection for a while, so the
        # burst really is larger than the pool at the same moment.
        results = await asyncio.gather(*(client.blpop([f"empty-{i}"], 0.05) for i in range(60)))
        assert results == [None] * 60
        assert await client.incr("burst") == 1
    finally:
        await client.aclose()


async def test_redis_pys_default_pool_would_have_refused_the_burst(redis_url: str) -> None:
    # The failure the blocking pool replaces, shown on the same Redis.
    import redis.asyncio as redis_async

    client = redis_async.Redis.from_url(redis_url, max_connections=5)
    try:
        with pytest.raises(MaxConnectionsError):
            await asyncio.gather(*(client.blpop([f"empty-{i}"], 0.05) for i in range(60)))
    finally:
        await client.aclose()


async def test_a_redis_that_is_down_is_still_an_error_not_a_wait() -> None:
    client = kv.connect("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(kv.KVError):
            await client.get("anything")
    finally:
        await client.aclose()
