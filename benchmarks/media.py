"""Media node versus nginx: the same stored object, the same machine, the same run.

One media node runs as its own process (`reelgate media --port P`) with every
check on: a playback token from the entitlements node, the session lease in
Redis, the entitlement through `entitlements.client`, and the catalog's
resolver. The entitlements and catalog nodes are processes too, over a
throwaway PostgreSQL and Redis (tests/harness). Nothing the benchmark measures
shares an event loop with the load generator.

Data is set up through the public APIs only: admin login, a plan, a viewer, a
subscription paid by a signed billing webhook, a movie created and its media
(a real ~1 GiB H.264/AAC MP4 made with ffmpeg) ingested with
`PUT /api/movies/{id}/media`, then playback sessions started to get tokens
(heartbeats keep them alive during the run). nginx (one worker, sendfile on)
serves the stored object's file (`storage.local_path(key)`) under the same URL.

Load comes from wrk (a separate process, one thread) with a Lua script that
picks a random range and a random session token per request. By default the
load generator is pinned to CPU 0 and both servers to CPU 1, so each server
gets one core and neither competes with wrk (`--no-pin` turns that off).
Rounds alternate A/B/A/B (media node, nginx, ...); the medians are reported.

Workloads: random 64 KiB ranges and random 1 MiB ranges over 32 connections,
and whole-file reads. Then the media node's peak RSS while 200 slow clients
(a separate process) each read an open-ended stream of the 1 GiB object.

Not a pass/fail test: machines are noisy. Run:

    .venv/bin/python -m benchmarks.media [--rounds 3] [--duration 10]
        [--size-mib 1024] [--json results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from reelgate.auth import SERVICE_KEY_HEADER
from reelgate.db import make_engine
from reelgate.migrate import upgrade
from reelgate.tokens import load_or_create_private_key
from storage import LocalStorage
from tests.harness.ports import free_port
from tests.harness.services import PostgresServer, RedisServer, require_binary

KIB = 1024
MIB = 1024 * 1024
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-admin-password"
BILLING_SECRET = "bench-billing-secret"
SERVICE_KEY = "bench-service-key"
SESSIONS = 8  # playback sessions (tokens) the load is spread over


@dataclass(frozen=True)
class Workload:
    name: str
    range_bytes: int  # 0 = the whole file, no Range header
    connections: int
    timeout_s: int


# ---------------------------------------------------------------- processes


@dataclass
class Node:
    """One child process with its log file; stopped with SIGTERM, then SIGKILL."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path | None = None  # where `-m reelgate.cli` imports the code from
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.cwd,
            )

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def process_cpu_seconds(pid: int) -> float:
    """User + system time of a process and its children (nginx: the workers)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    total = 0
    for each in pids:
        with open(f"/proc/{each}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


NICE = 0  # set from --nice: the priority of the servers under test and of the load


def pinned(argv: list[str], cpu: int | None) -> list[str]:
    """argv run on one CPU (None: anywhere) at the benchmark's priority."""
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    return argv if NICE == 0 else ["nice", "-n", str(NICE), *argv]


