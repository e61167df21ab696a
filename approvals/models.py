from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApprovalRequest(models.Model):
    """A tool call held for a human. Shares its public id with the check (``act_...``)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"

    action_id = models.CharField(max_length=32, unique=True)
    check_entry = models.OneToOneField(
        "audit.AuditEntry", null=True, on_delete=models.SET_NULL, related_name="approval_request"
    )
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="approval_requests"
    )
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="approval_requests"
    )
    api_key = models.ForeignKey(
        "agents.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=200)
    arguments = models.JSONField(default=dict)
    arguments_hash = models.CharField(max_length=64, help_text="SHA-256 of canonical JSON.")
    environment = models.CharField(max_length=8)
    session_id = models.CharField(max_length=200, blank=True)
    rule = models.ForeignKey(
        "agents.Rule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rule_name = models.CharField(max_length=120, blank=True)
    reason = models.TextField(blank=True)
    source = models.CharField(max_length=24, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    requested_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_key = models.ForeignKey(
        "agents.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_label = models.CharField(max_length=200, blank=True)
    notes = models.TextField(blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When reviewers were emailed about it (or a digest)."
    )

    class Meta:
        ordering = ["-requested_at"]
        indexes = [
            models.Index(fields=["organization", "status", "requested_at"]),
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["agent", "action", "status", "decided_at"]),
            # The overview's time to decision and approvals by reviewer over the last 24 h,
            # and its roll-up's read of new decisions (insights.rollup). Partial: a request is
            # created undecided, so the check path never writes to them.
            models.Index(
                fields=["organization", "decided_at"],
                condition=models.Q(decided_at__isnull=False),
                name="approval_org_decided_at",
            ),
            models.Index(
                fields=["decided_at", "id"],
                condition=models.Q(decided_at__isnull=False),
                name="approval_decided_at_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} ({self.status})"


class ApprovalVote(models.Model):
    """One person's approval or denial; a quorum counts distinct people.

    ``user`` is always the person: the reviewer in the session, or the member an approver
    key belongs to (its creator), with the key in ``api_key``. So ``one_vote_per_user``
    gives a person one vote whatever the credential. Votes cast before keys voted as their
    creator may have only ``api_key``.
    """

    class Vote(models.TextChoices):
        APPROVE = "approve", "Approve"
        DENY = "deny", "Deny"

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey(
        "agents.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    voter_label = models.CharField(max_length=200)
    vote = models.CharField(max_length=8, choices=Vote.choices)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "user"],
                condition=models.Q(user__isnull=False),
                name="one_vote_per_user",
            ),
            models.UniqueConstraint(
                fields=["request", "api_key"],
                condition=models.Q(api_key__isnull=False),
                name="one_vote_per_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.voter_label} {self.vote}"


class NotificationWindow(models.Model):
    """Approval email of one organisation: when its reviewers were last emailed, and the
    notify task queued for it (approvals/notifications.py).

    Each reviewer gets at most one email per window: the first request of a quiet spell is
    emailed at once, the ones after it wait for one digest when the window ends, and a burst
    queues one task per window, not one per request.
    """

    organization = models.OneToOneField(
        "accounts.Organization",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="+",
    )
    last_sent_at = models.DateTimeField(null=True, blank=True)
    task_due_at = models.DateTimeField(
        null=True, blank=True, help_text="A notify task is queued, due then (none if empty)."
    )

    def __str__(self) -> str:
        return f"approval email of organisation {self.organization_id}"
