from __future__ import annotations

from django.db import models
from django.utils import timezone

from wardenproject.ids import public_id


def new_endpoint_id() -> str:
    return public_id("we")


def new_event_id() -> str:
    return public_id("evt", 24)


def new_delivery_id() -> str:
    return public_id("dlv")


class Endpoint(models.Model):
    class Format(models.TextChoices):
        STANDARD = "standard", "Standard Webhooks (Warden JSON)"
        ARDEN = "arden", "Arden-compatible"
        AGENTWARDEN = "agentwarden", "AgentWarden-compatible"

    public_id = models.CharField(
        max_length=32, unique=True, default=new_endpoint_id, editable=False
    )
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list, help_text="Event types this endpoint receives.")
    agents = models.ManyToManyField(
        "agents.Agent", blank=True, related_name="+", help_text="Empty: every agent."
    )
    format = models.CharField(max_length=16, choices=Format.choices, default=Format.STANDARD)
    enabled = models.BooleanField(default=True)
    # Encrypted at rest (webhooks/crypto.py); read them through endpoint_signing_secrets.
    secret = models.CharField(max_length=255)
    previous_secret = models.CharField(max_length=255, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.url


class Event(models.Model):
    """The outbox: written in the same transaction as the change that caused it."""

    public_id = models.CharField(max_length=40, unique=True, default=new_event_id, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="webhook_events"
    )
    event_type = models.CharField(max_length=40)
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action_id = models.CharField(max_length=32, blank=True)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "created_at"])]

    def __str__(self) -> str:
        return f"{self.event_type} {self.public_id}"


class Delivery(models.Model):
    """One event to one endpoint; the next attempt time lives here, not in the broker."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (gave up)"

    public_id = models.CharField(
        max_length=32, unique=True, default=new_delivery_id, editable=False
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    leased_until = models.DateTimeField(null=True, blank=True)
    # When a wake-up task was last queued; the sweeper re-queues a due delivery whose
    # wake-up is older than this attempt's due time or than WARDEN_WEBHOOKS_REQUEUE_AFTER.
    queued_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["endpoint", "status", "created_at"]),
            # The drainers' "oldest due delivery of this endpoint": pending rows only.
            models.Index(
                fields=["endpoint", "next_attempt_at", "id"],
                condition=models.Q(status="pending"),
                name="webhooks_delivery_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id} ({self.status})"


class Attempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    request_url = models.URLField(max_length=500)
    request_headers = models.JSONField(default=dict)
    request_body = models.TextField()
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}"
