"""`reelgate cluster` as an operator runs it, for the end-to-end and fault tests.

`running_cluster()` starts a PostgreSQL and a Redis of its own (so a test may
stop them without disturbing any other test), then `reelgate cluster
--media-nodes 3` as a subprocess on free ports, and waits for its "is up"
line. Tests talk to the system only through the balancer URL; operator-side
probes (`/readyz` of each node, `pids.json`, the nginx access log) are read
where an operator would read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.api import Api, sign
from tests.harness.ports import free_port, port_is_free
from tests.harness.services import PostgresServer, RedisServer, require_binary

ROOT = Path(__file__).resolve().parents[2]
ADMIN = ("admin@cluster.test", "admin-password-1")
BILLING_SECRET = "cluster-test-billing-secret"
MEDIA_NODES = 3
UP_LINE = "Reelgate cluster is up:"


def free_port_block(size: int) -> int:
    """A port p with p .. p+size-1 all free (media nodes listen on base + i)."""
    for _ in range(200):
        base = free_port()
        if all(port_is_free(base + i) for i in range(1, size)):
            return base
    raise RuntimeError(f"no block of {size} free ports")


def make_video(path: Path, seconds: float, *, noisy: bool) -> bytes:
    """A real MP4 (MPEG-4 video, AAC audio) made by ffmpeg. `noisy` frames do
    not compress: about 6 MB per second, for streams that last a while."""
    source = (
        "color=c=gray:s=640x360:r=25,noise=alls=80:allf=t+u"
        if noisy
        else "testsrc2=size=640x360:rate=25"
    )
    subprocess.run(
        [require_binary("ffmpeg"), "-v", "error", "-y",
         "-f", "lavfi", "-i", source,
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(seconds), "-c:v", "mpeg4", "-q:v", "2", "-c:a", "aac", "-shortest",
         "-movflags", "+faststart", str(path)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return path.read_bytes()


@dataclass
class ClusterRun:
    process: subprocess.Popen[bytes]
    var_dir: Path
    output: Path
    ports: dict[str, int]
    postgres: PostgresServer
    database: str
    redis: RedisServer
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['balancer']}"

    def media_ports(self) -> list[int]:
        return [self.ports["media_base"] + i for i in range(MEDIA_NODES)]

    def node_url(self, name: str) -> str:
        port = self.pids()["children"][name]["port"]
        return f"http://127.0.0.1:{port}"

    def pids(self) -> dict[str, Any]:
        return json.loads((self.var_dir / "cluster" / "pids.json").read_text())

    def child_pid(self, name: str) -> int:
        pid = self.pids()["children"][name]["pid"]
        assert pid, f"{name} is not running: {self.pids()['children'][name]}"
        port = self.pids()["children"][name]["port"]
        # The pid really is that child: a node's command line names its port,
        # nginx's its configuration under this cluster's directory.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        mark = str(self.var_dir) if name == "nginx" else f"--port\0{port}\0"
        assert mark.encode() in cmdline, cmdline
        return int(pid)

    def signal(self, name: str, sig: int) -> int:
        pid = self.child_pid(name)
        os.kill(pid, sig)
        return pid

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def access_log(self) -> list[str]:
        path = self.var_dir / "cluster" / "nginx" / "access.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def logs_containing(self, secrets: set[str]) -> list[str]:
        """Log files (every node's, nginx's, the cluster's own) naming a secret."""
        files = [self.output, *(self.var_dir / "cluster").rglob("*.log")]
        return [
            f"{path.name}: {secret[:12]}..."
            for path in files
            for secret in secrets
            if secret in path.read_text(errors="replace")
        ]

    def sql(self, statement: str) -> list[tuple]:
        return self.postgres.execute(statement, self.database)

    def alive(self) -> bool:
        return self.process.poll() is None


def _cluster_argv(ports: dict[str, int], balance: str) -> list[str]:
    return [
        sys.executable, "-m", "reelgate.cli", "cluster", "--media-nodes", str(MEDIA_NODES),
        "--balance", balance,
        "--port", str(ports["balancer"]), "--catalog-port", str(ports["catalog"]),
        "--entitlements-port", str(ports["entitlements"]),
        "--media-base-port", str(ports["media_base"]), "--worker-port", str(ports["worker"]),
        "--status-port", str(ports["status"]),
    ]  # fmt: skip


def _wait_up(process: subprocess.Popen[bytes], output: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = output.read_text(errors="replace") if output.exists() else ""
        if UP_LINE in text:
            return
        if process.poll() is not None:
            raise AssertionError(f"reelgate cluster exited with {process.returncode}:\n{text}")
        time.sleep(0.1)
    raise AssertionError(f"reelgate cluster not up after {timeout_s:.0f}s:\n{output.read_text()}")


def _leftovers(var_dir: Path) -> list[int]:
    """Pids the cluster recorded that still run (none, after a clean stop)."""
    try:
        record = json.loads((var_dir / "cluster" / "pids.json").read_text())
    except (OSError, ValueError):
        return []
    return [c["pid"] for c in record["children"].values() if c["pid"] and Path(f"/proc/{c['pid']}").exists()]


@contextlib.contextmanager
def running_cluster(
    workdir: Path, *, balance: str = "least_conn", env_overrides: dict[str, str] | None = None
) -> Iterator[ClusterRun]:
    postgres = PostgresServer.start()
    redis = RedisServer.start()
    database = postgres.create_database()
    var_dir = workdir / "var"
    output = workdir / "cluster.out"
    ports = {
        "balancer": free_port(), "catalog": free_port(), "entitlements": free_port(),
        "media_base": free_port_block(MEDIA_NODES), "worker": free_port(), "status": free_port(),
    }  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGATE_")}
    env.update(
        REELGATE_VAR_DIR=str(var_dir),
        REELGATE_DATABASE_URL=postgres.dsn(database, driver=None),
        REELGATE_REDIS_URL=redis.url,
        REELGATE_ADMIN_EMAIL=ADMIN[0],
        REELGATE_ADMIN_PASSWORD=ADMIN[1],
        REELGATE_BILLING_SECRET=BILLING_SECRET,
        REELGATE_SERVICE_KEY="cluster-test-service-key",
        # Cheap password hashing keeps logins fast; production uses the defaults.
        REELGATE_PASSWORD_MEMORY_KIB="1024",
        REELGATE_PASSWORD_TIME_COST="1",
        REELGATE_LOG_LEVEL="WARNING",
    )
    env.update(env_overrides or {})
    with output.open("wb") as out:
        process = subprocess.Popen(
            _cluster_argv(ports, balance), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run = ClusterRun(process, var_dir, output, ports, postgres, database, redis, env)
    try:
        _wait_up(process, output, timeout_s=120)
        yield run
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in _leftovers(var_dir):  # only if the cluster failed to stop its children
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        redis.stop()
        postgres.stop()


def module_cluster(name: str) -> Callable[..., Iterator[ClusterRun]]:
    """A `cluster` fixture: a test module's own `reelgate cluster`, which must
    still be up when the module is done."""

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRun]:
        with running_cluster(tmp_path_factory.mktemp(name)) as run:
            yield run
            assert run.alive(), f"the cluster stopped during the tests:\n{run.log()}"

    return cluster


def module_through(timeout_s: float) -> Callable[..., AsyncIterator[Through]]:
    """A `through` fixture: a client of the module's cluster, through its balancer."""

    @pytest.fixture(scope="module")
    async def through(cluster: ClusterRun) -> AsyncIterator[Through]:
        async with aiohttp.ClientSession(
            base_url=cluster.url, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as http:
            yield Through(http)

    return through


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


async def wait_for(condition, timeout_s: float, what: str, interval_s: float = 0.1):  # type: ignore[no-untyped-def]
    """Await `condition()` (sync or async) until truthy; its value, or AssertionError."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s}s (last: {last!r})")


async def status_of(http: aiohttp.ClientSession, url: str) -> int:
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


# ---------------------------------------------------------------- the API, through the balancer


@dataclass
class Viewer:
    api: Api
    user: dict
    subscription: dict
    sessions: list[dict] = field(default_factory=list)


class Through:
    """Everything a client does, through the balancer only."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.anon = Api(http)  # type: ignore[arg-type]  # a ClientSession with base_url
        self.secrets: set[str] = {ADMIN[1], "viewer-pass-1"}  # must never reach a log

    async def admin(self) -> Api:
        admin = await self.anon.login(*ADMIN)
        self.secrets.add(str(admin.token))
        return admin

    async def webhook(self, body: dict) -> tuple[int, Any]:
        raw = json.dumps(body).encode()
        status, data, _ = await self.anon.call(
            "POST", "/api/billing/events", data=raw,
            headers={"Content-Type": "application/json",
                     "X-Reelgate-Signature": sign(BILLING_SECRET, raw)},
        )  # fmt: skip
        return status, data

    async def pay(self, subscription_id: str) -> None:
        status, data = await self.webhook({
            "type": "payment_succeeded", "subscription_id": subscription_id,
            "amount_cents": 999, "event_id": f"evt-{uuid.uuid4().hex}",
        })  # fmt: skip
        assert status == 200, data

    async def paying_viewer(self, plan_id: str) -> Viewer:
        api, user = await self.anon.register_viewer()
        self.secrets.add(str(api.token))
        subscription = await api.ok("POST", "/api/subscriptions", {"plan_id": plan_id}, status=201)
        assert subscription["status"] == "pending_payment"
        await self.pay(subscription["id"])
        subscription = await api.ok("GET", f"/api/subscriptions/{subscription['id']}")
        assert subscription["status"] == "active"
        return Viewer(api, user, subscription)

    async def library(self, admin: Api, video: bytes, title: str) -> tuple[dict, dict]:
        """A plan with every genre and a movie with real media; (plan, movie)."""
        plan = await admin.ok("POST", "/api/plans", {
            "name": f"Everything {uuid.uuid4().hex[:6]}", "price_cents": 999, "currency": "EUR",
            "max_streams": 4, "max_height": 2160, "genres": ["*"]}, status=201)  # fmt: skip
        movie = await self.movie(admin, video, title)
        return plan, movie

    async def movie(self, admin: Api, video: bytes, title: str) -> dict:
        movie = await admin.ok(
            "POST", "/api/movies", {"title": title, "genres": ["documentary"]}, status=201
        )
        movie = await admin.ok("PUT", f"/api/movies/{movie['id']}/media", data=video,
                               headers={"Content-Type": "video/mp4"})
        assert movie["status"] == "ready"
        assert movie["media"]["size_bytes"] == len(video)
        assert movie["media"]["sha256"] == hashlib.sha256(video).hexdigest()
        return movie

    async def watchable(self, viewer: Viewer, movie_id: str, timeout_s: float = 20.0) -> None:
        async def listed() -> bool:
            data = await viewer.api.ok("GET", "/api/me/movies?per_page=100")
            return movie_id in {m["id"] for m in data["items"]}

        await wait_for(listed, timeout_s, f"movie {movie_id} in /api/me/movies", 0.2)

    async def playback(self, viewer: Viewer, movie_id: str) -> str:
        session = await viewer.api.ok("POST", "/api/playback", {"movie_id": movie_id}, status=201)
        viewer.sessions.append(session)
        self.secrets.add(session["token"])
        return str(session["stream_url"])

    async def read(
        self, stream_url: str, first: int | None = None, last: int | None = None,
        *, suffix: int | None = None,
    ) -> tuple[int, bytes, Any]:
        headers = {}
        if suffix is not None:
            headers["Range"] = f"bytes=-{suffix}"
        elif first is not None:
            headers["Range"] = f"bytes={first}-{'' if last is None else last}"
        async with self.http.get(stream_url, headers=headers) as response:
            return response.status, await response.read(), response.headers
