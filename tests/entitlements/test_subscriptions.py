"""Subscriptions: create (one live per user, also under a race), list and read
(own or admin), admin changes, cancellation."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from entitlements import service
from entitlements.models import Subscription
from entitlements.resources import RESOURCES
from tests.entitlements.conftest import entitled_viewer, pay
from tests.entitlements.support import (
    assert_invalid_token,
    assert_problem,
    assert_validation_error,
    check_path,
    check_rows,
    create_plan,
)

SUBSCRIPTION_FIELDS = {"id", "user_id", "plan_id", "status", "current_period_end"}


async def _subscribe(client, plan_id: str, **extra):
    return await client.call("POST", "/api/subscriptions", {"plan_id": plan_id, **extra})


# ---------------------------------------------------------------- create


async def test_subscribing_starts_pending_payment(api, admin):
    plan = await create_plan(admin)
    viewer, user = await api.register_viewer()
    status, sub, _ = await _subscribe(viewer, plan["id"])
    assert status == 201
    assert SUBSCRIPTION_FIELDS <= sub.keys()
    assert uuid.UUID(sub["id"])
    assert (sub["user_id"], sub["plan_id"]) == (user["id"], plan["id"])
    assert sub["status"] == "pending_payment"
    assert sub["current_period_end"] is None


async def test_a_second_live_subscription_is_409(api, admin):
    plan, other = await create_plan(admin), await create_plan(admin, name="Other")
    viewer, _ = await api.register_viewer()
    await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    assert_problem(await _subscribe(viewer, other["id"]), 409, "subscription_exists")


async def test_subscribing_again_after_cancelling_is_allowed(api, admin):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    await viewer.ok("DELETE", f"/api/subscriptions/{sub['id']}")
    again = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    assert again["id"] != sub["id"]


async def test_admin_subscribes_another_user(api, admin):
    plan = await create_plan(admin)
    _, user = await api.register_viewer()
    status, sub, _ = await _subscribe(admin, plan["id"], user_id=user["id"])
    assert status == 201 and sub["user_id"] == user["id"]


async def test_a_viewer_may_not_subscribe_another_user(api, admin):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    _, victim = await api.register_viewer()
    assert_problem(await _subscribe(viewer, plan["id"], user_id=victim["id"]), 403,
                   "admin_required")
    assert (await admin.ok("GET", f"/api/subscriptions?user_id={victim['id']}"))["total"] == 0


async def test_a_viewer_may_name_themselves(api, admin):
    plan = await create_plan(admin)
    viewer, user = await api.register_viewer()
    status, sub, _ = await _subscribe(viewer, plan["id"], user_id=user["id"])
    assert status == 201 and sub["user_id"] == user["id"]


async def test_subscribing_to_an_unknown_plan_is_404(admin):
    assert_problem(await _subscribe(admin, str(uuid.uuid4())), 404, "not_found")


async def test_subscribing_an_unknown_user_is_404(admin):
    plan = await create_plan(admin)
    response = await _subscribe(admin, plan["id"], user_id=str(uuid.uuid4()))
    assert_problem(response, 404, "not_found")


async def test_create_validates_its_body(api):
    viewer, _ = await api.register_viewer()

    async def check(body, field):
        assert_validation_error(await viewer.call("POST", "/api/subscriptions", body), field)

    plan_id = str(uuid.uuid4())
    await check_rows([({}, "plan_id"), ({"plan_id": "nope"}, "plan_id"),
                      ({"plan_id": 5}, "plan_id"), ({"plan_id": None}, "plan_id"),
                      ({"plan_id": plan_id, "status": "active"}, "status"),
                      ({"plan_id": plan_id, "user_id": "me"}, "user_id")], check)
    assert (await viewer.ok("GET", "/api/subscriptions"))["total"] == 0


async def test_subscribing_needs_a_token(api, admin):
    plan = await create_plan(admin)
    assert_invalid_token(await _subscribe(api, plan["id"]))


async def test_parallel_subscribes_yield_exactly_one(api, admin):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    responses = await asyncio.gather(*(_subscribe(viewer, plan["id"]) for _ in range(10)))
    statuses = sorted(status for status, _, _ in responses)
    assert statuses == [201] + [409] * 9, statuses
    for response in responses:
        if response[0] == 409:
            assert_problem(response, 409, "subscription_exists")
    assert (await viewer.ok("GET", "/api/subscriptions"))["total"] == 1


# ---------------------------------------------------------------- list and read


async def test_a_demoted_admin_is_a_viewer_at_once(api, admin):
    """Admin powers on shared routes follow the account, not the token's claim."""
    plan = await create_plan(admin)
    viewer, user = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    body = {"email": f"a-{uuid.uuid4().hex[:10]}@example.com", "password": "admin-pass-1",
            "name": "Admin", "role": "admin"}
    other_user = await admin.ok("POST", "/api/users", body, status=201)
    other = await api.login(body["email"], body["password"])
    assert (await other.ok("GET", "/api/subscriptions"))["total"] == 1
    await admin.ok("PATCH", f"/api/users/{other_user['id']}", {"role": "viewer"})
    assert (await other.ok("GET", "/api/subscriptions"))["total"] == 0
    assert_problem(await other.call("GET", f"/api/subscriptions/{sub['id']}"), 404, "not_found")
    response = await _subscribe(other, plan["id"], user_id=user["id"])
    assert_problem(response, 403, "admin_required")


