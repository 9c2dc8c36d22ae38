"""A throwaway Reelgate to load-test, and a movie library in it.

`running_system()` prefers the cluster (`reelgate cluster`: every node a
process behind nginx, against a PostgreSQL and a Redis of its own started by
tests/harness), because the load test is about the balancer; it falls back
to `reelgate demo` (one process, SQLite, no nginx) when the cluster cannot
start here, and says why. `seed_library()` makes sure the system has a plan
with every movie and a few real movies (made with ffmpeg, cached).

The demo would seed its own library at first start (three 20 s clips encoded
with ffmpeg: over a minute on a busy 2-core machine); we mark it seeded
beforehand and seed our own, smaller or larger, library the same way as for
the cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADMIN = ("loadtest-admin@example.com", "loadtest-admin-password")  # throwaway system only
BILLING_SECRET = "loadtest-billing-secret"  # throwaway system only
UP_LINES = {"cluster": "Reelgate cluster is up:", "demo": "Press Ctrl-C to stop."}


class SystemUnavailable(RuntimeError):
    pass


@dataclass
class System:
    kind: str  # "cluster" or "demo"
    url: str
    admin: tuple[str, str]
    billing_secret: str
    log_path: Path

    def environment(self) -> dict[str, str]:
        """What the locustfile needs to know about this system."""
        return {
            "LOADTEST_ADMIN_EMAIL": self.admin[0],
            "LOADTEST_ADMIN_PASSWORD": self.admin[1],
            "REELGATE_BILLING_SECRET": self.billing_secret,
        }


def _say(message: str) -> None:
    print(f"loadtest: {message}", file=sys.stderr, flush=True)


# Every simulated user comes from 127.0.0.1, where real viewers come from as many
# addresses: the per-address sign-in limits (the balancer's and the node's) would
# throttle the whole crowd as one client, so the throwaway system raises them.
# The per-account limit stays as it is.
ONE_ADDRESS_BALANCER = ("--login-rate", "6000r/m", "--login-burst", "1000")
ONE_ADDRESS_NODE = {"REELGATE_LOGIN_MAX_PER_ADDRESS": "100000"}


def _base_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REELGATE_VAR_DIR=str(workdir / "var"),
        REELGATE_ADMIN_EMAIL=ADMIN[0],
        REELGATE_ADMIN_PASSWORD=ADMIN[1],
        REELGATE_BILLING_SECRET=BILLING_SECRET,
        REELGATE_LOG_LEVEL=os.environ.get("REELGATE_LOG_LEVEL", "WARNING"),
    )
    for name in (
        "REELGATE_DATABASE_URL",
        "REELGATE_CATALOG_DATABASE_URL",
        "REELGATE_ENTITLEMENTS_DATABASE_URL",
        "REELGATE_REDIS_URL",
        "REELGATE_PORT",
    ):
        env.pop(name, None)
    return env


def _wait_up(process: subprocess.Popen[bytes], output: Path, line: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = output.read_text(errors="replace") if output.exists() else ""
        if line in text:
            return
        if process.poll() is not None:
            raise SystemUnavailable(f"exited with {process.returncode}:\n{text[-3000:]}")
        time.sleep(0.2)
    raise SystemUnavailable(
        f"not up after {timeout_s:.0f}s:\n{output.read_text(errors='replace')[-3000:]}"
    )


def _stop(process: subprocess.Popen[bytes], sig: int, timeout_s: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port_block(size: int) -> int:
    from tests.harness.ports import free_port, port_is_free

    for _ in range(200):
        base = free_port()
        if all(port_is_free(base + i) for i in range(1, size)):
            return base
    raise SystemUnavailable(f"no block of {size} free ports")


@contextlib.contextmanager
def running_cluster(workdir: Path, *, media_nodes: int = 3) -> Iterator[System]:
    """`reelgate cluster` on free ports with its own PostgreSQL and Redis."""
    try:
        from tests.harness.ports import free_port
        from tests.harness.services import PostgresServer, RedisServer
    except ImportError as exc:  # pragma: no cover - run from the repository root
        raise SystemUnavailable(f"tests/harness is not importable: {exc}") from exc
    for tool in ("nginx", "ffmpeg", "ffprobe"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemUnavailable(f"{tool} is not installed (scripts/install-system-deps.sh)")
    with contextlib.ExitStack() as stack:
        try:
            postgres = PostgresServer.start()
            stack.callback(postgres.stop)
            redis = RedisServer.start()
            stack.callback(redis.stop)
            database = postgres.create_database()
        except (RuntimeError, OSError) as exc:
            raise SystemUnavailable(f"no throwaway PostgreSQL/Redis: {exc}") from exc
        workdir.mkdir(parents=True, exist_ok=True)
        output = workdir / "cluster.log"
        balancer = free_port()
        argv = [
            sys.executable, "-m", "reelgate.cli", "cluster", "--media-nodes", str(media_nodes),
            "--port", str(balancer), "--catalog-port", str(free_port()),
            "--entitlements-port", str(free_port()),
            "--media-base-port", str(_free_port_block(media_nodes)),
            "--worker-port", str(free_port()), "--status-port", str(free_port()),
            *ONE_ADDRESS_BALANCER,
        ]  # fmt: skip
        env = _base_env(workdir)
        env.update(
            REELGATE_DATABASE_URL=postgres.dsn(database, driver=None), REELGATE_REDIS_URL=redis.url
        )
        env.update(ONE_ADDRESS_NODE)
        with output.open("wb") as out:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack.callback(_kill_leftovers, workdir / "var")
        stack.callback(_stop, process, signal.SIGTERM)
        _wait_up(process, output, UP_LINES["cluster"], timeout_s=180)
        yield System("cluster", f"http://127.0.0.1:{balancer}", ADMIN, BILLING_SECRET, output)


def _kill_leftovers(var_dir: Path) -> None:
    """Children the cluster recorded that still run (none after a clean stop)."""
    try:
        record = json.loads((var_dir / "cluster" / "pids.json").read_text())
    except (OSError, ValueError):
        return
    for child in record.get("children", {}).values():
        pid = child.get("pid")
        if pid and Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_demo(workdir: Path, *, env: dict[str, str] | None = None) -> Iterator[System]:
    """`reelgate demo` on a free port, data under `workdir`, not self-seeded."""
    from tests.harness.ports import free_port

    var = workdir / "var"
    var.mkdir(parents=True, exist_ok=True)
    (var / "demo-seeded").write_text("seeded by loadtests.system.seed_library\n")
    port = free_port()
    output = workdir / "demo.log"
    demo_env = {**_base_env(workdir), **ONE_ADDRESS_NODE, **(env or {})}
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reelgate.cli", "demo", "--port", str(port)],
            cwd=workdir,
            env=demo_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_up(process, output, UP_LINES["demo"], timeout_s=120)
        yield System("demo", f"http://127.0.0.1:{port}", ADMIN, BILLING_SECRET, output)
    finally:
        _stop(process, signal.SIGINT)


@contextlib.contextmanager
def running_system(workdir: Path, *, kind: str = "auto", media_nodes: int = 3) -> Iterator[System]:
    """The cluster (kind "cluster" or "auto"), else (kind "auto") the demo."""
    with contextlib.ExitStack() as stack:
        system = None
        if kind in ("auto", "cluster"):
            try:
                system = stack.enter_context(
                    running_cluster(workdir / "cluster", media_nodes=media_nodes)
                )
            except SystemUnavailable as exc:
                if kind == "cluster":
                    raise
                _say(f"the cluster cannot start here, falling back to the demo: {exc}")
        if system is None:
            system = stack.enter_context(running_demo(workdir / "demo"))
        yield system


# ---------------------------------------------------------------- the library


def make_movie(path: Path, *, seconds: float, height: int, bitrate: str, tone_hz: int) -> Path:
    """A real H.264/AAC MP4 at a steady bitrate (cached: made once per recipe)."""
    if path.exists():
        return path
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemUnavailable("ffmpeg is not installed (scripts/install-system-deps.sh)")
    path.parent.mkdir(parents=True, exist_ok=True)
    width = height * 16 // 9 // 2 * 2
    tmp = path.with_name(f".{path.name}.{os.getpid()}.mp4")
    subprocess.run(
        [ffmpeg, "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=25",
         "-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate=48000",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate, "-g", "50",
         "-c:a", "aac", "-b:a", "96k", "-shortest", "-movflags", "+faststart", str(tmp)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    os.replace(tmp, path)
    return path


class Client:
    """Just enough of the API for seeding (stdlib only)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token: str | None = None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, Any]:
        headers = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        payload = json.loads(raw) if raw[:1] in (b"{", b"[") else raw
        if status not in ok:
            raise RuntimeError(f"{method} {path}: {status} {str(payload)[:300]}")
        return status, payload

    def login(self, email: str, password: str) -> None:
        for _ in range(30):
            status, pair = self.call(
                "POST", "/api/auth/login", {"email": email, "password": password}, ok=(200, 429)
            )
            if status == 200:
                self.token = pair["access_token"]
                return
            time.sleep(2)
        raise RuntimeError("admin login: still rate-limited")


