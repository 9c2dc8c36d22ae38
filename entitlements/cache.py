"""The shared (Redis) layer of entitlement decisions, and how it is invalidated.

A cached decision records the version counters of its user, its movie and the
global scope as they were read *before* the decision was computed. A change
bumps the counters after its transaction commits, so a reader compares the
stored versions with the current ones in the same MGET: a decision computed
from data older than the change can never be served, even if it was written
after the invalidation (no delete-then-stale-write race).

Every invalidation is also published on a pub/sub channel so that the
in-process caches of media nodes drop their copies at once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from entitlements.schemas import Decision
from reelgate.kv import KeyValue

INVALIDATION_CHANNEL = "reelgate:invalidations"
GLOBAL_VERSION = "ent:ver:all"


def decision_key(user_id: uuid.UUID, movie_id: uuid.UUID) -> str:
    return f"ent:dec:{user_id}:{movie_id}"


def user_version_key(user_id: uuid.UUID) -> str:
    return f"ent:ver:user:{user_id}"


def movie_version_key(movie_id: uuid.UUID) -> str:
    return f"ent:ver:movie:{movie_id}"


Versions = tuple[str, str, str]


@dataclass(frozen=True)
class Lookup:
    decision: Decision | None
    versions: Versions


async def lookup(kv: KeyValue, user_id: uuid.UUID, movie_id: uuid.UUID) -> Lookup:
    raw, user_v, movie_v, global_v = await kv.get_many(
        [
            decision_key(user_id, movie_id),
            user_version_key(user_id),
            movie_version_key(movie_id),
            GLOBAL_VERSION,
        ]
    )
    versions: Versions = (user_v or "0", movie_v or "0", global_v or "0")
    if raw is None:
        return Lookup(None, versions)
    try:
        stored = json.loads(raw)
        if tuple(stored["v"]) != versions:
            return Lookup(None, versions)
        return Lookup(Decision.model_validate(stored["d"]), versions)
    except (ValueError, KeyError, TypeError):
        return Lookup(None, versions)


async def store(
    kv: KeyValue,
    user_id: uuid.UUID,
    movie_id: uuid.UUID,
    decision: Decision,
    versions: Versions,
    ttl_s: float,
) -> None:
    value = json.dumps({"d": decision.model_dump(), "v": list(versions)})
    await kv.set(decision_key(user_id, movie_id), value, ttl_s)


@dataclass(frozen=True)
class Invalidation:
    users: frozenset[str] = frozenset()
    movies: frozenset[str] = frozenset()
    sessions: frozenset[str] = frozenset()
    everything: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "users": sorted(self.users),
                "movies": sorted(self.movies),
                "sessions": sorted(self.sessions),
                "all": self.everything,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> Invalidation:
        body = json.loads(raw)
        return cls(
            users=frozenset(map(str, body.get("users", []))),
            movies=frozenset(map(str, body.get("movies", []))),
            sessions=frozenset(map(str, body.get("sessions", []))),
            everything=bool(body.get("all", False)),
        )


async def invalidate(
    kv: KeyValue,
    *,
    users: Iterable[uuid.UUID] = (),
    movies: Iterable[uuid.UUID] = (),
    sessions: Iterable[uuid.UUID] = (),
    everything: bool = False,
) -> None:
    """Bump versions, then tell every node. Call after the change has committed."""
    message = Invalidation(
        users=frozenset(map(str, users)),
        movies=frozenset(map(str, movies)),
        sessions=frozenset(map(str, sessions)),
        everything=everything,
    )
    for user in message.users:
        await kv.incr(f"ent:ver:user:{user}")
    for movie in message.movies:
        await kv.incr(f"ent:ver:movie:{movie}")
    if everything:
        await kv.incr(GLOBAL_VERSION)
    await kv.publish(INVALIDATION_CHANNEL, message.to_json())
