"""Slack: an organisation's connected workspace, per-agent channels, the message posted for
each held call, and the Slack users mapped to members (approvals/slack.py uses them).

Imported by approvals/models.py, so they are models of the approvals app.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class SlackConnection(models.Model):
    """The Slack app an organisation connected: its workspace (team) and secrets.

    ``bot_token`` and ``signing_secret`` are stored encrypted (webhooks/crypto.py), are never
    shown again after they are entered, and never reach a log or an audit entry.
    """

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, related_name="slack_connection"
    )
    team_id = models.CharField(max_length=32, unique=True, help_text="From auth.test.")
    team_name = models.CharField(max_length=200, blank=True)
    bot_user_id = models.CharField(max_length=32, blank=True)
    bot_token = models.TextField(help_text="Encrypted (fernet:...).")
    signing_secret = models.TextField(help_text="Encrypted (fernet:...).")
    default_channel = models.CharField(max_length=100)
    connected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    connected_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Slack workspace {self.team_name or self.team_id}"


class SlackAgentChannel(models.Model):
    """The channel an agent's held calls go to (a rule's ``slack_channel`` wins over it)."""

    agent = models.OneToOneField(
        "agents.Agent", on_delete=models.CASCADE, related_name="slack_channel_setting"
    )
    channel = models.CharField(max_length=100)

    def __str__(self) -> str:
        return f"{self.agent} -> {self.channel}"


class SlackMessage(models.Model):
    """The message posted for one approval request; later decisions edit it in place."""

    class State(models.TextChoices):
        POSTING = "posting", "Posting"
        POSTED = "posted", "Posted"
        FAILED = "failed", "Failed"

    request = models.OneToOneField(
        "approvals.ApprovalRequest", on_delete=models.CASCADE, related_name="slack_message"
    )
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    channel = models.CharField(max_length=100, help_text="As configured (#name or id).")
    channel_id = models.CharField(max_length=32, blank=True, help_text="As Slack answered.")
    ts = models.CharField(max_length=32, blank=True, help_text="The message's timestamp id.")
    state = models.CharField(max_length=8, choices=State.choices, default=State.POSTING)
    # The rule's `redact` paths when it was posted: every later edit hides the same fields,
    # even if the rule has changed or gone since.
    redact = models.JSONField(default=list, blank=True)
    shown_status = models.CharField(max_length=16, blank=True)
    error = models.CharField(max_length=200, blank=True)
    # A post task holds the row while it calls Slack, so two tasks (a redelivery) never post
    # the same request twice; it lapses if the task dies.
    leased_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Slack message of {self.request_id} in {self.channel}"


class SlackUserLink(models.Model):
    """A Slack user of the connected workspace, mapped to a member of the organisation."""

    class Via(models.TextChoices):
        LINK = "link", "One-time link"
        EMAIL = "email", "Verified email"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="slack_user_links"
    )
    team_id = models.CharField(max_length=32)
    slack_user_id = models.CharField(max_length=32)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slack_links"
    )
    via = models.CharField(max_length=8, choices=Via.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "slack_user_id"], name="one_member_per_slack_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.slack_user_id} -> {self.user}"
