"""The node itself: probes, metrics, and starting before the entitlements node
(no key yet: reads work, writes are 401, /readyz is 503 until the key appears)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from catalog.app import create_app
from reelgate.config import Settings
from reelgate.tokens import TokenSigner, load_or_create_private_key
from tests.api import Api
from tests.catalog.support import assert_unauthenticated, make_movie
from tests.harness.ports import free_port


async def test_probes_and_metrics(api: Api, admin: Api) -> None:
    await make_movie(admin)
    assert await api.ok("GET", "/healthz") == {"status": "ok"}
    assert await api.ok("GET", "/readyz") == {"status": "ready"}
    metrics = (await api.ok("GET", "/metrics")).decode()
    assert (
        'reelgate_http_requests_total{method="POST",route="/api/movies",service="catalog",status="201"}'
        in metrics
    )
    assert "reelgate_events_published_total" in metrics


async def test_starting_before_the_key_exists(
    aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    key_file = tmp_path / "later" / "jwt-ed25519.pem"
    late = settings.model_copy(
        update={
            "jwt_private_key_file": key_file,
            "entitlements_url": f"http://127.0.0.1:{free_port()}",
        }
    )
    api = Api(await aiohttp_client(create_app(late)))
    status, body, _ = await api.call("GET", "/readyz")
    assert (status, body["failing"]) == (503, {"token_keys": "RuntimeError"})
    assert (await api.ok("GET", "/api/movies"))["total"] == 0
    pending = tmp_path / "pending.pem"
    signer = TokenSigner(load_or_create_private_key(pending), "reelgate")
    admin = api.as_(signer.access_token(uuid.uuid4(), "admin", 900))
    assert_unauthenticated(await admin.call("POST", "/api/movies", {"title": "Too early"}))
    key_file.parent.mkdir()
    pending.rename(key_file)  # as the entitlements node would write it
    for _ in range(100):  # the node retries after 1 s, then 2 s...
        if (await api.call("GET", "/readyz"))[0] == 200:
            break
        await asyncio.sleep(0.05)
    await make_movie(admin)
    assert_unauthenticated(await api.as_("not-a-token").call("POST", "/api/movies", {"title": "x"}))
