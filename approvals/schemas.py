"""Serializers that describe the approvals API in the OpenAPI schema (documentation only: the
views in approvals.api read their input with their own serializers and answer plain JSON)."""

from __future__ import annotations

from rest_framework import serializers

from agents.schemas import ActionSerializer


class ApprovalListSerializer(serializers.Serializer):
    results = ActionSerializer(many=True, help_text="At most `limit` requests, newest first.")
    count = serializers.IntegerField(help_text="All the requests that match the filters.")


class DecisionRequestSerializer(serializers.Serializer):
    notes = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, help_text="Kept with the decision."
    )


class CancelRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, allow_null=True)


class ClaimRequestSerializer(serializers.Serializer):
    arguments = serializers.JSONField(
        required=False, help_text="The arguments the agent is about to run the call with."
    )


class ClaimResponseSerializer(serializers.Serializer):
    action_id = serializers.CharField()
    status = serializers.ChoiceField(["approved"])
    claimed_at = serializers.DateTimeField()


class ArdenDecisionRequestSerializer(serializers.Serializer):
    message = serializers.CharField(required=False, allow_blank=True, allow_null=True)


class ArdenDecisionResponseSerializer(serializers.Serializer):
    action_id = serializers.CharField()
    status = serializers.ChoiceField(
        ["pending", "approved", "denied"],
        help_text="Expired and cancelled requests read as denied (the reason in message).",
    )
    message = serializers.CharField(allow_null=True)
    decided_by = serializers.CharField(allow_null=True)