async def wait_ready(
    http: aiohttp.ClientSession, node: Node, url: str, timeout_s: float = 60, method: str = "GET"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert node.process is not None
        if node.process.poll() is not None:
            raise RuntimeError(f"{node.name} exited:\n{node.tail()}")
        try:
            async with http.request(method, url) as response:
                if response.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{node.name} not ready after {timeout_s:.0f}s:\n{node.tail()}")


def proc_status_kib(pid: int, field_name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def reset_peak_rss(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")


# ---------------------------------------------------------------- test video


def make_video(work: Path, size_mib: int) -> Path:
    """A real H.264/AAC MP4 of about `size_mib` MiB, made quickly: a 10 s lossless
    1080p clip (~40 MB), then looped by stream copy up to the size."""
    ffmpeg = require_binary("ffmpeg")
    clip, big = work / "clip.mp4", work / "movie.mp4"
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
         "-f", "lavfi", "-i", "sine=f=440", "-t", "10", "-c:v", "libx264", "-preset", "ultrafast",
         "-qp", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", str(clip)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-stream_loop", "-1", "-i", str(clip), "-c", "copy",
         "-fs", str(size_mib * MIB), str(big)],
        check=True, capture_output=True,
    )  # fmt: skip
    clip.unlink()
    return big


async def file_chunks(path: Path, chunk: int = 4 * MIB) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    with path.open("rb") as handle:
        while data := await loop.run_in_executor(None, handle.read, chunk):
            yield data


def warm_page_cache(path: Path) -> None:
    with path.open("rb", buffering=0) as handle:
        while handle.read(8 * MIB):
            pass


# ---------------------------------------------------------------- data, via the APIs


@dataclass
class Library:
    movie_id: str
    key: str
    path: Path  # the stored object, as the media node's storage resolves it
    size: int
    sessions: list[dict[str, Any]]
    viewer_token: str
    stream_paths: list[str] = field(default_factory=list)


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str | None = None,
    status: int = 200,
    **kwargs: Any,
) -> Any:
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with http.request(method, url, headers=headers, **kwargs) as response:
        body = await response.read()
        if response.status != status:
            raise RuntimeError(f"{method} {url}: {response.status} {body[:500]!r}")
        return json.loads(body) if body else None


