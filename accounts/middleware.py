from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject


def _current_organization(request: HttpRequest):
    from accounts.selectors import organization_current_for_user

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return organization_current_for_user(user=user)


class CurrentOrganizationMiddleware:
    """Sets ``request.organization``: the organisation the logged-in user works in now."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.organization = SimpleLazyObject(lambda: _current_organization(request))
        return self.get_response(request)
