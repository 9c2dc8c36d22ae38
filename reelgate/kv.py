"""The key-value port: the few shared-memory operations the nodes need.

`RedisKV` is the real one; `MemoryKV` serves the single-process demo. Keeping
the port this small (strings, counters, pub/sub) keeps the in-process version
tiny and lets the same logic run on both.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Protocol

import redis.asyncio as redis_async
from redis.exceptions import RedisError

KVError = (RedisError, OSError, ConnectionError, asyncio.TimeoutError)

# Connections per client (per process and purpose), and how long a command
# waits for one when all are busy. redis-py's default pool raises
# MaxConnectionsError at once when its 100 connections are in use: a burst of
# requests (300 viewers stopping together in the load test) failed with 503s.
# A blocking pool queues the burst instead; a Redis that is down still fails
# fast, through the connect and socket timeouts.
MAX_CONNECTIONS = 100
POOL_WAIT_S = 2.0


def connect(
    url: str, *, max_connections: int = MAX_CONNECTIONS, **options: object
) -> redis_async.Redis:
    """A Redis client whose pool waits for a free connection instead of failing."""
    pool = redis_async.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_S, **options
    )
    return redis_async.Redis.from_pool(pool)


class KeyValue(Protocol):
    async def get_many(self, keys: list[str]) -> list[str | None]: ...
    async def set(self, key: str, value: str, ttl_s: float | None = None) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def incr(self, key: str) -> int: ...
    async def hit(self, key: str, window_s: int) -> tuple[int, int]:
        """Count one event in a fixed window; returns (count, seconds until reset)."""
        ...

    async def publish(self, channel: str, message: str) -> None: ...
    def subscribe(self, channel: str, ready: asyncio.Event | None = None) -> AsyncIterator[str]:
        """Messages on the channel; `ready` is set once the subscription is live."""
        ...

    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class RedisKV:
    def __init__(self, url: str, *, timeout_s: float = 1.0) -> None:
        self.url = url
        # Short timeouts: a stalled Redis must turn into a fast, handled error,
        # never a request that hangs.
        self.redis = connect(
            url,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=10,
        )

    async def get_many(self, keys: list[str]) -> list[str | None]:
        return list(await self.redis.mget(keys))

    async def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        if ttl_s is None:
            await self.redis.set(key, value)
        else:
            await self.redis.set(key, value, px=max(1, int(ttl_s * 1000)))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self.redis.delete(*keys)

    async def incr(self, key: str) -> int:
        return int(await self.redis.incr(key))

    async def hit(self, key: str, window_s: int) -> tuple[int, int]:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_s, nx=True)
            pipe.ttl(key)
            count, _, ttl = await pipe.execute()
        return int(count), max(1, int(ttl))

    async def publish(self, channel: str, message: str) -> None:
        await self.redis.publish(channel, message)

    async def subscribe(  # type: ignore[override]
        self, channel: str, ready: asyncio.Event | None = None
    ) -> AsyncIterator[str]:
        # A dedicated connection without the socket timeout: a quiet channel is normal.
        client = connect(self.url, max_connections=1, decode_responses=True, socket_timeout=None)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(channel)
            if ready is not None:
                ready.set()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield str(message["data"])
        finally:
            await pubsub.aclose()
            await client.aclose()

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()


class MemoryKV:
    """In-process stand-in for one process (the demo). Same semantics, no network."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[str, float]] = {}
        self._subscribers: dict[str, set[asyncio.Queue[str]]] = {}

    def _live(self, key: str) -> str | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= time.monotonic():
            del self._values[key]
            return None
        return value

    async def get_many(self, keys: list[str]) -> list[str | None]:
        return [self._live(key) for key in keys]

    async def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        expires = math.inf if ttl_s is None else time.monotonic() + ttl_s
        self._values[key] = (value, expires)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._values.pop(key, None)

    async def incr(self, key: str) -> int:
        current = self._live(key)
        expires = self._values[key][1] if current is not None else math.inf
        value = int(current or 0) + 1
        self._values[key] = (str(value), expires)
        return value

    async def hit(self, key: str, window_s: int) -> tuple[int, int]:
        current = self._live(key)
        if current is None:
            self._values[key] = ("1", time.monotonic() + window_s)
            return 1, window_s
        value, expires = int(current) + 1, self._values[key][1]
        self._values[key] = (str(value), expires)
        return value, max(1, math.ceil(expires - time.monotonic()))

    async def publish(self, channel: str, message: str) -> None:
        for queue in self._subscribers.get(channel, set()):
            queue.put_nowait(message)

    async def subscribe(  # type: ignore[override]
        self, channel: str, ready: asyncio.Event | None = None
    ) -> AsyncIterator[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers.setdefault(channel, set()).add(queue)
        if ready is not None:
            ready.set()
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers[channel].discard(queue)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


_SHARED_MEMORY_KV: MemoryKV | None = None


def open_kv(url: str) -> KeyValue:
    """`memory://` (or nothing) is one in-process store shared by the whole process."""
    global _SHARED_MEMORY_KV
    if not url or url == "memory://":
        if _SHARED_MEMORY_KV is None:
            _SHARED_MEMORY_KV = MemoryKV()
        return _SHARED_MEMORY_KV
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisKV(url)
    raise ValueError(f"unsupported REELGATE_REDIS_URL {url!r}: use redis://host:port/db")
