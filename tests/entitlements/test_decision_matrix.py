"""Property test: the node's decisions against a plain model of the rules.

Hypothesis draws user, movie, subscription and plan states; the state is
written to the real database and decided by the real code path (the HTTP
route, with its Redis cache), then compared with `reference` below.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

from hypothesis import HealthCheck, given, settings as hypothesis_settings
from hypothesis import strategies as st

from entitlements.models import CatalogMovie, Plan, PlanMovie, Subscription, User
from entitlements.resources import RESOURCES
from reelgate.db import utcnow

SUB_STATUSES = [None, "pending_payment", "trialing", "active", "past_due", "canceled", "expired"]
MOVIE_STATES = ["unknown", "draft", "ready", "deleted"]
PERIODS = ["none", "past", "future"]


def reference(user_deleted: bool, movie: str, status: str | None, period: str, in_plan: bool) -> str:
    if user_deleted:
        return "user_disabled"
    if movie != "ready":
        return "movie_unavailable"
    if status is None:
        return "no_subscription"
    if status not in ("active", "trialing") or period != "future":
        return "subscription_inactive"
    if not in_plan:
        return "not_in_plan"
    return "ok"


def _period_end(period: str) -> dt.datetime | None:
    now = utcnow()
    return {"none": None, "past": now - dt.timedelta(days=1), "future": now + dt.timedelta(days=1)}[
        period
    ]


@hypothesis_settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    user_deleted=st.booleans(),
    movie=st.sampled_from(MOVIE_STATES),
    status=st.sampled_from(SUB_STATUSES),
    period=st.sampled_from(PERIODS),
    in_plan=st.booleans(),
    max_height=st.sampled_from([480, 720, 2160]),
)
async def test_decisions_match_the_reference_model(
    ent_client, admin, user_deleted, movie, status, period, in_plan, max_height
) -> None:
    await check_scenario(ent_client, admin, user_deleted, movie, status, period, in_plan, max_height)


async def test_every_combination_matches_the_reference_model(ent_client, admin) -> None:
    """Hypothesis samples; this walks the whole (small) matrix so no corner is missed."""
    for combination in itertools.product(
        [False, True], MOVIE_STATES, SUB_STATUSES, PERIODS, [False, True]
    ):
        await check_scenario(ent_client, admin, *combination, max_height=720)


async def check_scenario(
    ent_client, admin, user_deleted, movie, status, period, in_plan, max_height
) -> None:
    resources = ent_client.app[RESOURCES]
    user_id, movie_id, plan_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with resources.db.transaction() as session:
        session.add(User(id=user_id, email=f"{user_id}@example.com", name="U", role="viewer",
                         password_hash="x", deleted_at=utcnow() if user_deleted else None))
        session.add(Plan(id=plan_id, name="P", price_cents=1, currency="EUR", max_streams=1,
                         max_height=max_height, genres=[]))
        if movie != "unknown":
            session.add(CatalogMovie(id=movie_id, title="M", genres=[], deleted=movie == "deleted",
                                     status="draft" if movie == "draft" else "ready"))
        await session.flush()
        if in_plan and movie != "unknown":
            session.add(PlanMovie(plan_id=plan_id, movie_id=movie_id))
        if status is not None:
            session.add(Subscription(user_id=user_id, plan_id=plan_id, status=status,
                                     current_period_end=_period_end(period)))

    expected = reference(user_deleted, movie, status, period, in_plan and movie != "unknown")
    for _attempt in ("cold", "cached"):
        decision = await admin.ok(
            "GET", f"/api/entitlements/check?user_id={user_id}&movie_id={movie_id}"
        )
        assert decision["reason"] == expected
        assert decision["allowed"] is (expected == "ok")
        assert decision["max_height"] == (max_height if expected == "ok" else None)