def seed_library(
    system: System,
    *,
    movies: int = 3,
    seconds: float = 30,
    height: int = 720,
    bitrate: str = "4M",
    cache_dir: Path,
) -> dict[str, Any]:
    """A plan with every genre and at least `movies` ready movies; returns
    {plan_id, movie_ids}. Idempotent: what is there already is kept."""
    admin = Client(system.url)
    admin.login(*system.admin)
    plans = admin.call("GET", "/api/plans?per_page=100")[1]["items"]
    wildcard = [p for p in plans if "*" in p["genres"] and (p["max_height"] or 0) >= height]
    if wildcard:
        plan = wildcard[0]
    else:
        plan = admin.call("POST", "/api/plans", {
            "name": "Everything (load test)", "price_cents": 999, "currency": "EUR",
            "max_streams": 2, "max_height": 2160, "genres": ["*"]}, ok=(201,))[1]  # fmt: skip
    ready = admin.call("GET", "/api/movies?status=ready&per_page=100")[1]["items"]
    for index in range(len(ready), movies):
        clip = make_movie(
            cache_dir / f"movie-{seconds:g}s-{height}p-{bitrate}-{index}.mp4",
            seconds=seconds,
            height=height,
            bitrate=bitrate,
            tone_hz=330 + 110 * index,
        )
        movie = admin.call("POST", "/api/movies", {
            "title": f"Load Test Feature {index + 1}", "genres": ["documentary"],
            "release_year": 2020 + index % 6,
            "description": f"A {seconds:g} s test pattern at {bitrate}bit/s for the load test."},
            ok=(201,))[1]  # fmt: skip
        admin.call(
            "PUT",
            f"/api/movies/{movie['id']}/media",
            data=clip.read_bytes(),
            headers={"Content-Type": "video/mp4"},
        )
    ready_ids = {
        m["id"] for m in admin.call("GET", "/api/movies?status=ready&per_page=100")[1]["items"]
    }
    # New movies join a "*" plan through events (asynchronous in the cluster);
    # movies older than the plan are added by hand.
    deadline = time.monotonic() + 60
    while True:
        included = set(
            admin.call("GET", f"/api/plans/{plan['id']}/movies?per_page=100")[1]["items"]
        )
        missing = ready_ids - included
        if not missing:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"plan {plan['name']} still misses {len(missing)} movie(s)")
        time.sleep(1)
        for movie_id in missing:
            admin.call("PUT", f"/api/plans/{plan['id']}/movies/{movie_id}", ok=(200, 204, 404))
    _check_watchable(system, plan["id"], ready_ids)
    return {"plan_id": plan["id"], "movie_ids": sorted(ready_ids)}


