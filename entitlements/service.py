"""Entitlements logic, free of HTTP: accounts, plans, subscriptions, billing,
decisions. Functions take an AsyncSession and raise `Problem` for the outcomes
a client must see; the caller owns the transaction."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from entitlements import schemas
from entitlements.models import (
    ENTITLING_STATUSES,
    LIVE_STATUSES,
    BillingEvent,
    CatalogMovie,
    Plan,
    PlanMovie,
    RefreshToken,
    Subscription,
    User,
)
from reelgate.db import broken_constraint, utcnow
from reelgate.pagination import PageQuery
from reelgate.problems import Problem, conflict, not_found, unauthorized
from reelgate.tokens import TokenSigner

# ---------------------------------------------------------------- passwords


class Passwords:
    """Argon2id (memory-hard). Hashing runs in a thread: it is slow on purpose."""

    def __init__(self, memory_kib: int = 65536, time_cost: int = 3) -> None:
        self.hasher = PasswordHasher(memory_cost=memory_kib, time_cost=time_cost, parallelism=2)
        # Verifying against a dummy hash for unknown e-mails keeps login timing
        # from revealing which accounts exist.
        self.dummy_hash = self.hasher.hash(secrets.token_hex(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self.hasher.verify(password_hash or self.dummy_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        ok = await asyncio.to_thread(check)
        return ok and password_hash is not None


# ---------------------------------------------------------------- lost races

# Unique rules as PostgreSQL names them (constraint, index) and as SQLite does
# (the columns), so a lost race is recognised on both.
EMAIL_UNIQUE = frozenset({"uq_users_email", "users.email"})
LIVE_SUBSCRIPTION_UNIQUE = frozenset({"uq_subscriptions_live_user", "subscriptions.user_id"})


def email_taken_problem() -> Problem:
    return conflict("email_taken", "An account with this e-mail already exists.")


def subscription_exists_problem() -> Problem:
    return conflict("subscription_exists", "This user already has a live subscription.")


@contextlib.contextmanager
def race_lost_to(rule: frozenset[str], problem: Callable[[], Problem]) -> Iterator[None]:
    """Pre-checks and writes are separate statements, so a concurrent request
    can slip in between; the database's unique rule then refuses the write,
    and the client gets the pre-check's answer. Other integrity errors are bugs."""
    try:
        yield
    except IntegrityError as exc:
        if broken_constraint(exc) not in rule:
            raise
        raise problem() from None


# ---------------------------------------------------------------- users


async def email_taken(session: AsyncSession, email: str) -> bool:
    return await session.scalar(select(User.id).where(User.email == email)) is not None


async def account_role(session: AsyncSession, user_id: uuid.UUID | None) -> str | None:
    """The role of a live account, None if it is deleted or unknown (a primary-key lookup)."""
    return await session.scalar(
        select(User.role).where(User.id == user_id, User.deleted_at.is_(None))
    )


async def get_user(session: AsyncSession, user_id: uuid.UUID, *, with_deleted: bool = False) -> User:
    user = await session.get(User, user_id)
    if user is None or (user.deleted_at is not None and not with_deleted):
        raise not_found("User")
    return user


async def create_user(
    session: AsyncSession, passwords: Passwords, *, email: str, password: str, name: str, role: str
) -> User:
    if await email_taken(session, email):
        raise email_taken_problem()
    user = User(email=email, name=name, role=role, password_hash=await passwords.hash(password))
    session.add(user)
    with race_lost_to(EMAIL_UNIQUE, email_taken_problem):
        await session.flush()
    return user


async def ensure_admin(
    session: AsyncSession, passwords: Passwords, email: str, password: str
) -> User:
    """Bootstrap: create the admin, or make sure an existing account is a live admin."""
    email = email.strip().lower()
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        return await create_user(
            session, passwords, email=email, password=password, name="Administrator", role="admin"
        )
    user.role, user.deleted_at = "admin", None
    await session.flush()
    return user


async def update_user(
    session: AsyncSession, passwords: Passwords, user: User, changes: dict[str, Any]
) -> User:
    new_email = changes.get("email", user.email)
    if new_email != user.email and await email_taken(session, new_email):
        raise email_taken_problem()
    password = changes.pop("password", None)
    changes.pop("current_password", None)
    password_hash = await passwords.hash(password) if password is not None else None
    # Revoking tokens autoflushes the new e-mail first, so it is guarded too.
    with race_lost_to(EMAIL_UNIQUE, email_taken_problem):
        for field, value in changes.items():
            setattr(user, field, value)
        if password_hash is not None:
            user.password_hash = password_hash
            await revoke_all_refresh_tokens(session, user.id)
        await session.flush()
    return user


