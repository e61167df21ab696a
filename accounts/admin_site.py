"""The Django admin's site: its login has the same failure limits as the site's login.

Django's admin login would try passwords without limit. Its form authenticates through
allauth's adapter instead, the very path of the site's login (``accounts/adapters.py``), so
it gets allauth's ``login_failed`` limits (``ACCOUNT_RATE_LIMITS``: per client address and
per account, counted in the cache, i.e. Redis in production) and shares their counters: an
account has one budget of failures whichever form is used, and a success does not reset it.
Once the limit is reached even the right password is refused, with a 429 lockout page,
until the window has passed. Everything else (staff only, inactive users refused) is
Django's ``AdminAuthenticationForm``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from allauth.account.adapter import get_adapter
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

TOO_MANY_ATTEMPTS = "too_many_login_attempts"


class RateLimitedAdminLoginForm(AdminAuthenticationForm):
    """``AdminAuthenticationForm`` whose password check is allauth's rate-limited one."""

    rate_limited = False

    def clean(self) -> dict[str, Any]:
        email = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if email is not None and password:
            try:
                self.user_cache = get_adapter(self.request).authenticate(
                    self.request, email=email, password=password
                )
            except ValidationError as exc:
                self.rate_limited = exc.code == TOO_MANY_ATTEMPTS
                raise
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """Records the product writes (deliveries, attempts, events, token usage): browse and
    search them, never add, change or delete them here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class WardenAdminSite(admin.AdminSite):
    """The operator's admin (staff accounts). Organisations review their approvals on the
    dashboard (/approvals/), not here: a signed-in person who is not staff gets a page that
    says so, not Django's login form again."""

    login_form = RateLimitedAdminLoginForm
    site_header = "Warden administration"
    site_title = "Warden admin"

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        signed_in = request.method == "GET" and request.user.is_authenticated
        if signed_in and not self.has_permission(request):
            return self._not_operator(request)
        response = super().login(request, extra_context)
        form = (getattr(response, "context_data", None) or {}).get("form")
        if getattr(form, "rate_limited", False):
            return self._locked_out(request)
        return response

    def _not_operator(self, request: HttpRequest) -> HttpResponse:
        context = {**self.each_context(request), "title": "The admin is the operator's"}
        return TemplateResponse(
            request, "admin/not_operator.html", context, status=HTTPStatus.FORBIDDEN
        )

    def _locked_out(self, request: HttpRequest) -> HttpResponse:
        context = {**self.each_context(request), "title": "Too many failed login attempts"}
        return TemplateResponse(
            request, "admin/login_locked.html", context, status=HTTPStatus.TOO_MANY_REQUESTS
        )
