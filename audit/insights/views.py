"""The overview (the top of the dashboard, and its live panel) and the token usage page.

Every member of the organisation may see them (no plan gates analytics). The organisation is
the user's current one; an agent filter naming another organisation's agent is a 404.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.models import Organization
from accounts.permissions import membership_require
from audit.insights import selectors
from wardenproject.errors import ValidationFailed


def overview_context(request: HttpRequest, organization: Organization) -> dict[str, Any]:
    """The overview's template context for the request's filters (raises ValidationFailed
    naming the field for a bad filter, Http404 for another organisation's agent)."""
    filters = selectors.overview_filters_parse(organization=organization, params=request.GET)
    return {
        "filters": filters,
        "agents": selectors.overview_agents(organization=organization),
        "periods": selectors.PERIODS,
        "data": selectors.overview_read(organization=organization, filters=filters),
    }


def bad_filter_response(request: HttpRequest, exc: ValidationFailed) -> HttpResponse:
    return render(
        request,
        "insights/bad_filter.html",
        {"error": exc.detail, "field": exc.field},
        status=HTTPStatus.BAD_REQUEST,
    )


@login_required
@require_GET
def overview_panel(request: HttpRequest) -> HttpResponse:
    """The overview's figures and charts alone: what the dashboard polls every 15 s."""
    membership = membership_require(
        user=request.user, organization=getattr(request, "organization", None)
    )
    try:
        context = overview_context(request, membership.organization)
    except ValidationFailed as exc:
        return bad_filter_response(request, exc)
    return render(request, "insights/_overview_panel.html", {"insights": context})


@login_required
@require_GET
def token_usage(request: HttpRequest) -> HttpResponse:
    membership = membership_require(
        user=request.user, organization=getattr(request, "organization", None)
    )
    organization = membership.organization
    try:
        filters = selectors.overview_filters_parse(organization=organization, params=request.GET)
    except ValidationFailed as exc:
        return bad_filter_response(request, exc)
    return render(
        request,
        "insights/token_usage.html",
        {
            "organization": organization,
            "filters": filters,
            "agents": selectors.overview_agents(organization=organization),
            "periods": selectors.PERIODS,
            "report": selectors.token_usage_report(organization=organization, filters=filters),
        },
    )
