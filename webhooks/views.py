"""Server-rendered webhook pages: thin adapters over the services and selectors."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_POST

from accounts.models import Membership
from accounts.permissions import (
    Capability,
    membership_has,
    membership_require,
    membership_require_capability,
)
from accounts.plans import Feature, plan_allows, plan_required_message
from wardenproject.errors import DomainError
from wardenproject.text import counted
from wardenproject.timeparse import datetime_parse_utc
from webhooks import catalogue, selectors, services
from webhooks.models import Delivery, Endpoint


def _membership(request: HttpRequest, *, manage: bool = False) -> Membership:
    membership = membership_require(
        user=request.user, organization=getattr(request, "organization", None)
    )
    if manage:
        membership_require_capability(membership, Capability.MANAGE_WEBHOOKS)
    return membership


def _can_manage(membership: Membership) -> bool:
    return membership_has(membership, Capability.MANAGE_WEBHOOKS)


def _secret_page(
    request: HttpRequest, shown: services.EndpointWithSecret, *, rotated: bool = False
) -> HttpResponse:
    response = render(
        request,
        "webhooks/secret.html",
        {"endpoint": shown.endpoint, "secret": shown.secret, "rotated": rotated},
    )
    patch_cache_control(response, no_store=True)  # the secret is shown once: never cached
    return response


@login_required
def endpoint_list(request: HttpRequest) -> HttpResponse:
    membership = _membership(request)
    org = membership.organization
    return render(
        request,
        "webhooks/endpoint_list.html",
        {
            "endpoints": selectors.endpoint_list(organization=org),
            "can_manage": _can_manage(membership),
            "plan_message": None
            if plan_allows(org, Feature.WEBHOOKS)
            else plan_required_message(org, Feature.WEBHOOKS),
        },
    )


@login_required
def endpoint_create(request: HttpRequest) -> HttpResponse:
    try:
        membership = _membership(request, manage=True)
    except DomainError as exc:
        messages.error(request, exc.detail)
        return redirect("webhooks:list")
    context = {
        "formats": Endpoint.Format.choices,
        "event_types": services.EVENT_TYPES,
        "values": {"events": services.DEFAULT_EVENTS, "format": "standard"},
    }
    if request.method == "POST":
        values = {
            "url": request.POST.get("url", ""),
            "description": request.POST.get("description", ""),
            "format": request.POST.get("format", "standard"),
            "events": request.POST.getlist("events"),
        }
        context["values"] = values
        try:
            created = services.endpoint_create(
                organization=membership.organization,
                actor=request.user,
                source="web",
                url=values["url"],
                events=values["events"],
                fmt=values["format"],
                description=values["description"],
            )
        except DomainError as exc:
            context["error"] = exc.detail
            context["error_field"] = exc.field
            return render(request, "webhooks/endpoint_form.html", context, status=400)
        # Rendered, not redirected: the secret is shown once and stored nowhere in clear.
        return _secret_page(request, created)
    return render(request, "webhooks/endpoint_form.html", context)


def _choice(value: str | None, allowed) -> str:
    """A filter value from the query string, or "" (no filter) when it is not one we know."""
    return value if value in allowed else ""


@login_required
def endpoint_detail(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    membership = _membership(request)
    endpoint = selectors.endpoint_get(organization=membership.organization, public_id=endpoint_id)
    status = _choice(request.GET.get("status"), Delivery.Status.values)
    event_type = _choice(request.GET.get("event"), services.EVENT_TYPES)
    return render(
        request,
        "webhooks/endpoint_detail.html",
        {
            "endpoint": endpoint,
            "deliveries": selectors.delivery_list(
                endpoint=endpoint, status=status or None, event_type=event_type or None
            ),
            "filters": {"status": status, "event": event_type},
            "statuses": Delivery.Status.choices,
            "event_types": services.EVENT_TYPES,
            "can_manage": _can_manage(membership),
        },
    )


@login_required
def event_catalogue(request: HttpRequest) -> HttpResponse:
    _membership(request)
    return render(
        request,
        "webhooks/events.html",
        {
            "entries": catalogue.catalogue(services.EVENT_TYPES),
            "guides": catalogue.format_guides(),
            "timestamp": catalogue.SAMPLE_TIMESTAMP,
        },
    )


def _endpoint_action(request: HttpRequest, endpoint_id: str):
    membership = _membership(request)
    endpoint = selectors.endpoint_get(organization=membership.organization, public_id=endpoint_id)
    membership_require_capability(membership, Capability.MANAGE_WEBHOOKS)
    return endpoint


@login_required
@require_POST
def endpoint_action(request: HttpRequest, endpoint_id: str, action: str) -> HttpResponse:
    try:
        endpoint = _endpoint_action(request, endpoint_id)
        if action == "test":
            services.endpoint_send_test(endpoint=endpoint)
            messages.success(request, "Test event queued.")
        elif action == "enable":
            services.endpoint_set_enabled(
                endpoint=endpoint, actor=request.user, enabled=True, source="web"
            )
            messages.success(request, "Endpoint enabled.")
        elif action == "disable":
            services.endpoint_set_enabled(
                endpoint=endpoint, actor=request.user, enabled=False, source="web"
            )
            messages.success(request, "Endpoint disabled.")
        elif action == "recover":
            since = datetime_parse_utc(request.POST.get("since", ""))
            if since is None:
                messages.error(request, "Give a start time like 2026-01-31T00:00Z.")
            else:
                count = services.deliveries_recover(endpoint=endpoint, since=since)
                messages.success(
                    request,
                    f"{counted(count, 'failed delivery', 'failed deliveries')} queued again.",
                )
        elif action == "rotate":
            return _secret_page(
                request,
                services.endpoint_rotate_secret(
                    endpoint=endpoint, actor=request.user, source="web"
                ),
                rotated=True,
            )
        elif action == "delete":
            services.endpoint_delete(endpoint=endpoint, actor=request.user, source="web")
            messages.success(request, "Endpoint deleted.")
            return redirect("webhooks:list")
        else:
            messages.error(request, "Unknown action.")
    except DomainError as exc:
        messages.error(request, exc.detail)
    return redirect("webhooks:detail", endpoint_id=endpoint_id)


@login_required
@require_POST
def delivery_resend(request: HttpRequest, delivery_id: str) -> HttpResponse:
    membership = _membership(request)
    delivery = selectors.delivery_get(organization=membership.organization, public_id=delivery_id)
    try:
        membership_require_capability(membership, Capability.MANAGE_WEBHOOKS)
        services.delivery_resend(delivery=delivery)
        messages.success(request, "Delivery queued again.")
    except DomainError as exc:
        messages.error(request, exc.detail)
    return redirect("webhooks:detail", endpoint_id=delivery.endpoint.public_id)