async def set_up_library(
    http: aiohttp.ClientSession, ent: str, cat: str, video: Path, storage: LocalStorage
) -> Library:
    admin = (
        await call(
            http,
            "POST",
            f"{ent}/api/auth/login",
            json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        )
    )["access_token"]
    plan = await call(http, "POST", f"{ent}/api/plans", token=admin, status=201, json={
        "name": "Bench", "price_cents": 999, "currency": "EUR", "max_streams": SESSIONS,
        "max_height": 2160, "genres": ["*"]})  # fmt: skip
    email, password = f"viewer-{uuid.uuid4().hex[:8]}@example.com", "viewer-password-1"
    user = await call(
        http,
        "POST",
        f"{ent}/api/auth/register",
        status=201,
        json={"email": email, "password": password, "name": "Bench Viewer"},
    )
    viewer = (
        await call(
            http, "POST", f"{ent}/api/auth/login", json={"email": email, "password": password}
        )
    )["access_token"]
    subscription = await call(
        http,
        "POST",
        f"{ent}/api/subscriptions",
        token=viewer,
        status=201,
        json={"plan_id": plan["id"]},
    )
    raw = json.dumps(
        {
            "type": "payment_succeeded",
            "subscription_id": subscription["id"],
            "amount_cents": 999,
            "event_id": uuid.uuid4().hex,
        }
    ).encode()
    signature = "sha256=" + hmac.new(BILLING_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    await call(http, "POST", f"{ent}/api/billing/events", data=raw, headers={
        "Content-Type": "application/json", "X-Reelgate-Signature": signature})  # fmt: skip

    movie = await call(
        http,
        "POST",
        f"{cat}/api/movies",
        token=admin,
        status=201,
        json={"title": "Benchmark Movie", "genres": ["drama"]},
    )
    started = time.perf_counter()
    movie = await call(
        http,
        "PUT",
        f"{cat}/api/movies/{movie['id']}/media",
        token=admin,
        data=file_chunks(video),
        headers={"Content-Type": "video/mp4"},
        timeout=aiohttp.ClientTimeout(total=600),
    )
    print(
        f"ingested {movie['media']['size_bytes'] / MIB:.0f} MiB "
        f"({movie['media']['width']}x{movie['media']['height']} {movie['media']['video_codec']}) "
        f"in {time.perf_counter() - started:.1f}s",
        flush=True,
    )

    for _ in range(600):  # the entitlements projection learns the movie from catalog events
        decision = await call(
            http,
            "GET",
            f"{ent}/api/entitlements/check?user_id={user['id']}&movie_id={movie['id']}",
            token=admin,
        )
        if decision["allowed"]:
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError(f"movie never became watchable: {decision}")

    # Where the media node will find the bytes: the catalog's answer to its resolver.
    located = await call(
        http,
        "GET",
        f"{cat}/internal/movies/{movie['id']}/media",
        headers={SERVICE_KEY_HEADER: SERVICE_KEY},
    )
    sessions = [
        await call(
            http,
            "POST",
            f"{ent}/api/playback",
            token=viewer,
            status=201,
            json={"movie_id": movie["id"], "client_id": f"bench-{index}"},
        )
        for index in range(SESSIONS)
    ]
    path = storage.local_path(located["key"])
    return Library(
        movie_id=movie["id"],
        key=located["key"],
        path=path,
        size=path.stat().st_size,
        sessions=sessions,
        viewer_token=viewer,
        stream_paths=[session["stream_url"] for session in sessions],
    )


async def keep_sessions_alive(http: aiohttp.ClientSession, ent: str, library: Library) -> None:
    interval = max(1.0, library.sessions[0]["heartbeat_interval_s"] / 3)
    while True:
        await asyncio.sleep(interval)
        for session in library.sessions:
            try:
                await call(
                    http,
                    "POST",
                    f"{ent}/api/playback/{session['session_id']}/heartbeat",
                    token=library.viewer_token,
                    json={"position_s": 1},
                )
            except (RuntimeError, aiohttp.ClientError, TimeoutError) as exc:
                print(f"heartbeat failed: {exc}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- nginx


NGINX_CONF = """\
worker_processes {workers};
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ }}
    default_type video/mp4;
    sendfile on;
    # tcp_nopush stays at its default (off): with it on, every response smaller than the
    # socket buffer waited ~40 ms for the cork timer on this kernel (6.x, loopback), so
    # nginx looked 10x slower than it is. The baseline should be nginx at its best.
    keepalive_timeout 65s;
    keepalive_requests 10000000;
    server_tokens off;
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    # One line per request, like the media node (and without the query string).
    log_format bench '$remote_addr [$time_iso8601] "$request_method $uri" $status '
                     '$body_bytes_sent $request_time';
    access_log {run}/access.log bench;
    server {{
        listen 127.0.0.1:{port};
        location = /stream/{movie_id} {{
            alias {path};
        }}
    }}
}}
"""


def nginx_node(
    work: Path, port: int, library: Library, cpu: int | None, workers: str = "1"
) -> Node:
    run = work / "nginx"
    run.mkdir(exist_ok=True)
    conf = run / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            run=run, port=port, movie_id=library.movie_id, path=library.path, workers=workers
        )
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    checked = subprocess.run(
        [nginx, "-t", "-p", str(run), "-c", str(conf)], check=False, capture_output=True, text=True
    )
    if checked.returncode != 0:
        raise RuntimeError(f"nginx rejected its config:\n{checked.stderr}")
    return Node(
        "nginx",
        pinned([nginx, "-p", str(run), "-c", str(conf)], cpu),
        dict(os.environ),
        work / "logs" / "nginx.log",
    )


# ---------------------------------------------------------------- load generation


WRK_SCRIPT = """\
local paths = {{ {paths} }}
local size = {size}
local len = {length}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + seed)
end

function request()
  local path = paths[math.random(#paths)]
  if len == 0 then
    return wrk.format("GET", path)
  end
  local first = math.random(0, size - len)
  return wrk.format("GET", path, {{ ["Range"] = "bytes=" .. first .. "-" .. (first + len - 1) }})
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {{"requests": %d, "bytes": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.bytes, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def write_wrk_script(work: Path, workload: Workload, library: Library) -> Path:
    paths = ", ".join(json.dumps(p) for p in library.stream_paths)
    script = work / f"wrk-{workload.name.replace(' ', '-')}.lua"
    script.write_text(
        WRK_SCRIPT.format(paths=paths, size=library.size, length=workload.range_bytes)
    )
    return script


async def run_wrk(
    port: int, script: Path, workload: Workload, duration_s: float, cpu: int | None, node: Node,
    threads: int = 1,
) -> dict[str, float]:  # fmt: skip
    argv = pinned(
        ["wrk", f"-t{threads}", f"-c{workload.connections}", f"-d{duration_s:g}s",
         f"--timeout={workload.timeout_s}s", "-s", str(script), f"http://127.0.0.1:{port}"],
        cpu,
    )  # fmt: skip
    cpu_before = node.cpu_seconds()
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    cpu_used = node.cpu_seconds() - cpu_before
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{text}")
    raw = json.loads(line[len("BENCH ") :])
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "load": os.getloadavg()[0],
        "cpu_ms_per_gb": cpu_used / max(1, raw["bytes"]) * 1e12,
        "rps": raw["requests"] / seconds,
        "mbps": raw["bytes"] / seconds / 1e6,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "cpu_us": cpu_used / max(1, raw["requests"]) * 1e6,
        "errors": errors,
        "requests": raw["requests"],
    }


async def check_same_bytes(http: aiohttp.ClientSession, base: str, library: Library) -> None:
    """Both servers answer a random range with 206 and the stored object's bytes."""
    rng = random.Random(7)
    with library.path.open("rb") as handle:
        for length in (1, 65536, MIB):
            first = rng.randrange(0, library.size - length)
            handle.seek(first)
            expected = handle.read(length)
            url = base + library.stream_paths[0]
            headers = {"Range": f"bytes={first}-{first + length - 1}"}
            async with http.get(url, headers=headers) as response:
                body = await response.read()
                if response.status != 206 or body != expected:
                    raise RuntimeError(f"{base}: {response.status}, wrong bytes for {headers}")


# ---------------------------------------------------------------- slow clients (RSS)


async def slow_stream(
    port: int, path: str, first: int | None, rate: int, until: float
) -> tuple[int, int]:
    """Read one open-ended stream at about `rate` bytes/s until `until`; (status, bytes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=256 * KIB)
    range_line = "" if first is None else f"Range: bytes={first}-\r\n"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{range_line}\r\n".encode())
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    received, tick = 0, 0.05
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        data = await reader.read(max(1, int(rate * tick)))
        if not data:
            break
        received += len(data)
        await asyncio.sleep(tick)
    writer.close()
    return status, received


async def slow_clients_main(args: argparse.Namespace) -> None:
    paths = json.loads(args.paths)
    rng = random.Random(11)
    until = asyncio.get_running_loop().time() + args.seconds
    results = await asyncio.gather(
        *(
            slow_stream(
                args.port,
                paths[i % len(paths)],
                None if i % 4 == 0 else rng.randrange(0, args.size // 2),
                args.rate,
                until,
            )
            for i in range(args.streams)
        ),
        return_exceptions=True,
    )
    ok = [r for r in results if isinstance(r, tuple) and r[0] in (200, 206)]
    failed = [repr(r) for r in results if not (isinstance(r, tuple) and r[0] in (200, 206))]
    print(json.dumps({"ok": len(ok), "bytes": sum(r[1] for r in ok), "failed": failed[:5]}))


async def measure_rss(
    media: Node,
    port: int,
    library: Library,
    streams: int,
    seconds: float,
    rate: int,
    cpu: int | None,
) -> dict[str, Any]:
    idle_kib = proc_status_kib(media.pid, "VmRSS")
    reset_peak_rss(media.pid)
    argv = pinned(
        [sys.executable, "-m", "benchmarks.media", "slow-clients", "--port", str(port),
         "--paths", json.dumps(library.stream_paths), "--size", str(library.size),
         "--streams", str(streams), "--seconds", str(seconds), "--rate", str(rate)],
        cpu,
    )  # fmt: skip
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    samples = []
    while process.returncode is None:
        samples.append(proc_status_kib(media.pid, "VmRSS"))
        try:
            await asyncio.wait_for(process.wait(), 0.25)
        except TimeoutError:
            pass
    out, _ = await process.communicate()
    clients = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "streams": streams,
        "ok_streams": clients["ok"],
        "failed": clients["failed"],
        "client_mb": clients["bytes"] / 1e6,
        "seconds": seconds,
        "idle_mib": idle_kib / KIB,
        "peak_mib": proc_status_kib(media.pid, "VmHWM") / KIB,
        "max_sampled_mib": max(samples, default=0) / KIB,
    }


# ---------------------------------------------------------------- report


FEW = 10  # fewer completed requests than this in a round: no meaningful rate or latency


def summarize(runs: list[dict[str, float]], nginx: list[dict[str, float]]) -> dict[str, float]:
    """Medians over the rounds. The ratio to nginx is the median of per-round ratios: rounds
    alternate, so each run is compared with its neighbour under the same host load."""
    summary = {
        key: statistics.median(run[key] for run in runs)
        for key in ("rps", "mbps", "p50_ms", "p99_ms", "cpu_us", "cpu_ms_per_gb", "requests")
    }
    ratios = [run["mbps"] / other["mbps"] for run, other in zip(runs, nginx, strict=True)]
    return summary | {
        "x_nginx": statistics.median(ratios),
        "x_nginx_min": min(ratios),
        "x_nginx_max": max(ratios),
        "errors": sum(run["errors"] for run in runs),
        "rounds": len(runs),
    }


def print_table(results: dict[str, dict[str, dict[str, float]]], servers: list[str]) -> None:
    header = (
        f"{'workload':<15}{'server':<8}{'req/s':>8}{'MB/s':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'CPU us/req':>11}{'CPU ms/GB':>10}{'err':>5}{'x nginx (min-max)':>20}"
    )
    print(header)
    print("-" * len(header))
    for workload, rows in results.items():
        for server in servers:
            row = rows[server]
            timed = row["requests"] >= FEW
            rate = f"{row['rps']:.0f}" if timed else "-"
            p50 = f"{row['p50_ms']:.1f}" if timed else "-"
            p99 = f"{row['p99_ms']:.1f}" if timed else "-"
            per_request = f"{row['cpu_us']:.0f}" if timed else "-"
            spread = f"{row['x_nginx']:.2f} ({row['x_nginx_min']:.2f}-{row['x_nginx_max']:.2f})"
            print(
                f"{workload:<15}{server:<8}{rate:>8}{row['mbps']:>7.0f}{p50:>8}{p99:>8}"
                f"{per_request:>11}{row['cpu_ms_per_gb']:>10.0f}{row['errors']:>5.0f}{spread:>20}"
            )


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "ram_gib": f"{total_kib / MIB:.1f}",
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
    }


# ---------------------------------------------------------------- main


async def hold(
    work: Path, ports: dict[str, int], servers: dict[str, Node], library: Library
) -> None:
    """--hold: leave everything running for profiling by hand, until SIGINT/SIGTERM."""
    for workload in (Workload("64k", 64 * KIB, 32, 10), Workload("1m", MIB, 32, 10)):
        write_wrk_script(work, workload, library)
    for name, node in servers.items():
        print(f"{name}: pid {node.pid}, port {ports[name]}")
    print(
        f"  wrk -t1 -c32 -d10s -s {work}/wrk-64k.lua http://127.0.0.1:<port>\n"
        f"  py-spy record -p <pid> -d 10 -o profile.svg",
        flush=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()


def node_environment(
    work: Path, database: str, redis_url: str, ports: dict[str, int]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGATE_")}
    env.update({
        "REELGATE_VAR_DIR": str(work / "var"),
        "REELGATE_DATABASE_URL": database,
        "REELGATE_REDIS_URL": redis_url,
        "REELGATE_STORAGE_URL": str(work / "storage"),
        "REELGATE_JWT_PRIVATE_KEY_FILE": str(work / "keys" / "jwt-ed25519.pem"),
        "REELGATE_ENTITLEMENTS_URL": f"http://127.0.0.1:{ports['entitlements']}",
        "REELGATE_CATALOG_URL": f"http://127.0.0.1:{ports['catalog']}",
        "REELGATE_SERVICE_KEY": SERVICE_KEY,
        "REELGATE_BILLING_SECRET": BILLING_SECRET,
        "REELGATE_ADMIN_EMAIL": ADMIN_EMAIL,
        "REELGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        # The run outlasts the default 15 min access token used for heartbeats.
        "REELGATE_ACCESS_TOKEN_TTL_S": "86400",
    })  # fmt: skip
    return env


async def main(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    pin = (os.cpu_count() or 1) >= 2 and not args.no_pin
    load_cpu, server_cpu = (0, 1) if pin else (None, None)
    work = Path(tempfile.mkdtemp(prefix="reelgate-bench-media-"))
    work.chmod(0o755)  # nginx workers run as nobody and must reach the object file
    (work / "logs").mkdir()
    postgres, redis = PostgresServer.start(), RedisServer.start()
    nodes: list[Node] = []
    heartbeat: asyncio.Task[None] | None = None
    try:
        print(f"machine: {machine()}; work dir {work}", flush=True)
        started = time.perf_counter()
        video = Path(args.video) if args.video else make_video(work, args.size_mib)
        print(
            f"video: {video.stat().st_size / MIB:.0f} MiB in {time.perf_counter() - started:.1f}s",
            flush=True,
        )

        database = postgres.dsn(postgres.create_database())
        for service in ("entitlements", "catalog"):
            engine = make_engine(database)
            await upgrade(engine, service)
            await engine.dispose()
        load_or_create_private_key(work / "keys" / "jwt-ed25519.pem")
        names = ["entitlements", "catalog", "media", "nginx"]
        if args.baseline_tree:
            names.append("before")
        ports = {name: free_port() for name in names}
        env = node_environment(work, database, redis.url, ports)
        cli = [sys.executable, "-m", "reelgate.cli"]
        # The media node under test (and the baseline's) get the servers' CPU; the
        # entitlements and catalog nodes only answer cache misses and setup calls.
        nodes = [
            Node(
                name,
                pinned([*cli, kind, "--port", str(ports[name])], cpu),
                env,
                work / "logs" / f"{name}.log",
                cwd,
            )
            for name, kind, cpu, cwd in [
                ("entitlements", "entitlements", None, None),
                ("catalog", "catalog", None, None),
                ("media", "media", server_cpu, None),
                *(
                    [("before", "media", server_cpu, Path(args.baseline_tree))]
                    if args.baseline_tree
                    else []
                ),
            ]
        ]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            for group in (nodes[:2], nodes[2:]):  # media nodes load the JWKS at start-up
                for node in group:
                    node.start()
                for node in group:
                    await wait_ready(http, node, f"http://127.0.0.1:{ports[node.name]}/readyz")

            ent = f"http://127.0.0.1:{ports['entitlements']}"
            cat = f"http://127.0.0.1:{ports['catalog']}"
            library = await set_up_library(http, ent, cat, video, LocalStorage(work / "storage"))
            if not args.video:
                video.unlink()  # the stored object is what every server reads
            heartbeat = asyncio.create_task(keep_sessions_alive(http, ent, library))
            nginx = nginx_node(work, ports["nginx"], library, server_cpu)
            nodes.append(nginx)
            nginx.start()
            await wait_ready(
                http,
                nginx,
                f"http://127.0.0.1:{ports['nginx']}" + library.stream_paths[0],
                method="HEAD",
            )
            warm_page_cache(library.path)
            # Rotation order before, media, nginx: media runs next to nginx in every round.
            by_name = {node.name: node for node in nodes}
            servers = {
                name: by_name[name] for name in ("before", "media", "nginx") if name in by_name
            }
            for name in servers:
                await check_same_bytes(http, f"http://127.0.0.1:{ports[name]}", library)
            print(
                f"object {library.key} ({library.size / MIB:.0f} MiB), {SESSIONS} sessions; "
                f"pinned: load CPU {load_cpu}, servers CPU {server_cpu}",
                flush=True,
            )
            if args.hold:
                await hold(work, ports, servers, library)
                return

            workloads = [
                Workload("64 KiB ranges", 64 * KIB, args.connections, 10),
                Workload("1 MiB ranges", MIB, args.connections, 10),
                Workload("whole file", 0, args.whole_connections, 120),
            ]
            results: dict[str, dict[str, dict[str, float]]] = {}
            loads: list[float] = []
            for workload in workloads:
                script = write_wrk_script(work, workload, library)
                for name, node in servers.items():  # warm-up: connections, caches
                    await run_wrk(ports[name], script, workload, 2, load_cpu, node)
                runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
                for round_index in range(args.rounds):
                    for name, node in servers.items():  # interleaved: A/B/A/B...
                        run = await run_wrk(
                            ports[name], script, workload, args.duration, load_cpu, node
                        )
                        runs[name].append(run)
                        loads.append(run["load"])
                        print(
                            f"  {workload.name:<14} round {round_index + 1} {name:<6}"
                            f"{run['rps']:>9.1f} req/s{run['mbps']:>7.0f} MB/s"
                            f"  p99 {run['p99_ms']:7.2f} ms{run['cpu_us']:>7.0f} CPU us/req"
                            f"  errors {run['errors']:.0f}  load {run['load']:.1f}",
                            flush=True,
                        )
                results[workload.name] = {
                    name: summarize(r, runs["nginx"]) for name, r in runs.items()
                }

            rss = {
                name: await measure_rss(
                    servers[name],
                    ports[name],
                    library,
                    args.rss_streams,
                    args.rss_seconds,
                    args.rss_rate_kib * KIB,
                    load_cpu,
                )
                for name in servers
                if name != "nginx"
            }

        print()
        print(
            f"media node (all checks on) vs nginx, medians of {args.rounds} interleaved rounds "
            f"of {args.duration:g}s; ranges over {args.connections} connections, whole file "
            f"over {args.whole_connections}. CPU: user+system time of the server process(es) "
            f"per request and per GB sent. x nginx: median (min-max) of per-round MB/s ratios. "
            f"Host load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f}."
        )
        print_table(results, list(servers))
        for name, peak in rss.items():
            print(
                f"\npeak RSS of {name} with {peak['ok_streams']}/{peak['streams']} slow "
                f"open-ended streams ({args.rss_rate_kib} KiB/s each, {peak['seconds']:g}s): "
                f"{peak['peak_mib']:.1f} MiB (idle before: {peak['idle_mib']:.1f} MiB; "
                f"{peak['client_mb']:.0f} MB delivered; target < 150 MB)"
            )
            if peak["failed"]:
                print(f"failed streams: {peak['failed']}")
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {"machine": machine(), "args": vars(args), "results": results, "rss": rss},
                    indent=2,
                )
            )
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
        for node in reversed(nodes):
            node.stop(signal.SIGQUIT if node.name == "nginx" else signal.SIGTERM)
        redis.stop()
        postgres.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.media",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command")
    slow = commands.add_parser("slow-clients", help="internal: the RSS test's client process")
    slow.add_argument("--port", type=int, required=True)
    slow.add_argument("--paths", required=True)
    slow.add_argument("--size", type=int, required=True)
    slow.add_argument("--streams", type=int, required=True)
    slow.add_argument("--seconds", type=float, required=True)
    slow.add_argument("--rate", type=int, required=True)
    parser.add_argument("--size-mib", type=int, default=1024, help="test video size")
    parser.add_argument("--video", help="ingest this video instead of making one")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--whole-connections", type=int, default=8)
    parser.add_argument("--rss-streams", type=int, default=200)
    parser.add_argument("--rss-seconds", type=float, default=20.0)
    parser.add_argument("--rss-rate-kib", type=int, default=2048, help="per slow stream")
    parser.add_argument("--no-pin", action="store_true", help="do not pin load and servers")
    parser.add_argument(
        "--nice",
        type=int,
        default=-5,
        help="priority of the servers under test and of wrk (root only; default -5, so that "
        "other work on a shared host disturbs less; 0 = unchanged)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--baseline-tree",
        metavar="DIR",
        help="also run a media node from this source tree (e.g. `git archive "
        "HEAD` of an older commit), interleaved as 'before'",
    )
    parser.add_argument(
        "--hold",
        action="store_true",
        help="set up, then keep every process running for profiling by hand",
    )
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    NICE = arguments.nice if os.geteuid() == 0 else 0
    if arguments.command == "slow-clients":
        asyncio.run(slow_clients_main(arguments))
    else:
        asyncio.run(main(arguments))
