"""Schema-driven fuzzing of running nodes with schemathesis.

The nodes run as real aiohttp servers on real ports (tests/stack.py) over the
session's PostgreSQL and Redis, in a thread with its own event loop, so the
synchronous schemathesis/hypothesis machinery can call them over HTTP. Each
node is fuzzed against its own description (the one it serves with
`?service=`), as admin, as a viewer and anonymously; path parameters are drawn
from ids that exist (seeded) as well as random UUIDs, so the fuzzer reaches
the handlers and not only their 404s.

Knobs (environment): REELGATE_FUZZ_EXAMPLES (examples per operation, role and
node; 15 by default), REELGATE_FUZZ_RANDOM=1 (new examples on every run instead
of the fixed, derandomized ones), REELGATE_FUZZ_REPORT=<file> (statuses seen
per operation, with a sample request each), REELGATE_FUZZ_STRICT=1 (also
schemathesis' positive_data_acceptance / negative_data_rejection: an
exploration aid for the precision of the schemas; it still reports rules no
JSON Schema can state, such as ids that must exist, ISO country codes, dates
up to today, NUL characters, and unknown query parameters being ignored).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text

from reelgate.db import make_engine
from reelgate.openapi import node_openapi

T = TypeVar("T")
ROLES = ("anonymous", "viewer", "admin")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Does the description say exactly what the validation accepts? Valid requests
# are not refused with 400/422, invalid ones are refused with a 4xx.
SCHEMA_PRECISION_CHECKS = [positive_data_acceptance, negative_data_rejection]
SAMPLE_VIDEO = Path(__file__).resolve().parents[2] / "demo" / "sample.mp4"


def examples_per_operation() -> int:
    """`REELGATE_FUZZ_EXAMPLES` scales the run (`make fuzz`); CI keeps the default."""
    return int(os.environ.get("REELGATE_FUZZ_EXAMPLES", "15"))


def derandomized() -> bool:
    """Same examples on every run unless `REELGATE_FUZZ_RANDOM=1` (a long run explores)."""
    return os.environ.get("REELGATE_FUZZ_RANDOM", "0") != "1"


class LoopThread:
    """An event loop in a thread: the servers live here while tests call them over HTTP."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# ---------------------------------------------------------------- the seeded world


def sign(secret: str, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


@dataclass
class World:
    """Tokens of each role and ids that exist, per path parameter name."""

    tokens: dict[str, str]
    playback_token: str
    ids: dict[str, list[str]]


class Client:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, self.base + path, timeout=60, **kwargs)
        assert response.status_code == status, (method, path, response.status_code, response.text)
        return response.json() if response.content else None


