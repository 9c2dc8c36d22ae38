"""The whole path through the balancer with 1, 2 and 3 media nodes, against
nginx serving the same stored file directly: the same machine, the same run.

One `reelgate cluster --media-nodes 3` over a throwaway PostgreSQL and Redis
(the helper the cluster tests use), with the production log level (an access
line per request on every node and in nginx). Data goes in through the
balancer's public API: a plan, a paying viewer, a movie whose media (a real
H.264/AAC MP4 of `--size-mib`) is uploaded and ingested, and eight playback
sessions (tokens), kept alive by heartbeats. Every stream request runs every
check: token, session lease, entitlement, the catalog's resolver.

A second nginx (the same binary, `worker_processes auto` like the balancer's,
sendfile on, an access log) serves the stored object's file under the same
URL. wrk (one thread, 32 connections) asks for random ranges of `--range-kib`
with a random session token per request.

The pool size changes on the running cluster: the balancer's `upstream` block
is rewritten to its first N media nodes and nginx reloaded (SIGHUP), so every
configuration runs against the same processes and caches. Rounds rotate the
order of the four configurations (direct nginx, balancer with 1, 2, 3 nodes),
and each balancer run is compared with the direct run of its own round.
Nothing is pinned: on this 2-core machine wrk, nginx and the nodes share both
cores, as they would on one small host.

Numbers, not a pass/fail test. See docs/benchmarks.md, "Balancer: 1, 2 and 3
media nodes against nginx".

    .venv/bin/python -m benchmarks.scaling [--rounds 5] [--duration 10]
        [--size-mib 256] [--range-kib 1024] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import media
from reelgate.auth import SERVICE_KEY_HEADER
from reelgate.config import Settings
from storage import LocalStorage
from tests.cluster.support import MEDIA_NODES, ClusterRun, Through, running_cluster
from tests.harness.ports import free_port

SESSIONS = 8
DIRECT = "nginx direct"
BUFFER_LINES = re.compile(r"^\s*proxy_(buffer_size|buffers) [^\n]*\n", re.MULTILINE)
UPSTREAM = re.compile(r"(upstream reelgate_media \{\n\s*\S[^\n]*\n)((?:\s*server [^\n]*\n)+)")


TCP = f"balancer, {MEDIA_NODES} nodes over TCP"
BEFORE = f"balancer, {MEDIA_NODES} nodes over TCP, 4 KiB proxy buffer (before)"


def balancer_name(nodes: int) -> str:
    return f"balancer, {nodes} node{'s' if nodes > 1 else ''}"


@dataclass(frozen=True)
class Pool:
    """What a balancer configuration changes in the running cluster's nginx.conf."""

    nodes: int = MEDIA_NODES
    tcp: bool = False  # the nodes' TCP ports instead of their unix sockets
    default_buffer: bool = False  # nginx's default 4 KiB proxy buffer for /stream


def pool_of(name: str) -> Pool:
    if name == BEFORE:
        return Pool(tcp=True, default_buffer=True)
    if name == TCP:
        return Pool(tcp=True)
    return Pool(nodes=int(name.split()[1]))


