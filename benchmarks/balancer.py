"""The balancer's two modes for /stream under the same load: `least_conn`
against `hash $movie consistent` (one movie, one node).

One `reelgate cluster --media-nodes 3` over a throwaway PostgreSQL and Redis
(the helper the cluster tests use), six movies of ~4 MB each (different
bytes, so different stored objects), one playback session per movie. Then,
in alternating rounds (this machine is shared: alternation spreads the noise
over both modes), nginx is switched to one mode (config rewritten, SIGHUP)
and `wrk` sends 256 KiB range requests at random offsets through it:

- uniform: every movie equally often;
- one hot movie: 80% of the requests for one movie (a premiere).

Prints, per mode and scenario, the median over the rounds of requests/s and
latency percentiles, and how the requests spread over the three media nodes
(nginx's access log, `$upstream_addr`). Numbers, not a pass/fail test. See
docs/benchmarks.md, "Balancer".

    .venv/bin/python -m benchmarks.balancer [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.cluster.support import ClusterRun, Through, Viewer, make_video, running_cluster
from tests.harness.services import require_binary

MOVIES = 6
RANGE_BYTES = 256 * 1024
SCENARIOS = {"uniform": 0.0, "one hot movie": 0.8}

LUA = """
local targets = {%(targets)s}
local hot = %(hot)s
request = function()
  local t
  if math.random() < hot then t = targets[1] else t = targets[math.random(#targets)] end
  local first = math.random(0, t[2] - %(range)d)
  return wrk.format("GET", t[1], {["Range"] = "bytes=" .. first .. "-" .. (first + %(range)d - 1)})
end
"""


async def prepare(through: Through, workdir: Path) -> tuple[Viewer, list[tuple[str, int]]]:
    """Movies with media, one entitled session each: the viewer, [(stream path, size)]."""
    admin = await through.admin()
    plan = await admin.ok("POST", "/api/plans", {
        "name": "Bench", "price_cents": 1, "currency": "EUR", "max_streams": MOVIES + 1,
        "max_height": 2160, "genres": ["*"]}, status=201)  # fmt: skip
    viewer = await through.paying_viewer(plan["id"])
    targets = []
    for index in range(MOVIES):
        video = make_video(workdir / f"movie-{index}.mp4", 0.6 + index / 10, noisy=True)
        movie = await through.movie(admin, video, f"Bench {index}")
        await through.watchable(viewer, movie["id"])
        targets.append((await through.playback(viewer, movie["id"]), len(video)))
    return viewer, targets


async def heartbeats(viewer: Viewer) -> None:
    """Keep the sessions alive (one without a heartbeat for 3 intervals ends)."""
    while True:
        await asyncio.sleep(15)
        for session in viewer.sessions:
            await viewer.api.ok("POST", f"/api/playback/{session['session_id']}/heartbeat",
                                {"position_s": 0})  # fmt: skip


def wrk(cluster: ClusterRun, script: Path, seconds: int) -> dict[str, float]:
    result = subprocess.run(
        [require_binary("wrk"), "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script),
         cluster.url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = result.stdout
    numbers = {"req/s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(\w+)", out).groups()  # type: ignore[union-attr]
        numbers[f"p{pct} ms"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    numbers["errors"] = float(errors.group(1)) if errors else 0.0
    return numbers


def spread(cluster: ClusterRun, since_line: int) -> list[int]:
    """Share of /stream requests per media node, in percent, busiest first."""
    counts = collections.Counter(
        line.split('"')[3]
        for line in cluster.access_log()[since_line:]
        if '"GET /stream/' in line
    )
    total = sum(counts.values()) or 1
    return sorted((round(100 * n / total) for n in counts.values()), reverse=True)


Samples = dict[tuple[str, str], list[dict[str, object]]]
MODES = {"least_conn": "least_conn;", "hash": "hash $reelgate_movie consistent;"}


def median(rounds: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(r[key]) for r in rounds)  # type: ignore[arg-type]


def switch(cluster: ClusterRun, mode: str) -> None:
    """Rewrite the running nginx's balance directive and reload it (SIGHUP)."""
    config = cluster.var_dir / "cluster" / "nginx" / "nginx.conf"
    text = config.read_text()
    for directive in MODES.values():
        text = text.replace(directive, MODES[mode])
    config.write_text(text)
    os.kill(cluster.child_pid("nginx"), signal.SIGHUP)
    time.sleep(1.0)  # old workers finish, new ones take over


async def measure(cluster: ClusterRun, workdir: Path, seconds: int, rounds: int) -> Samples:
    samples: Samples = collections.defaultdict(list)
    async with aiohttp.ClientSession(base_url=cluster.url) as http:
        viewer, targets = await prepare(Through(http), workdir)
        alive = asyncio.create_task(heartbeats(viewer))
        script = workdir / "load.lua"
        for _ in range(rounds):
            for mode in MODES:
                await asyncio.to_thread(switch, cluster, mode)
                for scenario, hot in SCENARIOS.items():
                    script.write_text(LUA % {
                        "targets": ", ".join(f'{{"{p}", {n}}}' for p, n in targets),
                        "hot": hot, "range": RANGE_BYTES})  # fmt: skip
                    await asyncio.to_thread(wrk, cluster, script, 2)  # warm-up
                    mark = len(cluster.access_log())
                    numbers: dict[str, object] = dict(
                        await asyncio.to_thread(wrk, cluster, script, seconds)
                    )
                    numbers["spread %"] = spread(cluster, mark)
                    samples[mode, scenario].append(numbers)
        alive.cancel()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reelgate-bench-") as tmp:
        workdir = Path(tmp)
        with running_cluster(workdir) as cluster:
            samples = asyncio.run(measure(cluster, workdir, args.seconds, args.rounds))
    print(f"{'mode':<12} {'scenario':<14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6}  spread over nodes % (each round)")  # fmt: skip
    for (mode, scenario), rounds in samples.items():
        print(f"{mode:<12} {scenario:<14} {median(rounds, 'req/s'):>8.0f} "
              f"{median(rounds, 'p50 ms'):>8.1f} {median(rounds, 'p99 ms'):>8.1f} "
              f"{sum(float(r['errors']) for r in rounds):>6.0f}  "  # type: ignore[arg-type]
              f"{[r['spread %'] for r in rounds]}")  # fmt: skip
        print(f"{'':<27} req/s per round: {[round(float(r['req/s'])) for r in rounds]}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