async def test_viewers_list_their_own_and_admins_list_all(api, admin):
    plan = await create_plan(admin)
    alice, _ = await api.register_viewer()
    bob, _ = await api.register_viewer()
    mine = await alice.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    theirs = await bob.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    listed = await alice.ok("GET", "/api/subscriptions")
    assert set(listed) == {"items", "page", "per_page", "total"}
    assert [s["id"] for s in listed["items"]] == [mine["id"]]
    # A viewer's user_id filter cannot widen the view.
    spied = await alice.ok("GET", f"/api/subscriptions?user_id={theirs['user_id']}")
    assert [s["id"] for s in spied["items"]] == [mine["id"]]
    everything = await admin.ok("GET", "/api/subscriptions")
    assert {s["id"] for s in everything["items"]} == {mine["id"], theirs["id"]}


async def test_admin_filters_by_user_and_status(api, admin):
    plan = await create_plan(admin)
    alice, alice_user = await api.register_viewer()
    bob, _ = await api.register_viewer()
    sub = await alice.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    await bob.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    by_user = await admin.ok("GET", f"/api/subscriptions?user_id={alice_user['id']}")
    assert [s["id"] for s in by_user["items"]] == [sub["id"]]
    await alice.ok("DELETE", f"/api/subscriptions/{sub['id']}")
    canceled = await admin.ok("GET", "/api/subscriptions?status=canceled")
    assert [s["id"] for s in canceled["items"]] == [sub["id"]]


async def test_list_validates_its_query(admin):
    async def check(query):
        assert_validation_error(await admin.call("GET", f"/api/subscriptions?{query}"),
                                query.split("=")[0])

    await check_rows(["status=bogus", "user_id=nope", "per_page=101", "page=0"], check)


async def test_owner_and_admin_read_a_subscription(api, admin):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    assert (await viewer.ok("GET", f"/api/subscriptions/{sub['id']}"))["id"] == sub["id"]
    assert (await admin.ok("GET", f"/api/subscriptions/{sub['id']}"))["id"] == sub["id"]


async def test_another_users_subscription_is_404_to_a_viewer(api, admin):
    plan = await create_plan(admin)
    owner, _ = await api.register_viewer()
    stranger, _ = await api.register_viewer()
    sub = await owner.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    assert_problem(await stranger.call("GET", f"/api/subscriptions/{sub['id']}"), 404,
                   "not_found")
    assert_problem(await stranger.call("DELETE", f"/api/subscriptions/{sub['id']}"), 404,
                   "not_found")
    assert (await owner.ok("GET", f"/api/subscriptions/{sub['id']}"))["status"] == (
        "pending_payment")


async def test_an_unknown_subscription_is_404(admin):
    for sub_id in (uuid.uuid4(), "nope"):
        assert_problem(await admin.call("GET", f"/api/subscriptions/{sub_id}"), 404, "not_found")


# ---------------------------------------------------------------- admin changes


async def test_admin_changes_the_plan(api, admin):
    plan, better = await create_plan(admin), await create_plan(admin, name="Better")
    viewer, _ = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    changed = await admin.ok("PATCH", f"/api/subscriptions/{sub['id']}", {"plan_id": better["id"]})
    assert changed["plan_id"] == better["id"]


async def test_admin_sets_status_and_period(api, admin):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).replace(microsecond=0)
    changed = await admin.ok("PATCH", f"/api/subscriptions/{sub['id']}",
                             {"status": "trialing", "current_period_end": end.isoformat()})
    assert changed["status"] == "trialing"
    assert dt.datetime.fromisoformat(changed["current_period_end"]) == end


async def test_admin_cancels_through_patch(api, admin):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    changed = await admin.ok("PATCH", f"/api/subscriptions/{sub['id']}", {"status": "canceled"})
    assert changed["status"] == "canceled" and changed["canceled_at"] is not None


