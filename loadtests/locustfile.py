"""Reelgate clients for locust: viewers, catalog browsers and a few admins.

Run it against a balancer (or the demo) with plain locust::

    locust -f loadtests/locustfile.py --headless -u 20 -r 2 -t 60s --host http://127.0.0.1:8080

or through `make loadtest` (`python -m loadtests.run`), which can start a
system to test and keeps the reports. The file needs nothing but locust (and
ffmpeg for the admins' uploads), so it can be copied to any load generator.

Who does what
-------------
- **Viewer** (weight 3): signs up (registers a fresh account, subscribes to a
  plan that includes every movie, pays through the signed billing webhook, as
  the billing provider would) or, now and then, signs in to an account an
  earlier viewer made (a second device: `too_many_streams` happens there and
  is handled by ending one of the listed sessions, like the web player's
  button). Then, in a loop: browses `/api/me/movies`, opens a movie page
  (details, poster), starts playback with its `client_id` and plays the movie
  like a `<video>` element: one open-ended `Range: bytes=N-` request read in
  1 MiB chunks, as fast as needed to keep `LOADTEST_BUFFER_AHEAD_S` seconds of
  media ahead of the play clock (so the pace is the movie's own bitrate),
  seeks now and then (the open response is dropped, a new `bytes=N-` request
  starts at the new place), heartbeats every `heartbeat_interval_s` (or every
  `LOADTEST_HEARTBEAT_S` if that is shorter: the client waits less, the
  server is unchanged), and ends the session (DELETE) when the movie is over
  or the viewer stops watching.
- **CatalogBrowser** (weight 1, anonymous): lists, searches (`q`), genre
  filters, details, posters, actors, genres.
- **Admin** (`LOADTEST_ADMINS`, default 1, fixed count): edits the
  description of its own movie ("Loadtest upload target", created if missing;
  the load test never edits anybody else's data) and uploads a small real
  video (2 s, 160x120, made once with ffmpeg when locust starts) to it.

Figures of their own
--------------------
locust's response time of a streamed GET stops at the headers. The viewers
therefore report, as locust events (rows in every locust table, CSV and the
HTML report):

- `TTFB /stream`: time from sending the request to the first body byte;
- `THROUGHPUT /stream chunk`: one event per chunk read while the player
  fills its buffer (after the start or a seek: chunks read back to back, so
  their rate is the system's), `response_time` = the time the chunk took,
  `response_length` = its size. Chunks read later are paced by the player
  (and partly waited in socket buffers already): they count in the bytes,
  not in the rate;
- `STARTUP /stream buffer full`: from the request to a full buffer (or the
  rest of the movie), what a viewer waits for before smooth playback;

and keep their own counters (bytes, buffer fill rates, stalls, seeks,
heartbeats, sessions...). At the end a table is printed and, with
`LOADTEST_SUMMARY=path.json` (or `--csv PREFIX`: `PREFIX_summary.json`),
written as JSON. The run fails (exit code 1) when the failure ratio (failed
HTTP requests plus exceptions in this file, over HTTP requests) exceeds
`LOADTEST_MAX_FAILURE_RATIO` (0.01), when the 95th percentile of the time to
first byte exceeds `LOADTEST_MAX_TTFB_P95_MS` (500), or when viewers ran but
no stream was read at all. Single-process locust only (no --master/--worker).

Settings (environment)
----------------------
`REELGATE_BILLING_SECRET` (demo value), `LOADTEST_ADMIN_EMAIL` /
`LOADTEST_ADMIN_PASSWORD` (else `REELGATE_ADMIN_*`, else the demo admin),
`LOADTEST_ADMINS` (1), `LOADTEST_VIEWER_ACCOUNTS` (`email:password,...`
existing subscribed accounts viewers may sign in to), `LOADTEST_SIGNIN_RATIO`
(0.25), `LOADTEST_BUFFER_AHEAD_S` (8), `LOADTEST_CHUNK_KIB` (1024),
`LOADTEST_PLAYER_MBIT` (4: the pace when a movie's bitrate is unknown),
`LOADTEST_WATCH_S` (`20-120`: how long a viewer watches at most),
`LOADTEST_SEEKS_PER_MIN` (2), `LOADTEST_HEARTBEAT_S` (none),
`LOADTEST_MAX_FAILURE_RATIO`, `LOADTEST_MAX_TTFB_P95_MS`, `LOADTEST_SUMMARY`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import gevent
from gevent.lock import Semaphore
from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

log = logging.getLogger("loadtests")

DEMO_ADMIN = ("admin@reelgate.demo", "demo-admin-password")  # demo login, not a secret
DEMO_BILLING_SECRET = "demo-billing-secret-change-me"  # demo default, not a secret
UPLOAD_TITLE = "Loadtest upload target"
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def _env_range(name: str, default: tuple[float, float]) -> tuple[float, float]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    low, _, high = raw.partition("-")
    return float(low), float(high or low)


@dataclass(frozen=True)
class Config:
    billing_secret: str
    admin: tuple[str, str]
    admins: int
    signin_ratio: float
    buffer_ahead_s: float
    chunk_bytes: int
    default_bitrate_bps: float
    watch_s: tuple[float, float]
    seeks_per_min: float
    heartbeat_cap_s: float | None
    max_failure_ratio: float
    max_ttfb_p95_ms: float
    summary_path: str

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        admin = (
            env.get("LOADTEST_ADMIN_EMAIL") or env.get("REELGATE_ADMIN_EMAIL") or DEMO_ADMIN[0],
            env.get("LOADTEST_ADMIN_PASSWORD")
            or env.get("REELGATE_ADMIN_PASSWORD")
            or DEMO_ADMIN[1],
        )
        heartbeat = env.get("LOADTEST_HEARTBEAT_S", "").strip()
        return cls(
            billing_secret=env.get("REELGATE_BILLING_SECRET") or DEMO_BILLING_SECRET,
            admin=admin,
            admins=int(_env_float("LOADTEST_ADMINS", 1)),
            signin_ratio=_env_float("LOADTEST_SIGNIN_RATIO", 0.25),
            buffer_ahead_s=_env_float("LOADTEST_BUFFER_AHEAD_S", 8.0),
            chunk_bytes=int(_env_float("LOADTEST_CHUNK_KIB", 1024) * 1024),
            default_bitrate_bps=_env_float("LOADTEST_PLAYER_MBIT", 4.0) * 1e6,
            watch_s=_env_range("LOADTEST_WATCH_S", (20.0, 120.0)),
            seeks_per_min=_env_float("LOADTEST_SEEKS_PER_MIN", 2.0),
            heartbeat_cap_s=float(heartbeat) if heartbeat else None,
            max_failure_ratio=_env_float("LOADTEST_MAX_FAILURE_RATIO", 0.01),
            max_ttfb_p95_ms=_env_float("LOADTEST_MAX_TTFB_P95_MS", 500.0),
            summary_path=env.get("LOADTEST_SUMMARY", ""),
        )


CONFIG = Config.from_env()


# ---------------------------------------------------------------- streaming figures


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (exact, unlike locust's rounded buckets)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _sample(kind: str, name: str, ms: float, size: int = 0) -> None:
    """A streaming figure as a locust row of its own (it has no HTTP request)."""
    events.request.fire(
        request_type=kind, name=name, response_time=ms, response_length=size,
        exception=None, context={},
    )  # fmt: skip


@dataclass
class StreamFigures:
    """What the viewers measured, beside locust's own request statistics."""

    started_at: float = field(default_factory=time.monotonic)
    ttfb_ms: list[float] = field(default_factory=list)
    startup_ms: list[float] = field(default_factory=list)
    fill_mbit_s: list[float] = field(default_factory=list)  # per chunk, while filling
    bytes: int = 0
    fill_bytes: int = 0
    fill_s: float = 0.0
    streams: int = 0  # stream requests that got their first byte
    playbacks: int = 0  # playback sessions started
    finished: int = 0  # movies watched to the end
    seeks: int = 0
    stalls: int = 0  # the play clock caught up with the download (rebuffering)
    stall_s: float = 0.0
    heartbeats: int = 0
    sessions_ended: int = 0
    too_many_streams: int = 0
    ended_elsewhere: int = 0
    rate_limited: int = 0
    signups: int = 0
    signins: int = 0
    uploads: int = 0

    def ttfb(self, ms: float) -> None:
        self.ttfb_ms.append(ms)
        self.streams += 1
        _sample("TTFB", "/stream", ms)

    def startup(self, ms: float) -> None:
        """From the request to a full buffer (or the whole rest of the movie)."""
        self.startup_ms.append(ms)
        _sample("STARTUP", "/stream buffer full", ms)

    def chunk(self, size: int, seconds: float, *, filling: bool) -> None:
        """A chunk arrived. Only chunks read back to back while the buffer
        fills measure the system: later ones are paced by the player, and part
        of them already waited in socket buffers."""
        self.bytes += size
        if not filling or seconds <= 0:
            return
        self.fill_bytes += size
        self.fill_s += seconds
        self.fill_mbit_s.append(size * 8 / seconds / 1e6)
        _sample("THROUGHPUT", "/stream chunk", seconds * 1000, size)


