"""The lease port: playback sessions as expiring leases, capped per user.

A lease lives while heartbeats renew it; it ends when it is released or when
its TTL (three heartbeat intervals) passes. `acquire` enforces the per-user
cap atomically (a Lua script in Redis), so any number of racing requests for
a plan with N streams yield exactly N leases. A player that reconnects with
the same `client_id` for the same movie gets its own live lease back instead
of being locked out by it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Protocol

import redis.asyncio as redis_async

from reelgate import kv


@dataclass(frozen=True)
class Lease:
    session_id: str
    user_id: str
    movie_id: str
    client_id: str
    started_at: float  # epoch seconds
    expires_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> Lease:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class Acquired:
    lease: Lease | None  # None when refused
    reused: bool
    live: list[Lease]  # the user's live leases when refused


class LeaseStore(Protocol):
    async def acquire(self, lease: Lease, limit: int, ttl_s: float) -> Acquired: ...
    async def renew(self, session_id: str, ttl_s: float) -> Lease | None: ...
    async def get(self, session_id: str) -> Lease | None: ...
    async def release(self, session_id: str) -> Lease | None: ...
    async def live(self, user_id: str) -> list[Lease]: ...
    async def close(self) -> None: ...


def _session_key(session_id: str) -> str:
    return f"pb:s:{session_id}"


def _user_key(user_id: str) -> str:
    return f"pb:u:{user_id}"


# KEYS[1] = the user's sorted set (member session id, score expiry ms)
# ARGV = now_ms, limit, ttl_ms, lease json, client_id, movie_id
_ACQUIRE = """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local live = {}
for _, sid in ipairs(members) do
  local raw = redis.call('GET', 'pb:s:' .. sid)
  if raw then
    local lease = cjson.decode(raw)
    if ARGV[5] ~= '' and lease['client_id'] == ARGV[5] and lease['movie_id'] == ARGV[6] then
      lease['expires_at'] = (now + ttl) / 1000.0
      raw = cjson.encode(lease)
      redis.call('SET', 'pb:s:' .. sid, raw, 'PX', ttl)
      redis.call('ZADD', KEYS[1], now + ttl, sid)
      redis.call('PEXPIRE', KEYS[1], ttl)
      return {'reused', raw}
    end
    table.insert(live, raw)
  else
    redis.call('ZREM', KEYS[1], sid)
  end
end
if #live >= limit then
  table.insert(live, 1, 'full')
  return live
end
local lease = cjson.decode(ARGV[4])
redis.call('SET', 'pb:s:' .. lease['session_id'], ARGV[4], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, lease['session_id'])
redis.call('PEXPIRE', KEYS[1], ttl)
return {'ok', ARGV[4]}
"""

# KEYS[1] = session key; ARGV = now_ms, ttl_ms
_RENEW = """
local raw = redis.call('GET', KEYS[1])
if not raw then return nil end
local lease = cjson.decode(raw)
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
lease['expires_at'] = (now + ttl) / 1000.0
raw = cjson.encode(lease)
redis.call('SET', KEYS[1], raw, 'PX', ttl)
local user = 'pb:u:' .. lease['user_id']
redis.call('ZADD', user, now + ttl, lease['session_id'])
redis.call('PEXPIRE', user, ttl)
return raw
"""


class RedisLeaseStore:
    def __init__(self, client: redis_async.Redis) -> None:
        self.redis = client
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)

    async def acquire(self, lease: Lease, limit: int, ttl_s: float) -> Acquired:
        now_ms = int(time.time() * 1000)
        ttl_ms = int(ttl_s * 1000)
        lease = Lease(**{**asdict(lease), "expires_at": (now_ms + ttl_ms) / 1000})
        result = await self._acquire(
            keys=[_user_key(lease.user_id)],
            args=[now_ms, limit, ttl_ms, lease.to_json(), lease.client_id, lease.movie_id],
        )
        status, *payload = [_text(item) for item in result]
        if status == "full":
            return Acquired(None, False, [Lease.from_json(raw) for raw in payload])
        return Acquired(Lease.from_json(payload[0]), status == "reused", [])

    async def renew(self, session_id: str, ttl_s: float) -> Lease | None:
        raw = await self._renew(
            keys=[_session_key(session_id)], args=[int(time.time() * 1000), int(ttl_s * 1000)]
        )
        return None if raw is None else Lease.from_json(_text(raw))

    async def get(self, session_id: str) -> Lease | None:
        raw = await self.redis.get(_session_key(session_id))
        return None if raw is None else Lease.from_json(_text(raw))

    async def release(self, session_id: str) -> Lease | None:
        lease = await self.get(session_id)
        if lease is None:
            return None
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(_session_key(session_id))
            pipe.zrem(_user_key(lease.user_id), session_id)
            await pipe.execute()
        return lease

    async def live(self, user_id: str) -> list[Lease]:
        now_ms = int(time.time() * 1000)
        members = await self.redis.zrangebyscore(_user_key(user_id), now_ms, "+inf")
        if not members:
            return []
        raws = await self.redis.mget([_session_key(_text(m)) for m in members])
        return [Lease.from_json(_text(raw)) for raw in raws if raw is not None]

    async def close(self) -> None:
        await self.redis.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class MemoryLeaseStore:
    """One process (the demo): the event loop makes each method atomic."""

    def __init__(self) -> None:
        self._leases: dict[str, Lease] = {}

    def _alive(self, session_id: str) -> Lease | None:
        lease = self._leases.get(session_id)
        if lease is not None and lease.expires_at <= time.time():
            del self._leases[session_id]
            return None
        return lease

    async def acquire(self, lease: Lease, limit: int, ttl_s: float) -> Acquired:
        expires = time.time() + ttl_s
        live = await self.live(lease.user_id)
        for existing in live:
            if lease.client_id and (existing.client_id, existing.movie_id) == (
                lease.client_id,
                lease.movie_id,
            ):
                renewed = Lease(**{**asdict(existing), "expires_at": expires})
                self._leases[existing.session_id] = renewed
                return Acquired(renewed, True, [])
        if len(live) >= limit:
            return Acquired(None, False, live)
        created = Lease(**{**asdict(lease), "expires_at": expires})
        self._leases[created.session_id] = created
        return Acquired(created, False, [])

    async def renew(self, session_id: str, ttl_s: float) -> Lease | None:
        lease = self._alive(session_id)
        if lease is None:
            return None
        renewed = Lease(**{**asdict(lease), "expires_at": time.time() + ttl_s})
        self._leases[session_id] = renewed
        return renewed

    async def get(self, session_id: str) -> Lease | None:
        return self._alive(session_id)

    async def release(self, session_id: str) -> Lease | None:
        lease = self._alive(session_id)
        self._leases.pop(session_id, None)
        return lease

    async def live(self, user_id: str) -> list[Lease]:
        return [
            lease
            for sid in list(self._leases)
            if (lease := self._alive(sid)) is not None and lease.user_id == user_id
        ]

    async def close(self) -> None:
        return None


_SHARED_MEMORY_LEASES = MemoryLeaseStore()


def open_leases(redis_url: str) -> LeaseStore:
    if not redis_url or redis_url == "memory://":
        return _SHARED_MEMORY_LEASES  # one process (the demo) shares one store
    return RedisLeaseStore(kv.connect(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0))
