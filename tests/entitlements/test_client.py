"""The entitlement client as media nodes use it: real node over HTTP, real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from entitlements.app import create_app
from entitlements.client import EntitlementClient, EntitlementUnavailable
from reelgate.config import Settings
from reelgate.kv import RedisKV
from tests.api import Api
from tests.entitlements.conftest import entitled_viewer, pay

ClientFactory = Callable[..., Any]


@pytest.fixture
async def node(aiohttp_server: Any, settings: Settings) -> Any:
    return await aiohttp_server(create_app(settings))


@pytest.fixture
async def make_client(node: Any, redis_url: str, settings: Settings) -> AsyncIterator[ClientFactory]:
    made: list[EntitlementClient] = []

    async def make(**kwargs: Any) -> EntitlementClient:
        kwargs.setdefault("local_ttl_s", 60.0)  # long: only invalidations may clear it
        client = EntitlementClient(
            RedisKV(redis_url), str(node.make_url("/")), settings.service_key, **kwargs
        )
        await client.start()
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()
        await client.kv.close()


@pytest.fixture
def node_api(node: Any) -> Api:
    from aiohttp.test_utils import TestClient

    return Api(TestClient(node))


@pytest.fixture
async def node_admin(node: Any, settings: Settings) -> AsyncIterator[Api]:
    from aiohttp.test_utils import TestClient

    client = TestClient(node)
    await client.start_server()
    api = Api(client)
    yield await api.login(settings.admin_email, settings.admin_password)
    await client.close()


def origin_requests() -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "reelgate_http_requests":
            continue
        for sample in metric.samples:
            if (
                sample.name.endswith("_total")
                and sample.labels.get("route") == "/internal/entitlements/check"
            ):
                total += sample.value
    return total


async def test_cancel_reaches_two_clients_on_their_next_check(
    node_admin: Api, settings: Settings, make_client: ClientFactory, publish_movie_on: Any
) -> None:
    movie = await publish_movie_on()
    viewer, user, _, sub = await entitled_viewer(node_admin.as_(None), node_admin, settings, [movie])
    user_id = uuid.UUID(user["id"])
    first, second = await make_client(), await make_client()
    assert (await first.check(user_id, movie)).allowed
    assert (await second.check(user_id, movie)).allowed

    await viewer.ok("DELETE", f"/api/subscriptions/{sub['id']}")
    # Pub/sub delivery is asynchronous but sub-millisecond on loopback; give it
    # far less than the one second the contract allows.
    await asyncio.sleep(0.2)
    for client in (first, second):
        decision = await client.check(user_id, movie)
        assert decision.allowed is False
        assert decision.reason == "subscription_inactive"


async def test_cached_negative_answer_is_replaced_after_payment(
    node_admin: Api, settings: Settings, make_client: ClientFactory, publish_movie_on: Any
) -> None:
    movie = await publish_movie_on()
    plan = await node_admin.ok("POST", "/api/plans", {"name": "P", "price_cents": 1,
                               "max_streams": 1, "max_height": 720, "genres": ["*"]}, status=201)
    await node_admin.ok("PUT", f"/api/plans/{plan['id']}/movies/{movie}", status=204)
    viewer, user = await node_admin.as_(None).register_viewer()
    user_id = uuid.UUID(user["id"])
    client = await make_client()
    assert (await client.check(user_id, movie)).reason == "no_subscription"
    sub = await viewer.ok("POST", "/api/subscriptions", {"plan_id": plan["id"]}, status=201)
    await asyncio.sleep(0.2)
    assert (await client.check(user_id, movie)).reason == "subscription_inactive"
    await pay(viewer, settings, sub["id"])
    await asyncio.sleep(0.2)
    assert (await client.check(user_id, movie)).allowed is True


async def test_hundred_concurrent_cold_checks_make_one_call(make_client: ClientFactory) -> None:
    client = await make_client()
    user_id, movie_id = uuid.uuid4(), uuid.uuid4()
    before = origin_requests()
    decisions = await asyncio.gather(*(client.check(user_id, movie_id) for _ in range(100)))
    assert {d.reason for d in decisions} == {"user_disabled"}
    assert client.origin_calls == 1
    assert origin_requests() - before == 1


async def test_warm_checks_are_answered_without_the_node(make_client: ClientFactory) -> None:
    first = await make_client()
    user_id, movie_id = uuid.uuid4(), uuid.uuid4()
    await first.check(user_id, movie_id)
    second = await make_client()  # cold locally, warm in Redis
    before = origin_requests()
    await second.check(user_id, movie_id)
    await second.check(user_id, movie_id)
    assert second.origin_calls == 0
    assert origin_requests() == before


async def test_node_down_serves_last_answer_within_grace_then_fails_closed(
    node: Any, make_client: ClientFactory
) -> None:
    client = await make_client(local_ttl_s=0.0, stale_grace_s=0.5)
    user_id, movie_id = uuid.uuid4(), uuid.uuid4()
    first = await client.check(user_id, movie_id)
    await client.kv.close()
    client.kv = RedisKV("redis://127.0.0.1:1/0")  # Redis unreachable
    await node.close()  # and the node is gone
    assert await client.check(user_id, movie_id) == first  # stale, within grace
    await asyncio.sleep(0.6)
    with pytest.raises(EntitlementUnavailable) as raised:
        await client.check(user_id, movie_id)
    assert raised.value.retry_after_s > 0


async def test_unknown_key_with_everything_down_fails_closed(
    node: Any, make_client: ClientFactory
) -> None:
    client = await make_client()
    await client.kv.close()
    client.kv = RedisKV("redis://127.0.0.1:1/0")
    await node.close()
    with pytest.raises(EntitlementUnavailable):
        await client.check(uuid.uuid4(), uuid.uuid4())