FIGURES = StreamFigures()


@events.test_start.add_listener
def _reset_figures(**_: Any) -> None:
    global FIGURES
    FIGURES = StreamFigures()


@events.reset_stats.add_listener
def _reset_on_request(**_: Any) -> None:
    _reset_figures()


def summarize(environment: Any) -> dict[str, Any]:
    figures = FIGURES
    wall_s = max(1e-9, time.monotonic() - figures.started_at)
    requests = failures = 0
    for entry in environment.stats.entries.values():
        failures += entry.num_failures
        if entry.method in HTTP_METHODS:
            requests += entry.num_requests
    runner = environment.runner
    exceptions = sum(e["count"] for e in runner.exceptions.values()) if runner else 0
    failure_ratio = (failures + exceptions) / requests if requests else 0.0
    p95 = percentile(figures.ttfb_ms, 95)
    viewers_ran = bool(runner) and any(
        cls.__name__ == "Viewer" for cls in getattr(runner, "user_classes", [])
    )
    problems = []
    if failure_ratio > CONFIG.max_failure_ratio:
        problems.append(f"failure ratio {failure_ratio:.4f} > {CONFIG.max_failure_ratio}")
    if p95 is not None and p95 > CONFIG.max_ttfb_p95_ms:
        problems.append(f"p95 time to first byte {p95:.0f} ms > {CONFIG.max_ttfb_p95_ms:.0f} ms")
    if viewers_ran and not figures.streams:
        problems.append("no viewer read a stream")
    if not requests:
        problems.append("no request was made")

    def rounded(value: float | None, digits: int = 1) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "duration_s": round(wall_s, 1),
        "requests": requests,
        "failures": failures,
        "exceptions": exceptions,
        "failure_ratio": round(failure_ratio, 5),
        "ttfb_ms": {
            "samples": len(figures.ttfb_ms),
            "p50": rounded(percentile(figures.ttfb_ms, 50)),
            "p95": rounded(p95),
            "p99": rounded(percentile(figures.ttfb_ms, 99)),
            "max": rounded(max(figures.ttfb_ms, default=None)),
        },
        "startup_ms": {
            "samples": len(figures.startup_ms),
            "p50": rounded(percentile(figures.startup_ms, 50)),
            "p95": rounded(percentile(figures.startup_ms, 95)),
        },
        "throughput": {
            "bytes": figures.bytes,
            "aggregate_mbit_s": round(figures.bytes * 8 / wall_s / 1e6, 2),
            "fill_mbit_s": rounded(
                figures.fill_bytes * 8 / figures.fill_s / 1e6 if figures.fill_s else None, 2
            ),
            "fill_chunks": len(figures.fill_mbit_s),
            "fill_chunk_mbit_s_p5": rounded(percentile(figures.fill_mbit_s, 5), 2),
            "fill_chunk_mbit_s_p50": rounded(percentile(figures.fill_mbit_s, 50), 2),
        },
        "viewers": {
            "signups": figures.signups,
            "signins": figures.signins,
            "playbacks": figures.playbacks,
            "finished": figures.finished,
            "streams": figures.streams,
            "seeks": figures.seeks,
            "stalls": figures.stalls,
            "stall_s": round(figures.stall_s, 2),
            "heartbeats": figures.heartbeats,
            "sessions_ended": figures.sessions_ended,
            "too_many_streams": figures.too_many_streams,
            "ended_elsewhere": figures.ended_elsewhere,
            "rate_limited": figures.rate_limited,
        },
        "admins": {"uploads": figures.uploads},
        "thresholds": {
            "max_failure_ratio": CONFIG.max_failure_ratio,
            "max_ttfb_p95_ms": CONFIG.max_ttfb_p95_ms,
        },
        "ok": not problems,
        "problems": problems,
    }