async def test_reviving_a_subscription_while_another_is_live_is_409(api, admin):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    old = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    await viewer.ok("DELETE", f"/api/subscriptions/{old['id']}")
    await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    response = await admin.call("PATCH", f"/api/subscriptions/{old['id']}", {"status": "active"})
    assert_problem(response, 409, "subscription_exists")


async def test_a_subscription_going_live_during_a_revival_is_409(api, admin, ent_client,
                                                                monkeypatch):
    """Another live subscription can commit between the revival's check and its
    write; the partial unique index refuses the write with the usual 409."""
    plan = await create_plan(admin)
    viewer, user = await api.register_viewer()
    old = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    await viewer.ok("DELETE", f"/api/subscriptions/{old['id']}")
    resources = ent_client.app[RESOURCES]
    real_check = service.live_subscription

    async def check_then_lose_the_race(session, user_id):
        live = await real_check(session, user_id)
        async with resources.db.transaction() as other:  # another request commits first
            other.add(Subscription(user_id=user_id, plan_id=uuid.UUID(plan["id"]),
                                   status="pending_payment"))
        return live

    monkeypatch.setattr(service, "live_subscription", check_then_lose_the_race)
    response = await admin.call("PATCH", f"/api/subscriptions/{old['id']}", {"status": "active"})
    monkeypatch.undo()
    assert_problem(response, 409, "subscription_exists")
    listed = await viewer.ok("GET", f"/api/subscriptions?user_id={user['id']}")
    assert sorted(sub["status"] for sub in listed["items"]) == ["canceled", "pending_payment"]


async def test_a_viewer_may_not_patch_even_their_own_subscription(api, admin):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    response = await viewer.call("PATCH", f"/api/subscriptions/{sub['id']}", {"status": "active"})
    assert_problem(response, 403, "admin_required")
    assert (await viewer.ok("GET", f"/api/subscriptions/{sub['id']}"))["status"] == (
        "pending_payment")


INVALID_PATCHES = [
    {"status": "free"}, {"status": None}, {"plan_id": "x"}, {"plan_id": None},
    {"current_period_end": "2030-01-01T00:00:00"},  # naive: no zone
    {"current_period_end": "tomorrow"}, {"current_period_end": 1893456000},
    {"current_period_end": "9999-12-31T23:59:59-14:00"},  # past datetime's range in UTC
    {"current_period_end": "0001-01-01T00:00:00+14:00"},
    {"user_id": str(uuid.uuid4())},
]


async def test_patch_validates_its_body(api, admin):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)

    async def check(body):
        response = await admin.call("PATCH", f"/api/subscriptions/{sub['id']}", body)
        assert_validation_error(response, next(iter(body)))

    await check_rows(INVALID_PATCHES, check)
    assert await admin.ok("GET", f"/api/subscriptions/{sub['id']}") == sub


async def test_patch_to_an_unknown_plan_is_404(api, admin):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    response = await admin.call("PATCH", f"/api/subscriptions/{sub['id']}",
                                {"plan_id": str(uuid.uuid4())})
    assert_problem(response, 404, "not_found")


# ---------------------------------------------------------------- cancel


async def test_cancel_ends_the_subscription_at_once(api, admin, settings, publish_movie):
    movie = await publish_movie()
    viewer, user, _, sub = await entitled_viewer(api, admin, settings, [movie])
    assert (await admin.ok("GET", check_path(user["id"], movie)))["allowed"] is True
    canceled = await viewer.ok("DELETE", f"/api/subscriptions/{sub['id']}")
    assert canceled["status"] == "canceled" and canceled["canceled_at"] is not None
    decision = await admin.ok("GET", check_path(user["id"], movie))
    assert decision == {"allowed": False, "reason": "subscription_inactive", "max_height": None}


async def test_admin_cancels_a_users_subscription(api, admin):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    assert (await admin.ok("DELETE", f"/api/subscriptions/{sub['id']}"))["status"] == "canceled"


async def test_cancelling_twice_keeps_the_first_cancellation(api, admin):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    first = await viewer.ok("DELETE", f"/api/subscriptions/{sub['id']}")
    second = await viewer.ok("DELETE", f"/api/subscriptions/{sub['id']}")
    assert second["status"] == "canceled" and second["canceled_at"] == first["canceled_at"]


async def test_a_canceled_subscription_ignores_later_payments(api, admin, settings):
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    await viewer.ok("DELETE", f"/api/subscriptions/{sub['id']}")
    status, result = await pay(api, settings, sub["id"])
    assert status == 200 and result["outcome"] == "ignored_canceled"
    assert (await viewer.ok("GET", f"/api/subscriptions/{sub['id']}"))["status"] == "canceled"
