"""Serializers that describe the MCP servers API in the OpenAPI schema (documentation only:
agents.mcp.api reads its input with the services and renders ``mcp_server_json``)."""

from __future__ import annotations

from rest_framework import serializers

from agents.mcp.models import McpServer


class McpServerSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    url = serializers.CharField()
    has_headers = serializers.BooleanField(help_text="Headers are write-only.")
    agents = serializers.ListField(child=serializers.CharField())
    hold = serializers.ChoiceField(McpServer.Hold.values)
    timeout_seconds = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class McpServerListSerializer(serializers.Serializer):
    results = McpServerSerializer(many=True)


class McpServerWriteSerializer(serializers.Serializer):
    name = serializers.CharField()
    url = serializers.CharField()
    headers = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="Sent to the upstream server."
    )
    agents = serializers.ListField(child=serializers.CharField(), required=False)
    hold = serializers.ChoiceField(McpServer.Hold.values, required=False)
    timeout_seconds = serializers.IntegerField(required=False, allow_null=True, min_value=1)
