from __future__ import annotations

from rest_framework.authentication import BaseAuthentication


class ApiKeyAuthentication(BaseAuthentication):
    """Placeholder until the API-key service lands: authenticates nobody."""

    def authenticate(self, request):
        return None
