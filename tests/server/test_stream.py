"""GET/HEAD /stream through real media nodes, with every check on: a token
from the entitlements node, a session lease in Redis, the entitlement, and the
object the catalog ingested."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid

from aiohttp import ClientSession

from tests.api import Api
from tests.stack import Library, Stack


async def start_playback(library: Library, **extra) -> dict:
    return await library.viewer.ok(
        "POST", "/api/playback", {"movie_id": library.movie_id, **extra}, status=201
    )


def media_api(stack: Stack, index: int = 0) -> Api:
    return stack.api(stack.media[index])


async def get(stack: Stack, url: str, index: int = 0, method: str = "GET", **headers):
    api = media_api(stack, index)
    await api.client.start_server()
    return await api.call(method, url, headers=headers)


async def test_whole_movie_and_ranges_are_the_exact_bytes(stack, library):
    playback = await start_playback(library)
    status, body, headers = await get(stack, playback["stream_url"])
    assert status == 200 and body == library.video
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Cache-Control"] == "private"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["ETag"].startswith('"') and "Last-Modified" in headers
    size = len(library.video)
    for header, start, end in [("bytes=0-0", 0, 0), ("bytes=100-", 100, size - 1),
                               ("bytes=-500", size - 500, size - 1), ("BYTES=10-19", 10, 19)]:
        status, body, headers = await get(stack, playback["stream_url"], Range=header)
        assert status == 206, header
        assert body == library.video[start : end + 1]
        assert headers["Content-Range"] == f"bytes {start}-{end}/{size}"


async def test_head_matches_get_without_a_body(stack, library):
    playback = await start_playback(library)
    _, _, got = await get(stack, playback["stream_url"], Range="bytes=0-9,20-29")
    status, body, head = await get(stack, playback["stream_url"], method="HEAD",
                                   Range="bytes=0-9,20-29")
    assert status == 206 and body == b""
    for name in ("Content-Length", "Content-Type", "ETag", "Last-Modified", "Accept-Ranges"):
        assert head[name] == got[name]
    assert head["Content-Type"].startswith("multipart/byteranges; boundary=")


async def test_unsatisfiable_and_conditional_requests(stack, library):
    playback = await start_playback(library)
    size = len(library.video)
    status, _, headers = await get(stack, playback["stream_url"], Range=f"bytes={size}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
    _, _, first = await get(stack, playback["stream_url"])
    status, _, _ = await get(stack, playback["stream_url"], **{"If-None-Match": first["ETag"]})
    assert status == 304
    status, _, _ = await get(stack, playback["stream_url"], **{"If-Match": '"other"'})
    assert status == 412
    status, body, _ = await get(stack, playback["stream_url"], Range="bytes=0-9",
                                **{"If-Range": '"stale"'})
    assert status == 200 and body == library.video


async def test_token_in_authorization_header_works_too(stack, library):
    playback = await start_playback(library)
    status, body, _ = await get(stack, f"/stream/{library.movie_id}",
                                Authorization=f"Bearer {playback['token']}", Range="bytes=0-3")
    assert status == 206 and body == library.video[:4]


async def test_missing_or_bad_tokens_are_401(stack, library):
    playback = await start_playback(library)
    tampered = playback["token"][:-4] + ("AAAA" if not playback["token"].endswith("AAAA") else "BBBB")
    for url, headers in [
        (f"/stream/{library.movie_id}", {}),
        (f"/stream/{library.movie_id}?token=garbage", {}),
        (f"/stream/{library.movie_id}?token={tampered}", {}),
        # An access token is never a playback token.
        (f"/stream/{library.movie_id}", {"Authorization": f"Bearer {library.viewer.token}"}),
    ]:
        status, body, response_headers = await get(stack, url, **headers)
        assert status == 401, url
        assert body["code"] == "invalid_token"
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
        assert response_headers["Content-Type"] == "application/problem+json"


async def test_token_for_another_movie_is_403(stack, library):
    playback = await start_playback(library)
    other = uuid.uuid4()
    status, body, _ = await get(stack, f"/stream/{other}?token={playback['token']}")
    assert status == 403 and body["code"] == "wrong_movie"


async def test_ended_session_is_refused_on_every_node_within_a_second(stack, library):
    playback = await start_playback(library)
    for index in (0, 1):
        status, _, _ = await get(stack, playback["stream_url"], index, Range="bytes=0-0")
        assert status == 206
    await library.viewer.ok("DELETE", f"/api/playback/{playback['session_id']}", status=204)
    await asyncio.sleep(0.3)
    for index in (0, 1):
        status, body, _ = await get(stack, playback["stream_url"], index, Range="bytes=0-0")
        assert status == 403 and body["code"] == "session_ended"


async def test_canceled_subscription_is_refused_on_every_node_within_a_second(stack, library):
    playback = await start_playback(library)
    for index in (0, 1):
        assert (await get(stack, playback["stream_url"], index, Range="bytes=0-0"))[0] == 206
    await library.viewer.ok("DELETE", f"/api/subscriptions/{library.subscription['id']}")
    await asyncio.sleep(0.3)
    for index in (0, 1):
        status, body, _ = await get(stack, playback["stream_url"], index, Range="bytes=0-0")
        assert status == 403 and body["code"] in ("session_ended", "not_entitled")


async def test_plan_change_revokes_without_ending_the_session(stack, library):
    playback = await start_playback(library)
    assert (await get(stack, playback["stream_url"], 1, Range="bytes=0-0"))[0] == 206
    await library.admin_ent.ok(
        "DELETE", f"/api/plans/{library.plan['id']}/movies/{library.movie_id}", status=204
    )
    await asyncio.sleep(0.3)
    status, body, _ = await get(stack, playback["stream_url"], 1, Range="bytes=0-0")
    assert status == 403 and body == {**body, "code": "not_entitled", "reason": "not_in_plan"}


async def test_deleted_movie_is_404_on_every_node(stack, library):
    playback = await start_playback(library)
    assert (await get(stack, playback["stream_url"], 0, Range="bytes=0-0"))[0] == 206
    await library.admin_cat.ok("DELETE", f"/api/movies/{library.movie_id}", status=204)
    deadline = asyncio.get_running_loop().time() + 1.0
    while True:
        results = [await get(stack, playback["stream_url"], i, Range="bytes=0-0") for i in (0, 1)]
        if all(status == 404 for status, _, _ in results):
            break
        assert asyncio.get_running_loop().time() < deadline, results
        await asyncio.sleep(0.05)


async def test_tokens_never_reach_the_logs(stack, library, caplog):
    caplog.set_level(logging.DEBUG)
    playback = await start_playback(library)
    await get(stack, playback["stream_url"], Range="bytes=0-0")
    await get(stack, f"/stream/{library.movie_id}?token=not-a-real-token-but-secret")
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert f"/stream/{library.movie_id}" in text  # the access line is there
    assert playback["token"] not in text
    assert "not-a-real-token-but-secret" not in text


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_thousand_aborted_reads_leave_no_open_files(stack, library):
    playback = await start_playback(library)
    url = str(stack.media[0].make_url(playback["stream_url"]))
    async with ClientSession() as http:  # warm-up: caches, pools, lazily opened files
        async with http.get(url) as response:
            await response.content.read(1)
    before = open_fds()
    for _ in range(1000):
        async with ClientSession() as http:
            async with http.get(url) as response:
                assert response.status == 200
                await response.content.read(16)
            # leaving the block without reading the body closes the connection
    for _ in range(50):
        await asyncio.sleep(0.1)
        if open_fds() <= before + 5:
            break
    assert open_fds() <= before + 5, (before, open_fds())
