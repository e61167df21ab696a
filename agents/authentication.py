"""API-key authentication for the native and compatible APIs.

A key arrives as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``. A good key makes
``request.user`` and ``request.auth`` an ``ApiPrincipal`` (key, organisation with plan,
agent id, kind, environment); a missing key leaves the request to session authentication;
an unknown, revoked or expired key is a 401 ``unauthenticated``. Every keyed request counts
against the organisation's plan rate (429 ``rate_limited`` with ``Retry-After``).
"""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from agents import runtime
from agents.runtime import ApiPrincipal
from wardenproject.errors import AUTHENTICATE_HEADER

UNUSABLE_KEY = "Unknown, revoked or expired API key."


def raw_key_from(request: Request | HttpRequest) -> str | None:
    meta = request.META
    key = meta.get("HTTP_X_API_KEY")
    if key:
        return key.strip()
    authorization = meta.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def principal_authenticate(raw_key: str) -> ApiPrincipal | None:
    """The principal of a usable key, counted against its plan's rate (raises
    ``RateLimited``) and touched; None for an unknown, revoked or expired key."""
    principal = runtime.principal_for_key(raw_key)
    if principal is None:
        return None
    runtime.rate_limit_hit(principal.organization)
    runtime.key_touch(principal)
    return principal


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiPrincipal, ApiPrincipal] | None:
        raw_key = raw_key_from(request)
        if raw_key is None:
            return None
        principal = principal_authenticate(raw_key)
        if principal is None:
            raise AuthenticationFailed(UNUSABLE_KEY)
        return principal, principal

    def authenticate_header(self, request: Request) -> str:
        return AUTHENTICATE_HEADER