async def list_users(session: AsyncSession, query: schemas.ListQuery) -> tuple[list[User], int]:
    statement = select(User)
    if not query.with_deleted:
        statement = statement.where(User.deleted_at.is_(None))
    return await paginate(session, statement.order_by(User.created_at, User.id), query)


async def soft_delete_user(session: AsyncSession, user: User) -> None:
    user.deleted_at = utcnow()
    await revoke_all_refresh_tokens(session, user.id)
    await session.flush()


async def restore_user(session: AsyncSession, user: User) -> None:
    user.deleted_at = None
    await session.flush()


async def paginate(session: AsyncSession, statement: Select, query: PageQuery) -> tuple[list, int]:
    total = await session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    rows = await session.scalars(statement.offset(query.offset).limit(query.per_page))
    return list(rows), int(total or 0)


# ---------------------------------------------------------------- sessions and tokens


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class TokenIssuer:
    signer: TokenSigner
    access_ttl_s: int
    refresh_ttl_s: int

    async def issue(
        self, session: AsyncSession, user: User, family_id: uuid.UUID | None = None
    ) -> schemas.TokenPair:
        refresh = secrets.token_urlsafe(32)
        session.add(
            RefreshToken(
                user_id=user.id,
                family_id=family_id or uuid.uuid4(),
                token_hash=_hash_token(refresh),
                expires_at=utcnow() + dt.timedelta(seconds=self.refresh_ttl_s),
            )
        )
        await session.flush()
        return schemas.TokenPair(
            access_token=self.signer.access_token(user.id, user.role, self.access_ttl_s),
            refresh_token=refresh,
            expires_in=self.access_ttl_s,
        )


async def authenticate(
    session: AsyncSession, passwords: Passwords, email: str, password: str
) -> User | None:
    user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    live = user is not None and user.deleted_at is None
    ok = await passwords.verify(user.password_hash if live else None, password)  # type: ignore[union-attr]
    return user if ok and live else None


async def rotate_refresh_token(
    session: AsyncSession, issuer: TokenIssuer, presented: str
) -> schemas.TokenPair:
    """Exchange a refresh token for a new pair. Presenting a token that was
    already rotated means it leaked: the whole family is revoked."""
    token = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == _hash_token(presented))
    )
    if token is None or token.revoked_at is not None or token.expires_at <= utcnow():
        raise unauthorized("The refresh token is invalid or has expired.")
    # Atomic claim: of two concurrent refreshes with one token, only one wins.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=utcnow())
    )
    if claimed.rowcount != 1:
        await revoke_family(session, token.family_id)
        raise unauthorized("The refresh token was already used; this login has been signed out.")
    user = await session.get(User, token.user_id)
    if user is None or user.deleted_at is not None:
        raise unauthorized("The refresh token is invalid or has expired.")
    return await issuer.issue(session, user, family_id=token.family_id)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def revoke_all_refresh_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def logout(session: AsyncSession, user_id: uuid.UUID, presented: str | None) -> None:
    if presented is None:
        await revoke_all_refresh_tokens(session, user_id)
        return
    token = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == _hash_token(presented))
    )
    if token is not None and token.user_id == user_id:
        await revoke_family(session, token.family_id)


# ---------------------------------------------------------------- plans


async def get_plan(session: AsyncSession, plan_id: uuid.UUID, *, with_deleted: bool = False) -> Plan:
    plan = await session.get(Plan, plan_id)
    if plan is None or (plan.deleted_at is not None and not with_deleted):
        raise not_found("Plan")
    return plan


async def list_plans(session: AsyncSession, query: schemas.ListQuery) -> tuple[list[Plan], int]:
    statement = select(Plan)
    if not query.with_deleted:
        statement = statement.where(Plan.deleted_at.is_(None))
    return await paginate(session, statement.order_by(Plan.price_cents, Plan.name, Plan.id), query)


def genres_match(plan_genres: list[str], movie_genres: list[str]) -> bool:
    return "*" in plan_genres or bool(set(plan_genres) & set(movie_genres))


async def plan_movie_ids(session: AsyncSession, plan_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(PlanMovie.movie_id)
        .join(CatalogMovie, CatalogMovie.id == PlanMovie.movie_id)
        .where(PlanMovie.plan_id == plan_id, CatalogMovie.deleted.is_(False))
        .order_by(PlanMovie.added_at, PlanMovie.movie_id)
    )
    return list(rows)


async def add_movie_to_plan(
    session: AsyncSession, plan: Plan, movie_id: uuid.UUID, source: str = "explicit"
) -> bool:
    """Idempotent: returns whether the membership is new."""
    movie = await session.get(CatalogMovie, movie_id)
    if movie is None or movie.deleted:
        raise not_found("Movie")
    existing = await session.get(PlanMovie, (plan.id, movie_id))
    if existing is not None:
        return False
    session.add(PlanMovie(plan_id=plan.id, movie_id=movie_id, source=source))
    await session.flush()
    return True


