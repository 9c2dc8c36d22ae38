"""Playback sessions: leases in real Redis, the stream cap, heartbeats, progress."""

from __future__ import annotations

import asyncio
import uuid

from entitlements.resources import RESOURCES
from reelgate.tokens import PLAYBACK_AUDIENCE
from tests.entitlements.conftest import entitled_viewer


async def test_start_returns_a_session_token_bound_to_user_movie_and_session(
    api, admin, settings, publish_movie, ent_client
):
    movie = await publish_movie()
    viewer, user, _, _ = await entitled_viewer(api, admin, settings, [movie])
    started = await viewer.ok("POST", "/api/playback", {"movie_id": str(movie)}, status=201)
    assert set(started) >= {"session_id", "token", "stream_url", "expires_at", "heartbeat_interval_s"}
    assert started["stream_url"] == f"/stream/{movie}?token={started['token']}"
    claims = ent_client.app[RESOURCES].signer.verifier().verify(
        started["token"], audience=PLAYBACK_AUDIENCE, token_type="playback"
    )
    assert str(claims.subject) == user["id"]
    assert claims.raw["mid"] == str(movie) and claims.raw["sid"] == started["session_id"]
    # Hours, not minutes: a paused movie keeps working while its session lives.
    assert claims.raw["exp"] - claims.raw["iat"] >= 3600


async def test_playback_token_is_useless_on_the_api(api, admin, settings, publish_movie):
    movie = await publish_movie()
    viewer, _, _, _ = await entitled_viewer(api, admin, settings, [movie])
    started = await viewer.ok("POST", "/api/playback", {"movie_id": str(movie)}, status=201)
    status, body, headers = await api.as_(started["token"]).call("GET", "/api/users/me")
    assert status == 401 and body["code"] == "invalid_token"
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_not_entitled_is_403_with_the_reason(api, admin, settings, publish_movie):
    movie, other = await publish_movie(), await publish_movie()
    viewer, _, _, _ = await entitled_viewer(api, admin, settings, [movie])
    status, body, _ = await viewer.call("POST", "/api/playback", {"movie_id": str(other)})
    assert status == 403
    assert body["code"] == "not_entitled" and body["reason"] == "not_in_plan"


async def test_racing_starts_never_exceed_max_streams(api, admin, settings, publish_movie):
    movie = await publish_movie()
    viewer, _, _, _ = await entitled_viewer(api, admin, settings, [movie], max_streams=2)
    results = await asyncio.gather(
        *(viewer.call("POST", "/api/playback", {"movie_id": str(movie)}) for _ in range(12))
    )
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [201, 201] + [409] * 10
    refused = next(body for status, body, _ in results if status == 409)
    assert refused["code"] == "too_many_streams"
    assert len(refused["sessions"]) == 2
    live = await viewer.ok("GET", "/api/playback")
    assert live["total"] == 2


async def test_stopping_another_device_frees_a_stream(api, admin, settings, publish_movie):
    movie = await publish_movie()
    viewer, _, _, _ = await entitled_viewer(api, admin, settings, [movie], max_streams=1)
    await viewer.ok("POST", "/api/playback", {"movie_id": str(movie)}, status=201)
    status, refused, _ = await viewer.call("POST", "/api/playback", {"movie_id": str(movie)})
    assert status == 409
    await viewer.ok("DELETE", f"/api/playback/{refused['sessions'][0]['session_id']}", status=204)
    await viewer.ok("POST", "/api/playback", {"movie_id": str(movie)}, status=201)


async def test_reconnecting_player_gets_its_own_session_back(api, admin, settings, publish_movie):
    movie = await publish_movie()
    viewer, _, _, _ = await entitled_viewer(api, admin, settings, [movie], max_streams=1)
    body = {"movie_id": str(movie), "client_id": "living-room-tv"}
    first = await viewer.ok("POST", "/api/playback", body, status=201)
    again = await viewer.ok("POST", "/api/playback", body, status=201)
    assert again["session_id"] == first["session_id"] and again["reused"] is True
    status, _, _ = await viewer.call(
        "POST", "/api/playback", {"movie_id": str(movie), "client_id": "phone"}
    )
    assert status == 409


