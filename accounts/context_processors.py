from __future__ import annotations

from django.http import HttpRequest


def organization(request: HttpRequest) -> dict:
    org = getattr(request, "organization", None)
    return {"current_organization": org if org else None}
