"""Serializers that describe the approvals API in the OpenAPI schema (documentation only: the
views in approvals.api read their input with their own serializers and answer plain JSON)."""

from __future__ import annotations

from rest_framework import serializers

from agents.schemas import ActionSerializer


class ApprovalListSerializer(serializers.Serializer):
    results = ActionSerializer(many=True, help_text="At most `limit` requests, newest first.")
    count = serializers.IntegerField(help_text="All the requests that match the filters.")


class GrantRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(["identical", "session", "amount"])
    ttl = serializers.CharField(help_text="How long it applies: 1h, 8h, 1d (at most 30d).")
    max_amount = serializers.DecimalField(
        max_digits=30, decimal_places=8, required=False, help_text="amount only: per call."
    )
    uses = serializers.IntegerField(required=False, help_text="amount only: calls it allows.")


class DecisionRequestSerializer(serializers.Serializer):
    notes = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, help_text="Kept with the decision."
    )
    grant = GrantRequestSerializer(
        required=False,
        help_text="With an approval: remember it, within the kinds the rule allows "
        "(docs/API.md, Remembered approvals).",
    )


class GrantSerializer(serializers.Serializer):
    id = serializers.CharField()
    kind = serializers.ChoiceField(["identical", "session", "amount"])
    active = serializers.BooleanField()
    agent_id = serializers.CharField()
    agent_name = serializers.CharField()
    environment = serializers.CharField()
    action = serializers.CharField()
    rule = serializers.CharField(allow_null=True)
    rule_id = serializers.CharField(allow_null=True)
    arguments_hash = serializers.CharField(allow_null=True)
    session_id = serializers.CharField(allow_null=True)
    max_amount = serializers.CharField(allow_null=True)
    amount_field = serializers.CharField(allow_null=True)
    uses = serializers.IntegerField(allow_null=True)
    uses_left = serializers.IntegerField(allow_null=True)
    use_count = serializers.IntegerField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    action_id = serializers.CharField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    revoked_by = serializers.CharField(allow_null=True)


class GrantListSerializer(serializers.Serializer):
    results = GrantSerializer(many=True)
    count = serializers.IntegerField()


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
