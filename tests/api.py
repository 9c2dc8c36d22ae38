"""A thin client for the JSON APIs, used by tests to set up state in few lines."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

from aiohttp.test_utils import TestClient


class Api:
    def __init__(self, client: TestClient, token: str | None = None) -> None:
        self.client = client
        self.token = token

    def as_(self, token: str | None) -> Api:
        return Api(self.client, token)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    async def call(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any, Any]:
        if body is not None:
            kwargs["json"] = body
        async with self.client.request(method, path, headers=self._headers(headers), **kwargs) as r:
            raw = await r.read()
            data = json.loads(raw) if raw and "json" in r.headers.get("Content-Type", "") else raw
            return r.status, data, r.headers

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200, **kw: Any) -> Any:
        got, data, _ = await self.call(method, path, body, **kw)
        assert got == status, f"{method} {path}: {got} {data!r}"
        return data

    async def login(self, email: str, password: str) -> Api:
        pair = await self.as_(None).ok("POST", "/api/auth/login", {"email": email, "password": password})
        return self.as_(pair["access_token"])

    async def register_viewer(self, email: str | None = None, password: str = "viewer-pass-1") -> tuple[Api, dict]:
        email = email or f"viewer-{uuid.uuid4().hex[:8]}@example.com"
        user = await self.as_(None).ok(
            "POST", "/api/auth/register", {"email": email, "password": password, "name": "Viewer"},
            status=201,
        )
        return await self.login(email, password), user


def sign(secret: str, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