def _check_watchable(system: System, plan_id: str, movie_ids: set[str]) -> None:
    """A paying viewer sees every movie (the entitlements side has caught up)."""
    viewer = Client(system.url)
    email, password = f"loadtest-seed-{uuid.uuid4().hex[:10]}@example.com", uuid.uuid4().hex
    viewer.call(
        "POST",
        "/api/auth/register",
        {"email": email, "password": password, "name": "Seed check"},
        ok=(201,),
    )
    viewer.login(email, password)
    subscription = viewer.call("POST", "/api/subscriptions", {"plan_id": plan_id}, ok=(201,))[1]
    raw = json.dumps(
        {
            "type": "payment_succeeded",
            "subscription_id": subscription["id"],
            "amount_cents": 999,
            "event_id": f"loadtest-seed-{uuid.uuid4()}",
        }
    ).encode()
    signature = hmac.new(system.billing_secret.encode(), raw, hashlib.sha256).hexdigest()
    Client(system.url).call(
        "POST",
        "/api/billing/events",
        data=raw,
        headers={"Content-Type": "application/json", "X-Reelgate-Signature": f"sha256={signature}"},
    )
    deadline = time.monotonic() + 60
    while True:
        seen = {m["id"] for m in viewer.call("GET", "/api/me/movies?per_page=100")[1]["items"]}
        if movie_ids <= seen:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(movie_ids - seen)} movie(s) never became watchable")
        time.sleep(0.5)
