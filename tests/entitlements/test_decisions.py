"""Entitlement decisions: every reason, who may ask, the Redis decision cache
and its immediate invalidation, and `/api/me/movies`."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
import redis.asyncio as redis_async

from entitlements import cache
from tests.entitlements.conftest import entitled_viewer, pay
from tests.entitlements.support import (
    assert_invalid_token,
    assert_problem,
    assert_validation_error,
    check_path,
    check_rows,
    create_plan,
)

OK = {"allowed": True, "reason": "ok", "max_height": 1080}


def denied(reason: str) -> dict:
    return {"allowed": False, "reason": reason, "max_height": None}


async def _check(admin, user_id, movie_id) -> dict:
    return await admin.ok("GET", check_path(user_id, movie_id))


@pytest.fixture
async def redis(redis_url):
    client = redis_async.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def _publish_and_await_invalidation(publish_movie, redis, movie: uuid.UUID, kind: str):
    """Publish a movie event and wait until the node has also bumped the movie's
    cache version (it does so right after projecting), however loaded the host."""
    key = cache.movie_version_key(movie)
    before = int(await redis.get(key) or 0)
    await publish_movie(movie, kind=kind)
    for _ in range(200):
        if int(await redis.get(key) or 0) > before:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{kind} for {movie} was projected but never invalidated")


# ---------------------------------------------------------------- every reason


async def test_ok_with_the_plans_max_height(api, admin, settings, publish_movie):
    movie = await publish_movie()
    _, user, _, _ = await entitled_viewer(api, admin, settings, [movie])
    assert await _check(admin, user["id"], movie) == OK


async def test_no_subscription(api, admin, publish_movie):
    movie = await publish_movie()
    _, user = await api.register_viewer()
    assert await _check(admin, user["id"], movie) == denied("no_subscription")


@pytest.mark.parametrize("state", ["pending_payment", "past_due", "canceled", "expired_period"])
async def test_subscription_inactive(api, admin, settings, publish_movie, state):
    movie = await publish_movie()
    plan = await create_plan(admin)
    await admin.ok("PUT", f"/api/plans/{plan['id']}/movies/{movie}", status=204)
    viewer, user = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    if state == "past_due":
        await pay(api, settings, sub["id"])
        await pay(api, settings, sub["id"], kind="payment_failed")
    elif state == "canceled":
        await pay(api, settings, sub["id"])
        await viewer.ok("DELETE", f"/api/subscriptions/{sub['id']}")
    elif state == "expired_period":
        past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
        await admin.ok("PATCH", f"/api/subscriptions/{sub['id']}",
                       {"status": "active", "current_period_end": past})
    assert await _check(admin, user["id"], movie) == denied("subscription_inactive")


async def test_not_in_plan(api, admin, settings, publish_movie):
    in_plan, elsewhere = await publish_movie(), await publish_movie()
    _, user, _, _ = await entitled_viewer(api, admin, settings, [in_plan])
    assert await _check(admin, user["id"], elsewhere) == denied("not_in_plan")


@pytest.mark.parametrize("movie_state", ["unknown", "deleted", "draft"])
async def test_movie_unavailable(api, admin, settings, publish_movie, movie_state):
    movie = await publish_movie(status="draft" if movie_state == "draft" else "ready")
    _, user, _, _ = await entitled_viewer(api, admin, settings, [movie])
    if movie_state == "unknown":
        movie = uuid.uuid4()
    elif movie_state == "deleted":
        await publish_movie(movie, kind="movie.deleted")
    assert await _check(admin, user["id"], movie) == denied("movie_unavailable")


@pytest.mark.parametrize("user_state", ["unknown", "deleted"])
async def test_user_disabled(api, admin, settings, publish_movie, user_state):
    movie = await publish_movie()
    _, user, _, _ = await entitled_viewer(api, admin, settings, [movie])
    user_id = user["id"]
    if user_state == "unknown":
        user_id = str(uuid.uuid4())
    else:
        await admin.ok("DELETE", f"/api/users/{user_id}", status=204)
    assert await _check(admin, user_id, movie) == denied("user_disabled")


async def test_a_restored_movie_is_available_again(api, admin, settings, publish_movie):
    movie = await publish_movie()
    _, user, _, _ = await entitled_viewer(api, admin, settings, [movie])
    await publish_movie(movie, kind="movie.deleted")
    await publish_movie(movie, kind="movie.restored")
    assert await _check(admin, user["id"], movie) == OK


async def test_a_draft_movie_becomes_available_when_its_media_is_ready(api, admin, settings,
                                                                      publish_movie, redis):
    movie = await publish_movie(status="draft")
    _, user, _, _ = await entitled_viewer(api, admin, settings, [movie])
    assert (await _check(admin, user["id"], movie))["reason"] == "movie_unavailable"
    await _publish_and_await_invalidation(publish_movie, redis, movie, "movie.media_ready")
    assert await _check(admin, user["id"], movie) == OK


# ---------------------------------------------------------------- who may ask


async def test_a_viewer_may_not_ask(api, publish_movie):
    movie = await publish_movie()
    viewer, user = await api.register_viewer()
    assert_problem(await viewer.call("GET", check_path(user["id"], movie)), 403, "admin_required")


@pytest.mark.parametrize("internal", [False, True])
async def test_anonymous_callers_may_not_ask(api, internal):
    assert_invalid_token(await api.call("GET", check_path(uuid.uuid4(), uuid.uuid4(),
                                                          internal=internal)))


@pytest.mark.parametrize("internal", [False, True])
async def test_a_service_with_the_key_may_ask(api, admin, settings, publish_movie, internal):
    movie = await publish_movie()
    _, user, _, _ = await entitled_viewer(api, admin, settings, [movie])
    status, decision, _ = await api.call(
        "GET", check_path(user["id"], movie, internal=internal),
        headers={"X-Reelgate-Service-Key": settings.service_key})
    assert (status, decision) == (200, OK)


async def test_a_wrong_service_key_is_401(api):
    async def check(key):
        response = await api.call("GET", check_path(uuid.uuid4(), uuid.uuid4(), internal=True),
                                  headers={"X-Reelgate-Service-Key": key})
        assert_invalid_token(response)

    await check_rows(["wrong-key", "", "test-service-ke", "test-service-key2"], check)


async def test_check_validates_its_query(admin):
    async def check(query, field):
        path = "/api/entitlements/check?" + query.format(u=uuid.uuid4(), m=uuid.uuid4())
        assert_validation_error(await admin.call("GET", path), field)

    await check_rows([("", "user_id"), ("user_id={u}", "movie_id"), ("movie_id={m}", "user_id"),
                      ("user_id=x&movie_id={m}", "user_id"),
                      ("user_id={u}&movie_id=1", "movie_id")], check)


# ---------------------------------------------------------------- cache and invalidation


async def test_decisions_are_cached_in_redis(api, admin, settings, publish_movie, redis):
    movie = await publish_movie()
    _, user, _, _ = await entitled_viewer(api, admin, settings, [movie])
    await _check(admin, user["id"], movie)
    key = cache.decision_key(uuid.UUID(user["id"]), movie)
    assert await redis.exists(key)
    assert 0 < await redis.pttl(key) <= settings.entitlement_cache_ttl_s * 1000
    assert await _check(admin, user["id"], movie) == OK  # served from the cache


async def test_cancel_invalidates_at_once(api, admin, settings, publish_movie):
    movie = await publish_movie()
    viewer, user, _, sub = await entitled_viewer(api, admin, settings, [movie])
    assert await _check(admin, user["id"], movie) == OK
    await viewer.ok("DELETE", f"/api/subscriptions/{sub['id']}")
    assert await _check(admin, user["id"], movie) == denied("subscription_inactive")


async def test_payment_invalidates_at_once(api, admin, settings, publish_movie):
    movie = await publish_movie()
    plan = await create_plan(admin)
    await admin.ok("PUT", f"/api/plans/{plan['id']}/movies/{movie}", status=204)
    viewer, user = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    assert await _check(admin, user["id"], movie) == denied("subscription_inactive")
    await pay(api, settings, sub["id"])
    assert await _check(admin, user["id"], movie) == OK
    await pay(api, settings, sub["id"], kind="payment_failed")
    assert await _check(admin, user["id"], movie) == denied("subscription_inactive")


async def test_adding_a_movie_to_the_plan_invalidates_at_once(api, admin, settings,
                                                             publish_movie):
    movie = await publish_movie()
    _, user, plan, _ = await entitled_viewer(api, admin, settings, [])
    assert await _check(admin, user["id"], movie) == denied("not_in_plan")
    await admin.ok("PUT", f"/api/plans/{plan['id']}/movies/{movie}", status=204)
    assert await _check(admin, user["id"], movie) == OK


async def test_removing_a_movie_from_the_plan_invalidates_at_once(api, admin, settings,
                                                                 publish_movie):
    movie = await publish_movie()
    _, user, plan, _ = await entitled_viewer(api, admin, settings, [movie])
    assert await _check(admin, user["id"], movie) == OK
    await admin.ok("DELETE", f"/api/plans/{plan['id']}/movies/{movie}", status=204)
    assert await _check(admin, user["id"], movie) == denied("not_in_plan")


async def test_deleting_the_user_invalidates_at_once(api, admin, settings, publish_movie):
    movie = await publish_movie()
    _, user, _, _ = await entitled_viewer(api, admin, settings, [movie])
    assert await _check(admin, user["id"], movie) == OK
    await admin.ok("DELETE", f"/api/users/{user['id']}", status=204)
    assert await _check(admin, user["id"], movie) == denied("user_disabled")
    await admin.ok("POST", f"/api/users/{user['id']}/restore")
    assert await _check(admin, user["id"], movie) == OK


async def test_a_movie_deleted_event_invalidates_at_once(api, admin, settings, publish_movie,
                                                        redis):
    movie = await publish_movie()
    _, user, _, _ = await entitled_viewer(api, admin, settings, [movie])
    assert await _check(admin, user["id"], movie) == OK
    await _publish_and_await_invalidation(publish_movie, redis, movie, "movie.deleted")
    assert await _check(admin, user["id"], movie) == denied("movie_unavailable")


async def test_changing_the_plans_max_height_invalidates_at_once(api, admin, settings,
                                                                publish_movie):
    movie = await publish_movie()
    _, user, plan, _ = await entitled_viewer(api, admin, settings, [movie])
    assert await _check(admin, user["id"], movie) == OK
    await admin.ok("PATCH", f"/api/plans/{plan['id']}", {"max_height": 720})
    assert (await _check(admin, user["id"], movie))["max_height"] == 720


async def test_an_admin_status_change_invalidates_at_once(api, admin, settings, publish_movie):
    movie = await publish_movie()
    _, user, _, sub = await entitled_viewer(api, admin, settings, [movie])
    assert await _check(admin, user["id"], movie) == OK
    await admin.ok("PATCH", f"/api/subscriptions/{sub['id']}", {"status": "past_due"})
    assert await _check(admin, user["id"], movie) == denied("subscription_inactive")


# ---------------------------------------------------------------- my movies


async def test_my_movies_lists_exactly_the_watchable_ones(api, admin, settings, publish_movie):
    watchable = [await publish_movie(title="B movie"), await publish_movie(title="A movie")]
    draft = await publish_movie(status="draft", title="Draft")
    deleted = await publish_movie(title="Gone")
    elsewhere = await publish_movie(title="Elsewhere")
    viewer, _, _, _ = await entitled_viewer(api, admin, settings, [*watchable, draft, deleted])
    await publish_movie(deleted, kind="movie.deleted")
    mine = await viewer.ok("GET", "/api/me/movies")
    assert set(mine) == {"items", "page", "per_page", "total"}
    assert [m["id"] for m in mine["items"]] == [str(watchable[1]), str(watchable[0])]  # by title
    assert mine["total"] == 2
    assert str(elsewhere) not in {m["id"] for m in mine["items"]}
    assert set(mine["items"][0]) == {"id", "title", "genres", "age_rating"}


async def test_my_movies_paginates(api, admin, settings, publish_movie):
    movies = [await publish_movie(title=f"M{i}") for i in range(3)]
    viewer, _, _, _ = await entitled_viewer(api, admin, settings, movies)
    page = await viewer.ok("GET", "/api/me/movies?per_page=2&page=2")
    assert (page["total"], [m["title"] for m in page["items"]]) == (3, ["M2"])
    assert_validation_error(await viewer.call("GET", "/api/me/movies?per_page=101"), "per_page")


@pytest.mark.parametrize("state", ["no_subscription", "pending_payment", "canceled"])
async def test_my_movies_is_empty_without_an_entitling_subscription(api, admin, settings,
                                                                   publish_movie, state):
    movie = await publish_movie()
    plan = await create_plan(admin)
    await admin.ok("PUT", f"/api/plans/{plan['id']}/movies/{movie}", status=204)
    viewer, _ = await api.register_viewer()
    if state != "no_subscription":
        sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
        if state == "canceled":
            await pay(api, settings, sub["id"])
            await viewer.ok("DELETE", f"/api/subscriptions/{sub['id']}")
    mine = await viewer.ok("GET", "/api/me/movies")
    assert (mine["items"], mine["total"]) == ([], 0)


async def test_my_movies_needs_a_live_account(api, admin):
    assert_invalid_token(await api.call("GET", "/api/me/movies"))
    viewer, user = await api.register_viewer()
    await admin.ok("DELETE", f"/api/users/{user['id']}", status=204)
    assert_invalid_token(await viewer.call("GET", "/api/me/movies"))
