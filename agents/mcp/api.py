"""JSON API under /api/v1/mcp/servers: members read, owners and admins manage (API keys get
403, as for agents and rules); another organisation's server is a 404."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organization
from agents.http import json_object
from agents.mcp import selectors, services
from agents.mcp.models import McpServer
from agents.mcp.schemas import (
    McpServerListSerializer,
    McpServerSerializer,
    McpServerWriteSerializer,
)
from agents.permissions import IsManager, IsMember, request_organization
from agents.schemas import ERRORS
from wardenproject.jsonutil import iso

TAGS = ["mcp"]


def mcp_server_json(server: McpServer) -> dict[str, Any]:
    """Headers are write-only: the answer says whether there are any, never what they are."""
    return {
        "id": server.public_id,
        "name": server.name,
        "url": server.url,
        "has_headers": bool(server.headers),
        "agents": [a.public_id for a in server.agents.all()],
        "hold": server.hold,
        "timeout_seconds": server.timeout_seconds,
        "created_at": iso(server.created_at),
        "updated_at": iso(server.updated_at),
    }


def _organization(request: Request) -> Organization:
    organization = request_organization(request)
    if organization is None:
        raise Http404("No organisation.")
    return organization


class McpApiView(APIView):
    def get_permissions(self) -> list[Any]:
        return [IsMember()] if self.request.method == "GET" else [IsManager()]


class McpServerListView(McpApiView):
    @extend_schema(
        operation_id="mcp_servers_list",
        tags=TAGS,
        responses={200: McpServerListSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        servers = selectors.mcp_server_list(organization=_organization(request))
        return Response({"results": [mcp_server_json(s) for s in servers]})

    @extend_schema(
        operation_id="mcp_servers_create",
        tags=TAGS,
        request=McpServerWriteSerializer,
        responses={201: McpServerSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = json_object(request)
        server = services.mcp_server_create(
            organization=_organization(request),
            actor=request.user,
            name=data.get("name"),
            url=data.get("url"),
            headers=data.get("headers"),
            agents=data.get("agents"),
            hold=data.get("hold", McpServer.Hold.WAIT),
            timeout_seconds=data.get("timeout_seconds"),
        )
        return Response(mcp_server_json(server), status=HTTPStatus.CREATED)


class McpServerDetailView(McpApiView):
    @extend_schema(
        operation_id="mcp_servers_get",
        tags=TAGS,
        responses={200: McpServerSerializer, **ERRORS},
    )
    def get(self, request: Request, server_id: str) -> Response:
        server = selectors.mcp_server_get(organization=_organization(request), ref=server_id)
        return Response(mcp_server_json(server))

    @extend_schema(
        operation_id="mcp_servers_update",
        tags=TAGS,
        request=McpServerWriteSerializer(partial=True),
        responses={200: McpServerSerializer, **ERRORS},
    )
    def patch(self, request: Request, server_id: str) -> Response:
        server = selectors.mcp_server_get(organization=_organization(request), ref=server_id)
        data = json_object(request)
        server = services.mcp_server_update(
            server=server,
            actor=request.user,
            name=data.get("name"),
            url=data.get("url"),
            headers=data.get("headers"),
            agents=data.get("agents"),
            hold=data.get("hold"),
            timeout_seconds=data.get("timeout_seconds", ...),
        )
        return Response(mcp_server_json(server))

    @extend_schema(
        operation_id="mcp_servers_delete",
        tags=TAGS,
        responses={204: None, **ERRORS},
    )
    def delete(self, request: Request, server_id: str) -> Response:
        server = selectors.mcp_server_get(organization=_organization(request), ref=server_id)
        services.mcp_server_delete(server=server, actor=request.user)
        return Response(status=HTTPStatus.NO_CONTENT)
