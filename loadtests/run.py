"""`make loadtest`: locust, headless, against the balancer.

    python -m loadtests.run                      # starts a throwaway cluster (or the demo)
    LOADTEST_HOST=http://127.0.0.1:8080 python -m loadtests.run   # a running system

Without `LOADTEST_HOST` it starts `reelgate cluster` (3 media nodes behind
nginx, its own PostgreSQL and Redis from tests/harness; the demo when the
cluster cannot start here), seeds a library (a plan with every movie,
`LOADTEST_MOVIES` movies of `LOADTEST_MOVIE_SECONDS` s at 720p/4 Mbit/s made
with ffmpeg, cached in `loadtests/reports/.media/`), runs locust and stops
everything. Against a running system, the locustfile needs its admin login
(`LOADTEST_ADMIN_EMAIL`/`LOADTEST_ADMIN_PASSWORD`, default the demo's) and
billing secret (`REELGATE_BILLING_SECRET`, default the demo's), and a plan
that includes every movie.

Reports (`LOADTEST_REPORTS`, default `loadtests/reports/`): `loadtest_stats.csv`,
`loadtest_stats_history.csv`, `loadtest_failures.csv`,
`loadtest_exceptions.csv`, `loadtest.html`, `loadtest_summary.json` (the
streaming figures and the verdict) and, for a system started here, its logs
in `system-logs/`. The exit status is locust's: 0 when the failure ratio and
the p95 time to first byte are within `LOADTEST_MAX_FAILURE_RATIO` (0.01) and
`LOADTEST_MAX_TTFB_P95_MS` (500), 1 otherwise (see locustfile.py). Arguments
after `--` go to locust as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
PREFIX = "loadtest"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host",
        default=_env("LOADTEST_HOST", ""),
        help="balancer URL of a running system (LOADTEST_HOST); none: start one",
    )
    parser.add_argument("--users", type=int, default=int(_env("LOADTEST_USERS", "20")))
    parser.add_argument("--spawn-rate", type=float, default=float(_env("LOADTEST_SPAWN_RATE", "2")))
    parser.add_argument(
        "--duration",
        default=_env("LOADTEST_DURATION", "60s"),
        help="locust --run-time, e.g. 90s, 5m (LOADTEST_DURATION)",
    )
    parser.add_argument(
        "--reports", type=Path, default=Path(_env("LOADTEST_REPORTS", str(HERE / "reports")))
    )
    parser.add_argument(
        "--system",
        choices=["auto", "cluster", "demo"],
        default=_env("LOADTEST_SYSTEM", "auto"),
        help="what to start without --host (LOADTEST_SYSTEM)",
    )
    parser.add_argument("--media-nodes", type=int, default=int(_env("LOADTEST_MEDIA_NODES", "3")))
    parser.add_argument("--movies", type=int, default=int(_env("LOADTEST_MOVIES", "3")))
    parser.add_argument(
        "--movie-seconds", type=float, default=float(_env("LOADTEST_MOVIE_SECONDS", "30"))
    )
    parser.add_argument(
        "--movie-height", type=int, default=int(_env("LOADTEST_MOVIE_HEIGHT", "720"))
    )
    parser.add_argument("--movie-bitrate", default=_env("LOADTEST_MOVIE_BITRATE", "4M"))
    parser.add_argument("--quiet", action="store_true", help="only locust's final summary")
    return parser.parse_args(argv), extra


def run_locust(args: argparse.Namespace, host: str, env: dict[str, str], extra: list[str]) -> int:
    prefix = args.reports / PREFIX
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
        "--run-time", args.duration, "--host", host,
        "--csv", str(prefix), "--csv-full-history", "--html", f"{prefix}.html",
    ]  # fmt: skip
    if args.quiet:
        command.append("--only-summary")
    command += extra
    environment = {**os.environ, **env, "LOADTEST_SUMMARY": f"{prefix}_summary.json"}
    print(
        f"loadtest: {args.users} users (spawn rate {args.spawn_rate}/s) for {args.duration} "
        f"against {host}",
        file=sys.stderr,
        flush=True,
    )
    return subprocess.call(command, env=environment, cwd=HERE.parent)


def keep_logs(workdir: Path, reports: Path) -> None:
    target = reports / "system-logs"
    shutil.rmtree(target, ignore_errors=True)
    for log in workdir.rglob("*.log"):
        if "pg-" in str(log) or log.stat().st_size == 0:
            continue
        destination = target / log.relative_to(workdir)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, destination)


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    args.reports.mkdir(parents=True, exist_ok=True)
    (args.reports / f"{PREFIX}_summary.json").unlink(missing_ok=True)
    if args.host:
        code = run_locust(args, args.host.rstrip("/"), {}, extra)
    else:
        if str(HERE.parent) not in sys.path:
            sys.path.insert(0, str(HERE.parent))
        from loadtests.system import running_system, seed_library

        with tempfile.TemporaryDirectory(prefix="reelgate-loadtest-") as tmp:
            workdir = Path(tmp)
            try:
                with running_system(
                    workdir, kind=args.system, media_nodes=args.media_nodes
                ) as system:
                    print(
                        f"loadtest: {system.kind} is up at {system.url}; seeding the library",
                        file=sys.stderr,
                        flush=True,
                    )
                    library = seed_library(
                        system,
                        movies=args.movies,
                        seconds=args.movie_seconds,
                        height=args.movie_height,
                        bitrate=args.movie_bitrate,
                        cache_dir=args.reports / ".media",
                    )
                    print(
                        f"loadtest: {len(library['movie_ids'])} movies ready",
                        file=sys.stderr,
                        flush=True,
                    )
                    code = run_locust(args, system.url, system.environment(), extra)
            finally:
                keep_logs(workdir, args.reports)
    summary = args.reports / f"{PREFIX}_summary.json"
    if summary.exists():
        verdict = json.loads(summary.read_text())
        print(
            f"loadtest: {'PASS' if verdict['ok'] else 'FAIL'}; reports in {args.reports}/",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(f"loadtest: locust exited with {code} without a summary", file=sys.stderr, flush=True)
        code = code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())