async def remove_movie_from_plan(session: AsyncSession, plan: Plan, movie_id: uuid.UUID) -> None:
    existing = await session.get(PlanMovie, (plan.id, movie_id))
    if existing is None:
        raise not_found("Movie in this plan")
    await session.delete(existing)
    await session.flush()


# ---------------------------------------------------------------- subscriptions


async def get_subscription(session: AsyncSession, subscription_id: uuid.UUID) -> Subscription:
    subscription = await session.get(Subscription, subscription_id)
    if subscription is None:
        raise not_found("Subscription")
    return subscription


async def live_subscription(session: AsyncSession, user_id: uuid.UUID) -> Subscription | None:
    return await session.scalar(
        select(Subscription).where(
            Subscription.user_id == user_id, Subscription.status.in_(LIVE_STATUSES)
        )
    )


async def create_subscription(
    session: AsyncSession, user: User, plan: Plan
) -> Subscription:
    if await live_subscription(session, user.id) is not None:
        raise subscription_exists_problem()
    subscription = Subscription(user_id=user.id, plan_id=plan.id, status="pending_payment")
    session.add(subscription)
    with race_lost_to(LIVE_SUBSCRIPTION_UNIQUE, subscription_exists_problem):
        await session.flush()
    return subscription


async def list_subscriptions(
    session: AsyncSession, query: schemas.SubscriptionListQuery, only_user: uuid.UUID | None
) -> tuple[list[Subscription], int]:
    statement = select(Subscription)
    user_id = only_user or query.user_id
    if user_id is not None:
        statement = statement.where(Subscription.user_id == user_id)
    if query.status is not None:
        statement = statement.where(Subscription.status == query.status)
    return await paginate(session, statement.order_by(Subscription.created_at, Subscription.id), query)


async def change_subscription(
    session: AsyncSession, subscription: Subscription, patch: schemas.SubscriptionPatch
) -> Subscription:
    if patch.plan_id is not None:
        await get_plan(session, patch.plan_id)
        subscription.plan_id = patch.plan_id
    if patch.status is not None and patch.status != subscription.status:
        revives = patch.status in LIVE_STATUSES and subscription.status not in LIVE_STATUSES
        if revives and await live_subscription(session, subscription.user_id) is not None:
            raise subscription_exists_problem()
        subscription.status = patch.status
        if patch.status == "canceled":
            subscription.canceled_at = utcnow()
    if patch.current_period_end is not None:
        subscription.current_period_end = patch.current_period_end
    with race_lost_to(LIVE_SUBSCRIPTION_UNIQUE, subscription_exists_problem):
        await session.flush()
    return subscription


async def cancel_subscription(session: AsyncSession, subscription: Subscription) -> Subscription:
    if subscription.status in LIVE_STATUSES:
        subscription.status = "canceled"
        subscription.canceled_at = utcnow()
        await session.flush()
    return subscription


async def apply_billing_event(
    session: AsyncSession, event: schemas.BillingEventIn, period_days: int
) -> tuple[str, Subscription | None]:
    """Record the event once; change the subscription only if the event is
    newer than the last one applied (a stale failure never undoes a success).

    Redeliveries may arrive concurrently: they queue on the subscription's row
    lock, taken before the duplicate check, so the check sees the first one's
    commit; without a row to lock, the primary key of the record decides."""
    subscription = await session.get(Subscription, event.subscription_id, with_for_update=True)
    if await session.get(BillingEvent, event.event_id) is not None:
        return "duplicate", subscription
    occurred_at = event.occurred_at or utcnow()
    outcome = _billing_outcome(subscription, occurred_at)
    try:
        async with session.begin_nested():
            session.add(
                BillingEvent(
                    event_id=event.event_id,
                    type=event.type,
                    subscription_id=event.subscription_id,
                    amount_cents=event.amount_cents,
                    occurred_at=occurred_at,
                    outcome=outcome,
                )
            )
    except IntegrityError:
        return "duplicate", subscription
    if outcome == "applied" and subscription is not None:
        _apply_payment(subscription, event.type, occurred_at, period_days)
        await session.flush()
    return outcome, subscription


def _billing_outcome(subscription: Subscription | None, occurred_at: dt.datetime) -> str:
    if subscription is None:
        return "unknown_subscription"
    if subscription.status in ("canceled", "expired"):
        return f"ignored_{subscription.status}"
    if subscription.billing_as_of is not None and occurred_at < subscription.billing_as_of:
        return "stale"
    return "applied"


