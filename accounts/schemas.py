"""Serializers that describe the accounts API (groups) in the OpenAPI schema: documentation
only; the views answer plain JSON built by accounts.api.group_json."""

from __future__ import annotations

from rest_framework import serializers


class GroupMemberSerializer(serializers.Serializer):
    id = serializers.CharField()
    email = serializers.EmailField()


class GroupSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    reference = serializers.CharField(help_text="How a rule names it: group:NAME.")
    members = GroupMemberSerializer(many=True)
    created_at = serializers.DateTimeField()


class GroupListSerializer(serializers.Serializer):
    results = GroupSerializer(many=True)


class GroupCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)


class GroupMemberAddSerializer(serializers.Serializer):
    email = serializers.EmailField(help_text="A member of the organisation.")