async def test_heartbeat_keeps_the_session_and_stores_the_position(
    api, admin, settings, publish_movie
):
    movie = await publish_movie()
    viewer, _, _, _ = await entitled_viewer(api, admin, settings, [movie])
    started = await viewer.ok("POST", "/api/playback", {"movie_id": str(movie)}, status=201)
    beat = await viewer.ok(
        "POST", f"/api/playback/{started['session_id']}/heartbeat", {"position_s": 42.5}
    )
    assert beat["position_s"] == 42.5
    await viewer.ok("POST", f"/api/playback/{started['session_id']}/heartbeat", {"position_s": 61})
    progress = await viewer.ok("GET", "/api/me/progress")
    assert [(p["movie_id"], p["position_s"]) for p in progress["items"]] == [(str(movie), 61.0)]


async def test_session_ends_after_three_missed_heartbeats(
    aiohttp_client, settings, publish_movie_on
):
    from entitlements.app import create_app
    from tests.api import Api

    settings = settings.model_copy(update={"heartbeat_interval_s": 1})
    client = await aiohttp_client(create_app(settings))
    api = Api(client)
    admin = await api.login(settings.admin_email, settings.admin_password)
    movie = await publish_movie_on()
    viewer, _, _, _ = await entitled_viewer(api, admin, settings, [movie], max_streams=1)
    started = await viewer.ok("POST", "/api/playback", {"movie_id": str(movie)}, status=201)
    await asyncio.sleep(1.5)
    await viewer.ok("POST", f"/api/playback/{started['session_id']}/heartbeat", {"position_s": 1})
    await asyncio.sleep(1.5)  # 3 s after start, but 1.5 s after the heartbeat: still alive
    assert (await viewer.ok("GET", "/api/playback"))["total"] == 1
    await asyncio.sleep(3.2)
    assert (await viewer.ok("GET", "/api/playback"))["total"] == 0
    status, body, _ = await viewer.call(
        "POST", f"/api/playback/{started['session_id']}/heartbeat", {"position_s": 2}
    )
    assert status == 404 and body["code"] == "session_not_found"
    await viewer.ok("POST", "/api/playback", {"movie_id": str(movie)}, status=201)


async def test_cancel_ends_the_users_sessions(api, admin, settings, publish_movie):
    movie = await publish_movie()
    viewer, _, _, sub = await entitled_viewer(api, admin, settings, [movie])
    started = await viewer.ok("POST", "/api/playback", {"movie_id": str(movie)}, status=201)
    await viewer.ok("DELETE", f"/api/subscriptions/{sub['id']}")
    assert (await viewer.ok("GET", "/api/playback"))["total"] == 0
    status, _, _ = await viewer.call(
        "POST", f"/api/playback/{started['session_id']}/heartbeat", {"position_s": 5}
    )
    assert status == 404


async def test_someone_elses_session_is_not_found(api, admin, settings, publish_movie):
    movie = await publish_movie()
    viewer, _, _, _ = await entitled_viewer(api, admin, settings, [movie])
    started = await viewer.ok("POST", "/api/playback", {"movie_id": str(movie)}, status=201)
    stranger, _ = await api.register_viewer()
    for method, path, body in [
        ("POST", f"/api/playback/{started['session_id']}/heartbeat", {"position_s": 1}),
        ("DELETE", f"/api/playback/{started['session_id']}", None),
    ]:
        status, _, _ = await stranger.call(method, path, body)
        assert status == 404
    status, _, _ = await viewer.call("DELETE", f"/api/playback/{uuid.uuid4()}")
    assert status == 404


async def test_heartbeat_after_entitlement_loss_ends_the_session(
    api, admin, settings, publish_movie
):
    movie = await publish_movie()
    viewer, _, plan, _ = await entitled_viewer(api, admin, settings, [movie])
    started = await viewer.ok("POST", "/api/playback", {"movie_id": str(movie)}, status=201)
    await admin.ok("DELETE", f"/api/plans/{plan['id']}/movies/{movie}", status=204)
    status, body, _ = await viewer.call(
        "POST", f"/api/playback/{started['session_id']}/heartbeat", {"position_s": 3}
    )
    assert status == 403 and body["reason"] == "not_in_plan"
    assert (await viewer.ok("GET", "/api/playback"))["total"] == 0
