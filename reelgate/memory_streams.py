"""Redis Streams in process, for the single-process demo.

Implements exactly the stream commands Reelgate uses (XADD, XREAD, consumer
groups with XREADGROUP / XACK / XPENDING / XCLAIM), with redis-py's call
signatures and return shapes, so the outbox relay, the consumers and the
media nodes' event follower run unchanged on it. Production and every test
of those components use a real Redis.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError


@dataclass
class _Pending:
    consumer: str
    delivered_at: float
    times_delivered: int


@dataclass
class _Group:
    last_delivered: tuple[int, int]
    pending: dict[str, _Pending] = field(default_factory=dict)


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class MemoryStreams:
    """One instance per process; every "client" handed out shares it."""

    def __init__(self) -> None:
        self._entries: dict[str, list[tuple[str, dict[str, str]]]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._last_id: dict[str, tuple[int, int]] = {}
        self._changed = asyncio.Condition()

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None

    async def xadd(self, stream: str, fields: dict[str, Any], maxlen: int | None = None, **_: Any) -> str:
        now_ms = int(time.time() * 1000)
        last_ms, last_seq = self._last_id.get(stream, (0, 0))
        new_id = (now_ms, 0) if now_ms > last_ms else (last_ms, last_seq + 1)
        self._last_id[stream] = new_id
        entry_id = f"{new_id[0]}-{new_id[1]}"
        entries = self._entries.setdefault(stream, [])
        entries.append((entry_id, {str(k): str(v) for k, v in fields.items()}))
        if maxlen is not None and len(entries) > maxlen:
            del entries[: len(entries) - maxlen]
        async with self._changed:
            self._changed.notify_all()
        return entry_id

    async def xgroup_create(self, stream: str, group: str, id: str = "$", mkstream: bool = False) -> bool:
        if (stream, group) in self._groups:
            raise ResponseError("BUSYGROUP Consumer Group name already exists")
        self._entries.setdefault(stream, [])
        start = self._last_id.get(stream, (0, 0)) if id == "$" else _parse_id(id)
        self._groups[(stream, group)] = _Group(last_delivered=start)
        return True

    def _after(self, stream: str, position: tuple[int, int], count: int | None) -> list:
        found = [e for e in self._entries.get(stream, []) if _parse_id(e[0]) > position]
        return found[:count] if count else found

    async def _wait(self, ready: Any, block: int | None) -> None:
        if block is None:
            return
        deadline = time.monotonic() + block / 1000
        async with self._changed:
            while not ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    return

    async def xread(self, streams: dict[str, str], count: int | None = None, block: int | None = None) -> list:
        positions = {
            name: self._last_id.get(name, (0, 0)) if last == "$" else _parse_id(last)
            for name, last in streams.items()
        }
        await self._wait(lambda: any(self._after(s, p, 1) for s, p in positions.items()), block)
        return [[s, found] for s, p in positions.items() if (found := self._after(s, p, count))]

    async def xreadgroup(
        self, groupname: str, consumername: str, streams: dict[str, str],
        count: int | None = None, block: int | None = None, **_: Any,
    ) -> list:
        result = []
        for stream in streams:
            group = self._groups.get((stream, groupname))
            if group is None:
                raise ResponseError("NOGROUP No such key or consumer group")
            await self._wait(lambda g=group, s=stream: bool(self._after(s, g.last_delivered, 1)), block)
            found = self._after(stream, group.last_delivered, count)
            now = time.monotonic()
            for entry_id, _fields in found:
                group.pending[entry_id] = _Pending(consumername, now, 1)
            if found:
                group.last_delivered = _parse_id(found[-1][0])
                result.append([stream, found])
        return result

    async def xack(self, stream: str, groupname: str, *ids: str) -> int:
        group = self._groups.get((stream, groupname))
        if group is None:
            return 0
        return sum(group.pending.pop(entry_id, None) is not None for entry_id in ids)

    async def xpending_range(
        self, stream: str, groupname: str, min: str, max: str, count: int, **_: Any
    ) -> list[dict[str, Any]]:
        group = self._groups.get((stream, groupname))
        if group is None:
            return []
        now = time.monotonic()
        return [
            {
                "message_id": entry_id,
                "consumer": p.consumer,
                "time_since_delivered": int((now - p.delivered_at) * 1000),
                "times_delivered": p.times_delivered,
            }
            for entry_id, p in sorted(group.pending.items(), key=lambda item: _parse_id(item[0]))
        ][:count]

    async def xclaim(
        self, stream: str, groupname: str, consumername: str, min_idle_time: int,
        message_ids: list[str], **_: Any,
    ) -> list:
        group = self._groups.get((stream, groupname))
        if group is None:
            return []
        entries = dict(self._entries.get(stream, []))
        claimed = []
        now = time.monotonic()
        for entry_id in message_ids:
            pending = group.pending.get(entry_id)
            if pending is None or (now - pending.delivered_at) * 1000 < min_idle_time:
                continue
            group.pending[entry_id] = _Pending(consumername, now, pending.times_delivered + 1)
            claimed.append((entry_id, entries.get(entry_id)))
        return claimed


_SHARED = MemoryStreams()


def shared_streams() -> MemoryStreams:
    return _SHARED
