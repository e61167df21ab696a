from __future__ import annotations

from datetime import datetime

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

    class Notice(models.TextChoices):
        NEW = "", "New"
        REMINDER = "reminder", "Reminder"
        ESCALATED = "escalated", "Escalated"

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
    # Routing and escalation (docs/POLICY.md, "Routing and escalation"): the rule's lists as
    # they were when the call was held (the rule may change later).
    approvers = models.JSONField(
        default=list, blank=True, help_text="Who may decide now (empty: every deciding member)."
    )
    escalate_to = models.JSONField(
        default=list, blank=True, help_text="Who decides after the deadline (empty: it expires)."
    )
    escalate_timeout = models.PositiveIntegerField(null=True, blank=True)
    escalations = models.PositiveSmallIntegerField(default=0)
    reminder_due_at = models.DateTimeField(
        null=True, blank=True, help_text="When the current approvers get a reminder (once)."
    )
    notice = models.CharField(
        max_length=16,
        blank=True,
        choices=Notice.choices,
        help_text="What the next email about it says: new (empty), reminder or escalated.",
    )
    redact = models.JSONField(
        default=list, blank=True, help_text="Argument paths shown as [redacted] in emails."
    )

    class Meta:
        ordering = ["-requested_at"]
        indexes = [
            models.Index(fields=["organization", "status", "requested_at"]),
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["agent", "action", "status", "decided_at"]),
            models.Index(
                fields=["reminder_due_at"],
                condition=models.Q(reminder_due_at__isnull=False),
                name="approval_reminder_due",
            ),
            # The overview's time to decision and approvals by reviewer over the last 24 h,
            # and its roll-up's read of new decisions (audit.insights.rollup). Partial: a request is
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
    # With a quorum: the grant this approving reviewer offered (validated, as
    # ``approvals.grants.GrantSpec.record()``), created if and when the request is approved.
    grant = models.JSONField(null=True, blank=True)
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

    @property
    def verb_past(self) -> str:
        """What the voter did, as in "Approved by alice" (the choice labels are imperatives)."""
        return "Approved" if self.vote == self.Vote.APPROVE else "Denied"


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


class Grant(models.Model):
    """A remembered approval: calls like an approved one are allowed without asking again.

    Made by a reviewer with an approval (``approval_decide(grant=...)``), within the kinds the
    holding rule allows (``approval: {grants: [...]}``). It applies only to its agent and
    environment, only where its rule is the one holding a call, never where a rule blocks,
    and until it expires, runs out of uses or is revoked (``approvals/grants.py``).
    """

    class Kind(models.TextChoices):
        IDENTICAL = "identical", "Identical calls"
        SESSION = "session", "This session"
        AMOUNT = "amount", "Up to an amount"

    public_id = models.CharField(max_length=32, unique=True)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="grants"
    )
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="grants")
    environment = models.CharField(max_length=8)
    action = models.CharField(max_length=200, help_text="The held call's action, lower case.")
    rule = models.ForeignKey(
        "agents.Rule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rule_public_id = models.CharField(max_length=32, help_text="The rule that held the call.")
    rule_name = models.CharField(max_length=120, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    arguments_hash = models.CharField(max_length=64, blank=True, help_text="identical only")
    session_id = models.CharField(max_length=200, blank=True, help_text="session only")
    max_amount = models.DecimalField(
        max_digits=30, decimal_places=8, null=True, blank=True, help_text="amount only"
    )
    amount_field = models.CharField(max_length=200, blank=True)
    uses = models.PositiveIntegerField(null=True, blank=True, help_text="amount only")
    uses_left = models.IntegerField(null=True, blank=True)
    use_count = models.PositiveIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    request = models.ForeignKey(
        ApprovalRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="grants"
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_label = models.CharField(max_length=200)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_by_label = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The check path's one lookup: a range on expires_at past the agent, environment
            # and action, over grants not revoked. Expired rows sit below the range, so the
            # lookup costs the same however many of them there are.
            models.Index(
                fields=["agent", "environment", "action", "expires_at"],
                condition=models.Q(revoked_at__isnull=True),
                name="grant_lookup",
            ),
            models.Index(fields=["organization", "created_at"], name="grant_org_created"),
        ]

    def __str__(self) -> str:
        return self.public_id

    def is_active(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return (
            self.revoked_at is None
            and self.expires_at > now
            and (self.uses_left is None or self.uses_left > 0)
        )


class EmailLink(models.Model):
    """A reviewer's one-click link for one request (approval emails and digests).

    The link carries a token signed with ``SECRET_KEY`` (approvals/email_links.py) that names
    this row's nonce; the row stores only the nonce's SHA-256. It works once: the decision
    taken through it marks ``used_at`` in the decision's transaction. It expires with its
    request (and at the latest after ``EMAIL_LINK_MAX_AGE``).
    """

    request = models.ForeignKey(
        ApprovalRequest, on_delete=models.CASCADE, related_name="email_links"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    nonce_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"email link of {self.user_id} for {self.request_id}"


# The Slack integration's models live in their own module (imported here so they belong to
# this app).
from approvals.slack_models import (  # noqa: E402
    SlackAgentChannel,
    SlackConnection,
    SlackMessage,
    SlackUserLink,
)

__all__ = [
    "ApprovalRequest",
    "ApprovalVote",
    "NotificationWindow",
    "SlackAgentChannel",
    "SlackConnection",
    "SlackMessage",
    "SlackUserLink",
]
