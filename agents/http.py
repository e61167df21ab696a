"""Reading request bodies for the API (size limit first, then JSON through the one strict
reader, wardenproject.strictjson, then typed fields), and the lean POST dispatch of the
endpoints agents call once per tool call."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.views import APIView

from agents.authentication import UNUSABLE_KEY, principal_authenticate, raw_key_from
from agents.permissions import IsAgentOrOrgKey
from agents.policy import action_name_problem
from wardenproject.errors import (
    Forbidden,
    Unauthenticated,
    ValidationFailed,
    error_json_response,
)
from wardenproject.strictjson import body_bytes as body_bytes  # the views import it from here
from wardenproject.strictjson import json_parse


def json_object(request: Request | HttpRequest, limit: int | None = None) -> dict[str, Any]:
    """The body as a JSON object (read by ``json_parse``), or 400 ``invalid_json`` /
    ``invalid`` naming the field."""
    raw = body_bytes(request, limit)
    if not raw.strip():
        raise ValidationFailed("The request body must be a JSON object.", code="invalid_json")
    data = json_parse(raw)
    if not isinstance(data, dict):
        raise ValidationFailed("The request body must be a JSON object.")
    return data


def idempotency_key_from(request: HttpRequest, *, max_length: int = 200) -> str:
    """The ``Idempotency-Key`` header ('' without one): printable text of at most
    ``max_length`` characters (it is stored with the check), else 400 naming the header."""
    key = request.META.get("HTTP_IDEMPOTENCY_KEY", "")
    if key and not key.isprintable():
        raise ValidationFailed(
            "Idempotency-Key must not contain control characters.", field="Idempotency-Key"
        )
    if len(key) > max_length:
        raise ValidationFailed(
            f"Idempotency-Key must be at most {max_length} characters.", field="Idempotency-Key"
        )
    return key


def string_field(
    data: dict[str, Any],
    name: str,
    *,
    required: bool = False,
    max_length: int = 200,
    default: str = "",
    label: str | None = None,
) -> str:
    label = label or name
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationFailed(f"{label} is required.", field=label)
        return default
    if not isinstance(value, str):
        raise ValidationFailed(f"{label} must be a string.", field=label)
    if required and not value.strip():
        raise ValidationFailed(f"{label} must not be empty.", field=label)
    if len(value) > max_length:
        raise ValidationFailed(f"{label} must be at most {max_length} characters.", field=label)
    return value


def action_field(data: dict[str, Any], name: str, *, label: str | None = None) -> str:
    """A required action name: at most 200 characters of the documented set (no whitespace
    or control characters), 400 naming the field otherwise."""
    label = label or name
    value = data.get(name)
    if value is None:
        raise ValidationFailed(f"{label} is required.", field=label)
    problem = action_name_problem(value)
    if problem is not None:
        raise ValidationFailed(f"{label} {problem}.", field=label)
    return value


def object_field(
    data: dict[str, Any], name: str, *, label: str | None = None
) -> dict[str, Any] | None:
    label = label or name
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationFailed(f"{label} must be a JSON object.", field=label)
    return value


def int_field(
    data: dict[str, Any],
    name: str,
    *,
    required: bool = False,
    minimum: int = 0,
    maximum: int = 2**31 - 1,
    default: int = 0,
) -> int:
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationFailed(f"{name} is required.", field=name)
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationFailed(f"{name} must be a whole number.", field=name)
    if not minimum <= value <= maximum:
        raise ValidationFailed(f"{name} must be from {minimum} to {maximum}.", field=name)
    return value


def bool_field(data: dict[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ValidationFailed(f"{name} must be true or false.", field=name)
    return value


class JsonOnlyNegotiation(BaseContentNegotiation):
    """The check endpoints speak JSON only: skip parsing Accept headers on the hot path."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[Any], format_suffix: str | None = None
    ) -> tuple[Any, str]:
        return renderers[0], renderers[0].media_type


class KeyOnlyPostView(APIView):
    """An API view whose POST is served without DRF's request machinery.

    Agents call the check endpoints (and ``/sdk/log``) once per tool call, with an API key
    and a JSON body and nothing else; DRF's dispatch (its Request wrapper, the authenticator
    and permission loops, content negotiation, finalising the response) was a tenth of such a
    call's CPU. So a POST here is served directly: the key is read and checked as
    ``ApiKeyAuthentication`` does it (401 ``unauthenticated`` for a missing or unusable key,
    429 ``rate_limited`` past the plan's rate), a key of a kind outside ``key_kinds`` gets
    403 ``forbidden``, and ``post()`` runs with the plain ``HttpRequest`` (whose ``auth`` is
    the principal, so ``api_principal`` works) and returns its JSON answer. Errors map
    through ``error_answer`` like everywhere else in the API. Other methods go through DRF
    as usual (405), and the OpenAPI schema is read from the class as for any APIView.
    """

    permission_classes = [IsAgentOrOrgKey]
    content_negotiation_class = JsonOnlyNegotiation
    key_kinds: frozenset[str] = IsAgentOrOrgKey.kinds

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            return super().dispatch(request, *args, **kwargs)
        self.args, self.kwargs, self.request = args, kwargs, request
        try:
            raw_key = raw_key_from(request)
            if raw_key is None:
                raise Unauthenticated("Authentication credentials were not provided.")
            principal = principal_authenticate(raw_key)
            if principal is None:
                raise Unauthenticated(UNUSABLE_KEY)
            if principal.kind not in self.key_kinds:
                raise Forbidden(IsAgentOrOrgKey.message)
            request.auth = principal
            return self.post(request, *args, **kwargs)
        except Exception as exc:
            response = error_json_response(exc, self)
            if response is None:
                raise
            return response