def _apply_payment(
    subscription: Subscription, kind: str, occurred_at: dt.datetime, period_days: int
) -> None:
    subscription.billing_as_of = occurred_at
    if kind == "payment_failed":
        subscription.status = "past_due"
        return
    # A payment extends from the end of the paid period, or from now if it lapsed.
    start = max(filter(None, [subscription.current_period_end, utcnow()]))
    subscription.current_period_end = start + dt.timedelta(days=period_days)
    subscription.status = "active"


# ---------------------------------------------------------------- decisions


async def decide(
    session: AsyncSession, user_id: uuid.UUID, movie_id: uuid.UUID, now: dt.datetime | None = None
) -> schemas.Decision:
    """The entitlement rules, in the order their reasons take precedence."""
    now = now or utcnow()
    user = await session.get(User, user_id)
    if user is None or user.deleted_at is not None:
        return schemas.Decision(allowed=False, reason="user_disabled")
    movie = await session.get(CatalogMovie, movie_id)
    if movie is None or movie.deleted or movie.status != "ready":
        return schemas.Decision(allowed=False, reason="movie_unavailable")
    subscription = await current_subscription(session, user_id)
    if subscription is None:
        return schemas.Decision(allowed=False, reason="no_subscription")
    if not is_entitling(subscription, now):
        return schemas.Decision(allowed=False, reason="subscription_inactive")
    plan = await session.get(Plan, subscription.plan_id)
    if plan is None or await session.get(PlanMovie, (plan.id, movie_id)) is None:
        return schemas.Decision(allowed=False, reason="not_in_plan")
    return schemas.Decision(allowed=True, reason="ok", max_height=plan.max_height)


def is_entitling(subscription: Subscription, now: dt.datetime) -> bool:
    return (
        subscription.status in ENTITLING_STATUSES
        and subscription.current_period_end is not None
        and subscription.current_period_end > now
    )


async def current_subscription(session: AsyncSession, user_id: uuid.UUID) -> Subscription | None:
    """The live subscription, else the most recent ended one (for the reason)."""
    live = await live_subscription(session, user_id)
    if live is not None:
        return live
    return await session.scalar(
        select(Subscription)
        .where(Subscription.user_id == user_id)
        .order_by(Subscription.created_at.desc())
        .limit(1)
    )


async def watchable_movies(
    session: AsyncSession, user_id: uuid.UUID, query: PageQuery
) -> tuple[list[CatalogMovie], int]:
    user = await get_user(session, user_id)
    subscription = await live_subscription(session, user.id)
    if subscription is None or not is_entitling(subscription, utcnow()):
        return [], 0
    statement = (
        select(CatalogMovie)
        .join(PlanMovie, PlanMovie.movie_id == CatalogMovie.id)
        .where(
            PlanMovie.plan_id == subscription.plan_id,
            CatalogMovie.deleted.is_(False),
            CatalogMovie.status == "ready",
        )
        .order_by(CatalogMovie.title, CatalogMovie.id)
    )
    return await paginate(session, statement, query)


async def subscriber_ids_of_plan(session: AsyncSession, plan_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(Subscription.user_id).where(
            Subscription.plan_id == plan_id, Subscription.status.in_(LIVE_STATUSES)
        )
    )
    return list(rows)


# ---------------------------------------------------------------- movie projection


async def project_movie_event(session: AsyncSession, kind: str, data: dict[str, Any]) -> bool:
    """Apply one `movie.*` event to the projection. Idempotent. Returns whether
    the movie's availability or plan membership may have changed."""
    movie_id = uuid.UUID(str(data["id"]))
    movie = await session.get(CatalogMovie, movie_id)
    if movie is None:
        movie = CatalogMovie(id=movie_id, genres=[], status="draft", deleted=False, title="")
        session.add(movie)
    if "title" in data:
        movie.title = str(data["title"])[:500]
    if isinstance(data.get("genres"), list):
        movie.genres = [str(genre) for genre in data["genres"]]
    if "age_rating" in data:
        movie.age_rating = data["age_rating"]
    if isinstance(data.get("status"), str):
        movie.status = data["status"]
    media = data.get("media")
    if isinstance(media, dict) and isinstance(media.get("height"), int):
        movie.height = media["height"]
    if kind == "movie.media_ready":
        movie.status = "ready"
    if kind == "movie.deleted":
        movie.deleted = True
    elif kind == "movie.restored":
        movie.deleted = False
    movie.updated_at = utcnow()
    await session.flush()
    if kind == "movie.created":
        await join_matching_plans(session, movie)
    return True


async def join_matching_plans(session: AsyncSession, movie: CatalogMovie) -> int:
    plans = await session.scalars(select(Plan).where(Plan.deleted_at.is_(None)))
    joined = 0
    for plan in plans:
        if genres_match(plan.genres, movie.genres):
            joined += await add_movie_to_plan(session, plan, movie.id, source="genre")
    return joined

