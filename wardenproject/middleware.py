"""Middleware of the project itself (apps keep theirs in their own modules)."""

from __future__ import annotations

from collections.abc import Callable

from csp.middleware import CSPMiddleware
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.security import SecurityMiddleware
from django.urls import resolve
from django.views import defaults

from wardenproject.errors import ValidationFailed, answers_json, error_json_response

# POST endpoints authenticated by API key alone: agents call them for every tool call.
KEY_ONLY_HOT_PATHS = frozenset({"/api/v1/check", "/policy/check", "/sdk/check", "/sdk/log"})


class KeyOnlyHotPathMiddleware:
    """Send the agents' check calls straight to their view, past the rest of the stack.

    Sessions, user authentication, CSRF, messages, allauth and the current-organisation
    lookup serve people in browsers; these endpoints take an API key and nothing else, and
    the middleware chain cost about a third of a check's CPU. Everything else (exceptions
    mapped to JSON, the API-key check, rate limits, request_started/finished and their
    database connection handling) still happens, inside the view or Django's handler.
    Must be first in MIDDLEWARE. Django's SecurityMiddleware still runs around the view (the
    HTTPS redirect with SECURE_SSL_REDIRECT, HSTS, nosniff, Referrer-Policy); this sets the
    Content-Length and X-Frame-Options that the skipped middleware would.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._views: dict[str, Callable[..., HttpResponse]] = {}
        # Its own instance (it reads the settings once, like the one in MIDDLEWARE).
        self._security = SecurityMiddleware(get_response)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if request.method != "POST" or path not in KEY_ONLY_HOT_PATHS:
            return self.get_response(request)
        security = self._security
        response = security.process_request(request)  # the HTTPS redirect, if configured
        if response is None:
            view = self._views.get(path)
            if view is None:
                view = self._views[path] = resolve(path).func
            response = view(request)
            if hasattr(response, "render") and not response.is_rendered:
                response = response.render()  # DRF answers are template responses
        response = security.process_response(request, response)
        if not response.streaming and "Content-Length" not in response.headers:
            response.headers["Content-Length"] = str(len(response.content))
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response


class HtmlContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware, for HTML answers only.

    A policy governs what a page may load and run; JSON, CSV and static files run nothing
    (and carry nosniff). django-csp builds the header anew for each answer, about 75 µs of
    CPU on the 2-core lab machine, which the API's polling endpoints need not pay.
    """

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        return super().process_response(request, response)


class NulCharacterMiddleware:
    """Refuse URLs with a NUL character before any view looks anything up with them.

    A NUL names nothing (PostgreSQL refuses it in text, so a lookup would fail as a database
    error): in the path it is a 404, in the query string a 400 naming the parameter (None
    when it is in a parameter's name). JSON on the API's paths, HTML on the pages.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path_info:
            raise Http404("No such page.")
        query = request.META.get("QUERY_STRING", "")
        if "%00" in query or "\x00" in query:
            refusal = self._query_refusal(request)
            if refusal is not None:
                if answers_json(request):
                    return error_json_response(refusal)  # type: ignore[return-value]
                return defaults.bad_request(request, refusal)
        return self.get_response(request)

    @staticmethod
    def _query_refusal(request: HttpRequest) -> ValidationFailed | None:
        for name, values in request.GET.lists():
            if "\x00" in name:
                return ValidationFailed("A query parameter's name contains a NUL character.")
            if any("\x00" in value for value in values):
                return ValidationFailed(
                    f"The query parameter {name} contains a NUL character.", field=name
                )
        return None
