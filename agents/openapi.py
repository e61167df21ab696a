"""How the OpenAPI schema (drf-spectacular, ``/api/schema/``, ``/api/docs/``) describes
Warden's API-key authentication: an ``X-API-Key`` header or an ``Authorization: Bearer``
token, either one (agents.authentication reads both). Swagger UI's "Authorize" takes a key
for each, and "Try it out" then sends it."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

API_KEY_SCHEME = "ApiKey"
BEARER_SCHEME = "Bearer"
# The security requirement of the endpoints that take only a key (the check endpoints).
KEY_ONLY_AUTH: list[dict[str, list[str]]] = [{API_KEY_SCHEME: []}, {BEARER_SCHEME: []}]


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "agents.authentication.ApiKeyAuthentication"
    name = [API_KEY_SCHEME, BEARER_SCHEME]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        # Either scheme on its own (OR), not both together.
        return [{API_KEY_SCHEME: []}, {BEARER_SCHEME: []}]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return [
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "An agent, organisation or approver key (wdn_...).",
            },
            {
                "type": "http",
                "scheme": "bearer",
                "description": "The same key as `Authorization: Bearer <key>`.",
            },
        ]