def render(summary: dict[str, Any]) -> str:
    ttfb, through, viewers = summary["ttfb_ms"], summary["throughput"], summary["viewers"]
    limits = summary["thresholds"]
    rows = [
        (
            "HTTP requests / failures / exceptions",
            f"{summary['requests']} / {summary['failures']} / {summary['exceptions']}"
            + f"  (ratio {summary['failure_ratio']:.4f}, max {limits['max_failure_ratio']})",
        ),
        (
            "time to first byte (ms) p50 / p95 / p99 / max",
            f"{ttfb['p50']} / {ttfb['p95']} / {ttfb['p99']} / {ttfb['max']}"
            + f"  ({ttfb['samples']} streams, p95 max {limits['max_ttfb_p95_ms']:.0f})",
        ),
        ("bytes streamed", f"{through['bytes']:,} in {summary['duration_s']} s"),
        ("aggregate throughput (Mbit/s)", f"{through['aggregate_mbit_s']}"),
        (
            "buffer fill rate (Mbit/s)",
            f"{through['fill_mbit_s']}  (per chunk p5 {through['fill_chunk_mbit_s_p5']},"
            + f" p50 {through['fill_chunk_mbit_s_p50']}; {through['fill_chunks']} chunks)",
        ),
        (
            "start-up: request to full buffer (ms) p50 / p95",
            f"{summary['startup_ms']['p50']} / {summary['startup_ms']['p95']}",
        ),
        (
            "playbacks / finished / seeks / heartbeats",
            f"{viewers['playbacks']} / {viewers['finished']} / {viewers['seeks']} / {viewers['heartbeats']}",
        ),
        ("stalls (rebuffering)", f"{viewers['stalls']} ({viewers['stall_s']} s)"),
        (
            "sign-ups / sign-ins / rate-limited logins",
            f"{viewers['signups']} / {viewers['signins']} / {viewers['rate_limited']}",
        ),
        (
            "too_many_streams / ended by another device",
            f"{viewers['too_many_streams']} / {viewers['ended_elsewhere']}",
        ),
        ("admin uploads", f"{summary['admins']['uploads']}"),
        ("verdict", "PASS" if summary["ok"] else "FAIL: " + "; ".join(summary["problems"])),
    ]
    width = max(len(name) for name, _ in rows)
    lines = ["", "Reelgate load test: streaming figures", "-" * (width + 40)]
    lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
    return "\n".join(lines) + "\n"


