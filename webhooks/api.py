"""JSON API under /api/v1/webhooks/: parse, call one service or selector, render."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.utils.cache import patch_cache_control
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Membership
from accounts.permissions import Capability, membership_require, membership_require_capability
from agents.permissions import IsMember, IsWebhookManager
from agents.schemas import ERRORS
from wardenproject.errors import ValidationFailed
from wardenproject.jsonutil import iso
from wardenproject.timeparse import datetime_parse_utc
from webhooks import selectors, services
from webhooks.models import Attempt, Delivery, Endpoint
from webhooks.schemas import (
    DeliveryListSerializer,
    DeliverySerializer,
    EndpointCreateSerializer,
    EndpointListSerializer,
    EndpointSerializer,
    EndpointUpdateSerializer,
    EndpointWithSecretSerializer,
    RecoverRequestSerializer,
    RecoverResponseSerializer,
)

TAGS = ["webhooks"]


def endpoint_json(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.public_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "format": endpoint.format,
        "events": endpoint.events,
        "agents": [a.public_id for a in endpoint.agents.all()],
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason or None,
        "failing_since": iso(endpoint.failing_since),
        "previous_secret_expires_at": iso(endpoint.previous_secret_expires_at),
        "created_at": iso(endpoint.created_at),
    }


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "at": iso(attempt.created_at),
        "url": attempt.request_url,
        "request_headers": attempt.request_headers,
        "request_body": attempt.request_body,
        "response_status": attempt.response_status,
        "response_body": attempt.response_body,
        "duration_ms": attempt.duration_ms,
        "error": attempt.error or None,
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.public_id,
        "endpoint_id": delivery.endpoint.public_id,
        "event_id": delivery.event.public_id,
        "event_type": delivery.event.event_type,
        "action_id": delivery.event.action_id or None,
        "status": delivery.status,
        "attempt_count": delivery.attempt_count,
        "next_attempt_at": iso(delivery.next_attempt_at)
        if delivery.status == Delivery.Status.PENDING
        else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error or None,
        "created_at": iso(delivery.created_at),
        "completed_at": iso(delivery.completed_at),
        "attempts": [attempt_json(a) for a in delivery.attempts.all()],
    }


def _membership(request: Request, *, manage: bool) -> Membership:
    membership = membership_require(
        user=request.user, organization=getattr(request, "organization", None)
    )
    if manage:
        membership_require_capability(membership, Capability.MANAGE_WEBHOOKS)
    return membership


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ValidationFailed("The body must be a JSON object.")
    return request.data


def _str(data: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationFailed(f"{name} is required.", field=name)
        return None
    if not isinstance(value, str):
        raise ValidationFailed(f"{name} must be a string.", field=name)
    return value


class WebhookApiView(APIView):
    """Members read, owners and admins manage; API keys get 403 (as for agents and rules)."""

    def get_permissions(self) -> list[Any]:
        return [IsMember()] if self.request.method == "GET" else [IsWebhookManager()]


class EndpointListView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_endpoints_list",
        tags=TAGS,
        responses={200: EndpointListSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        membership = _membership(request, manage=False)
        endpoints = selectors.endpoint_list(organization=membership.organization)
        return Response({"results": [endpoint_json(e) for e in endpoints]})

    @extend_schema(
        operation_id="webhooks_endpoints_create",
        tags=TAGS,
        request=EndpointCreateSerializer,
        responses={201: EndpointWithSecretSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        membership = _membership(request, manage=True)
        data = _body(request)
        enabled = data.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValidationFailed("enabled must be true or false.", field="enabled")
        created = services.endpoint_create(
            organization=membership.organization,
            actor=request.user,
            url=_str(data, "url", required=True) or "",
            events=data.get("events"),
            fmt=_str(data, "format") or Endpoint.Format.STANDARD,
            description=_str(data, "description") or "",
            agents=data.get("agents"),
            enabled=enabled,
            source="api",
        )
        response = Response(
            {**endpoint_json(created.endpoint), "secret": created.secret},
            status=HTTPStatus.CREATED,
        )
        patch_cache_control(response, no_store=True)  # carries the secret: never cached
        return response


class EndpointDetailView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_endpoints_get",
        tags=TAGS,
        responses={200: EndpointSerializer, **ERRORS},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        membership = _membership(request, manage=False)
        endpoint = selectors.endpoint_get(
            organization=membership.organization, public_id=endpoint_id
        )
        return Response(endpoint_json(endpoint))

    @extend_schema(
        operation_id="webhooks_endpoints_update",
        tags=TAGS,
        request=EndpointUpdateSerializer,
        responses={200: EndpointSerializer, **ERRORS},
    )
    def patch(self, request: Request, endpoint_id: str) -> Response:
        membership = _membership(request, manage=True)
        endpoint = selectors.endpoint_get(
            organization=membership.organization, public_id=endpoint_id
        )
        data = _body(request)
        if "format" in data and data["format"] != endpoint.format:
            raise ValidationFailed(
                "The format cannot change; create a new endpoint.", field="format"
            )
        enabled = data.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise ValidationFailed("enabled must be true or false.", field="enabled")
        endpoint = services.endpoint_update(
            endpoint=endpoint,
            actor=request.user,
            source="api",
            url=_str(data, "url"),
            events=data.get("events"),
            description=_str(data, "description"),
            agents=data.get("agents"),
            enabled=enabled,
        )
        return Response(endpoint_json(endpoint))

    @extend_schema(
        operation_id="webhooks_endpoints_delete",
        tags=TAGS,
        responses={204: None, **ERRORS},
    )
    def delete(self, request: Request, endpoint_id: str) -> Response:
        membership = _membership(request, manage=True)
        endpoint = selectors.endpoint_get(
            organization=membership.organization, public_id=endpoint_id
        )
        services.endpoint_delete(endpoint=endpoint, actor=request.user, source="api")
        return Response(status=HTTPStatus.NO_CONTENT)


class EndpointRotateView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_endpoints_rotate_secret",
        tags=TAGS,
        request=None,
        responses={200: EndpointWithSecretSerializer, **ERRORS},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        membership = _membership(request, manage=True)
        endpoint = selectors.endpoint_get(
            organization=membership.organization, public_id=endpoint_id
        )
        rotated = services.endpoint_rotate_secret(
            endpoint=endpoint, actor=request.user, source="api"
        )
        response = Response({**endpoint_json(rotated.endpoint), "secret": rotated.secret})
        patch_cache_control(response, no_store=True)  # carries the secret: never cached
        return response


class EndpointTestView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_endpoints_send_test",
        tags=TAGS,
        request=None,
        responses={202: DeliverySerializer, **ERRORS},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        membership = _membership(request, manage=True)
        endpoint = selectors.endpoint_get(
            organization=membership.organization, public_id=endpoint_id
        )
        delivery = services.endpoint_send_test(endpoint=endpoint)
        return Response(delivery_json(delivery), status=HTTPStatus.ACCEPTED)


class EndpointRecoverView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_endpoints_recover",
        tags=TAGS,
        request=RecoverRequestSerializer,
        responses={202: RecoverResponseSerializer, **ERRORS},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        membership = _membership(request, manage=True)
        endpoint = selectors.endpoint_get(
            organization=membership.organization, public_id=endpoint_id
        )
        raw = _str(_body(request), "since", required=True) or ""
        since = datetime_parse_utc(raw, zone_required=True)
        if since is None:
            raise ValidationFailed(
                "since must be an ISO-8601 date-time with a time zone.", field="since"
            )
        count = services.deliveries_recover(endpoint=endpoint, since=since)
        return Response({"recovered": count}, status=HTTPStatus.ACCEPTED)


class EndpointDeliveriesView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_endpoints_deliveries",
        tags=TAGS,
        parameters=[
            OpenApiParameter("status", str, enum=Delivery.Status.values),
            OpenApiParameter("limit", int, description="1 to 500 (default 50)."),
        ],
        responses={200: DeliveryListSerializer, **ERRORS},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        membership = _membership(request, manage=False)
        endpoint = selectors.endpoint_get(
            organization=membership.organization, public_id=endpoint_id
        )
        status = request.query_params.get("status")
        if status and status not in Delivery.Status.values:
            raise ValidationFailed(
                f"status must be one of {', '.join(Delivery.Status.values)}.", field="status"
            )
        try:
            limit = min(max(int(request.query_params.get("limit", 50)), 1), 500)
        except ValueError:
            raise ValidationFailed("limit must be an integer.", field="limit") from None
        deliveries = list(selectors.delivery_list(endpoint=endpoint, status=status, limit=limit))
        return Response(
            {"results": [delivery_json(d) for d in deliveries], "count": len(deliveries)}
        )


class DeliveryDetailView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_deliveries_get",
        tags=TAGS,
        responses={200: DeliverySerializer, **ERRORS},
    )
    def get(self, request: Request, delivery_id: str) -> Response:
        membership = _membership(request, manage=False)
        delivery = selectors.delivery_get(
            organization=membership.organization, public_id=delivery_id
        )
        return Response(delivery_json(delivery))


class DeliveryResendView(WebhookApiView):
    @extend_schema(
        operation_id="webhooks_deliveries_resend",
        tags=TAGS,
        request=None,
        responses={202: DeliverySerializer, **ERRORS},
    )
    def post(self, request: Request, delivery_id: str) -> Response:
        membership = _membership(request, manage=True)
        delivery = selectors.delivery_get(
            organization=membership.organization, public_id=delivery_id
        )
        delivery = services.delivery_resend(delivery=delivery)
        return Response(delivery_json(delivery), status=HTTPStatus.ACCEPTED)
