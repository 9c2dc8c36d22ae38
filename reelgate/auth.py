"""Who is calling: bearer access tokens and the service key, for every API node."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass

from aiohttp import web

from reelgate.problems import forbidden, unauthorized
from reelgate.tokens import ACCESS_AUDIENCE, InvalidToken, TokenVerifier

VERIFIER_KEY = web.AppKey("token_verifier", TokenVerifier)
SERVICE_KEY_KEY = web.AppKey("service_key", str)
SERVICE_KEY_HEADER = "X-Reelgate-Service-Key"


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID | None
    role: str  # "admin", "viewer" or "service"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


PRINCIPAL = web.RequestKey("principal", Principal)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def current_principal(request: web.Request) -> Principal:
    """The caller, or a 401 with the RFC 6750 challenge."""
    cached = request.get(PRINCIPAL)
    if cached is not None:
        return cached
    token = bearer_token(request)
    if token is None:
        raise unauthorized("Send an access token as 'Authorization: Bearer <token>'.")
    try:
        claims = request.app[VERIFIER_KEY].verify(
            token, audience=ACCESS_AUDIENCE, token_type="access"
        )
    except InvalidToken:
        raise unauthorized("The access token is invalid or has expired.") from None
    if claims.role not in ("admin", "viewer"):
        raise unauthorized("The access token carries no usable role.")
    principal = Principal(user_id=claims.subject, role=claims.role)
    request[PRINCIPAL] = principal
    return principal


def optional_principal(request: web.Request) -> Principal | None:
    if bearer_token(request) is None:
        return None
    return current_principal(request)


def require_admin(request: web.Request) -> Principal:
    principal = current_principal(request)
    if not principal.is_admin:
        raise forbidden("This action needs the admin role.", code="admin_required")
    return principal


def is_service_call(request: web.Request) -> bool:
    """Internal callers (media nodes, the worker) present the shared service key."""
    presented = request.headers.get(SERVICE_KEY_HEADER)
    expected = request.app.get(SERVICE_KEY_KEY)
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def require_admin_or_service(request: web.Request) -> Principal:
    if is_service_call(request):
        return Principal(user_id=None, role="service")
    return require_admin(request)
