"""The load test's own smoke run: the same locustfile, a few seconds, a handful
of users, against `reelgate demo` started here (so the locustfile cannot rot
unnoticed when the API changes)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import plots
from loadtests.system import System, running_demo, seed_library

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("loadtest-demo")
    # Cheap password hashing: every viewer signs up and signs in.
    cheap = {"REELGATE_PASSWORD_MEMORY_KIB": "1024", "REELGATE_PASSWORD_TIME_COST": "1"}
    with running_demo(workdir, env=cheap) as system:
        seed_library(
            system, movies=2, seconds=6, height=360, bitrate="2M", cache_dir=workdir / "media"
        )
        yield system


def locust(system: System, reports: Path, *args: str, **env: str) -> tuple[int, str, dict]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LOADTEST_", "REELGATE_"))},
        **system.environment(),
        "LOADTEST_SUMMARY": str(reports / "summary.json"),
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", system.url,
         "--csv", str(reports / "smoke"), "--csv-full-history", "--only-summary",
         "--loglevel", "WARNING", *args],
        env=environment, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    summary_path = reports / "summary.json"
    assert summary_path.exists(), output
    return result.returncode, output, json.loads(summary_path.read_text())


def test_viewers_browsers_and_an_admin_run_without_failures(demo: System, tmp_path: Path) -> None:
    code, output, summary = locust(
        demo,
        tmp_path,
        "--users",
        "6",
        "--spawn-rate",
        "6",
        "--run-time",
        "10s",
        LOADTEST_HEARTBEAT_S="2",  # heartbeats within the short run
        LOADTEST_SEEKS_PER_MIN="20",
    )
    assert code == 0, output
    assert summary["ok"], summary
    assert summary["failures"] == 0 and summary["exceptions"] == 0, output
    assert summary["ttfb_ms"]["samples"] > 0 and summary["ttfb_ms"]["p95"] is not None
    assert summary["throughput"]["bytes"] > 0
    viewers = summary["viewers"]
    assert viewers["signups"] > 0 and viewers["playbacks"] > 0 and viewers["heartbeats"] > 0, (
        viewers
    )
    # locust's own files carry the streaming figures too.
    with (tmp_path / "smoke_stats.csv").open() as stats:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(stats)}
    # stats.csv is locust's periodic snapshot (once a second): a request in the run's last
    # second can be missing from it, never extra.
    assert 0 < int(rows[("TTFB", "/stream")]["Request Count"]) <= summary["ttfb_ms"]["samples"]
    assert int(rows[("GET", "/stream")]["Request Count"]) > 0
    # The catalog browser ran (its own request names; which of its tasks came up in
    # 10 s is chance).
    assert {("GET", "/api/movies?q"), ("GET", "/api/movies?page"), ("GET", "/api/movies?genre"),
            ("GET", "/api/actors"), ("GET", "/api/genres")} & set(rows), sorted(rows)  # fmt: skip
    # And the admin: an edit or an upload (its first task is either, 4 to 1; with 3-8 s
    # between tasks a 10 s run may hold only an upload).
    admin = [rows.get(("PATCH", "/api/movies/[id]")), rows.get(("PUT", "/api/movies/[id]/media"))]
    assert sum(int(row["Request Count"]) for row in admin if row) > 0, sorted(rows)
    assert all(row["Failure Count"] == "0" for row in rows.values()), rows

    # The plot script reads this run's history (the same files `make loadtest` writes).
    png = tmp_path / "loadtest.png"
    series = plots.loadtest(tmp_path / "smoke_stats_history.csv", png, tmp_path / "summary.json")
    assert series["users"] and max(users for _, users in series["users"]) == 6, series["users"]
    assert series["ttfb p95"], "no TTFB rows in the history"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_crossed_threshold_fails_the_run(demo: System, tmp_path: Path) -> None:
    code, output, summary = locust(
        demo,
        tmp_path,
        "--users",
        "2",
        "--spawn-rate",
        "2",
        "--run-time",
        "5s",
        "Viewer",
        LOADTEST_ADMINS="0",
        LOADTEST_MAX_TTFB_P95_MS="0.001",
    )
    assert code == 1, output
    assert not summary["ok"]
    assert any("time to first byte" in problem for problem in summary["problems"]), summary
