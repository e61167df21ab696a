"""Serializers that describe the webhooks API in the OpenAPI schema (documentation only: the
views in webhooks.api read their input and render ``endpoint_json`` / ``delivery_json``)."""

from __future__ import annotations

from rest_framework import serializers

from webhooks.models import Delivery, Endpoint


class EndpointSerializer(serializers.Serializer):
    id = serializers.CharField()
    url = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    format = serializers.ChoiceField(Endpoint.Format.values)
    events = serializers.ListField(
        child=serializers.CharField(), help_text="Event types; empty means every event."
    )
    agents = serializers.ListField(
        child=serializers.CharField(), help_text="Agent ids; empty means every agent."
    )
    enabled = serializers.BooleanField()
    disabled_reason = serializers.CharField(allow_null=True)
    failing_since = serializers.DateTimeField(allow_null=True)
    previous_secret_expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class EndpointWithSecretSerializer(EndpointSerializer):
    secret = serializers.CharField(help_text="The signing secret: shown once.")


class EndpointListSerializer(serializers.Serializer):
    results = EndpointSerializer(many=True)


class EndpointCreateSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="https:// (http:// with WARDEN_WEBHOOKS_ALLOW_HTTP).")
    events = serializers.ListField(child=serializers.CharField(), required=False)
    format = serializers.ChoiceField(Endpoint.Format.values, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    agents = serializers.ListField(child=serializers.CharField(), required=False)
    enabled = serializers.BooleanField(required=False)


class EndpointUpdateSerializer(serializers.Serializer):
    url = serializers.CharField(required=False)
    events = serializers.ListField(child=serializers.CharField(), required=False)
    format = serializers.ChoiceField(
        Endpoint.Format.values, required=False, help_text="Cannot change (only the same value)."
    )
    description = serializers.CharField(required=False, allow_blank=True)
    agents = serializers.ListField(child=serializers.CharField(), required=False)
    enabled = serializers.BooleanField(required=False)


class RecoverRequestSerializer(serializers.Serializer):
    since = serializers.DateTimeField(help_text="Re-send the failed deliveries since then.")


class RecoverResponseSerializer(serializers.Serializer):
    recovered = serializers.IntegerField()


class AttemptSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    at = serializers.DateTimeField()
    url = serializers.CharField()
    request_headers = serializers.DictField(child=serializers.CharField())
    request_body = serializers.CharField()
    response_status = serializers.IntegerField(allow_null=True)
    response_body = serializers.CharField(allow_blank=True)
    duration_ms = serializers.IntegerField()
    error = serializers.CharField(allow_null=True)


class DeliverySerializer(serializers.Serializer):
    id = serializers.CharField()
    endpoint_id = serializers.CharField()
    event_id = serializers.CharField()
    event_type = serializers.CharField()
    action_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(Delivery.Status.values)
    attempt_count = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)
    attempts = AttemptSerializer(many=True)


class DeliveryListSerializer(serializers.Serializer):
    results = DeliverySerializer(many=True)
    count = serializers.IntegerField(help_text="The number of results on this page.")