class Processes:
    """CPU time of a set of processes (and their children: nginx workers)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def cpu_seconds(self) -> float:
        return sum(media.process_cpu_seconds(pid) for pid in self.pids)


def with_pool(config: str, pool: Pool, tcp_ports: list[int]) -> str:
    """The balancer's config with only the pool's first media nodes, reached as the
    pool says (the cluster's own config: unix sockets and a 64 KiB buffer)."""
    if pool.default_buffer:
        config = BUFFER_LINES.sub("", config)

    def first_n(match: re.Match[str]) -> str:
        servers = match.group(2).splitlines(keepends=True)
        if len(servers) != MEDIA_NODES:
            raise RuntimeError(f"expected {MEDIA_NODES} media nodes, found {servers}")
        if pool.tcp:
            servers = [f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;\n"
                       for port in tcp_ports]  # fmt: skip
        return match.group(1) + "".join(servers[: pool.nodes])

    text, count = UPSTREAM.subn(first_n, config)
    if count != 1:
        raise RuntimeError("the media upstream block was not found in the balancer's config")
    return text


def use_pool(cluster: ClusterRun, original: str, pool: Pool) -> None:
    """Point the running balancer at the pool (config rewritten, SIGHUP)."""
    config = cluster.var_dir / "cluster" / "nginx" / "nginx.conf"
    config.write_text(with_pool(original, pool, cluster.media_ports()))
    os.kill(cluster.child_pid("nginx"), signal.SIGHUP)
    time.sleep(1.5)  # old workers finish their requests, new ones take over


async def set_up(cluster: ClusterRun, http: aiohttp.ClientSession, work: Path, size_mib: int):
    """A watchable movie with SESSIONS live playback sessions: (library, viewer)."""
    through = Through(http)
    admin = await through.admin()
    plan = await admin.ok("POST", "/api/plans", {
        "name": "Scaling", "price_cents": 1, "currency": "EUR", "max_streams": SESSIONS,
        "max_height": 2160, "genres": ["*"]}, status=201)  # fmt: skip
    viewer = await through.paying_viewer(plan["id"])
    video = media.make_video(work, size_mib)
    movie = await through.movie(admin, video.read_bytes(), "Scaling")
    video.unlink()
    await through.watchable(viewer, movie["id"], timeout_s=60)
    paths = [await through.playback(viewer, movie["id"]) for _ in range(SESSIONS)]
    async with http.get(
        f"{cluster.node_url('catalog')}/internal/movies/{movie['id']}/media",
        headers={SERVICE_KEY_HEADER: cluster.env["REELGATE_SERVICE_KEY"]},
    ) as response:
        located = await response.json()
    # Where the cluster's nodes store media: their settings, as the cluster gave them.
    stored_in = Settings(var_dir=Path(cluster.env["REELGATE_VAR_DIR"]),
                         storage_url=cluster.env.get("REELGATE_STORAGE_URL", ""))  # fmt: skip
    path = LocalStorage(stored_in.resolved_storage_url).local_path(located["key"])
    library = media.Library(
        movie_id=movie["id"], key=located["key"], path=path, size=path.stat().st_size,
        sessions=viewer.sessions, viewer_token=str(viewer.api.token), stream_paths=paths,
    )  # fmt: skip
    return library


def summarize(runs: list[dict[str, float]], direct: list[dict[str, float]]) -> dict[str, float]:
    summary = media.summarize(runs, direct)
    summary["x_direct"] = summary.pop("x_nginx")
    summary["x_direct_min"] = summary.pop("x_nginx_min")
    summary["x_direct_max"] = summary.pop("x_nginx_max")
    summary["mbps_rounds"] = [round(run["mbps"]) for run in runs]  # type: ignore[assignment]
    return summary


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = (
        f"{'configuration':<44}{'req/s':>8}{'MB/s':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'CPU ms/GB':>10}{'err':>5}{'x direct (min-max)':>20}  MB/s per round"
    )
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        ratio = f"{row['x_direct']:.2f} ({row['x_direct_min']:.2f}-{row['x_direct_max']:.2f})"
        print(
            f"{name:<44}{row['rps']:>8.0f}{row['mbps']:>7.0f}{row['p50_ms']:>8.1f}"
            f"{row['p99_ms']:>8.1f}{row['cpu_ms_per_gb']:>10.0f}{row['errors']:>5.0f}"
            f"{ratio:>20}  {row['mbps_rounds']}"
        )


async def measure(cluster: ClusterRun, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    workload = media.Workload("ranges", args.range_kib * media.KIB, args.connections, 30)
    async with aiohttp.ClientSession(
        base_url=cluster.url, timeout=aiohttp.ClientTimeout(total=600)
    ) as http:
        library = await set_up(cluster, http, work, args.size_mib)
        # nginx's workers run as nobody and must reach the stored object.
        for directory in (work, *library.path.relative_to(work).parents):
            (work / directory).chmod(0o755)
        alive = asyncio.create_task(media.keep_sessions_alive(http, "", library))
        direct_port = free_port()
        (work / "logs").mkdir(exist_ok=True)
        direct = media.nginx_node(work, direct_port, library, None, workers="auto")
        direct.start()
        try:
            await media.wait_ready(
                http, direct, f"http://127.0.0.1:{direct_port}{library.stream_paths[0]}",
                method="HEAD",
            )
            targets = {DIRECT: (direct_port, Processes([direct.pid]))}
            # Through the balancer, the CPU is nginx's and every media node's.
            everything = Processes(
                [cluster.child_pid("nginx")]
                + [cluster.child_pid(f"media-{i + 1}") for i in range(MEDIA_NODES)]
            )
            for nodes in range(1, MEDIA_NODES + 1):
                targets[balancer_name(nodes)] = (cluster.ports["balancer"], everything)
            if args.before:
                targets[TCP] = targets[BEFORE] = (cluster.ports["balancer"], everything)
            if args.hold:
                await hold(cluster, work, library, workload, direct_port)
                return {}
            return await rounds(cluster, http, work, library, workload, targets, args)
        finally:
            alive.cancel()
            direct.stop()


async def rounds(
    cluster: ClusterRun, http: aiohttp.ClientSession, work: Path, library: media.Library,
    workload: media.Workload, targets: dict[str, tuple[int, Processes]], args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    config = cluster.var_dir / "cluster" / "nginx" / "nginx.conf"
    original = config.read_text()
    script = media.write_wrk_script(work, workload, library)
    media.warm_page_cache(library.path)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    order = list(targets)
    for index in range(args.rounds):
        for name in order[index % len(order) :] + order[: index % len(order)]:
            port, processes = targets[name]
            if name != DIRECT:
                await asyncio.to_thread(use_pool, cluster, original, pool_of(name))
            await media.check_same_bytes(http, f"http://127.0.0.1:{port}", library)
            await media.run_wrk(port, script, workload, 2, None, processes, args.threads)  # warm-up
            run = await media.run_wrk(
                port, script, workload, args.duration, None, processes, args.threads
            )
            samples[name].append(run)
            print(f"round {index + 1} {name:<44} {run['mbps']:7.0f} MB/s  "
                  f"{run['errors']:.0f} errors  load {run['load']:.1f}", flush=True)  # fmt: skip
    config.write_text(original)
    os.kill(cluster.child_pid("nginx"), signal.SIGHUP)
    return {name: summarize(runs, samples[DIRECT]) for name, runs in samples.items()}


async def hold(
    cluster: ClusterRun, work: Path, library: media.Library, workload: media.Workload,
    direct_port: int,
) -> None:  # fmt: skip
    """--hold: leave everything running for profiling by hand, until SIGINT/SIGTERM."""
    script = media.write_wrk_script(work, workload, library)
    media.warm_page_cache(library.path)
    pids = {name: cluster.child_pid(name) for name in ("nginx", "media-1", "media-2", "media-3")}
    print(f"balancer http://127.0.0.1:{cluster.ports['balancer']} (config "
          f"{cluster.var_dir / 'cluster' / 'nginx' / 'nginx.conf'}), nginx direct "
          f"http://127.0.0.1:{direct_port}; pids {pids}\n"
          f"  wrk -t1 -c{workload.connections} -d10s -s {script} http://127.0.0.1:<port>\n"
          f"  py-spy record --gil -d 10 -p <media pid> -o profile.svg", flush=True)  # fmt: skip
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10, help="seconds per run")
    parser.add_argument("--size-mib", type=int, default=256, help="size of the movie")
    parser.add_argument("--range-kib", type=int, default=1024, help="bytes per request")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (wrk -t)")
    parser.add_argument("--no-before", dest="before", action="store_false",
                        help="leave out the balancer as it was (TCP, default proxy buffer)")  # fmt: skip
    parser.add_argument("--json", help="write the results (and the machine) here")
    parser.add_argument("--hold", action="store_true", help="set up, print, wait for Ctrl-C")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if media.shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    print(f"machine: {media.machine()}", flush=True)
    # The production log level: every node and nginx write an access line per request.
    overrides = {"REELGATE_LOG_LEVEL": "INFO", "REELGATE_ACCESS_TOKEN_TTL_S": "86400"}
    with tempfile.TemporaryDirectory(prefix="reelgate-bench-scaling-") as tmp:
        work = Path(tmp)
        with running_cluster(work, env_overrides=overrides) as cluster:
            results = asyncio.run(measure(cluster, work, args))
    if args.hold:
        return
    print_table(results)
    if args.json:
        Path(args.json).write_text(results_document(results, vars(args)))


def results_document(results: dict[str, Any], args: dict[str, Any]) -> str:
    """The --json file, as `benchmarks.plots scaling` reads it."""
    return json.dumps({"machine": media.machine(), "args": args, "results": results}, indent=2)


if __name__ == "__main__":
    main()
