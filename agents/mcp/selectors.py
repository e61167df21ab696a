"""Reads of registered MCP servers, always scoped to one organisation (anything else: 404)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from accounts.models import Organization
from agents.mcp.models import McpServer


def mcp_server_list(*, organization: Organization) -> QuerySet[McpServer]:
    return McpServer.objects.filter(organization=organization).prefetch_related("agents")


def mcp_server_get(*, organization: Organization, ref: str) -> McpServer:
    """By public id or by name."""
    servers = McpServer.objects.filter(organization=organization).prefetch_related("agents")
    server = servers.filter(public_id=ref).first() or servers.filter(name=ref).first()
    if server is None:
        raise Http404("No such MCP server.")
    return server