def seed_world(urls: dict[str, str], settings: Any, tag: str) -> World:
    """A second admin, a paid viewer, a plan, an actor, a movie with media (and a
    draft), a live playback session: everything the fuzzer's ids point at."""
    ent, cat = urls["entitlements"], urls["catalog"]
    root = Client(ent)
    pair = root.call(
        "POST",
        "/api/auth/login",
        json={"email": settings.admin_email, "password": settings.admin_password},
    )
    boot = Client(ent, pair["access_token"])
    admin_email = f"admin-{tag}@example.com"
    admin = boot.call(
        "POST",
        "/api/users",
        201,
        json={
            "email": admin_email,
            "password": "admin-pass-123",
            "name": "Fuzz admin",
            "role": "admin",
        },
    )
    admin_token = root.call(
        "POST", "/api/auth/login", json={"email": admin_email, "password": "admin-pass-123"}
    )["access_token"]
    viewer_email = f"viewer-{tag}@example.com"
    viewer = root.call(
        "POST",
        "/api/auth/register",
        201,
        json={"email": viewer_email, "password": "viewer-pass-123", "name": "Fuzz viewer"},
    )
    viewer_pair = root.call(
        "POST", "/api/auth/login", json={"email": viewer_email, "password": "viewer-pass-123"}
    )
    as_admin, as_viewer = Client(ent, admin_token), Client(ent, viewer_pair["access_token"])
    plan = as_admin.call(
        "POST",
        "/api/plans",
        201,
        json={
            "name": f"Fuzz {tag}",
            "price_cents": 100,
            "currency": "EUR",
            "max_streams": 3,
            "max_height": 2160,
            "genres": ["*"],
        },
    )
    subscription = as_viewer.call("POST", "/api/subscriptions", 201, json={"plan_id": plan["id"]})
    raw = json.dumps(
        {
            "type": "payment_succeeded",
            "subscription_id": subscription["id"],
            "amount_cents": 100,
            "event_id": uuid.uuid4().hex,
        }
    ).encode()
    root.call(
        "POST",
        "/api/billing/events",
        data=raw,
        headers={
            "Content-Type": "application/json",
            "X-Reelgate-Signature": sign(settings.billing_secret, raw),
        },
    )
    catalog = Client(cat, admin_token)
    actor = catalog.call(
        "POST", "/api/actors", 201, json={"name": f"Actor {tag}", "nationality": "FR"}
    )
    movie = catalog.call(
        "POST",
        "/api/movies",
        201,
        json={"title": f"Fuzz movie {tag}", "genres": ["drama"], "actor_ids": [actor["id"]]},
    )
    catalog.call(
        "PUT",
        f"/api/movies/{movie['id']}/media",
        data=SAMPLE_VIDEO.read_bytes(),
        headers={"Content-Type": "video/mp4"},
    )
    draft = catalog.call("POST", "/api/movies", 201, json={"title": f"Draft {tag}"})
    for _ in range(400):
        decision = as_admin.call(
            "GET", f"/api/entitlements/check?user_id={viewer['id']}&movie_id={movie['id']}"
        )
        if decision["allowed"]:
            break
        time.sleep(0.025)
    else:
        raise AssertionError(f"the seeded movie never became watchable: {decision}")
    playback = as_viewer.call("POST", "/api/playback", 201, json={"movie_id": movie["id"]})
    return World(
        tokens={"admin": admin_token, "viewer": viewer_pair["access_token"]},
        playback_token=playback["token"],
        ids={
            "user_id": [admin["id"], viewer["id"]],
            "plan_id": [plan["id"]],
            "subscription_id": [subscription["id"]],
            "movie_id": [movie["id"], draft["id"]],
            "actor_id": [actor["id"]],
            "session_id": [playback["session_id"]],
        },
    )


# ---------------------------------------------------------------- running schemathesis


@dataclass
class Report:
    examples: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)  # time spent in requests
    samples: dict[str, str] = field(default_factory=dict)  # "label -> status" -> a request/answer
    failures: dict[str, str] = field(default_factory=dict)  # "role METHOD path" -> first failure

    @property
    def total(self) -> int:
        return sum(self.examples.values())


def _path_parameter_sets(operation: Any, world: World) -> list[dict[str, str]]:
    names = [p.name for p in operation.path_parameters]
    if not names:
        return []
    pools = [world.ids.get(name, []) for name in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*pools)]


def _strategy(operation: Any, world: World, role: str, service: str) -> st.SearchStrategy:
    query = None
    if service == "media" and role == "viewer" and operation.path.startswith("/stream/"):
        query = {"token": world.playback_token}
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            strategies.append(operation.as_strategy(generation_mode=mode, query=query))
            for fixed in _path_parameter_sets(operation, world):
                strategies.append(
                    operation.as_strategy(generation_mode=mode, path_parameters=fixed, query=query)
                )
        except Exception:  # an operation with nothing to negate
            if mode is GenerationMode.POSITIVE:
                raise
    return st.one_of(strategies)


def _send(
    case: Any,
    base_url: str,
    headers: dict[str, str],
    billing_secret: str | None,
    http: requests.Session,
) -> tuple[requests.Response, dict[str, Any]]:
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
    if case.meta is not None and case.meta.generation.mode.is_positive:
        # Valid requests carry the role's credentials, whatever was generated for them.
        kwargs["headers"] = {**kwargs.get("headers", {}), **headers}
    if billing_secret is not None and case.operation.path == "/api/billing/events":
        # Sign what is sent, so the fuzzer gets past the signature to the handler.
        if "json" in kwargs:
            kwargs["data"] = json.dumps(kwargs.pop("json")).encode()
            kwargs["headers"]["Content-Type"] = "application/json"
        body = kwargs.get("data") or b""
        if isinstance(body, str):
            body = body.encode()
        kwargs["data"] = body
        kwargs["headers"]["X-Reelgate-Signature"] = sign(billing_secret, body)
    kwargs.setdefault("timeout", 60)
    kwargs.pop("session", None)
    return http.request(**kwargs), kwargs


