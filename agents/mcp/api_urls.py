from __future__ import annotations

from django.urls import path

from agents.mcp import api

urlpatterns = [
    path("mcp/servers", api.McpServerListView.as_view(), name="api-mcp-servers"),
    path("mcp/servers/<str:server_id>", api.McpServerDetailView.as_view(), name="api-mcp-server"),
]
