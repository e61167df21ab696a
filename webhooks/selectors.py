"""Webhook reads, always scoped to one organisation (anything else is a 404)."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from django.http import Http404

from accounts.models import Organization
from webhooks.models import Attempt, Delivery, Endpoint


def endpoint_list(*, organization: Organization) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(organization=organization).prefetch_related("agents")


def endpoint_get(*, organization: Organization, public_id: str) -> Endpoint:
    endpoint = (
        Endpoint.objects.filter(organization=organization, public_id=public_id)
        .select_related("organization__plan")
        .prefetch_related("agents")
        .first()
    )
    if endpoint is None:
        raise Http404("No such webhook endpoint.")
    return endpoint


def delivery_list(
    *,
    endpoint: Endpoint,
    status: str | None = None,
    event_type: str | None = None,
    limit: int = 50,
) -> QuerySet[Delivery]:
    qs = (
        Delivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related(Prefetch("attempts", queryset=Attempt.objects.order_by("number")))
        .order_by("-created_at", "-pk")
    )
    if status:
        qs = qs.filter(status=status)
    if event_type:
        qs = qs.filter(event__event_type=event_type)
    return qs[:limit]


def delivery_get(*, organization: Organization, public_id: str) -> Delivery:
    delivery = (
        Delivery.objects.filter(endpoint__organization=organization, public_id=public_id)
        .select_related("event", "endpoint__organization__plan")
        .prefetch_related(Prefetch("attempts", queryset=Attempt.objects.order_by("number")))
        .first()
    )
    if delivery is None:
        raise Http404("No such delivery.")
    return delivery
