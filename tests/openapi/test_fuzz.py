"""Property-based fuzzing of every route of every node with schemathesis.

Real servers on real ports over PostgreSQL and Redis; every operation of each
node's own description is called with generated requests (valid ones and
invalid ones) as an admin, as a viewer and anonymously. Every answer must be
no 5xx, a documented status code, a documented content type and a body that
conforms to the documented schema; afterwards the database must still be
consistent. `REELGATE_FUZZ_EXAMPLES` (default 15 per operation, role and node)
scales the run; `make fuzz` runs a long one.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from reelgate.config import Settings
from tests.conftest import _truncate_all
from tests.openapi.fuzzing import (
    ROLES,
    LoopThread,
    Report,
    World,
    examples_per_operation,
    fuzz_node,
    inconsistencies,
    seed_world,
)
from tests.stack import start_stack

# The media node first (the seeded playback session is fresh), the catalog last (deleting the
# seeded movie ends its sessions and would leave the entitlements routes only 404s).
NODES = ("media", "entitlements", "catalog")


@pytest.fixture(scope="module")
async def fuzz_settings(
    migrated_database, redis_server, keys_dir, tmp_path_factory
) -> AsyncIterator[Settings]:
    await _truncate_all(migrated_database)
    redis.Redis.from_url(redis_server.url).flushdb()
    yield Settings(
        var_dir=tmp_path_factory.mktemp("fuzz") / "var",
        database_url=migrated_database,
        redis_url=redis_server.url,
        jwt_private_key_file=keys_dir / "jwt-ed25519.pem",
        billing_secret="fuzz-billing-secret",
        service_key="fuzz-service-key",
        password_memory_kib=1024,
        password_time_cost=1,
        admin_email="admin@example.com",
        admin_password="admin-password-1",
        # A session seeded before the run stays alive through it.
        heartbeat_interval_s=600,
    )


@pytest.fixture(scope="module")
def fuzz_system(fuzz_settings) -> Iterator[tuple[dict[str, str], dict[str, World], Settings]]:
    loop = LoopThread()
    stack = loop.run(start_stack(fuzz_settings))
    try:
        urls = {
            "entitlements": str(stack.entitlements.make_url("")).rstrip("/"),
            "catalog": str(stack.catalog.make_url("")).rstrip("/"),
            "media": str(stack.media[0].make_url("")).rstrip("/"),
        }
        # Every role's world is seeded before any fuzzing (which may hammer the login limits).
        worlds = {
            role: seed_world(urls, stack.settings, f"{role}-{uuid.uuid4().hex[:6]}")
            for role in ROLES
        }
        yield urls, worlds, stack.settings
    finally:
        loop.run(stack.close())
        loop.close()


@pytest.mark.parametrize("role", ROLES)
def test_every_route_conforms_to_its_description(fuzz_system, role):
    urls, worlds, settings = fuzz_system
    report = Report()
    started = time.monotonic()
    for service in NODES:
        fuzz_node(
            service,
            urls[service],
            worlds[role],
            role,
            settings.billing_secret,
            report,
            examples_per_operation(),
        )
    elapsed = time.monotonic() - started
    print(
        f"\nschemathesis as {role}: {len(report.examples)} operations, {report.total} requests, "
        f"{len(report.failures)} failing operations, {elapsed:.0f}s",
        file=sys.stderr,
    )
    if os.environ.get("REELGATE_FUZZ_REPORT"):
        with open(os.environ["REELGATE_FUZZ_REPORT"], "a") as out:
            out.writelines(
                f"{n:5d}  {label}  {report.samples[label]}\n"
                for label, n in sorted(report.statuses.items())
            )
            out.writelines(f"{t:7.2f}s {label}\n" for label, t in report.seconds.most_common(15))
    assert not report.failures, "\n\n".join(
        f"== {label}\n{text}" for label, text in report.failures.items()
    )
    if role != "admin":
        return
    # The fuzzer reached the handlers, not only the edge's refusals.
    reached = {
        label.split(" -> ")[0]
        for label, _ in report.statuses.items()
        if label.rsplit(" ", 1)[1].startswith("2")
    }
    assert len(reached) >= len(report.examples) // 3, sorted(reached)


def test_the_database_is_consistent_after_fuzzing(fuzz_system):
    _, _, settings = fuzz_system
    loop = LoopThread()
    try:
        found = loop.run(inconsistencies(settings.database_url))
    finally:
        loop.close()
    assert found == {}
