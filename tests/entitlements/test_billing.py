"""The billing webhook: signatures, payments, idempotency by event id and
ordering by `occurred_at`."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import select

from entitlements.models import BillingEvent
from entitlements.resources import RESOURCES
from tests.api import sign
from tests.entitlements.conftest import pay
from tests.entitlements.support import (
    assert_problem,
    assert_validation_error,
    check_rows,
    create_plan,
    send_billing,
    send_raw,
)

PERIOD = dt.timedelta(days=30)


@pytest.fixture
async def subscription(api, admin):
    """A fresh `pending_payment` subscription of a new viewer."""
    plan = await create_plan(admin)
    viewer, _ = await api.register_viewer()
    return await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)


def _event(subscription_id: str, kind: str = "payment_succeeded", **extra) -> dict:
    return {"type": kind, "subscription_id": subscription_id, "amount_cents": 999,
            "event_id": uuid.uuid4().hex, **extra}


async def _state(admin, subscription_id: str) -> dict:
    return await admin.ok("GET", f"/api/subscriptions/{subscription_id}")


def _period_end(sub: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(sub["current_period_end"])


# ---------------------------------------------------------------- signatures


async def test_a_missing_signature_is_401(api, admin, subscription):
    raw = json.dumps(_event(subscription["id"])).encode()
    response = await send_raw(api, "POST", "/api/billing/events", raw)
    assert_problem(response, 401, "invalid_signature")
    assert (await _state(admin, subscription["id"]))["status"] == "pending_payment"


async def test_malformed_signatures_are_401(api, admin, settings, subscription):
    raw = json.dumps(_event(subscription["id"])).encode()
    digest = sign(settings.billing_secret, raw).split("=", 1)[1]

    async def check(signature):
        response = await send_raw(api, "POST", "/api/billing/events", raw,
                                  headers={"X-Reelgate-Signature": signature})
        assert_problem(response, 401, "invalid_signature")

    await check_rows(["", "sha256=", "sha256=" + "0" * 64, "md5=abc", "deadbeef", "sha256=zz",
                      digest, "sha1=" + digest, "sha256=" + digest[:-2],
                      "sha256=" + "e" * 200], check)
    assert (await _state(admin, subscription["id"]))["status"] == "pending_payment"


async def test_a_signature_with_another_secret_is_401(api, subscription):
    raw = json.dumps(_event(subscription["id"])).encode()
    response = await send_raw(api, "POST", "/api/billing/events", raw,
                              headers={"X-Reelgate-Signature": sign("wrong-secret", raw)})
    assert_problem(response, 401, "invalid_signature")


async def test_the_signature_covers_the_exact_bytes(api, settings, subscription):
    raw = json.dumps(_event(subscription["id"])).encode()
    signature = sign(settings.billing_secret, raw)
    altered = raw.replace(b'"amount_cents": 999', b'"amount_cents": 1')
    response = await send_raw(api, "POST", "/api/billing/events", altered,
                              headers={"X-Reelgate-Signature": signature})
    assert_problem(response, 401, "invalid_signature")


async def test_an_uppercase_hex_signature_is_accepted(api, settings, subscription):
    raw = json.dumps(_event(subscription["id"])).encode()
    signature = "sha256=" + sign(settings.billing_secret, raw).split("=", 1)[1].upper()
    status, _, _ = await send_raw(api, "POST", "/api/billing/events", raw,
                                  headers={"X-Reelgate-Signature": signature})
    assert status == 200


# ---------------------------------------------------------------- payments


async def test_a_successful_payment_activates_for_one_period(api, admin, settings, subscription):
    before = dt.datetime.now(dt.UTC)
    status, result = await pay(api, settings, subscription["id"])
    assert status == 200 and result["outcome"] == "applied"
    sub = await _state(admin, subscription["id"])
    assert sub["status"] == "active"
    assert before + PERIOD <= _period_end(sub) <= dt.datetime.now(dt.UTC) + PERIOD
    assert result["subscription"]["current_period_end"] == sub["current_period_end"]


async def test_the_next_payment_extends_from_the_end_of_the_period(api, admin, settings,
                                                                   subscription):
    await pay(api, settings, subscription["id"])
    first_end = _period_end(await _state(admin, subscription["id"]))
    await pay(api, settings, subscription["id"])
    assert _period_end(await _state(admin, subscription["id"])) == first_end + PERIOD


async def test_a_replayed_event_changes_nothing(api, admin, settings, subscription):
    event = _event(subscription["id"])
    await send_billing(api, settings.billing_secret, event)
    after_first = await _state(admin, subscription["id"])
    status, result, _ = await send_billing(api, settings.billing_secret, event)
    assert status == 200 and result["outcome"] == "duplicate"
    assert result["event_id"] == event["event_id"]
    assert await _state(admin, subscription["id"]) == after_first  # not extended twice


async def test_a_replayed_event_id_with_another_body_changes_nothing(api, admin, settings,
                                                                     subscription):
    event = _event(subscription["id"])
    await send_billing(api, settings.billing_secret, event)
    after_first = await _state(admin, subscription["id"])
    replay = {**event, "type": "payment_failed"}
    status, result, _ = await send_billing(api, settings.billing_secret, replay)
    assert status == 200 and result["outcome"] == "duplicate"
    assert await _state(admin, subscription["id"]) == after_first


async def test_the_same_event_delivered_in_parallel_is_applied_once(api, admin, settings,
                                                                    subscription):
    event = _event(subscription["id"])
    responses = await asyncio.gather(
        *(send_billing(api, settings.billing_secret, event) for _ in range(8)))
    assert [status for status, _, _ in responses] == [200] * 8, responses
    outcomes = sorted(body["outcome"] for _, body, _ in responses)
    assert outcomes == ["applied"] + ["duplicate"] * 7
    sub = await _state(admin, subscription["id"])
    assert _period_end(sub) <= dt.datetime.now(dt.UTC) + PERIOD


async def test_an_event_for_an_unknown_subscription_delivered_in_parallel_is_recorded_once(
        api, settings):
    event = _event(str(uuid.uuid4()))
    responses = await asyncio.gather(
        *(send_billing(api, settings.billing_secret, event) for _ in range(8)))
    assert [status for status, _, _ in responses] == [200] * 8, responses
    outcomes = sorted(body["outcome"] for _, body, _ in responses)
    assert outcomes == ["duplicate"] * 7 + ["unknown_subscription"]


async def test_a_failed_payment_makes_it_past_due(api, admin, settings, subscription):
    await pay(api, settings, subscription["id"])
    status, result = await pay(api, settings, subscription["id"], kind="payment_failed")
    assert status == 200 and result["outcome"] == "applied"
    assert (await _state(admin, subscription["id"]))["status"] == "past_due"


async def test_a_payment_after_a_failure_reactivates(api, admin, settings, subscription):
    await pay(api, settings, subscription["id"], kind="payment_failed")
    await pay(api, settings, subscription["id"])
    assert (await _state(admin, subscription["id"]))["status"] == "active"


async def test_an_older_failure_does_not_undo_a_newer_success(api, admin, settings, subscription):
    now = dt.datetime.now(dt.UTC)
    await pay(api, settings, subscription["id"], occurred_at=now.isoformat())
    status, result = await pay(api, settings, subscription["id"], kind="payment_failed",
                               occurred_at=(now - dt.timedelta(hours=1)).isoformat())
    assert status == 200 and result["outcome"] == "stale"
    assert (await _state(admin, subscription["id"]))["status"] == "active"


async def test_a_newer_failure_does_apply(api, admin, settings, subscription):
    now = dt.datetime.now(dt.UTC)
    await pay(api, settings, subscription["id"], occurred_at=now.isoformat())
    await pay(api, settings, subscription["id"], kind="payment_failed",
              occurred_at=(now + dt.timedelta(seconds=1)).isoformat())
    assert (await _state(admin, subscription["id"]))["status"] == "past_due"


async def test_an_unknown_subscription_is_recorded_and_answered_200(api, settings, ent_client):
    event = _event(str(uuid.uuid4()))
    status, result, _ = await send_billing(api, settings.billing_secret, event)
    assert status == 200
    assert result == {"event_id": event["event_id"], "outcome": "unknown_subscription",
                      "subscription": None}
    async with ent_client.app[RESOURCES].db.transaction() as session:
        recorded = await session.scalar(
            select(BillingEvent).where(BillingEvent.event_id == event["event_id"]))
    assert recorded is not None and recorded.outcome == "unknown_subscription"
    assert str(recorded.subscription_id) == event["subscription_id"]
    again = await send_billing(api, settings.billing_secret, event)
    assert again[1]["outcome"] == "duplicate"


# ---------------------------------------------------------------- body validation (signed)


INVALID_EVENT_FIELDS = [
    ("type", "refund"), ("type", None), ("subscription_id", "nope"), ("subscription_id", 7),
    ("amount_cents", -1), ("amount_cents", "999"), ("amount_cents", 10**12),
    ("amount_cents", 9.99), ("event_id", ""), ("event_id", "x" * 201), ("event_id", 5),
    ("event_id", "nul\x00"), ("occurred_at", "yesterday"),
    ("occurred_at", "2030-01-01T00:00:00"),  # naive: no zone
    ("occurred_at", "9999-12-31T23:59:59-14:00"), ("extra", 1),
]


async def test_a_signed_but_invalid_event_is_422(api, admin, settings, subscription):
    async def check(field, value):
        body = {**_event(subscription["id"]), field: value}
        assert_validation_error(await send_billing(api, settings.billing_secret, body), field)

    await check_rows(INVALID_EVENT_FIELDS, check)
    assert (await _state(admin, subscription["id"]))["status"] == "pending_payment"


async def test_a_signed_body_that_is_not_json_is_400(api, settings):
    async def check(raw):
        assert_problem(await send_billing(api, settings.billing_secret, raw), 400,
                       "malformed_json")

    await check_rows([b"", b"{", b"not json", b"\xff\xfe", b"[" * 10_000], check)


async def test_a_signed_json_body_that_is_not_an_object_is_422(api, settings):
    async def check(raw):
        assert_validation_error(await send_billing(api, settings.billing_secret, raw))

    await check_rows([b"[]", b"null", b"7", b'"event"'], check)