@dataclass
class _Caller:
    """How one role calls one node."""

    base_url: str
    headers: dict[str, str]
    billing_secret: str | None
    checks: list[Any]
    http: requests.Session = field(default_factory=requests.Session)


def fuzz_node(
    service: str,
    base_url: str,
    world: World,
    role: str,
    billing_secret: str,
    report: Report,
    max_examples: int,
) -> None:
    schema = schemathesis.openapi.from_dict(node_openapi(service))
    headers: dict[str, str] = {}
    if role in world.tokens:
        headers["Authorization"] = f"Bearer {world.tokens[role]}"
    strict = os.environ.get("REELGATE_FUZZ_STRICT")
    caller = _Caller(
        base_url,
        headers,
        billing_secret if role != "anonymous" else None,
        CHECKS + (SCHEMA_PRECISION_CHECKS if strict else []),
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletions last, then restores: the seeded rows stay for every other operation.
    operations.sort(
        key=lambda op: (
            op.method.upper() == "DELETE" or op.path.endswith("/restore"),
            op.path.endswith("/restore"),
        )
    )
    for operation in operations:
        label = f"{role} {service} {operation.method.upper()} {operation.path}"
        strategy = _strategy(operation, world, role, service)
        _fuzz_operation(strategy, label, caller, report, max_examples)


def _fuzz_operation(
    strategy: st.SearchStrategy, label: str, caller: _Caller, report: Report, max_examples: int
) -> None:
    @hypothesis.settings(
        max_examples=max_examples,
        derandomize=derandomized(),
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        started = time.monotonic()
        response, kwargs = _send(
            case, caller.base_url, caller.headers, caller.billing_secret, caller.http
        )
        report.seconds[label] += time.monotonic() - started
        report.examples[label] += 1
        report.statuses[f"{label} -> {response.status_code}"] += 1
        report.samples.setdefault(
            f"{label} -> {response.status_code}",
            f"{response.request.method} {response.request.url} {response.text[:200]!r}",
        )
        try:
            case.validate_response(response, checks=caller.checks, headers=kwargs.get("headers"))
        except FailureGroup as exc:
            # Every failure is collected (no shrinking, no early stop): one run, one full report.
            for failure in exc.exceptions:
                report.failures.setdefault(f"{label}: {failure.title}", str(exc)[:3000])

    run()


# ---------------------------------------------------------------- consistency


LIVE = "('pending_payment', 'trialing', 'active', 'past_due')"
ALL = "('pending_payment', 'trialing', 'active', 'past_due', 'canceled', 'expired')"

CONSISTENCY_CHECKS: dict[str, str] = {
    "plan_movies without a plan": """
        SELECT pm.plan_id::text FROM plan_movies pm LEFT JOIN plans p ON p.id = pm.plan_id
        WHERE p.id IS NULL""",
    "plan_movies without a movie": """
        SELECT pm.movie_id::text FROM plan_movies pm
        LEFT JOIN catalog_movies m ON m.id = pm.movie_id WHERE m.id IS NULL""",
    "subscriptions without a user": """
        SELECT s.id::text FROM subscriptions s LEFT JOIN users u ON u.id = s.user_id
        WHERE u.id IS NULL""",
    "subscriptions without a plan": """
        SELECT s.id::text FROM subscriptions s LEFT JOIN plans p ON p.id = s.plan_id
        WHERE p.id IS NULL""",
    "users with more than one live subscription": f"""
        SELECT user_id::text FROM subscriptions WHERE status IN {LIVE}
        GROUP BY user_id HAVING count(*) > 1""",
    "subscriptions with an unknown status": f"""
        SELECT id::text FROM subscriptions WHERE status NOT IN {ALL}""",
    "refresh tokens without a user": """
        SELECT t.id::text FROM refresh_tokens t LEFT JOIN users u ON u.id = t.user_id
        WHERE u.id IS NULL""",
    "live refresh tokens of deleted users": """
        SELECT t.id::text FROM refresh_tokens t JOIN users u ON u.id = t.user_id
        WHERE u.deleted_at IS NOT NULL AND t.revoked_at IS NULL AND t.rotated_at IS NULL""",
    "playback progress without a user": """
        SELECT p.user_id::text FROM playback_progress p LEFT JOIN users u ON u.id = p.user_id
        WHERE u.id IS NULL""",
    "users with an unknown role or an unnormalized e-mail": """
        SELECT id::text FROM users WHERE role NOT IN ('admin', 'viewer') OR email <> lower(email)""",
    "plans outside their validation rules": """
        SELECT id::text FROM plans WHERE currency !~ '^[A-Z]{3}$' OR max_streams NOT BETWEEN 1 AND 100
        OR max_height NOT BETWEEN 144 AND 8640 OR price_cents < 0""",
    "movie_actors without a movie": """
        SELECT ma.movie_id::text FROM movie_actors ma LEFT JOIN movies m ON m.id = ma.movie_id
        WHERE m.id IS NULL""",
    "movie_actors without an actor": """
        SELECT ma.actor_id::text FROM movie_actors ma LEFT JOIN actors a ON a.id = ma.actor_id
        WHERE a.id IS NULL""",
    "movie_genres without a movie": """
        SELECT g.movie_id::text FROM movie_genres g LEFT JOIN movies m ON m.id = g.movie_id
        WHERE m.id IS NULL""",
    "movie_genres that disagree with movies.genres": """
        SELECT m.id::text FROM movies m WHERE
          (SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM json_array_elements_text(m.genres::json) x)
          IS DISTINCT FROM
          (SELECT coalesce(array_agg(g.genre::text ORDER BY g.genre), '{}') FROM movie_genres g
           WHERE g.movie_id = m.id)""",
    "ready movies without media": """
        SELECT id::text FROM movies WHERE status = 'ready' AND (media IS NULL OR media_key IS NULL)""",
    "actors with an invalid nationality": """
        SELECT id::text FROM actors WHERE nationality IS NOT NULL AND nationality !~ '^[A-Z]{2}$'""",
    "outbox events for missing movies": """
        SELECT o.seq::text FROM catalog_outbox o
        LEFT JOIN movies m ON m.id = ((o.envelope::json -> 'data' ->> 'id')::uuid)
        WHERE m.id IS NULL""",
}

# Eventually consistent: once the outbox is relayed and the projection caught up.
PROJECTION_CHECK = """
    SELECT m.id::text FROM movies m LEFT JOIN catalog_movies c ON c.id = m.id
    WHERE c.id IS NULL OR c.deleted <> (m.deleted_at IS NOT NULL) OR c.status <> m.status
       OR c.title <> m.title
"""
UNSENT_OUTBOX = "SELECT count(*) FROM catalog_outbox WHERE sent_at IS NULL"


async def inconsistencies(database_url: str, wait_s: float = 30.0) -> dict[str, list[str]]:
    engine = make_engine(database_url)
    found: dict[str, list[str]] = {}
    try:
        async with engine.connect() as connection:
            for name, sql in CONSISTENCY_CHECKS.items():
                rows = (await connection.execute(text(sql))).scalars().all()
                if rows:
                    found[name] = list(rows)[:10]
        deadline = time.monotonic() + wait_s
        while True:
            async with engine.connect() as connection:
                unsent = (await connection.execute(text(UNSENT_OUTBOX))).scalar_one()
                stale = (await connection.execute(text(PROJECTION_CHECK))).scalars().all()
            if (not unsent and not stale) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        if unsent:
            found["outbox events never relayed"] = [str(unsent)]
        if stale:
            found["movies the entitlements projection does not match"] = list(stale)[:10]
    finally:
        await engine.dispose()
    return found
