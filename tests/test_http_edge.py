"""The edge middleware when a client goes away in the middle of its request
body (locust stopping 1,200 users did this): no traceback in any log, one
access line, and the handler's read ends with a 4xx problem."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from aiohttp import web

from reelgate.http import base_app, read_json
from tests.harness.ports import free_port


async def test_a_body_cut_short_by_the_client_is_a_quiet_400(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = base_app("edge-test")
    seen: list[int] = []

    async def create(request: web.Request) -> web.Response:
        await read_json(request)
        return web.json_response({})

    @web.middleware
    async def status_of(request: web.Request, handler):  # type: ignore[no-untyped-def]
        response = await handler(request)
        seen.append(response.status)
        return response

    app.router.add_post("/things", create)
    app.middlewares.insert(0, status_of)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    caplog.set_level(logging.INFO)
    try:
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(
                b"POST /things HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{\"title\": \"half"
            )
            await asyncio.sleep(0.1)  # the handler is reading the body now
        for _ in range(50):
            if seen:
                break
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert seen == [400]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.name == "aiohttp.server"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("client aborted POST /things") for m in messages), messages
    assert any(" POST /things 400 " in m for m in messages), messages
