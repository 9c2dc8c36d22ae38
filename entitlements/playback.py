"""Playback sessions: leases in the lease store, resume positions in the database.

A session starts only for an entitled user, within the plan's `max_streams`;
it lives while heartbeats renew it (a session without a heartbeat for three
intervals ends by itself), and ends at once on DELETE, on cancel, or when a
heartbeat finds the entitlement gone. Ending a session publishes an
invalidation so media nodes refuse its token on the next request.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from entitlements import service
from entitlements.models import PlaybackProgress, Plan
from reelgate.db import utcnow
from reelgate.leases import Acquired, Lease, LeaseStore
from reelgate.tokens import TokenSigner

HEARTBEATS_BEFORE_EXPIRY = 3


@dataclass(frozen=True)
class PlaybackPolicy:
    heartbeat_interval_s: int
    token_ttl_s: int

    @property
    def lease_ttl_s(self) -> float:
        return float(self.heartbeat_interval_s * HEARTBEATS_BEFORE_EXPIRY)


async def plan_stream_limit(session: AsyncSession, user_id: uuid.UUID) -> int:
    subscription = await service.live_subscription(session, user_id)
    if subscription is None:
        return 0
    plan = await session.get(Plan, subscription.plan_id)
    return plan.max_streams if plan is not None else 0


async def start(
    leases: LeaseStore,
    policy: PlaybackPolicy,
    user_id: uuid.UUID,
    movie_id: uuid.UUID,
    client_id: str,
    limit: int,
) -> Acquired:
    now = time.time()
    return await leases.acquire(
        Lease(
            session_id=str(uuid.uuid4()),
            user_id=str(user_id),
            movie_id=str(movie_id),
            client_id=client_id,
            started_at=now,
            expires_at=now + policy.lease_ttl_s,
        ),
        limit,
        policy.lease_ttl_s,
    )


def playback_token(signer: TokenSigner, policy: PlaybackPolicy, lease: Lease) -> tuple[str, int]:
    """A token for this one session; its hard expiry is hours away, because the
    session lease (not the token) is what ends playback."""
    expires_at = int(time.time()) + policy.token_ttl_s
    token = signer.playback_token(
        uuid.UUID(lease.user_id), uuid.UUID(lease.movie_id), uuid.UUID(lease.session_id), expires_at
    )
    return token, expires_at


async def record_position(
    session: AsyncSession, user_id: uuid.UUID, movie_id: uuid.UUID, position_s: float
) -> None:
    """Upsert: the newest heartbeat wins, whatever the backend."""
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    statement = insert(PlaybackProgress).values(
        user_id=user_id, movie_id=movie_id, position_s=position_s, updated_at=utcnow()
    )
    statement = statement.on_conflict_do_update(
        index_elements=["user_id", "movie_id"],
        set_={"position_s": statement.excluded.position_s, "updated_at": statement.excluded.updated_at},
    )
    await session.execute(statement)


async def progress(session: AsyncSession, user_id: uuid.UUID) -> list[PlaybackProgress]:
    rows = await session.scalars(
        select(PlaybackProgress)
        .where(PlaybackProgress.user_id == user_id)
        .order_by(PlaybackProgress.updated_at.desc())
    )
    return list(rows)


async def end_all(leases: LeaseStore, user_id: uuid.UUID) -> list[str]:
    ended = []
    for lease in await leases.live(str(user_id)):
        if await leases.release(lease.session_id) is not None:
            ended.append(lease.session_id)
    return ended
