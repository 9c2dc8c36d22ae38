"""What `reelgate cluster` tells nginx: the media nodes' unix sockets (the
listener each node binds, where the sockets live) and the sign-in limit. (The
cluster tests in test_cluster.py and test_faults.py stream through these
sockets end to end.)"""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from reelgate.balancer import render
from reelgate.cli import unix_listener
from reelgate.cluster import Cluster, ClusterError, Ports, loopback
from reelgate.config import Settings


def cluster_in(var_dir: Path, **kwargs) -> Cluster:  # type: ignore[no-untyped-def]
    settings = Settings(var_dir=var_dir, database_url="postgresql://x/y", redis_url="redis://x")
    return Cluster(settings, media_nodes=2, ports=Ports(), **kwargs)


def test_the_listener_is_connectable_by_anyone_and_replaces_a_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "media-1.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a killed node leaves its socket file behind
    sock = unix_listener(path)
    try:
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666  # nginx's workers are another user
        sock.listen()
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(path))
        client.close()
    finally:
        sock.close()


def test_the_listener_never_replaces_a_file_that_is_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "media-1.sock"
    path.write_text("not a socket")
    with pytest.raises(OSError):
        unix_listener(path)
    assert path.read_text() == "not a socket"


async def test_a_node_answers_http_on_its_socket(tmp_path: Path) -> None:
    app = web.Application()
    app.router.add_get("/readyz", lambda _: web.Response(text="ok"))
    runner = web.AppRunner(app)
    await runner.setup()
    sock = unix_listener(tmp_path / "node.sock")
    await web.SockSite(runner, sock).start()
    try:
        connector = aiohttp.UnixConnector(path=str(tmp_path / "node.sock"))
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.get("http://node/readyz") as response,
        ):
            assert (response.status, await response.text()) == (200, "ok")
    finally:
        await runner.cleanup()


def test_media_nodes_listen_on_sockets_and_the_balancer_uses_them(tmp_path: Path) -> None:
    cluster = cluster_in(tmp_path / "var")
    media = [child for child in cluster.plan() if child.name.startswith("media-")]
    for child in media:
        assert child.argv[-2:] == ["--unix-socket", str(cluster.media_socket(child.name))]
        assert "--port" in child.argv  # still on TCP too: health checks, operators
    assert cluster.topology().media == [f"unix:{cluster.media_socket(c.name)}" for c in media]
    # Another machine's view (docker-compose) stays on TCP.
    assert cluster.topology(where=lambda name, port: f"{name}:{port}").media == [
        f"media-1:{Ports().media_base}", f"media-2:{Ports().media_base + 1}"]  # fmt: skip


def test_over_tcp_when_asked(tmp_path: Path) -> None:
    cluster = cluster_in(tmp_path / "var", media_sockets=False)
    assert all("--unix-socket" not in child.argv for child in cluster.plan())
    assert cluster.topology(where=loopback).media == ["127.0.0.1:8101", "127.0.0.1:8102"]


def test_sockets_go_to_a_reachable_short_directory(tmp_path: Path) -> None:
    # pytest's tmp_path sits under a 0700 directory, which nginx's workers cannot
    # pass: the sockets then go to a directory of this cluster's own in /tmp.
    hidden = cluster_in(tmp_path / "var")
    assert not str(hidden.socket_dir).startswith(str(tmp_path))
    assert hidden.socket_dir == cluster_in(tmp_path / "var").socket_dir  # stable

    # Decided once: benchmarks/scaling.py opens its work directory to nginx's
    # workers while its cluster runs, and the sockets are still removed from
    # where they were made.
    closed = Path(tempfile.mkdtemp(prefix="reelgate-test-"))  # 0700, in /tmp
    try:
        cluster = cluster_in(closed / "var")
        made_in = cluster.socket_dir
        assert not str(made_in).startswith(str(closed))
        closed.chmod(0o755)
        assert cluster_in(closed / "var").socket_dir == closed / "var" / "cluster" / "sockets"
        assert cluster.socket_dir == made_in
    finally:
        closed.rmdir()
    assert hidden.socket_dir != cluster_in(tmp_path / "other").socket_dir  # per cluster
    open_dir = Path("/tmp") / f"reelgate-test-{os.getpid()}"
    open_dir.mkdir(mode=0o755)
    try:
        open_dir.chmod(0o755)
        assert cluster_in(open_dir / "var").socket_dir == open_dir / "var" / "cluster" / "sockets"
        deep = open_dir / ("x" * 120)
        assert not str(cluster_in(deep).socket_dir).startswith(str(deep))  # 108-byte limit
    finally:
        open_dir.rmdir()


def test_a_socket_directory_someone_else_made_is_refused(tmp_path: Path) -> None:
    cluster = cluster_in(tmp_path / "var")
    target = tmp_path / "elsewhere"
    target.mkdir()
    cluster.socket_dir.symlink_to(target)  # planted in /tmp before the cluster starts
    try:
        with pytest.raises(ClusterError, match="not this user's directory"):
            cluster._prepare_socket_dir()
    finally:
        cluster.socket_dir.unlink()


def test_the_sign_in_limit_per_address_is_the_operators_choice(tmp_path: Path) -> None:
    default = render(cluster_in(tmp_path / "var").topology())
    assert "rate=30r/m" in default and "burst=20 nodelay" in default
    # Behind a NAT or in a load test, many viewers share one address.
    raised = render(cluster_in(tmp_path / "var", login_rate="600r/m", login_burst=100).topology())
    assert "rate=600r/m" in raised and "burst=100 nodelay" in raised
