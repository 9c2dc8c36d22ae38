"""Collapse concurrent calls for one key into one (the first caller does the work)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        inflight = self._inflight.get(key)
        if inflight is not None:
            # shield: one follower giving up must not cancel the leader's work.
            return await asyncio.shield(inflight)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await work()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # there may be no follower to retrieve it
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]
