"""`reelgate cluster --media-nodes 3` end to end, through the balancer only:
the whole viewer journey, then media nodes dying under load.

One cluster for the module; the tests run in file order and the last one
stops every media node.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import time

import aiohttp
import pytest

from tests.cluster.support import (
    ClusterRun,
    Through,
    make_video,
    module_cluster,
    module_through,
    port_open,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.slow


cluster = module_cluster("cluster")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    # Big enough (~30 MB) that a stream is still flowing when its node dies,
    # whatever the socket buffers between node, nginx and client hold.
    return make_video(tmp_path_factory.mktemp("video") / "noise.mp4", 5, noisy=True)


through = module_through(timeout_s=60)


@pytest.fixture(scope="module")
async def library(through: Through, video: bytes) -> tuple[dict, dict]:
    admin = await through.admin()
    return await through.library(admin, video, "Static Noise")


async def test_viewer_journey_from_upload_to_cancel(
    through: Through, library: tuple[dict, dict], video: bytes
) -> None:
    plan, movie = library
    viewer = await through.paying_viewer(plan["id"])
    await through.watchable(viewer, movie["id"])
    stream_url = await through.playback(viewer, movie["id"])
    assert stream_url.startswith(f"/stream/{movie['id']}?token=")

    size = len(video)
    status, body, headers = await through.read(stream_url, 0, 1023)
    assert status == 206 and body == video[:1024]
    assert headers["Content-Range"] == f"bytes 0-1023/{size}"
    assert headers["Accept-Ranges"] == "bytes" and headers["Cache-Control"] == "private"
    middle = size // 2
    status, body, _ = await through.read(stream_url, middle, middle + 65535)
    assert status == 206 and body == video[middle : middle + 65536]
    status, body, _ = await through.read(stream_url, suffix=1000)
    assert status == 206 and body == video[-1000:]
    status, body, _ = await through.read(stream_url, size - 5000)
    assert status == 206 and body == video[-5000:]
    status, body, headers = await through.read(stream_url)
    assert status == 200 and int(headers["Content-Length"]) == size
    assert hashlib.sha256(body).hexdigest() == movie["media"]["sha256"]
    status, _, _ = await through.read(stream_url, size + 10)
    assert status == 416

    canceled = await viewer.api.ok("DELETE", f"/api/subscriptions/{viewer.subscription['id']}")
    assert canceled["status"] == "canceled"
    canceled_at = time.monotonic()
    statuses = []
    while time.monotonic() - canceled_at < 1.5:
        status, _, _ = await through.read(stream_url, 0, 1023)
        statuses.append((round(time.monotonic() - canceled_at, 3), status))
        await asyncio.sleep(0.05)
    refused = [at for at, status in statuses if status == 403]
    assert refused and refused[0] < 1.0, statuses
    assert all(status == 403 for at, status in statuses if at >= refused[0]), statuses


async def _reader(
    through: Through, url: str, video: bytes, killed: asyncio.Event, progress: list[int], index: int
) -> int:
    """Read the whole movie like a player (slowly, until the kill), resuming
    with a Range from the last byte received when the stream is cut.
    Returns how many times it was cut."""
    got = bytearray()
    cuts = 0
    while len(got) < len(video):
        headers = {"Range": f"bytes={len(got)}-"} if got else {}
        try:
            async with through.http.get(url, headers=headers) as response:
                if got:
                    assert response.status == 206, response.status
                    assert response.headers["Content-Range"] == (
                        f"bytes {len(got)}-{len(video) - 1}/{len(video)}"
                    )
                else:
                    assert response.status == 200, response.status
                async for chunk in response.content.iter_chunked(64 * 1024):
                    got += chunk
                    progress[index] = len(got)
                    if not killed.is_set():
                        await asyncio.sleep(0.04)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            cuts += 1
            assert killed.is_set(), f"stream cut before any node died: {exc!r}"
            assert cuts <= 2, "cut again after resuming"
    assert len(got) == len(video)
    assert hashlib.sha256(got).digest() == hashlib.sha256(video).digest(), "reassembled file differs"
    return cuts


async def test_killed_media_node_fails_over_and_cut_streams_resume(
    cluster: ClusterRun, through: Through, library: tuple[dict, dict], video: bytes
) -> None:
    plan, movie = library
    viewer = await through.paying_viewer(plan["id"])
    await through.watchable(viewer, movie["id"])
    url = await through.playback(viewer, movie["id"])
    # The streams below flow over the media nodes' unix sockets (the cluster's default).
    config = (cluster.var_dir / "cluster" / "nginx" / "nginx.conf").read_text()
    assert config.count("server unix:") == len(cluster.media_ports())

    streams = 6
    killed = asyncio.Event()
    progress = [0] * streams
    readers = [
        asyncio.create_task(_reader(through, url, video, killed, progress, i)) for i in range(streams)
    ]
    await wait_for(lambda: min(progress) >= 256 * 1024 or any(r.done() for r in readers), 30,
                   "every stream flowing")  # fmt: skip
    assert not any(r.done() for r in readers), [r.result() for r in readers if r.done()]
    victim = cluster.signal("media-2", signal.SIGKILL)
    killed.set()

    # Requests that start after the kill: every one answered, exactly.
    rng = random.Random(7)
    failures: list[str] = []

    async def ranged(n: int) -> None:
        for _ in range(n):
            first = rng.randrange(0, len(video) - 1)
            last = min(len(video) - 1, first + rng.randrange(1, 512 * 1024))
            status, body, _ = await through.read(url, first, last)
            if status != 206 or body != video[first : last + 1]:
                failures.append(f"bytes={first}-{last}: {status}, {len(body)} bytes")

    await asyncio.gather(*(ranged(6) for _ in range(5)))
    assert not failures, failures
    cuts = await asyncio.gather(*readers)
    assert sum(cuts) >= 1, "no stream was on the killed node"

    # The cluster kept running, logged the death and started the node again.
    assert cluster.alive()

    def restarted() -> bool:
        entry = cluster.pids()["children"]["media-2"]
        return entry["state"] == "running" and entry["pid"] != victim and entry["restarts"] == 1

    await wait_for(restarted, 15, "media-2 restarted")
    logged = f"media-2 (pid {victim}) was killed by SIGKILL; the other media nodes keep serving"
    assert logged in cluster.log()
    async with aiohttp.ClientSession() as http:

        async def ready() -> bool:
            return await status_of(http, cluster.node_url("media-2") + "/readyz") == 200

        await wait_for(ready, 30, "restarted media-2 ready")


async def test_every_media_node_down_gives_a_fast_502(
    cluster: ClusterRun, through: Through, library: tuple[dict, dict]
) -> None:
    plan, movie = library
    viewer = await through.paying_viewer(plan["id"])
    await through.watchable(viewer, movie["id"])
    url = await through.playback(viewer, movie["id"])
    status, _, _ = await through.read(url, 0, 99)
    assert status == 206

    for name in ("media-1", "media-2", "media-3"):
        cluster.signal(name, signal.SIGTERM)  # an operator's stop: not restarted
    await wait_for(lambda: not any(port_open(p) for p in cluster.media_ports()), 30,
                   "media ports closed")  # fmt: skip

    for _ in range(5):
        started = time.monotonic()
        async with through.http.get(url, headers={"Range": "bytes=0-99"}) as response:
            problem = await response.json(content_type=None)
            elapsed = time.monotonic() - started
        # The proxy timeouts are 1 s (connect) and 300 s (read); a refused
        # connection must not wait for either.
        assert response.status == 502 and elapsed < 0.5, (response.status, elapsed)
        assert response.headers["Content-Type"] == "application/problem+json"
        assert problem["code"] == "upstream_unavailable" and response.headers["Retry-After"]

    # Everything else keeps working, and the stopped nodes stay stopped.
    await through.anon.ok("GET", f"/api/movies/{movie['id']}")

    def media_states() -> set[str]:
        children = cluster.pids()["children"]
        return {children[f"media-{i}"]["state"] for i in (1, 2, 3)}

    await wait_for(lambda: media_states() == {"stopped"}, 30, "media nodes exited")
    await asyncio.sleep(1.5)  # longer than the first restart back-off
    assert media_states() == {"stopped"} and cluster.alive()
    assert "media-1 (pid" in cluster.log() and "exited with status 0; left stopped" in cluster.log()


def test_no_token_or_password_reached_a_log_file(cluster: ClusterRun, through: Through) -> None:
    assert len(through.secrets) > 3
    assert not cluster.logs_containing(through.secrets)
