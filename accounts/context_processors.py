from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject


def _memberships(request: HttpRequest) -> list:
    from accounts.selectors import organizations_for_user

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    return organizations_for_user(user=user)


def _pending_invitation(request: HttpRequest):
    from accounts.forms import pending_invitation

    return pending_invitation(request)


def organization(request: HttpRequest) -> dict:
    """``current_organization``; lazily ``user_memberships`` (the switcher) and the
    ``pending_invitation`` a visitor is signing up or logging in for."""
    org = getattr(request, "organization", None)
    return {
        "current_organization": org if org else None,
        "user_memberships": SimpleLazyObject(lambda: _memberships(request)),
        "pending_invitation": SimpleLazyObject(lambda: _pending_invitation(request)),
    }
