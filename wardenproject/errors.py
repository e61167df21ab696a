"""Domain errors and their single mapping to HTTP answers.

Every app raises subclasses of ``DomainError``; the API exception handler (and the HTML
views, through ``messages``) turn them into a JSON body ``{code, detail, field}`` with the
error's status. Nothing reaches the client as a bare 500.

Only a lost database connection (``OperationalError``, ``InterfaceError``) is answered 503
``unavailable``. Any other database error (``DataError``, ``IntegrityError``…) is a bug or
input that validation should have refused: it is left to Django, which logs it with its
traceback and answers through ``handler500``.

The URL conf's error handlers (``handler400`` … ``handler500`` below) answer JSON on the
paths of the API, the SDK endpoints and the health probes (``answers_json``) and Django's
HTML pages everywhere else: errors raised outside a view (URL resolution, middleware,
Django's own request parsing) and unexpected ones are JSON there too.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class DomainError(Exception):
    status: int = HTTPStatus.BAD_REQUEST
    code: str = "invalid"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        code: str | None = None,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra = extra or {}
        self.headers = headers or {}

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.detail, "field": self.field, **self.extra}


class ValidationFailed(DomainError):
    status = HTTPStatus.BAD_REQUEST
    code = "invalid"


class NotFound(DomainError):
    status = HTTPStatus.NOT_FOUND
    code = "not_found"


class Forbidden(DomainError):
    status = HTTPStatus.FORBIDDEN
    code = "forbidden"


class Conflict(DomainError):
    status = HTTPStatus.CONFLICT
    code = "conflict"


class PayloadTooLarge(DomainError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "too_large"

    @classmethod
    def over(cls, limit: int) -> PayloadTooLarge:
        return cls(f"The request body is larger than {limit} bytes.")


class PlanRequired(DomainError):
    """An action needs a higher plan. ``detail`` names the plan that unlocks it."""

    status = HTTPStatus.PAYMENT_REQUIRED
    code = "plan_required"


class RateLimited(DomainError):
    status = HTTPStatus.TOO_MANY_REQUESTS
    code = "rate_limited"


AUTHENTICATE_HEADER = 'Bearer realm="warden"'


class Unauthenticated(DomainError):
    """No usable API key: 401 with the ``WWW-Authenticate`` challenge a 401 must carry."""

    status = HTTPStatus.UNAUTHORIZED
    code = "unauthenticated"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": AUTHENTICATE_HEADER})


_DRF_CODES = {
    drf_exceptions.NotAuthenticated: "unauthenticated",
    drf_exceptions.AuthenticationFailed: "unauthenticated",
    drf_exceptions.PermissionDenied: "forbidden",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.ParseError: "invalid_json",
    drf_exceptions.Throttled: "rate_limited",
}


def _first_field_error(detail: Any, prefix: str = "") -> tuple[str | None, str]:
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else None
            full = f"{prefix}.{name}" if prefix and name else (name or prefix or None)
            field, message = _first_field_error(value, full or "")
            return field or full, message
    if isinstance(detail, list) and detail:
        return _first_field_error(detail[0], prefix)
    return (prefix or None), str(detail)


ErrorAnswer = tuple[int, dict[str, Any], dict[str, str]]


def _answer(
    http_status: int,
    code: str,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ErrorAnswer:
    return http_status, {"code": code, "detail": detail, "field": field, **extra}, headers or {}


def error_answer(exc: Exception, where: object = None) -> ErrorAnswer | None:
    """The status, JSON body and headers that answer ``exc``; None for an unexpected error
    (left to Django, which logs it and answers through ``handler500``). ``where`` names the
    view in the log line of a database outage."""
    if isinstance(exc, DomainError):
        return _answer(exc.status, exc.code, exc.detail, exc.field, exc.headers, **exc.extra)
    if isinstance(exc, Http404):
        return _answer(HTTPStatus.NOT_FOUND, "not_found", "Not found.")
    if isinstance(exc, PermissionDenied):
        return _answer(HTTPStatus.FORBIDDEN, "forbidden", str(exc) or "Forbidden.")
    if isinstance(exc, drf_exceptions.ValidationError):
        field, message = _first_field_error(exc.detail)
        return _answer(HTTPStatus.BAD_REQUEST, "invalid", message, field)
    if isinstance(exc, drf_exceptions.APIException):
        code = next((c for t, c in _DRF_CODES.items() if isinstance(exc, t)), "error")
        headers = {}
        if isinstance(exc, drf_exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(max(1, int(exc.wait)))
        status = exc.status_code
        if code == "unauthenticated":
            status = HTTPStatus.UNAUTHORIZED
            headers["WWW-Authenticate"] = AUTHENTICATE_HEADER
        return _answer(status, code, str(exc.detail), headers=headers)
    if isinstance(exc, RequestDataTooBig):
        return _too_large_answer()
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.exception("database unavailable while serving %s", where)
        return _answer(
            HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", "The database is unavailable."
        )
    return None


def _too_large_answer() -> ErrorAnswer:
    """Django's own limit (``DATA_UPLOAD_MAX_MEMORY_SIZE``), answered as ``body_bytes``
    answers the API's."""
    error = PayloadTooLarge.over(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    return _answer(error.status, error.code, error.detail)


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's exception handler (settings.REST_FRAMEWORK): every API error as ``error_answer``."""
    answer = error_answer(exc, context.get("view"))
    if answer is None:
        return None
    status, body, headers = answer
    return Response(body, status=status, headers=headers)


def error_json_response(exc: Exception, where: object = None) -> JsonResponse | None:
    """``error_answer`` as a plain Django response (views that bypass DRF's dispatch)."""
    answer = error_answer(exc, where)
    if answer is None:
        return None
    status, body, headers = answer
    return JsonResponse(body, status=status, headers=headers)


# --- The URL conf's error handlers -----------------------------------------------------------

# Paths answered in JSON, errors included: the API, the Arden and AgentWarden endpoints at
# the root, and the health probes. Everything else is an HTML page.
JSON_PATH_PREFIXES = (
    "/api/",
    "/policy/",
    "/status/",
    "/approve/",
    "/deny/",
    "/token-usage",
    "/sdk/",
    "/healthz",
    "/readyz",
)


def answers_json(request: HttpRequest) -> bool:
    return request.path_info.startswith(JSON_PATH_PREFIXES)


def _json(answer: ErrorAnswer) -> JsonResponse:
    status, body, headers = answer
    return JsonResponse(body, status=status, headers=headers)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler400``: Django's refusals of a request (``SuspiciousOperation``), among them a
    body past ``DATA_UPLOAD_MAX_MEMORY_SIZE``, which is a 413 ``too_large`` in JSON."""
    if not answers_json(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return _json(_too_large_answer())
    return _json(_answer(HTTPStatus.BAD_REQUEST, "invalid", "Bad request."))


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler403``."""
    if not answers_json(request):
        return defaults.permission_denied(request, exception)
    return _json(_answer(HTTPStatus.FORBIDDEN, "forbidden", str(exception or "") or "Forbidden."))


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: also for paths no URL matches, and URLs with a NUL character."""
    if not answers_json(request):
        return defaults.page_not_found(request, exception)
    return _json(_answer(HTTPStatus.NOT_FOUND, "not_found", "Not found."))


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: an unexpected error (logged by Django with its traceback)."""
    if not answers_json(request):
        return defaults.server_error(request)
    return _json(_answer(HTTPStatus.INTERNAL_SERVER_ERROR, "error", "Internal server error."))
