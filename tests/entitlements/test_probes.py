"""Liveness, readiness and metrics of the entitlements node."""

from __future__ import annotations

from tests.entitlements.support import check_path


async def test_healthz_is_200(api):
    status, body, _ = await api.call("GET", "/healthz")
    assert (status, body) == (200, {"status": "ok"})


async def test_readyz_is_200_with_database_and_redis_up(api):
    status, body, _ = await api.call("GET", "/readyz")
    assert (status, body) == (200, {"status": "ready"})


async def test_metrics_expose_requests_and_decisions(api, admin, publish_movie):
    movie = await publish_movie()
    _, user = await api.register_viewer()
    await admin.ok("GET", check_path(user["id"], movie))
    status, body, headers = await api.call("GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert 'reelgate_http_requests_total{' in text
    assert 'route="/api/entitlements/check"' in text  # the template, never a concrete path
    assert str(user["id"]) not in text
    decisions = [line for line in text.splitlines()
                 if line.startswith("reelgate_entitlement_decisions_total{")]
    assert any('reason="no_subscription"' in line and 'service="entitlements"' in line
               for line in decisions), decisions


async def test_every_response_carries_a_request_id(api):
    _, _, headers = await api.call("GET", "/healthz", headers={"X-Request-ID": "abc-123"})
    assert headers["X-Request-ID"] == "abc-123"
    _, _, headers = await api.call("GET", "/healthz", headers={"X-Request-ID": "bad id\t!"})
    assert headers["X-Request-ID"] and headers["X-Request-ID"] != "bad id\t!"
