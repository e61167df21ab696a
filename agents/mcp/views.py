"""The dashboard page of registered MCP servers: thin adapters over services and selectors."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.models import Membership
from accounts.permissions import (
    Capability,
    membership_has,
    membership_require,
    membership_require_capability,
)
from agents.mcp import selectors, services
from agents.mcp.models import McpServer
from agents.models import Agent
from wardenproject.errors import DomainError, ValidationFailed


def _membership(request: HttpRequest) -> Membership:
    return membership_require(
        user=request.user, organization=getattr(request, "organization", None)
    )


def _page(
    request: HttpRequest, membership: Membership, *, values: dict | None = None, **extra: object
) -> HttpResponse:
    org = membership.organization
    context = {
        "servers": selectors.mcp_server_list(organization=org),
        "agents": Agent.objects.filter(organization=org, is_active=True).order_by("name"),
        "holds": McpServer.Hold.choices,
        "can_manage": membership_has(membership, Capability.MANAGE_AGENTS),
        "values": values or {"hold": McpServer.Hold.WAIT},
        **extra,
    }
    return render(request, "mcp/server_list.html", context, status=400 if "error" in extra else 200)


@login_required
def server_list(request: HttpRequest) -> HttpResponse:
    membership = _membership(request)
    if request.method != "POST":
        return _page(request, membership)
    try:
        membership_require_capability(membership, Capability.MANAGE_AGENTS)
    except DomainError as exc:
        messages.error(request, exc.detail)
        return redirect("mcp:list")
    values = {
        "name": request.POST.get("name", "").strip(),
        "url": request.POST.get("url", "").strip(),
        "headers": request.POST.get("headers", ""),
        "agents": request.POST.getlist("agents"),
        "hold": request.POST.get("hold", McpServer.Hold.WAIT),
        "timeout": request.POST.get("timeout", "").strip(),
    }
    try:
        headers = dict(
            services.header_parse(line) for line in values["headers"].splitlines() if line.strip()
        )
        timeout = None
        if values["timeout"]:
            if not values["timeout"].isdigit():
                raise ValidationFailed(
                    "timeout must be a whole number of seconds.", field="timeout_seconds"
                )
            timeout = int(values["timeout"])
        server = services.mcp_server_create(
            organization=membership.organization,
            actor=request.user,
            source="web",
            name=values["name"],
            url=values["url"],
            headers=headers,
            agents=values["agents"],
            hold=values["hold"],
            timeout_seconds=timeout,
        )
    except DomainError as exc:
        values["headers"] = ""  # never echoed back into the page
        return _page(request, membership, values=values, error=exc.detail)
    messages.success(request, f"MCP server {server.name!r} registered.")
    return redirect("mcp:list")


@login_required
@require_POST
def server_delete(request: HttpRequest, server_id: str) -> HttpResponse:
    membership = _membership(request)
    server = selectors.mcp_server_get(organization=membership.organization, ref=server_id)
    try:
        membership_require_capability(membership, Capability.MANAGE_AGENTS)
    except DomainError as exc:
        messages.error(request, exc.detail)
        return redirect("mcp:list")
    services.mcp_server_delete(server=server, actor=request.user, source="web")
    messages.success(request, f"MCP server {server.name!r} removed.")
    return redirect("mcp:list")
