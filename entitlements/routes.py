"""HTTP routes of the entitlements node, readable top to bottom (see the table
at the end of the file)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from entitlements import cache, playback, schemas, service
from entitlements.models import Plan, Subscription, User
from entitlements.resources import RESOURCES, Resources
from reelgate import metrics
from reelgate.auth import (
    PRINCIPAL,
    Principal,
    current_principal,
    is_service_call,
)
from reelgate.http import (
    decode_json,
    json_response,
    model_response,
    parse_body,
    parse_query,
    parse_uuid,
    read_raw_body,
    validate_object,
)
from reelgate.kv import KVError
from reelgate.leases import Lease
from reelgate.openapi import documented, problem
from reelgate.pagination import Page, PageQuery
from reelgate.problems import Problem, forbidden, unauthorized, validation_failed

log = logging.getLogger("reelgate.entitlements")


def _resources(request: web.Request) -> Resources:
    return request.app[RESOURCES]


def _page(items: list[Any], total: int, query: PageQuery, model: type[BaseModel]) -> web.Response:
    page = Page[model](  # type: ignore[valid-type]
        items=[model.model_validate(item, from_attributes=True) for item in items],
        page=query.page,
        per_page=query.per_page,
        total=total,
    )
    return model_response(page)


def _user_out(user: User) -> schemas.UserOut:
    return schemas.UserOut.model_validate(user, from_attributes=True)


def _plan_out(plan: Plan) -> schemas.PlanOut:
    return schemas.PlanOut.model_validate(plan, from_attributes=True)


def _subscription_out(subscription: Subscription) -> schemas.SubscriptionOut:
    return schemas.SubscriptionOut.model_validate(subscription, from_attributes=True)


# ---------------------------------------------------------------- auth

_ROLE_CHECKED = web.RequestKey("admin_role_checked", bool)


async def _checked_principal(request: web.Request) -> Principal:
    """The caller, with an admin token's role checked against the account.

    An access token stays valid until it expires (`REELGATE_ACCESS_TOKEN_TTL_S`)
    even if its admin was deleted or demoted meanwhile; admin powers must end
    at once, so an admin claim costs one primary-key lookup: a deleted account
    is 401 (its token no longer stands for anyone), a demoted one acts as what
    it now is. Viewer tokens are taken as they are (routes acting on the
    viewer's own account look it up themselves, with `_live_caller`)."""
    principal = current_principal(request)
    if not principal.is_admin or request.get(_ROLE_CHECKED):
        return principal
    async with _resources(request).db.transaction() as session:
        role = await service.account_role(session, principal.user_id)
    if role is None:
        raise unauthorized("This account no longer exists.")
    principal = Principal(user_id=principal.user_id, role=role)
    # Later reads of the principal in this request see the account's real role.
    request[PRINCIPAL] = principal
    request[_ROLE_CHECKED] = True
    return principal


async def require_live_admin(request: web.Request) -> Principal:
    principal = await _checked_principal(request)
    if not principal.is_admin:
        raise forbidden("This action needs the admin role.", code="admin_required")
    return principal


async def require_live_admin_or_service(request: web.Request) -> Principal:
    if is_service_call(request):
        return Principal(user_id=None, role="service")
    return await require_live_admin(request)


def client_address(request: web.Request) -> str:
    if _resources(request).settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return request.remote or "unknown"


async def _check_login_limits(request: web.Request, email: str) -> None:
    """Per-address attempts and per-account failures, in fixed windows."""
    res = _resources(request)
    settings = res.settings
    window = settings.login_window_s
    account_key = "rl:login:acct:" + hashlib.sha256(email.encode()).hexdigest()
    try:
        count, reset = await res.kv.hit(f"rl:login:addr:{client_address(request)}", window)
        if count > settings.login_max_per_address:
            raise _too_many(reset)
        (failures,) = await res.kv.get_many([account_key])
        if failures is not None and int(failures) >= settings.login_max_per_account:
            _, reset = await res.kv.hit(account_key, window)
            raise _too_many(reset)
    except KVError as exc:
        # Availability of sign-in over strictness of the limiter; counted and logged.
        log.warning("login rate limiter unavailable (%s); allowing the attempt", exc)
        metrics.LOGIN_ATTEMPTS.labels("limiter_unavailable").inc()


async def _record_login_failure(request: web.Request, email: str) -> None:
    res = _resources(request)
    account_key = "rl:login:acct:" + hashlib.sha256(email.encode()).hexdigest()
    try:
        await res.kv.hit(account_key, res.settings.login_window_s)
    except KVError:
        pass


def _too_many(retry_after: int) -> Problem:
    metrics.LOGIN_ATTEMPTS.labels("rate_limited").inc()
    return Problem(
        429,
        "too_many_attempts",
        "Too many sign-in attempts; wait before trying again.",
        headers={"Retry-After": str(retry_after)},
    )


@documented(
    "Register a viewer account",
    tags=("accounts",),
    body=schemas.RegisterIn,
    responses={201: schemas.UserOut, 409: "email_taken"},
)
async def register(request: web.Request) -> web.Response:
    body = await parse_body(request, schemas.RegisterIn)
    res = _resources(request)
    async with res.db.transaction() as session:
        user = await service.create_user(
            session, res.passwords, email=body.email, password=body.password, name=body.name,
            role="viewer",
        )
    return model_response(_user_out(user), status=201)


@documented(
    "Sign in: an access token and a refresh token",
    tags=("accounts",),
    body=schemas.LoginIn,
    responses={
        200: schemas.TokenPair,
        401: problem("invalid_credentials"),
        429: problem("too_many_attempts", Retry_After="Seconds until the next attempt counts"),
    },
)
async def login(request: web.Request) -> web.Response:
    body = await parse_body(request, schemas.LoginIn)
    email = body.email.strip().lower()
    await _check_login_limits(request, email)
    res = _resources(request)
    async with res.db.transaction() as session:
        user = await service.authenticate(session, res.passwords, email, body.password)
        if user is None:
            await _record_login_failure(request, email)
            metrics.LOGIN_ATTEMPTS.labels("invalid_credentials").inc()
            raise Problem(401, "invalid_credentials", "The e-mail or password is wrong.")
        pair = await res.issuer.issue(session, user)
    metrics.LOGIN_ATTEMPTS.labels("ok").inc()
    return model_response(pair)


@documented(
    "Exchange a refresh token for a new pair (rotation)",
    description="The presented refresh token stops working; presenting it again signs the "
    "whole login out.",
    tags=("accounts",),
    body=schemas.RefreshIn,
    responses={200: schemas.TokenPair, 401: problem("invalid_token")},
)
async def refresh(request: web.Request) -> web.Response:
    body = await parse_body(request, schemas.RefreshIn)
    res = _resources(request)
    # The rotation check and a reuse-triggered family revocation must commit
    # even though the request fails, so the 401 is raised after the commit.
    problem: Problem | None = None
    async with res.db.transaction() as session:
        try:
            pair = await service.rotate_refresh_token(session, res.issuer, body.refresh_token)
        except Problem as exc:
            problem = exc
    if problem is not None:
        raise problem
    return model_response(pair)


@documented(
    "Sign out: revoke a refresh token (or all of them when none is given)",
    tags=("accounts",),
    auth="user",
    body=schemas.LogoutIn,
    body_required=False,
    responses={204: None},
)
async def logout(request: web.Request) -> web.Response:
    principal = current_principal(request)
    body = schemas.LogoutIn()
    if request.can_read_body:
        body = await parse_body(request, schemas.LogoutIn)
    res = _resources(request)
    async with res.db.transaction() as session:
        await service.logout(session, principal.user_id, body.refresh_token)  # type: ignore[arg-type]
    return web.Response(status=204)


@documented(
    "The public keys that verify Reelgate tokens (JWKS)",
    tags=("accounts",),
    dependencies=False,
    responses={200: schemas.Jwks},
)
async def jwks(request: web.Request) -> web.Response:
    return json_response(
        _resources(request).signer.verifier().jwks(), headers={"Cache-Control": "public, max-age=300"}
    )


# ---------------------------------------------------------------- users


async def _live_user(session, principal: Principal) -> User:  # type: ignore[no-untyped-def]
    """The caller's own account; a deleted account's tokens stop working here."""
    user = await session.get(User, principal.user_id)
    if user is None or user.deleted_at is not None:
        raise unauthorized("This account no longer exists.")
    return user


async def _live_caller(request: web.Request) -> tuple[Principal, User]:
    principal = current_principal(request)
    async with _resources(request).db.transaction() as session:
        user = await _live_user(session, principal)
    return principal, user


@documented("Your own profile", tags=("users",), auth="user",
            responses={200: schemas.UserOut})
async def get_me(request: web.Request) -> web.Response:
    _, user = await _live_caller(request)
    return model_response(_user_out(user))


@documented(
    "Change your name or password (the password needs `current_password`)",
    tags=("users",),
    auth="user",
    body=schemas.MeUpdateIn,
    responses={200: schemas.UserOut, 403: "wrong_password"},
)
async def patch_me(request: web.Request) -> web.Response:
    principal = current_principal(request)
    body = await parse_body(request, schemas.MeUpdateIn)
    res = _resources(request)
    async with res.db.transaction() as session:
        user = await _live_user(session, principal)
        if body.password is not None:
            if body.current_password is None:
                raise validation_failed(
                    [{"field": "current_password", "message": "Required to change the password"}]
                )
            if not await res.passwords.verify(user.password_hash, body.current_password):
                raise forbidden("The current password is wrong.", code="wrong_password")
        user = await service.update_user(
            session, res.passwords, user, body.model_dump(exclude_unset=True)
        )
    return model_response(_user_out(user))


@documented("List users", tags=("users",), auth="admin", query=schemas.ListQuery,
            responses={200: Page[schemas.UserOut]})
async def list_users(request: web.Request) -> web.Response:
    await require_live_admin(request)
    query = parse_query(request, schemas.ListQuery)
    async with _resources(request).db.transaction() as session:
        users, total = await service.list_users(session, query)
    return _page(users, total, query, schemas.UserOut)


@documented(
    "Create a user (any role)",
    tags=("users",),
    auth="admin",
    body=schemas.UserCreateIn,
    responses={201: schemas.UserOut, 409: "email_taken"},
)
async def create_user(request: web.Request) -> web.Response:
    await require_live_admin(request)
    body = await parse_body(request, schemas.UserCreateIn)
    res = _resources(request)
    async with res.db.transaction() as session:
        user = await service.create_user(session, res.passwords, **body.model_dump())
    return model_response(_user_out(user), status=201)


def _with_deleted(request: web.Request) -> bool:
    return parse_query(request, schemas.DeletedQuery).with_deleted


@documented("Read a user", tags=("users",), auth="admin", query=schemas.DeletedQuery,
            responses={200: schemas.UserOut})
async def get_user(request: web.Request) -> web.Response:
    await require_live_admin(request)
    user_id = parse_uuid(request.match_info["user_id"], "User")
    async with _resources(request).db.transaction() as session:
        user = await service.get_user(session, user_id, with_deleted=_with_deleted(request))
    return model_response(_user_out(user))


@documented(
    "Update a user (e-mail, name, role, password)",
    tags=("users",),
    auth="admin",
    body=schemas.UserUpdateIn,
    responses={200: schemas.UserOut, 409: "email_taken"},
)
async def patch_user(request: web.Request) -> web.Response:
    await require_live_admin(request)
    user_id = parse_uuid(request.match_info["user_id"], "User")
    body = await parse_body(request, schemas.UserUpdateIn)
    res = _resources(request)
    async with res.db.transaction() as session:
        user = await service.get_user(session, user_id)
        user = await service.update_user(
            session, res.passwords, user, body.model_dump(exclude_unset=True)
        )
    await res.invalidate(users=[user_id])
    return model_response(_user_out(user))


@documented("Soft-delete a user: tokens revoked, streams stopped", tags=("users",),
            auth="admin", responses={204: None})
async def delete_user(request: web.Request) -> web.Response:
    await require_live_admin(request)
    user_id = parse_uuid(request.match_info["user_id"], "User")
    res = _resources(request)
    async with res.db.transaction() as session:
        user = await service.get_user(session, user_id)
        await service.soft_delete_user(session, user)
    await res.invalidate(users=[user_id])
    await end_user_sessions(res, user_id)
    return web.Response(status=204)


@documented("Restore a soft-deleted user", tags=("users",), auth="admin",
            responses={200: schemas.UserOut})
async def restore_user(request: web.Request) -> web.Response:
    await require_live_admin(request)
    user_id = parse_uuid(request.match_info["user_id"], "User")
    res = _resources(request)
    async with res.db.transaction() as session:
        user = await service.get_user(session, user_id, with_deleted=True)
        await service.restore_user(session, user)
    await res.invalidate(users=[user_id])
    return model_response(_user_out(user))


# ---------------------------------------------------------------- plans


@documented(
    "List plans",
    description="`with_deleted=true` needs the admin role.",
    tags=("plans",),
    auth="optional",
    query=schemas.ListQuery,
    responses={200: Page[schemas.PlanOut], 401: "invalid_token", 403: "admin_required"},
)
async def list_plans(request: web.Request) -> web.Response:
    query = parse_query(request, schemas.ListQuery)
    if query.with_deleted:
        await require_live_admin(request)
    async with _resources(request).db.transaction() as session:
        plans, total = await service.list_plans(session, query)
    return _page(plans, total, query, schemas.PlanOut)


@documented(
    "Read a plan",
    description="`with_deleted=true` needs the admin role.",
    tags=("plans",),
    auth="optional",
    query=schemas.DeletedQuery,
    responses={200: schemas.PlanOut, 401: "invalid_token", 403: "admin_required"},
)
async def get_plan(request: web.Request) -> web.Response:
    plan_id = parse_uuid(request.match_info["plan_id"], "Plan")
    with_deleted = _with_deleted(request)
    if with_deleted:
        await require_live_admin(request)
    async with _resources(request).db.transaction() as session:
        plan = await service.get_plan(session, plan_id, with_deleted=with_deleted)
    return model_response(_plan_out(plan))


@documented("Create a plan", tags=("plans",), auth="admin", body=schemas.PlanIn,
            responses={201: schemas.PlanOut})
async def create_plan(request: web.Request) -> web.Response:
    await require_live_admin(request)
    body = await parse_body(request, schemas.PlanIn)
    async with _resources(request).db.transaction() as session:
        plan = Plan(**body.model_dump())
        session.add(plan)
        await session.flush()
    return model_response(_plan_out(plan), status=201)


@documented("Update a plan", tags=("plans",), auth="admin", body=schemas.PlanPatch,
            responses={200: schemas.PlanOut})
async def patch_plan(request: web.Request) -> web.Response:
    await require_live_admin(request)
    plan_id = parse_uuid(request.match_info["plan_id"], "Plan")
    body = await parse_body(request, schemas.PlanPatch)
    res = _resources(request)
    async with res.db.transaction() as session:
        plan = await service.get_plan(session, plan_id)
        for field, value in body.model_dump(exclude_unset=True).items():
            setattr(plan, field, value)
        await session.flush()
        subscribers = await service.subscriber_ids_of_plan(session, plan_id)
    await res.invalidate(users=subscribers)
    return model_response(_plan_out(plan))


@documented(
    "Soft-delete a plan",
    description="Hidden from new subscribers; existing subscribers keep it.",
    tags=("plans",),
    auth="admin",
    responses={204: None},
)
async def delete_plan(request: web.Request) -> web.Response:
    await require_live_admin(request)
    plan_id = parse_uuid(request.match_info["plan_id"], "Plan")
    async with _resources(request).db.transaction() as session:
        plan = await service.get_plan(session, plan_id)
        plan.deleted_at = service.utcnow()
    # Existing subscribers keep their plan until they change it; nothing to invalidate.
    return web.Response(status=204)


@documented("Restore a soft-deleted plan", tags=("plans",), auth="admin",
            responses={200: schemas.PlanOut})
async def restore_plan(request: web.Request) -> web.Response:
    await require_live_admin(request)
    plan_id = parse_uuid(request.match_info["plan_id"], "Plan")
    async with _resources(request).db.transaction() as session:
        plan = await service.get_plan(session, plan_id, with_deleted=True)
        plan.deleted_at = None
    return model_response(_plan_out(plan))


@documented("The movie ids in a plan", tags=("plans",), query=PageQuery,
            responses={200: Page[uuid.UUID]})
async def plan_movies(request: web.Request) -> web.Response:
    plan_id = parse_uuid(request.match_info["plan_id"], "Plan")
    query = parse_query(request, PageQuery)
    async with _resources(request).db.transaction() as session:
        await service.get_plan(session, plan_id)
        ids = await service.plan_movie_ids(session, plan_id)
    window = ids[query.offset : query.offset + query.per_page]
    return json_response(
        {"items": [str(i) for i in window], "page": query.page, "per_page": query.per_page,
         "total": len(ids)}
    )


@documented("Add a movie to a plan (idempotent)", tags=("plans",), auth="admin",
            responses={204: None})
async def add_plan_movie(request: web.Request) -> web.Response:
    await require_live_admin(request)
    plan_id = parse_uuid(request.match_info["plan_id"], "Plan")
    movie_id = parse_uuid(request.match_info["movie_id"], "Movie")
    res = _resources(request)
    async with res.db.transaction() as session:
        plan = await service.get_plan(session, plan_id)
        await service.add_movie_to_plan(session, plan, movie_id)
    await res.invalidate(movies=[movie_id])
    return web.Response(status=204)


@documented("Remove a movie from a plan", tags=("plans",), auth="admin",
            responses={204: None})
async def remove_plan_movie(request: web.Request) -> web.Response:
    await require_live_admin(request)
    plan_id = parse_uuid(request.match_info["plan_id"], "Plan")
    movie_id = parse_uuid(request.match_info["movie_id"], "Movie")
    res = _resources(request)
    async with res.db.transaction() as session:
        plan = await service.get_plan(session, plan_id)
        await service.remove_movie_from_plan(session, plan, movie_id)
    await res.invalidate(movies=[movie_id])
    return web.Response(status=204)


# ---------------------------------------------------------------- subscriptions


@documented(
    "Subscribe to a plan (status `pending_payment` until paid)",
    description="An admin may subscribe another user with `user_id`.",
    tags=("subscriptions",),
    auth="user",
    body=schemas.SubscriptionIn,
    responses={
        201: schemas.SubscriptionOut,
        403: "admin_required",
        404: "not_found",
        409: "subscription_exists",
    },
)
async def create_subscription(request: web.Request) -> web.Response:
    principal = await _checked_principal(request)
    body = await parse_body(request, schemas.SubscriptionIn)
    user_id = principal.user_id
    if body.user_id is not None and body.user_id != principal.user_id:
        if not principal.is_admin:
            raise forbidden("Only an admin may subscribe another user.", code="admin_required")
        user_id = body.user_id
    res = _resources(request)
    async with res.db.transaction() as session:
        user = await service.get_user(session, user_id)  # type: ignore[arg-type]
        plan = await service.get_plan(session, body.plan_id)
        subscription = await service.create_subscription(session, user, plan)
    await res.invalidate(users=[subscription.user_id])
    return model_response(_subscription_out(subscription), status=201)


@documented(
    "List subscriptions (your own; an admin sees all)",
    tags=("subscriptions",),
    auth="user",
    query=schemas.SubscriptionListQuery,
    responses={200: Page[schemas.SubscriptionOut]},
)
async def list_subscriptions(request: web.Request) -> web.Response:
    principal = await _checked_principal(request)
    query = parse_query(request, schemas.SubscriptionListQuery)
    only = None if principal.is_admin else principal.user_id
    async with _resources(request).db.transaction() as session:
        items, total = await service.list_subscriptions(session, query, only)
    return _page(items, total, query, schemas.SubscriptionOut)


async def _visible_subscription(
    request: web.Request, session: AsyncSession, principal: Principal
) -> Subscription:
    subscription_id = parse_uuid(request.match_info["subscription_id"], "Subscription")
    subscription = await service.get_subscription(session, subscription_id)
    if not principal.is_admin and subscription.user_id != principal.user_id:
        # Someone else's subscription does not exist, as far as this caller knows.
        raise Problem(404, "not_found", "Subscription not found.")
    return subscription


@documented("Read a subscription (your own, or any as admin)", tags=("subscriptions",),
            auth="user", responses={200: schemas.SubscriptionOut})
async def get_subscription(request: web.Request) -> web.Response:
    principal = await _checked_principal(request)
    async with _resources(request).db.transaction() as session:
        subscription = await _visible_subscription(request, session, principal)
    return model_response(_subscription_out(subscription))


@documented(
    "Change a subscription's plan, status or period end",
    tags=("subscriptions",),
    auth="admin",
    body=schemas.SubscriptionPatch,
    responses={200: schemas.SubscriptionOut, 409: "subscription_exists"},
)
async def patch_subscription(request: web.Request) -> web.Response:
    await require_live_admin(request)
    subscription_id = parse_uuid(request.match_info["subscription_id"], "Subscription")
    body = await parse_body(request, schemas.SubscriptionPatch)
    res = _resources(request)
    async with res.db.transaction() as session:
        subscription = await service.get_subscription(session, subscription_id)
        subscription = await service.change_subscription(session, subscription, body)
    await res.invalidate(users=[subscription.user_id])
    return model_response(_subscription_out(subscription))


@documented(
    "Cancel a subscription at once (its streams stop)",
    tags=("subscriptions",),
    auth="user",
    responses={200: schemas.SubscriptionOut},
)
async def cancel_subscription(request: web.Request) -> web.Response:
    principal = await _checked_principal(request)
    res = _resources(request)
    async with res.db.transaction() as session:
        subscription = await _visible_subscription(request, session, principal)
        subscription = await service.cancel_subscription(session, subscription)
    await res.invalidate(users=[subscription.user_id])
    await end_user_sessions(res, subscription.user_id)
    return model_response(_subscription_out(subscription))


# ---------------------------------------------------------------- billing


def _signature_ok(secret: str, raw: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    # Constant-time comparison: no timing oracle for forging signatures.
    return hmac.compare_digest(expected.encode(), header[len("sha256=") :].strip().lower().encode())


@documented(
    "Billing provider webhook",
    description="Signed with `X-Reelgate-Signature: sha256=<hex HMAC of the raw body>`. "
    "An `event_id` seen before changes nothing (outcome `duplicate`). The body is read as "
    "JSON whatever its Content-Type.",
    tags=("billing",),
    auth="signature",
    body=schemas.BillingEventIn,
    any_content_type=True,
    responses={200: schemas.BillingResult, 401: "invalid_signature"},
)
async def billing_event(request: web.Request) -> web.Response:
    res = _resources(request)
    raw = await read_raw_body(request)
    if not _signature_ok(res.settings.billing_secret, raw, request.headers.get("X-Reelgate-Signature")):
        raise Problem(401, "invalid_signature", "The webhook signature does not match.")
    event = _parse_billing_event(raw)
    async with res.db.transaction() as session:
        outcome, subscription = await service.apply_billing_event(
            session, event, res.settings.billing_period_days
        )
    if subscription is not None and outcome == "applied":
        await res.invalidate(users=[subscription.user_id])
    result = schemas.BillingResult(
        event_id=event.event_id,
        outcome=outcome,
        subscription=_subscription_out(subscription) if subscription is not None else None,
    )
    return model_response(result)


def _parse_billing_event(raw: bytes) -> schemas.BillingEventIn:
    """The signature covers the raw bytes, so the body is read raw, then
    validated like every other body (whatever its Content-Type)."""
    return validate_object(decode_json(raw), schemas.BillingEventIn)


# ---------------------------------------------------------------- decisions


@documented(
    "Decide whether a user may watch a movie now",
    tags=("entitlements",),
    auth="admin_or_service",
    query=schemas.CheckQuery,
    responses={200: schemas.Decision},
)
async def check_entitlement(request: web.Request) -> web.Response:
    await require_live_admin_or_service(request)
    query = parse_query(request, schemas.CheckQuery)
    decision = await decide_cached(request, query.user_id, query.movie_id)
    return model_response(decision)


async def decide_cached(
    request: web.Request, user_id: uuid.UUID, movie_id: uuid.UUID
) -> schemas.Decision:
    """Redis first; on a miss decide from the database and remember it."""
    res = _resources(request)
    lookup: cache.Lookup | None = None
    try:
        lookup = await cache.lookup(res.kv, user_id, movie_id)
    except KVError as exc:
        log.warning("decision cache unavailable (%s); deciding from the database", exc)
    if lookup is not None and lookup.decision is not None:
        metrics.CACHE_LOOKUPS.labels("entitlements", "decision", "redis", "hit").inc()
        return lookup.decision
    metrics.CACHE_LOOKUPS.labels("entitlements", "decision", "redis", "miss").inc()
    async with res.db.transaction() as session:
        decision = await service.decide(session, user_id, movie_id)
    metrics.ENTITLEMENT_DECISIONS.labels("entitlements", decision.reason).inc()
    if lookup is not None:
        try:
            await cache.store(
                res.kv, user_id, movie_id, decision, lookup.versions,
                res.settings.entitlement_cache_ttl_s,
            )
        except KVError:
            pass
    return decision


@documented("The movies you may watch now", tags=("entitlements",), auth="user",
            query=PageQuery, responses={200: Page[schemas.MyMovie]})
async def my_movies(request: web.Request) -> web.Response:
    principal, _ = await _live_caller(request)
    query = parse_query(request, PageQuery)
    async with _resources(request).db.transaction() as session:
        movies, total = await service.watchable_movies(session, principal.user_id, query)  # type: ignore[arg-type]
    return _page(movies, total, query, schemas.MyMovie)


# ---------------------------------------------------------------- playback


def _session_out(lease: Lease) -> schemas.SessionOut:
    return schemas.SessionOut(
        session_id=lease.session_id,
        movie_id=lease.movie_id,
        client_id=lease.client_id,
        started_at=dt.datetime.fromtimestamp(lease.started_at, dt.UTC),
        expires_at=dt.datetime.fromtimestamp(lease.expires_at, dt.UTC),
    )


@documented(
    "Start a playback session: a stream URL with a playback token",
    tags=("playback",),
    auth="user",
    body=schemas.PlaybackIn,
    responses={
        201: schemas.PlaybackOut,
        403: problem("not_entitled", model=schemas.NotEntitledProblem),
        409: problem("too_many_streams", model=schemas.TooManyStreamsProblem),
    },
)
async def start_playback(request: web.Request) -> web.Response:
    _, user = await _live_caller(request)
    body = await parse_body(request, schemas.PlaybackIn)
    res = _resources(request)
    decision = await decide_cached(request, user.id, body.movie_id)
    if not decision.allowed:
        raise forbidden(
            "Your subscription does not let you watch this movie now.",
            code="not_entitled",
            reason=decision.reason,
        )
    async with res.db.transaction() as session:
        limit = await playback.plan_stream_limit(session, user.id)
    acquired = await playback.start(
        res.leases, res.playback, user.id, body.movie_id, body.client_id, limit
    )
    if acquired.lease is None:
        raise Problem(
            409,
            "too_many_streams",
            f"Your plan allows {limit} simultaneous stream(s); end one to start another.",
            sessions=[_session_out(lease).model_dump(mode="json") for lease in acquired.live],
        )
    token, expires_at = playback.playback_token(res.signer, res.playback, acquired.lease)
    out = schemas.PlaybackOut(
        session_id=acquired.lease.session_id,
        token=token,
        stream_url=f"/stream/{body.movie_id}?token={token}",
        expires_at=dt.datetime.fromtimestamp(expires_at, dt.UTC),
        heartbeat_interval_s=res.playback.heartbeat_interval_s,
        session_expires_at=dt.datetime.fromtimestamp(acquired.lease.expires_at, dt.UTC),
        reused=acquired.reused,
    )
    return model_response(out, status=201)


@documented("Your live playback sessions", tags=("playback",), auth="user",
            responses={200: Page[schemas.SessionOut]})
async def list_playback(request: web.Request) -> web.Response:
    principal = current_principal(request)
    leases = await _resources(request).leases.live(str(principal.user_id))
    items = [_session_out(lease).model_dump(mode="json") for lease in leases]
    return json_response({"items": items, "page": 1, "per_page": len(items), "total": len(items)})


async def _owned_lease(request: web.Request) -> tuple[Principal, Lease]:
    principal = await _checked_principal(request)
    session_id = str(parse_uuid(request.match_info["session_id"], "Playback session"))
    lease = await _resources(request).leases.get(session_id)
    if lease is None or (lease.user_id != str(principal.user_id) and not principal.is_admin):
        raise Problem(404, "session_not_found", "This playback session has ended or never existed.")
    return principal, lease


@documented(
    "Keep a session alive and record the resume position",
    tags=("playback",),
    auth="user",
    body=schemas.HeartbeatIn,
    responses={
        200: schemas.HeartbeatOut,
        403: problem("not_entitled", model=schemas.NotEntitledProblem),
        404: "session_not_found",
    },
)
async def heartbeat(request: web.Request) -> web.Response:
    _, lease = await _owned_lease(request)
    body = await parse_body(request, schemas.HeartbeatIn)
    res = _resources(request)
    user_id, movie_id = uuid.UUID(lease.user_id), uuid.UUID(lease.movie_id)
    decision = await decide_cached(request, user_id, movie_id)
    if not decision.allowed:
        await _end_sessions(res, [lease.session_id])
        raise forbidden("The entitlement for this movie has ended.", code="not_entitled",
                        reason=decision.reason)
    renewed = await res.leases.renew(lease.session_id, res.playback.lease_ttl_s)
    if renewed is None:
        raise Problem(404, "session_not_found", "This playback session has ended or never existed.")
    async with res.db.transaction() as session:
        await playback.record_position(session, user_id, movie_id, body.position_s)
    out = schemas.HeartbeatOut(
        session_id=renewed.session_id,
        position_s=body.position_s,
        session_expires_at=dt.datetime.fromtimestamp(renewed.expires_at, dt.UTC),
    )
    return model_response(out)


@documented("End a playback session (its stream stops at once)", tags=("playback",),
            auth="user", responses={204: None, 404: "session_not_found"})
async def end_playback(request: web.Request) -> web.Response:
    _, lease = await _owned_lease(request)
    await _end_sessions(_resources(request), [lease.session_id])
    return web.Response(status=204)


async def _end_sessions(res: Resources, session_ids: list[str]) -> None:
    for session_id in session_ids:
        await res.leases.release(session_id)
    if session_ids:
        await res.invalidate(sessions=[uuid.UUID(sid) for sid in session_ids])


async def end_user_sessions(res: Resources, user_id: uuid.UUID) -> None:
    """Cancel or deletion: the user's sessions end with their entitlement."""
    try:
        ended = await playback.end_all(res.leases, user_id)
    except KVError as exc:
        log.error("could not end playback sessions of a user (%s)", exc)
        return
    if ended:
        await res.invalidate(sessions=[uuid.UUID(sid) for sid in ended])


@documented("Your resume positions", tags=("playback",), auth="user", query=PageQuery,
            responses={200: Page[schemas.ProgressOut]})
async def my_progress(request: web.Request) -> web.Response:
    principal, _ = await _live_caller(request)
    query = parse_query(request, PageQuery)
    async with _resources(request).db.transaction() as session:
        rows = await playback.progress(session, principal.user_id)  # type: ignore[arg-type]
    window = rows[query.offset : query.offset + query.per_page]
    return _page(window, len(rows), query, schemas.ProgressOut)


routes = [
    web.post("/api/auth/register", register),
    web.post("/api/auth/login", login),
    web.post("/api/auth/refresh", refresh),
    web.post("/api/auth/logout", logout),
    web.get("/api/auth/jwks", jwks),
    web.get("/api/users/me", get_me),
    web.patch("/api/users/me", patch_me),
    web.get("/api/users", list_users),
    web.post("/api/users", create_user),
    web.get("/api/users/{user_id}", get_user),
    web.patch("/api/users/{user_id}", patch_user),
    web.delete("/api/users/{user_id}", delete_user),
    web.post("/api/users/{user_id}/restore", restore_user),
    web.get("/api/plans", list_plans),
    web.post("/api/plans", create_plan),
    web.get("/api/plans/{plan_id}", get_plan),
    web.patch("/api/plans/{plan_id}", patch_plan),
    web.delete("/api/plans/{plan_id}", delete_plan),
    web.post("/api/plans/{plan_id}/restore", restore_plan),
    web.get("/api/plans/{plan_id}/movies", plan_movies),
    web.put("/api/plans/{plan_id}/movies/{movie_id}", add_plan_movie),
    web.delete("/api/plans/{plan_id}/movies/{movie_id}", remove_plan_movie),
    web.post("/api/subscriptions", create_subscription),
    web.get("/api/subscriptions", list_subscriptions),
    web.get("/api/subscriptions/{subscription_id}", get_subscription),
    web.patch("/api/subscriptions/{subscription_id}", patch_subscription),
    web.delete("/api/subscriptions/{subscription_id}", cancel_subscription),
    web.post("/api/billing/events", billing_event),
    web.get("/api/entitlements/check", check_entitlement),
    web.get("/internal/entitlements/check", check_entitlement),
    web.get("/api/me/movies", my_movies),
    web.post("/api/playback", start_playback),
    web.get("/api/playback", list_playback),
    web.post("/api/playback/{session_id}/heartbeat", heartbeat),
    web.delete("/api/playback/{session_id}", end_playback),
    web.get("/api/me/progress", my_progress),
]
