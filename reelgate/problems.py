"""RFC 9457 problem details: the one error shape every node answers with.

Handlers raise `Problem` (or one of its helpers); the middleware in
`reelgate.http` turns it, and any unexpected exception, into
`application/problem+json`. Nothing else builds error bodies.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str = "",
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://reelgate.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail or self.title,
            "code": self.code,
        }
        body.update(self.extra)
        return body

    def response(self) -> web.Response:
        return problem_response(self.status, self.body(), self.headers)


def problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def unauthorized(detail: str = "A valid access token is required.") -> Problem:
    # RFC 6750 §3: the challenge names the error so clients know to refresh.
    return Problem(
        401,
        "invalid_token",
        detail,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def forbidden(detail: str = "You may not do this.", code: str = "forbidden", **extra: Any) -> Problem:
    return Problem(403, code, detail, **extra)


def not_found(what: str = "Resource") -> Problem:
    return Problem(404, "not_found", f"{what} not found.")


def conflict(code: str, detail: str, **extra: Any) -> Problem:
    return Problem(409, code, detail, **extra)


def validation_failed(errors: list[dict[str, str]], detail: str = "The request is invalid.") -> Problem:
    return Problem(422, "validation_failed", detail, errors=errors)
