"""Dependency faults under `reelgate cluster --media-nodes 3`: Redis stopped
for ten seconds while a viewer streams, PostgreSQL restarted under writes.
The cluster's PostgreSQL and Redis belong to this module alone."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest
import redis

from tests.cluster.support import (
    ClusterRun,
    Through,
    make_video,
    module_cluster,
    module_through,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.slow

REDIS_DOWN_S = 10.0


cluster = module_cluster("faults")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_video(tmp_path_factory.mktemp("video") / "bars.mp4", 2, noisy=False)


through = module_through(timeout_s=30)


@pytest.fixture(scope="module")
async def library(through: Through, video: bytes) -> tuple[dict, dict]:
    admin = await through.admin()
    return await through.library(admin, video, "Colour Bars")


async def _readyz(cluster: ClusterRun, http: aiohttp.ClientSession) -> dict[str, int]:
    names = ["entitlements", "catalog", "media-1", "media-2", "media-3", "worker"]
    codes = await asyncio.gather(*(status_of(http, cluster.node_url(n) + "/readyz") for n in names))
    return dict(zip(names, codes, strict=True))


async def _served_by_every_media_node(cluster: ClusterRun, through: Through, url: str) -> None:
    """Read until each media node has answered this session at least once
    (its own /metrics says so), so each knows the decision."""

    async def served(http: aiohttp.ClientSession, name: str) -> float:
        async with http.get(cluster.node_url(name) + "/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith('reelgate_stream_bytes_total{service="media"}'):
                    return float(line.split()[-1])
        return 0.0

    async with aiohttp.ClientSession() as http:

        async def all_served() -> bool:
            status, _, _ = await through.read(url, 0, 1023)
            assert status == 206
            counts = [await served(http, f"media-{i}") for i in (1, 2, 3)]
            return min(counts) > 0

        await wait_for(all_served, 20, "every media node served the stream", 0.05)


async def test_redis_down_for_ten_seconds(
    cluster: ClusterRun, through: Through, library: tuple[dict, dict], video: bytes
) -> None:
    plan, movie = library
    streaming = await through.paying_viewer(plan["id"])
    newcomer = await through.paying_viewer(plan["id"])
    await through.watchable(streaming, movie["id"])
    url = await through.playback(streaming, movie["id"])
    newcomer_url = await through.playback(newcomer, movie["id"])
    await _served_by_every_media_node(cluster, through, url)
    # Like a production Redis, this one keeps its data over a restart.
    client = redis.Redis.from_url(cluster.redis.url)
    client.config_set("save", "3600 1")
    client.close()

    async with aiohttp.ClientSession() as ops:
        assert set((await _readyz(cluster, ops)).values()) == {200}
        cluster.redis.pause()
        down_at = time.monotonic()
        seen: dict[str, set[int]] = {}

        def note(what: str, status: int) -> None:
            seen.setdefault(what, set()).add(status)

        reads = 0
        while time.monotonic() - down_at < REDIS_DOWN_S:
            first = reads * 4096 % (len(video) - 4096)
            status, body, _ = await through.read(url, first, first + 4095)
            note("stream (decision known)", status)
            assert status == 206 and body == video[first : first + 4096], (status, body[:200])
            reads += 1
            if reads % 8 == 1:
                for name, code in (await _readyz(cluster, ops)).items():
                    note(f"readyz {name}", code)
                status, _, headers = await through.read(newcomer_url, 0, 1023)
                note("stream (never decided)", status)
                assert status != 503 or headers["Retry-After"]
                status, _, _ = await streaming.api.call("GET", "/api/me/movies")
                note("GET /api/me/movies", status)
                status, _, _ = await through.anon.call("GET", f"/api/movies/{movie['id']}")
                note("GET /api/movies/{id}", status)
                status, _, _ = await through.anon.call(
                    "POST", "/api/auth/login", {"email": "nobody@example.com", "password": "x" * 10}
                )
                note("POST /api/auth/login", status)
                status, _, _ = await newcomer.api.call(
                    "POST", "/api/playback", {"movie_id": movie["id"]}
                )
                note("POST /api/playback", status)
            await asyncio.sleep(0.2)
        cluster.redis.resume()
        back_at = time.monotonic()

        assert reads >= 20, reads
        for what in ("media-1", "media-2", "media-3", "entitlements", "worker"):
            assert 503 in seen[f"readyz {what}"], seen
        assert seen["readyz catalog"] == {200}, seen  # writes wait in its outbox meanwhile
        assert seen["stream (never decided)"] <= {403, 503}, seen  # fails closed, never open
        assert all(500 not in statuses for statuses in seen.values()), str(seen)

        # Recovery, with nothing restarted.
        async def all_ready() -> bool:
            return set((await _readyz(cluster, ops)).values()) == {200}

        await wait_for(all_ready, 20, "every node ready again after Redis came back")
        recovered_in = time.monotonic() - back_at

    status, body, _ = await through.read(url, 0, 1023)
    assert status == 206 and body == video[:1024]
    status, body, _ = await through.read(newcomer_url, 0, 1023)
    assert status == 206 and body == video[:1024]
    # Events flow again: a new movie reaches the viewer's plan...
    admin = await through.admin()
    sequel = await through.movie(admin, video, "Colour Bars II")
    await through.watchable(streaming, sequel["id"])
    # ...and so do invalidations: a cancel stops the stream within a second.
    await streaming.api.ok("DELETE", f"/api/subscriptions/{streaming.subscription['id']}")

    async def refused() -> bool:
        status, _, _ = await through.read(url, 0, 1023)
        return status == 403

    await wait_for(refused, 1.0, "stream refused after cancel", 0.05)
    assert not [
        line for line in cluster.access_log() if '" 500 ' in line
    ], "a 500 went through the balancer"
    assert all(c["restarts"] == 0 for c in cluster.pids()["children"].values())
    print(f"redis outage: {reads} reads served, recovered {recovered_in:.1f}s after; {seen}")


async def test_postgres_restart_under_writes(
    cluster: ClusterRun, through: Through, library: tuple[dict, dict], video: bytes
) -> None:
    plan, _ = library
    admin = await through.admin()
    actors = [
        await admin.ok("POST", "/api/actors", {"name": f"Actor {i}"}, status=201) for i in range(2)
    ]
    pids_before = {n: cluster.pids()["children"][n]["pid"] for n in ("catalog", "entitlements")}
    outcomes: dict[str, list[int]] = {"movie": [], "signup": [], "subscribe": [], "pay": []}
    stop = asyncio.Event()

    async def write_movies() -> None:
        n = 0
        while not stop.is_set():
            status, _, _ = await admin.call("POST", "/api/movies", {
                "title": f"pgfault {n}", "genres": ["drama", "comedy"],
                "actor_ids": [a["id"] for a in actors]})  # fmt: skip
            outcomes["movie"].append(status)
            n += 1
            await asyncio.sleep(0.05)

    async def sign_up() -> None:
        while not stop.is_set():
            status, user, _ = await through.anon.call("POST", "/api/auth/register", {
                "email": f"pg-{uuid.uuid4().hex[:10]}@example.com", "password": "viewer-pass-1",
                "name": "PG"})  # fmt: skip
            outcomes["signup"].append(status)
            if status == 201:  # then subscribe (as the admin) and pay: one transaction each
                status, sub, _ = await admin.call(
                    "POST", "/api/subscriptions", {"plan_id": plan["id"], "user_id": user["id"]}
                )
                outcomes["subscribe"].append(status)
                if status == 201:
                    status, _ = await through.webhook({
                        "type": "payment_succeeded", "subscription_id": sub["id"],
                        "amount_cents": 999, "event_id": f"evt-{uuid.uuid4().hex}"})  # fmt: skip
                    outcomes["pay"].append(status)
            await asyncio.sleep(0.05)

    writers = [asyncio.create_task(write_movies()), asyncio.create_task(sign_up())]
    await asyncio.sleep(1.0)
    await asyncio.to_thread(cluster.postgres.restart, "fast", 3.0)
    back_at = time.monotonic()

    async with aiohttp.ClientSession() as ops:

        async def ready() -> bool:
            codes = await _readyz(cluster, ops)
            return codes["catalog"] == codes["entitlements"] == 200

        await wait_for(ready, 20, "catalog and entitlements ready after the restart")
    await asyncio.sleep(1.0)
    marks = {k: len(v) for k, v in outcomes.items()}
    await asyncio.sleep(1.5)
    stop.set()
    await asyncio.gather(*writers)
    # While it was down: 503 with Retry-After, never a 500; afterwards every
    # write succeeds, without any node having been restarted.
    for what, statuses in outcomes.items():
        assert set(statuses) <= {200, 201, 503}, outcomes
        assert set(statuses[marks[what] :]) <= {200, 201}, outcomes
    assert 503 in outcomes["movie"] and 503 in outcomes["signup"], outcomes
    assert len(outcomes["movie"]) > marks["movie"] and len(outcomes["pay"]) > marks["pay"]
    assert {n: cluster.pids()["children"][n]["pid"] for n in pids_before} == pids_before
    print(f"postgres restart: writes {outcomes}; ready {time.monotonic() - back_at:.1f}s after")

    # No partial rows: every movie has its genres, its cast and its event...
    movies = cluster.sql("SELECT id FROM movies WHERE title LIKE 'pgfault %'")
    assert movies
    incomplete = cluster.sql("""
        SELECT m.title,
               (SELECT count(*) FROM movie_genres g WHERE g.movie_id = m.id),
               (SELECT count(*) FROM movie_actors a WHERE a.movie_id = m.id),
               (SELECT count(*) FROM catalog_outbox o
                 WHERE o.type = 'movie.created' AND o.envelope LIKE '%' || m.id::text || '%')
          FROM movies m WHERE m.title LIKE 'pgfault %'
    """)  # fmt: skip
    assert all(row[1:] == (2, 2, 1) for row in incomplete), incomplete
    # ...every paid subscription has its applied payment and the reverse.
    mismatched = cluster.sql("""
        SELECT s.id, s.status, count(b.event_id) FROM subscriptions s
          JOIN users u ON u.id = s.user_id AND u.email LIKE 'pg-%'
          LEFT JOIN billing_events b ON b.subscription_id = s.id AND b.outcome = 'applied'
         GROUP BY s.id, s.status
        HAVING (s.status = 'active') <> (count(b.event_id) > 0)
    """)  # fmt: skip
    assert not mismatched, mismatched

    # The outbox drains and the entitlements projection catches up.
    def drained() -> bool:
        unsent = cluster.sql("SELECT count(*) FROM catalog_outbox WHERE sent_at IS NULL")[0][0]
        projected = cluster.sql(
            "SELECT count(*) FROM catalog_movies WHERE title LIKE 'pgfault %'"
        )[0][0]
        return unsent == 0 and projected == len(movies)

    await wait_for(drained, 20, "outbox relayed and projected", 0.3)
    assert json.dumps(outcomes)  # printed above for the record


def test_no_token_or_password_reached_a_log_file(cluster: ClusterRun, through: Through) -> None:
    assert len(through.secrets) > 3
    assert not cluster.logs_containing(through.secrets)
