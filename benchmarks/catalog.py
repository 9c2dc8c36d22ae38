"""Catalog benchmark: list/search latency at 10,000 movies and 50,000 actors,
and media ingest throughput and memory for a 1 GiB upload.

Starts a throwaway PostgreSQL (tests/harness), bulk-loads a synthetic catalog
with COPY, and runs a real catalog node as a child process (`reelgate
catalog`, so the client does not share its event loop or its memory figures).
Then:

- times sequential GETs per query shape and prints p50/p99, next to the
  indexes PostgreSQL's plan for the same SQL uses (EXPLAIN ANALYZE);
- uploads a real 3 s video padded with zeros to `--upload-mib` through
  `PUT /api/movies/{id}/media` (chunked, streamed by the client too) and
  reports MB/s end to end (stream + hash + fsync + ffprobe + poster) and the
  node's peak RSS during the upload (VmHWM, reset just before);
- measures the storage layer alone (stream + SHA-256 + fsync of the same size).

Not a pass/fail test: machines are noisy. Run:

    .venv/bin/python -m benchmarks.catalog [--movies 10000] [--actors 50000]
        [--requests 200] [--upload-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from sqlalchemy.dialects import postgresql

from catalog import schemas, service
from catalog.models import GENRES
from reelgate.db import make_engine
from reelgate.migrate import upgrade
from reelgate.tokens import TokenSigner, load_or_create_private_key
from storage import LocalStorage
from tests.harness.ports import free_port
from tests.harness.services import PostgresServer, require_binary

MIB = 1024 * 1024
COUNTRIES = ["US", "GB", "FR", "DE", "IT", "ES", "JP", "KR", "IN", "BR", "MX", "CA", "AU", "SE"]


# ---------------------------------------------------------------- synthetic catalog


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    syllables = [
        "ka",
        "lo",
        "mi",
        "ne",
        "ru",
        "sa",
        "to",
        "vi",
        "zen",
        "dar",
        "mor",
        "quel",
        "bri",
        "sto",
        "fen",
        "gal",
        "hul",
        "jor",
        "pix",
        "wen",
    ]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))))
    return sorted(words)


def zipf_pick(rng: random.Random, words: list[str]) -> str:
    # Rank r is picked with probability ~ 1/r: a few common words, a long tail.
    return words[min(len(words) - 1, int(len(words) ** rng.random()) - 1)]


def make_actors(rng: random.Random, count: int, words: list[str]) -> list[tuple]:
    now = time.time()
    rows = []
    for n in range(count):
        created = _ts(now - n * 60)
        name = f"{rng.choice(words).title()} {rng.choice(words).title()}"
        rows.append((uuid.uuid4(), name, None, rng.choice(COUNTRIES), created, created, None))
    return rows


def make_movies(rng: random.Random, count: int, words: list[str]) -> list[tuple]:
    now = time.time()
    rows = []
    for n in range(count):
        created = _ts(now - n * 600)
        title = " ".join(zipf_pick(rng, words) for _ in range(rng.randint(1, 4))).title()
        description = " ".join(zipf_pick(rng, words) for _ in range(rng.randint(20, 40)))
        genres = sorted(rng.sample(GENRES, rng.randint(1, 3)), key=GENRES.index)
        rows.append((
            uuid.uuid4(), title[:300], description, rng.randint(1930, 2025), json.dumps(genres),
            "PG-13", "ready" if n % 3 else "draft", None, None, None, None, created, created, None,
        ))  # fmt: skip
    return rows


def _ts(epoch: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC)


async def load(dsn: str, movies: int, actors: int) -> dict[str, Any]:
    """COPY the synthetic catalog in; returns ids and words worth querying."""
    rng = random.Random(42)
    words = vocabulary(rng)
    actor_rows = make_actors(rng, actors, words)
    movie_rows = make_movies(rng, movies, words)
    genre_rows = [(g, row[0]) for row in movie_rows for g in json.loads(row[4])]
    cast_rows = []
    for movie in movie_rows:
        for position, actor in enumerate(rng.sample(actor_rows[: actors // 10], 5)):
            cast_rows.append((movie[0], position, actor[0], None))
    connection = await asyncpg.connect(dsn)
    try:
        columns = {
            "actors": ["id", "name", "birth_date", "nationality", "created_at", "updated_at", "deleted_at"],
            "movies": ["id", "title", "description", "release_year", "genres", "age_rating", "status",
                       "duration_s", "media", "media_key", "poster_key", "created_at", "updated_at",
                       "deleted_at"],
            "movie_genres": ["genre", "movie_id"],
            "movie_actors": ["movie_id", "position", "actor_id", "character"],
        }  # fmt: skip
        rows = {
            "actors": actor_rows,
            "movies": movie_rows,
            "movie_genres": genre_rows,
            "movie_actors": cast_rows,
        }
        for table, records in rows.items():
            await connection.copy_records_to_table(table, records=records, columns=columns[table])
        await connection.execute("VACUUM ANALYZE")  # steady state: GIN pending list merged
        busiest = await connection.fetchval(
            "SELECT actor_id FROM movie_actors GROUP BY actor_id ORDER BY count(*) DESC LIMIT 1"
        )
    finally:
        await connection.close()
    return {
        "words": words,
        "movie_id": movie_rows[len(movie_rows) // 2][0],
        "busy_actor": busiest,
        "actor_prefix": actor_rows[7][1].split()[0][:4].lower(),
    }


# ---------------------------------------------------------------- timing


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000


async def time_get(http: aiohttp.ClientSession, url: str, requests: int) -> tuple[list[float], int]:
    total = 0
    for _ in range(10):  # warm-up: connection pool, plan cache, shared buffers
        async with http.get(url) as response:
            assert response.status == 200, (url, response.status, await response.text())
            total = (await response.json()).get("total", 1)
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        async with http.get(url) as response:
            await response.read()
        samples.append(time.perf_counter() - started)
    return samples, total


def index_names(plan: dict[str, Any]) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= index_names(child)
    return found


async def plan_indexes(dsn: str, query: dict[str, str]) -> str:
    """The indexes PostgreSQL uses for the page query of this movie list."""
    model = schemas.MovieQuery.model_validate(query)
    statement = service.movie_list_statement("postgresql", model).limit(model.per_page)
    sql = str(
        statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    )
    connection = await asyncpg.connect(dsn)
    try:
        raw = await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
    finally:
        await connection.close()
    plan = json.loads(raw)[0]["Plan"]
    return ", ".join(sorted(index_names(plan))) or "(sequential scan)"


# ---------------------------------------------------------------- the node


def start_node(work: Path, database: str, port: int) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith("REELGATE_")}
    env.update(
        REELGATE_DATABASE_URL=database,
        REELGATE_VAR_DIR=str(work),
        REELGATE_LOG_LEVEL="WARNING",
        REELGATE_MAX_UPLOAD_BYTES=str(64 * 1024**3),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "reelgate.cli", "catalog", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=open(work / "node.log", "wb"),
    )  # fmt: skip


async def wait_ready(http: aiohttp.ClientSession, base: str, node: subprocess.Popen) -> None:
    for _ in range(300):
        if node.poll() is not None:
            raise RuntimeError(f"the catalog node exited with {node.returncode}")
        try:
            async with http.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the catalog node did not become ready")


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak_rss(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# ---------------------------------------------------------------- ingest


def make_sample(work: Path) -> Path:
    sample = work / "sample.mp4"
    subprocess.run(
        [require_binary("ffmpeg"), "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc=duration=3:size=640x360:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-shortest", "-movflags", "+faststart", str(sample)],
        check=True,
    )  # fmt: skip
    return sample


async def padded(sample: bytes, total: int) -> AsyncIterator[bytes]:
    """The sample, then zeros up to `total` bytes (a valid MP4 ignores trailing bytes)."""
    yield sample
    zeros = bytes(MIB)
    left = total - len(sample)
    while left > 0:
        chunk = zeros[: min(MIB, left)]
        left -= len(chunk)
        yield chunk


async def bench_upload(
    http: aiohttp.ClientSession,
    base: str,
    node: subprocess.Popen,
    token: str,
    sample: bytes,
    size: int,
) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(f"{base}/api/movies", json={"title": "Big"}, headers=headers) as response:
        movie = await response.json()
    reset_peak_rss(node.pid)
    rss_before = proc_status(node.pid, "VmRSS")
    started = time.perf_counter()
    async with http.put(
        f"{base}/api/movies/{movie['id']}/media", data=padded(sample, size),
        headers={**headers, "Content-Type": "video/mp4"},
    ) as response:  # fmt: skip
        result = await response.json()
        assert response.status == 200, result
    elapsed = time.perf_counter() - started
    assert result["media"]["size_bytes"] == size
    return {
        "seconds": elapsed,
        "mb_s": size / MIB / elapsed,
        "rss_before": rss_before / MIB,
        "rss_peak": proc_status(node.pid, "VmHWM") / MIB,
    }


async def bench_storage(root: Path, sample: bytes, size: int) -> dict[str, float]:
    storage = LocalStorage(root)
    reset_peak_rss(os.getpid())
    rss_before = proc_status(os.getpid(), "VmRSS")
    started = time.perf_counter()
    stored = await storage.write_stream(padded(sample, size))
    elapsed = time.perf_counter() - started
    await storage.delete(stored.key)
    return {
        "seconds": elapsed,
        "mb_s": size / MIB / elapsed,
        "rss_before": rss_before / MIB,
        "rss_peak": proc_status(os.getpid(), "VmHWM") / MIB,
    }


# ---------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="reelgate-bench-catalog-"))
    postgres = PostgresServer.start()
    node: subprocess.Popen | None = None
    try:
        database = postgres.dsn(postgres.create_database())
        libpq = database.replace("postgresql+asyncpg://", "postgresql://")
        engine = make_engine(database)
        await upgrade(engine, "catalog")
        await engine.dispose()
        started = time.perf_counter()
        seed = await load(libpq, args.movies, args.actors)
        print(
            f"seeded {args.movies} movies, {args.actors} actors in {time.perf_counter() - started:.1f}s"
        )

        signer = TokenSigner(
            load_or_create_private_key(work / "keys" / "jwt-ed25519.pem"), "reelgate"
        )
        port = free_port()
        node = start_node(work, database, port)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as http:
            await wait_ready(http, base, node)
            words = seed["words"]
            queries: list[tuple[str, dict[str, str]]] = [
                ("list newest first", {}),
                ("list by title, page 50", {"sort": "title", "page": "50"}),
                ("genre=horror by -year", {"genre": "horror", "sort": "-release_year"}),
                ("year=1999", {"year": "1999"}),
                ("actor_id (busiest)", {"actor_id": str(seed["busy_actor"])}),
                (f"q={words[0]} (common)", {"q": words[0]}),
                (f"q={words[150]} (medium)", {"q": words[150]}),
                (f"q={words[2900]} (rare)", {"q": words[2900]}),
                (f"q={words[3]} {words[40]}", {"q": f"{words[3]} {words[40]}"}),
                (f"q={words[1]} + genre=drama", {"q": words[1], "genre": "drama"}),
                ("q=nosuchword", {"q": "nosuchword"}),
            ]
            print(f"\n{'GET /api/movies?...':<40}{'total':>7}{'p50 ms':>9}{'p99 ms':>9}  indexes")
            for label, params in queries:
                url = f"{base}/api/movies?" + "&".join(f"{k}={v}" for k, v in params.items())
                samples, total = await time_get(http, url, args.requests)
                p50, p99 = percentiles(samples)
                indexes = await plan_indexes(libpq, params)
                print(f"{label:<40}{total:>7}{p50:>9.2f}{p99:>9.2f}  {indexes}")
            others = [
                ("GET /api/movies/{id}", f"{base}/api/movies/{seed['movie_id']}"),
                (
                    f"GET /api/actors?q={seed['actor_prefix']}",
                    f"{base}/api/actors?q={seed['actor_prefix']}",
                ),
                ("GET /api/actors?nationality=FR", f"{base}/api/actors?nationality=FR"),
                ("GET /api/actors?sort=name&page=100", f"{base}/api/actors?sort=name&page=100"),
            ]
            for label, url in others:
                samples, total = await time_get(http, url, args.requests)
                p50, p99 = percentiles(samples)
                print(f"{label:<40}{total:>7}{p50:>9.2f}{p99:>9.2f}")

            if args.upload_mib > 0:
                size = args.upload_mib * MIB
                sample = (await asyncio.to_thread(make_sample, work)).read_bytes()
                token = signer.access_token(uuid.uuid4(), "admin", 3600)
                upload = await bench_upload(http, base, node, token, sample, size)
                raw = await bench_storage(work / "raw-storage", sample, size)
                print(
                    f"\ningest of {args.upload_mib} MiB{'':<14}{'seconds':>9}{'MB/s':>9}"
                    f"{'RSS before':>12}{'RSS peak':>10}"
                )
                for label, figures in (
                    ("PUT .../media (node, end to end)", upload),
                    ("storage.write_stream only", raw),
                ):
                    print(
                        f"{label:<33}{figures['seconds']:>9.2f}{figures['mb_s']:>9.1f}"
                        f"{figures['rss_before']:>10.1f}MB{figures['rss_peak']:>8.1f}MB"
                    )
    finally:
        if node is not None:
            node.terminate()
            node.wait(10)
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--movies", type=int, default=10_000)
    parser.add_argument("--actors", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per query")
    parser.add_argument("--upload-mib", type=int, default=1024, help="0 skips the ingest part")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