@events.quitting.add_listener
def _verdict(environment: Any, **_: Any) -> None:
    summary = summarize(environment)
    print(render(summary), flush=True)
    path = CONFIG.summary_path
    prefix = (
        getattr(environment.parsed_options, "csv_prefix", None)
        if environment.parsed_options
        else None
    )
    if not path and prefix:
        path = f"{prefix}_summary.json"
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(summary, indent=2) + "\n")
    environment.process_exit_code = 0 if summary["ok"] else 1


# ---------------------------------------------------------------- shared state


@dataclass
class Account:
    email: str
    password: str
    devices: int = 0  # locust users signed in to it right now


ACCOUNTS: list[Account] = []
SIGNUPS_STARTED = 0  # in this process: a second device waits only if someone signs up
for _pair in filter(None, os.environ.get("LOADTEST_VIEWER_ACCOUNTS", "").split(",")):
    _email, _, _password = _pair.partition(":")
    ACCOUNTS.append(Account(_email.strip(), _password.strip()))

_plan_lock = Semaphore()
_plan: dict[str, Any] = {}
_upload_lock = Semaphore()
_upload_target: dict[str, Any] = {}
UPLOAD_CLIP: bytes | None = None


def make_upload_clip() -> bytes | None:
    """A small real video (2 s, 160x120, H.264/AAC) for the admins' uploads."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        log.warning("ffmpeg not found: admins will not upload media")
        return None
    with tempfile.TemporaryDirectory(prefix="loadtest-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        result = subprocess.run(
            [ffmpeg, "-v", "error", "-y",
             "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25",
             "-f", "lavfi", "-i", "sine=frequency=523:sample_rate=44100",
             "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
             "-c:a", "aac", "-b:a", "32k", "-shortest", "-movflags", "+faststart", str(path)],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            log.warning("ffmpeg failed, admins will not upload media: %s", result.stderr[-500:])
            return None
        return path.read_bytes()


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    global UPLOAD_CLIP
    if CONFIG.admins > 0:
        UPLOAD_CLIP = make_upload_clip()


# ---------------------------------------------------------------- the clients


class ApiError(Exception):
    pass


class ReelgateUser(FastHttpUser):
    abstract = True
    network_timeout = 60.0  # sign-ups hash passwords (Argon2id): slow on a busy node
    connection_timeout = 10.0

    access_token: str | None = None
    refresh_token: str | None = None
    access_expires_at: float = 0.0

    # ---- HTTP

    def call(
        self,
        method: str,
        path: str,
        *,
        name: str | None = None,
        body: Any = None,
        data: bytes | None = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        ok: tuple[int, ...] = (200,),
        accept: tuple[int, ...] = (),
    ) -> tuple[int, Any]:
        """One API request; statuses in `ok` and `accept` count as successes
        (the caller handles the `accept` ones), anything else as a failure."""
        headers = dict(headers or {})
        if auth and self.access_token:
            self.ensure_fresh_token()
            headers["Authorization"] = f"Bearer {self.access_token}"
        url = path + ("?" + urlencode(query) if query else "")
        with self.client.request(
            method,
            url,
            name=name or path,
            json=body,
            data=data,
            headers=headers,
            catch_response=True,
        ) as response:
            status = response.status_code or 0
            payload: Any = None
            content = response.content or b""
            content_type = (response.headers or {}).get("Content-Type") or ""
            if content and "json" in content_type:
                try:
                    payload = json.loads(content)
                except ValueError:
                    payload = None
            if status in ok or status in accept:
                response.success()
            else:
                code = payload.get("code") if isinstance(payload, dict) else None
                error = getattr(response, "error", None)
                response.failure(f"{status} {code or error or ''}".strip())
            return status, payload

    def expect(self, method: str, path: str, **kwargs: Any) -> Any:
        status, payload = self.call(method, path, **kwargs)
        if status not in kwargs.get("ok", (200,)):
            raise ApiError(f"{method} {kwargs.get('name') or path}: {status}")
        return payload

    # ---- accounts

    def login(self, email: str, password: str) -> None:
        """Sign in; a 429 (the balancer's or the node's rate limit: every
        simulated user comes from one address) is waited out like a client would."""
        for _attempt in range(20):
            status, pair = self.call(
                "POST",
                "/api/auth/login",
                auth=False,
                body={"email": email, "password": password},
                accept=(429,),
            )
            if status == 200:
                self.store_tokens(pair)
                return
            if status != 429:
                raise ApiError(f"login {email}: {status}")
            FIGURES.rate_limited += 1
            gevent.sleep(random.uniform(2.0, 6.0))
        raise ApiError(f"login {email}: still rate-limited")

    def store_tokens(self, pair: dict[str, Any]) -> None:
        self.access_token = pair["access_token"]
        self.refresh_token = pair["refresh_token"]
        self.access_expires_at = time.monotonic() + float(pair.get("expires_in", 900))

    def ensure_fresh_token(self) -> None:
        if self.refresh_token and time.monotonic() > self.access_expires_at - 60:
            token, self.access_token = self.refresh_token, None
            pair = self.expect(
                "POST", "/api/auth/refresh", auth=False, body={"refresh_token": token}
            )
            self.store_tokens(pair)


class Viewer(ReelgateUser):
    weight = 3
    wait_time = between(2, 6)

    account: Account | None = None
    session: dict[str, Any] | None = None

    def on_start(self) -> None:
        self.client_id = f"locust-{uuid.uuid4().hex[:16]}"
        try:
            account = self.second_device() if random.random() < CONFIG.signin_ratio else None
            if account is not None:
                self.sign_in(account)
            else:
                self.sign_up()
        except ApiError as exc:
            log.warning("viewer could not get going: %s", exc)
            gevent.sleep(5)  # then the user stops; locust starts no replacement
            raise StopUser() from exc

    def on_stop(self) -> None:
        if self.session is not None:
            self.end_session()
        if self.account is not None:
            self.account.devices -= 1
            self.account = None

    @staticmethod
    def second_device(wait_s: float = 30.0) -> Account | None:
        """An account another viewer made (at most 3 devices on one account,
        one more than the demo plan's streams), waiting a while for one."""
        deadline = time.monotonic() + wait_s
        while ACCOUNTS or SIGNUPS_STARTED:
            candidates = [a for a in ACCOUNTS if a.devices < 3]
            if candidates:
                return random.choice(candidates)
            if time.monotonic() > deadline:
                return None
            gevent.sleep(1)
        return None

    def sign_up(self) -> None:
        global SIGNUPS_STARTED
        SIGNUPS_STARTED += 1
        email = f"loadtest-{uuid.uuid4().hex[:12]}@example.com"
        password = f"lt-{uuid.uuid4().hex}"
        self.expect(
            "POST",
            "/api/auth/register",
            auth=False,
            ok=(201,),
            body={"email": email, "password": password, "name": "Load Test Viewer"},
        )
        self.login(email, password)
        plan_id = self.everything_plan()
        subscription = self.expect(
            "POST", "/api/subscriptions", ok=(201,), body={"plan_id": plan_id}
        )
        self.pay(subscription["id"])
        path = f"/api/subscriptions/{subscription['id']}"
        for _ in range(50):
            current = self.expect("GET", path, name="/api/subscriptions/[id]")
            if current["status"] == "active":
                break
            gevent.sleep(0.2)
        else:
            raise ApiError(f"subscription still {current['status']} after payment")
        self.account = Account(email, password, devices=1)
        ACCOUNTS.append(self.account)
        FIGURES.signups += 1

    def sign_in(self, account: Account) -> None:
        account.devices += 1
        self.account = account
        self.login(account.email, account.password)
        FIGURES.signins += 1

    def pay(self, subscription_id: str) -> None:
        """What the billing provider does: a signed webhook."""
        raw = json.dumps(
            {
                "type": "payment_succeeded",
                "subscription_id": subscription_id,
                "amount_cents": 999,
                "event_id": f"loadtest-{uuid.uuid4()}",
            }
        ).encode()
        digest = hmac.new(CONFIG.billing_secret.encode(), raw, hashlib.sha256).hexdigest()
        self.expect(
            "POST",
            "/api/billing/events",
            auth=False,
            data=raw,
            headers={
                "Content-Type": "application/json",
                "X-Reelgate-Signature": f"sha256={digest}",
            },
        )

    def everything_plan(self) -> str:
        """The plan that includes every ready movie (decided once per process;
        every viewer still reads the plan list, as the sign-up page does)."""
        plans = self.expect("GET", "/api/plans", auth=False, query={"per_page": 100})["items"]
        with _plan_lock:
            if "id" not in _plan:
                _plan["id"] = self.discover_plan(plans)
        return str(_plan["id"])

    def discover_plan(self, plans: list[dict[str, Any]]) -> str:
        ready: dict[str, int] = {}
        page = 1
        while True:
            data = self.expect(
                "GET",
                "/api/movies",
                name="/api/movies?status",
                auth=False,
                query={"status": "ready", "per_page": 100, "page": page},
            )
            for movie in data["items"]:
                ready[movie["id"]] = (movie.get("media") or {}).get("height") or 0
            if page * 100 >= data["total"]:
                break
            page += 1
        tallest = max(ready.values(), default=0)
        for plan in sorted(plans, key=lambda p: ("*" not in p["genres"], -p["max_streams"])):
            if plan.get("max_height") and plan["max_height"] < tallest:
                continue
            included: set[str] = set()
            page = 1
            while True:
                data = self.expect(
                    "GET",
                    f"/api/plans/{plan['id']}/movies",
                    auth=False,
                    name="/api/plans/[id]/movies",
                    query={"per_page": 100, "page": page},
                )
                included.update(data["items"])
                if page * 100 >= data["total"]:
                    break
                page += 1
            if set(ready) <= included:
                return str(plan["id"])
        wildcard = [p for p in plans if "*" in p["genres"]]
        if wildcard:
            log.warning("no plan lists every ready movie yet; taking %s", wildcard[0]["name"])
            return str(wildcard[0]["id"])
        raise ApiError("no plan includes every movie")

    # ---- watching

    @task(1)
    def look_at_progress(self) -> None:
        self.expect("GET", "/api/me/progress")

    @task(6)
    def watch_something(self) -> None:
        try:
            movies = self.browse()
            if not movies:
                gevent.sleep(2)
                return
            movie = random.choice(movies)
            details = self.expect("GET", f"/api/movies/{movie['id']}", name="/api/movies/[id]")
            if details.get("status") == "ready":
                self.call(
                    "GET", f"/api/movies/{movie['id']}/poster", name="/api/movies/[id]/poster"
                )
            if self.start_session(movie["id"]):
                try:
                    self.play(details)
                finally:
                    self.end_session()
        except ApiError as exc:
            log.info("viewer: %s", exc)  # already counted as a failed request

    def browse(self) -> list[dict[str, Any]]:
        data = self.expect("GET", "/api/me/movies", query={"page": 1, "per_page": 20})
        pages = max(1, math.ceil(data["total"] / 20))
        if pages > 1 and random.random() < 0.3:
            page = random.randint(2, pages)
            data = self.expect("GET", "/api/me/movies", query={"page": page, "per_page": 20})
        return list(data["items"])

    def start_session(self, movie_id: str) -> bool:
        body = {"movie_id": movie_id, "client_id": self.client_id}
        for _attempt in range(2):
            status, payload = self.call(
                "POST", "/api/playback", body=body, ok=(201,), accept=(409,)
            )
            if status == 201:
                self.session = payload
                FIGURES.playbacks += 1
                return True
            if status != 409 or payload.get("code") != "too_many_streams":
                return False
            # The web player's "stop that stream" button: end another device's session.
            FIGURES.too_many_streams += 1
            others = [s for s in payload.get("sessions", []) if s["client_id"] != self.client_id]
            if not others:
                return False
            victim = min(others, key=lambda s: s["started_at"])
            self.call(
                "DELETE",
                f"/api/playback/{victim['session_id']}",
                ok=(204,),
                accept=(404,),
                name="/api/playback/[id] (another device)",
            )
        return False

    def end_session(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        # 404: it already ended (another device of this account ended it).
        status, _ = self.call(
            "DELETE",
            f"/api/playback/{session['session_id']}",
            name="/api/playback/[id]",
            ok=(204,),
            accept=(404,) if self.shared_account() else (),
        )
        if status == 204:
            FIGURES.sessions_ended += 1

    def shared_account(self) -> bool:
        return self.account is not None and self.account.devices > 1

    def session_alive(self) -> bool:
        """Is our session still among our live ones (GET /api/playback)?"""
        if self.session is None:
            return False
        status, data = self.call("GET", "/api/playback")
        if status != 200 or not isinstance(data, dict):
            return True  # cannot tell: assume it is, so the failure stands
        return any(s["session_id"] == self.session["session_id"] for s in data["items"])

    def heartbeat(self, position_s: float) -> bool:
        """False when the session is gone (ended by another device)."""
        assert self.session is not None
        accept = (404, 403) if self.shared_account() else ()
        status, _ = self.call(
            "POST",
            f"/api/playback/{self.session['session_id']}/heartbeat",
            name="/api/playback/[id]/heartbeat",
            body={"position_s": round(position_s, 2)},
            accept=accept,
        )
        if status == 200:
            FIGURES.heartbeats += 1
            return True
        if status in accept:
            FIGURES.ended_elsewhere += 1
            self.session = None
        return status == 200

    def play(self, movie: dict[str, Any]) -> None:
        """Play like a <video> element: see Player."""
        assert self.session is not None
        interval = float(self.session.get("heartbeat_interval_s") or 30)
        if CONFIG.heartbeat_cap_s:
            interval = min(interval, CONFIG.heartbeat_cap_s)
        media = movie.get("media") or {}
        Player(
            self,
            self.session["stream_url"],
            size=media.get("size_bytes"),
            duration_s=media.get("duration_s") or movie.get("duration_s"),
            heartbeat_s=interval,
        ).run(random.uniform(*CONFIG.watch_s))


class Player:
    """A media element's network behaviour.

    The play clock runs while media is buffered; the download keeps
    `buffer_ahead_s` seconds of media ahead of it, reading one open-ended
    `Range: bytes=N-` response in `chunk_bytes` pieces and pausing (TCP back
    pressure holds the server) when the buffer is full. Media seconds map to
    bytes linearly (size / duration), which is what a constant-bitrate player
    assumes. A seek drops the response and starts a new one at the new offset.
    """

    def __init__(
        self,
        viewer: Viewer,
        stream_url: str,
        *,
        size: int | None,
        duration_s: float | None,
        heartbeat_s: float,
    ) -> None:
        self.viewer = viewer
        self.url = stream_url
        self.size = int(size) if size else None
        self.duration_s = float(duration_s) if duration_s else None
        self.heartbeat_s = heartbeat_s
        self.response: Any = None  # the ResponseContextManager being read
        self.request_started = 0.0
        self.expected_end = 0  # last byte + 1 the open response should deliver
        self.downloaded_to = 0  # byte offset the download has reached
        self.play_at = 0.0  # media seconds
        self.filling = False  # reading back to back since the request (start-up or seek)

    @property
    def bytes_per_s(self) -> float:
        if self.size and self.duration_s:
            return self.size / self.duration_s
        return CONFIG.default_bitrate_bps / 8

    def seconds_at(self, offset: int) -> float:
        return offset / self.bytes_per_s

    def run(self, watch_s: float) -> None:
        viewer = self.viewer
        start = time.monotonic()
        next_heartbeat = start + self.heartbeat_s
        seek_chance_per_s = CONFIG.seeks_per_min / 60
        last = start
        stalled_since: float | None = None
        try:
            if not self.open(0):
                return
            while viewer.session is not None:
                now = time.monotonic()
                elapsed, last = now - last, now
                buffered = self.seconds_at(self.downloaded_to) - self.play_at
                advance = min(elapsed, max(0.0, buffered))
                self.play_at += advance
                complete = self.size is not None and self.downloaded_to >= self.size
                if advance < elapsed and not complete:
                    if stalled_since is None:
                        stalled_since = now
                        FIGURES.stalls += 1
                elif stalled_since is not None:
                    FIGURES.stall_s += now - stalled_since
                    stalled_since = None
                if self.duration_s and self.play_at >= self.duration_s - 0.05:
                    FIGURES.finished += 1
                    return
                if now - start >= watch_s:
                    return
                if now >= next_heartbeat:
                    if not viewer.heartbeat(self.play_at):
                        return
                    next_heartbeat = now + self.heartbeat_s
                if self.duration_s and random.random() < seek_chance_per_s * elapsed:
                    FIGURES.seeks += 1
                    target = random.uniform(0, self.duration_s * 0.9)
                    self.close()
                    self.play_at = target
                    if not self.open(int(target * self.bytes_per_s)):
                        return
                    continue
                buffered = self.seconds_at(self.downloaded_to) - self.play_at
                if self.response is not None and buffered < CONFIG.buffer_ahead_s:
                    if not self.read_chunk():
                        return
                else:
                    self.buffer_full()
                    gevent.sleep(min(0.25, max(0.01, next_heartbeat - time.monotonic())))
        finally:
            if stalled_since is not None:
                FIGURES.stall_s += time.monotonic() - stalled_since
            self.close()

    def open(self, offset: int) -> bool:
        """Start `Range: bytes=offset-`; False when playback cannot go on."""
        viewer = self.viewer
        if self.size is not None:
            offset = min(offset, max(0, self.size - 1))
        self.request_started = time.perf_counter()
        response = viewer.client.get(
            self.url,
            name="/stream",
            stream=True,
            catch_response=True,
            headers={"Range": f"bytes={offset}-", "Accept-Encoding": "identity"},
        ).__enter__()
        status = response.status_code or 0
        if status not in (200, 206):
            code = None
            try:
                payload = json.loads(response.content or b"{}")
                code = payload.get("code")
            except (ValueError, AttributeError):
                pass
            if (
                status in (403, 404)
                and code in ("session_ended", "not_entitled")
                and viewer.shared_account()
            ):
                FIGURES.ended_elsewhere += 1
                viewer.session = None
                response.success()
            else:
                response.failure(f"{status} {code or getattr(response, 'error', '')}")
            response.__exit__(None, None, None)
            return False
        first = 0
        total = None
        if status == 206:
            # Content-Range: bytes first-last/total
            spec = (response.headers.get("Content-Range") or "").split()[-1]
            span, _, whole = spec.partition("/")
            first = int(span.split("-")[0])
            total = int(whole) if whole.isdigit() else None
        else:
            total = int(response.headers.get("Content-Length") or 0) or None
        if total:
            self.size = total
        self.response = response
        self.downloaded_to = first
        self.expected_end = self.size or 0
        # Time to first byte: the first body bytes, not just the headers.
        try:
            piece = response._response.read(min(65536, CONFIG.chunk_bytes))
        except Exception as exc:  # noqa: BLE001 -- a cut connection is a failed stream
            return self.fail(f"no body: {exc!r}")
        if not piece and (self.size or 0) > first:
            return self.fail("empty body")
        FIGURES.ttfb((time.perf_counter() - self.request_started) * 1000)
        self.downloaded_to += len(piece)
        FIGURES.chunk(len(piece), 0.0, filling=False)  # its time is the time to first byte
        self.filling = True
        return True

    def buffer_full(self) -> None:
        if self.filling:
            self.filling = False
            FIGURES.startup((time.perf_counter() - self.request_started) * 1000)

    def read_chunk(self) -> bool:
        response = self.response
        wanted = CONFIG.chunk_bytes
        got = 0
        started = time.perf_counter()
        try:
            while got < wanted:
                piece = response._response.read(min(65536, wanted - got))
                if not piece:
                    break
                got += len(piece)
        except Exception as exc:  # noqa: BLE001
            return self.fail(f"cut after {self.downloaded_to + got} bytes: {exc!r}")
        self.downloaded_to += got
        if got:
            FIGURES.chunk(got, time.perf_counter() - started, filling=self.filling)
        if got < wanted:  # end of the body
            if self.expected_end and self.downloaded_to < self.expected_end:
                return self.fail(f"body ended at {self.downloaded_to} of {self.expected_end}")
            self.buffer_full()
            self.finish()
        return True

    def finish(self) -> None:
        response, self.response = self.response, None
        if response is not None:
            response.success()
            response.__exit__(None, None, None)

    def fail(self, message: str) -> bool:
        """The body was cut: a failure, unless another device of this account
        ended our session (the media node stops its stream at once)."""
        self.filling = False
        response, self.response = self.response, None
        if response is not None:
            viewer = self.viewer
            if viewer.shared_account() and not viewer.session_alive():
                FIGURES.ended_elsewhere += 1
                viewer.session = None
                response.success()
            else:
                response.failure(message)
            response.__exit__(None, None, None)
            response._response.release()
        return False

    def close(self) -> None:
        """Drop the response (a seek, or the viewer stopped): the connection is
        closed if the body was not read to its end."""
        self.filling = False
        response, self.response = self.response, None
        if response is not None:
            response.success()
            response.__exit__(None, None, None)
            response._response.release()


class CatalogBrowser(ReelgateUser):
    """Anonymous visitors of the catalog pages."""

    weight = 1
    wait_time = between(1, 4)
    known: list[dict[str, Any]]

    def on_start(self) -> None:
        self.known = []
        self.genres = ["documentary"]
        data = self.call("GET", "/api/genres", auth=False)[1]
        if isinstance(data, dict):
            self.genres = data["items"] or self.genres

    @task(4)
    def list_movies(self) -> None:
        query: dict[str, Any] = {"page": 1, "per_page": 20}
        if self.known and random.random() < 0.5:
            query["sort"] = random.choice(["title", "-release_year", "-created_at"])
        data = self.call("GET", "/api/movies", query=query, auth=False)[1]
        if isinstance(data, dict):
            self.known = data["items"] or self.known
            pages = math.ceil(data["total"] / 20)
            if pages > 1:
                query["page"] = random.randint(2, pages)
                self.call("GET", "/api/movies", name="/api/movies?page", query=query, auth=False)

    @task(3)
    def search(self) -> None:
        words = [w for m in self.known for w in m["title"].split() if len(w) >= 3]
        q = random.choice(words) if words and random.random() < 0.8 else uuid.uuid4().hex[:6]
        self.call("GET", "/api/movies", name="/api/movies?q", query={"q": q}, auth=False)

    @task(1)
    def by_genre(self) -> None:
        self.call(
            "GET",
            "/api/movies",
            name="/api/movies?genre",
            auth=False,
            query={"genre": random.choice(self.genres)},
        )

    @task(4)
    def details(self) -> None:
        if not self.known:
            return self.list_movies()
        movie = random.choice(self.known)
        status, data = self.call(
            "GET", f"/api/movies/{movie['id']}", name="/api/movies/[id]", auth=False, accept=(404,)
        )  # 404: deleted meanwhile
        if status == 200 and data.get("status") == "ready":
            self.call(
                "GET",
                f"/api/movies/{movie['id']}/poster",
                name="/api/movies/[id]/poster",
                auth=False,
            )

    @task(1)
    def actors(self) -> None:
        self.call("GET", "/api/actors", query={"per_page": 20}, auth=False)

    @task(1)
    def plans(self) -> None:
        self.call("GET", "/api/plans", auth=False)


class Admin(ReelgateUser):
    """A few editors: they only touch their own movie."""

    fixed_count = CONFIG.admins
    abstract = CONFIG.admins <= 0  # LOADTEST_ADMINS=0: no admins at all
    wait_time = between(3, 8)
    movie_id: str = ""

    def on_start(self) -> None:
        try:
            self.login(*CONFIG.admin)
            self.movie_id = self.upload_target()
        except ApiError as exc:
            log.warning("admin could not get going: %s", exc)
            raise StopUser() from exc

    def upload_target(self) -> str:
        with _upload_lock:
            if "id" not in _upload_target:
                found = self.expect(
                    "GET",
                    "/api/movies",
                    name="/api/movies?q",
                    query={"q": UPLOAD_TITLE, "per_page": 100},
                )
                mine = [m for m in found["items"] if m["title"] == UPLOAD_TITLE]
                if mine:
                    _upload_target["id"] = mine[0]["id"]
                else:
                    movie = self.expect(
                        "POST",
                        "/api/movies",
                        ok=(201,),
                        body={
                            "title": UPLOAD_TITLE,
                            "genres": ["documentary"],
                            "release_year": 2024,
                            "description": "Made by the load test; its admins edit and upload here.",
                        },
                    )
                    _upload_target["id"] = movie["id"]
                    self.upload()
        return str(_upload_target["id"])

    @task(4)
    def edit(self) -> None:
        movie_id = self.movie_id or _upload_target["id"]
        self.call(
            "PATCH",
            f"/api/movies/{movie_id}",
            name="/api/movies/[id]",
            body={"description": f"Edited by the load test at {time.time():.0f}."},
        )

    @task(1)
    def upload(self) -> None:
        if UPLOAD_CLIP is None:
            return
        digest = base64.b64encode(hashlib.sha256(UPLOAD_CLIP).digest()).decode()
        movie_id = self.movie_id or _upload_target["id"]
        status, _ = self.call(
            "PUT",
            f"/api/movies/{movie_id}/media",
            name="/api/movies/[id]/media",
            data=UPLOAD_CLIP,
            headers={"Content-Type": "video/mp4", "Content-Digest": f"sha-256=:{digest}:"},
        )
        if status == 200:
            FIGURES.uploads += 1

    @task(1)
    def users(self) -> None:
        self.call("GET", "/api/users", query={"per_page": 20})
