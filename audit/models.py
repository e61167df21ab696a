from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from wardenproject.ids import public_id


def new_entry_id() -> str:
    return public_id("aud")


class AppendOnlyError(Exception):
    """Raised when code tries to change or delete an audit entry."""


class AuditEntryQuerySet(models.QuerySet["AuditEntry"]):
    def update(self, **kwargs: object) -> int:
        raise AppendOnlyError("Audit entries cannot be changed.")

    def delete(self):  # type: ignore[override]
        raise AppendOnlyError("Audit entries cannot be deleted (retention purges them).")


class AuditEntry(models.Model):
    """One append-only line of the audit log.

    A check's entry doubles as the record of the tool call: its ``public_id`` is the
    ``action_id`` the API returns (``act_...``), so the hot path writes one row per check.
    """

    class Kind(models.TextChoices):
        CHECK = "check", "Policy check"
        OUTCOME = "outcome", "Tool outcome"
        LOG = "log", "SDK log entry"
        DECISION = "decision", "Approval decision"
        CONFIG = "config", "Configuration change"

    # Unique through Meta.constraints, not unique=True: that would add a second, unused
    # pattern-ops index on PostgreSQL to every insert.
    public_id = models.CharField(max_length=32, default=new_entry_id, editable=False)
    # No single-column indexes on organization and agent: the composite indexes below start
    # with them, and every index costs time on the check path's one insert.
    organization = models.ForeignKey(
        "accounts.Organization",
        on_delete=models.CASCADE,
        related_name="audit_entries",
        db_index=False,
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    created_at = models.DateTimeField(default=timezone.now)
    # Who: a user, an API key, or the system (both empty). Snapshots survive deletions.
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # partial index below: checks (most rows) have no user
    )
    # The agent and key of a check are not enforced by the database (db_constraint=False):
    # the check path inserts one row per tool call, and each enforced key costs PostgreSQL a
    # lookup and a row lock per row at commit (about a quarter of its CPU per check). Both are
    # taken from the cached key a moment earlier; agents and keys are never deleted but with
    # their organisation (whose key stays enforced, and whose deletion removes these rows
    # too); and Django still clears them (SET_NULL) if one is deleted. The snapshots
    # (agent_public_id, actor_label) keep the record readable either way.
    actor_key = models.ForeignKey(
        "agents.ApiKey",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    actor_label = models.CharField(max_length=200, blank=True)
    # What: the tool call (checks, outcomes, logs, decisions)
    agent = models.ForeignKey(
        "agents.Agent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,  # see actor_key
    )
    agent_public_id = models.CharField(max_length=32, blank=True)
    action = models.CharField(max_length=200, blank=True)
    action_id = models.CharField(
        max_length=32, blank=True, help_text="The check this entry is about (checks: itself)."
    )
    arguments = models.JSONField(null=True, blank=True)
    environment = models.CharField(max_length=8, blank=True)
    session_id = models.CharField(max_length=200, blank=True)
    decision = models.CharField(max_length=24, blank=True)
    status = models.CharField(max_length=24, blank=True)
    rule_public_id = models.CharField(max_length=32, blank=True)
    rule_name = models.CharField(max_length=120, blank=True)
    reason = models.TextField(blank=True)
    latency_us = models.PositiveIntegerField(null=True, blank=True)
    # Checks: the number of the agent's policy version that decided the call
    # (agents.models.PolicyVersion); empty for other kinds and for agents without versions.
    policy_version = models.PositiveIntegerField(null=True, blank=True)
    source = models.CharField(max_length=24, blank=True, help_text="native, arden, agentwarden…")
    # Configuration changes: what changed, before and after
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    # Checks sent with an Idempotency-Key header: unique per agent, so a retried request
    # replays the first answer instead of creating a second call (see agents.checks).
    idempotency_key = models.CharField(max_length=200, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["organization", "created_at"]),
            models.Index(fields=["organization", "kind", "created_at"]),
            models.Index(fields=["agent", "action", "created_at"]),
            # Only outcomes and decisions point at a check; the checks themselves don't.
            models.Index(
                fields=["action_id"],
                condition=~models.Q(action_id=""),
                name="audit_entry_action_id",
            ),
            models.Index(
                fields=["actor_user"],
                condition=models.Q(actor_user__isnull=False),
                name="audit_entry_actor_user",
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="audit_entry_public_id_unique"),
            models.UniqueConstraint(
                fields=["agent", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="audit_idempotency_key_unique_per_agent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.public_id}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError("Audit entries cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object):  # type: ignore[override]
        raise AppendOnlyError("Audit entries cannot be deleted (retention purges them).")


class AuditLink(models.Model):
    """One entry's place in its organisation's hash chain (docs/ARCHITECTURE.md, "Audit chain").

    Entries are append-only, so the chain lives beside them: the sealer (audit.seal) adds one
    link per entry, in batches, some seconds after the entry committed. ``hash`` is
    SHA-256(prev || canonical form of the entry at ``seq``), see audit/chain.py.
    """

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    seq = models.BigIntegerField()
    entry = models.OneToOneField(AuditEntry, on_delete=models.CASCADE, related_name="link")
    version = models.PositiveSmallIntegerField(default=1)  # of the canonical form
    prev = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "seq"], name="audit_link_org_seq"),
        ]

    def __str__(self) -> str:
        return f"link {self.seq} of {self.organization_id}"


class AuditCheckpoint(models.Model):
    """A signed statement of an organisation's chain head: "after ``seq``, the hash is ``hash``".

    ``kind`` head: signed by the sealer at least every minute with new entries. ``kind`` purge:
    retention deleted every link up to ``seq``; the rest of the chain starts from ``hash``.
    """

    class Kind(models.TextChoices):
        HEAD = "head", "Chain head"
        PURGE = "purge", "Retention purge"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.HEAD)
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    # Empty: no signing key was configured (retention still purges; verify says so).
    key_id = models.CharField(max_length=32, blank=True)
    signature = models.CharField(max_length=128, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "seq", "id"])]

    def __str__(self) -> str:
        return f"{self.kind} checkpoint {self.seq} of {self.organization_id}"


class AuditChainHead(models.Model):
    """Where each organisation's chain ends, so the sealer needs no search (derived data:
    verification never trusts it)."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)
    checkpoint_seq = models.BigIntegerField(default=0)
    checkpoint_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The heads with entries no checkpoint covers yet: what the sealer signs.
            models.Index(
                fields=["checkpoint_at"],
                condition=models.Q(seq__gt=models.F("checkpoint_seq")),
                name="audit_head_unsigned",
            ),
        ]

    def __str__(self) -> str:
        return f"head {self.seq} of {self.organization_id}"


class AuditSealState(models.Model):
    """The sealer's one row: every entry id up to ``watermark`` has been seen, except the
    ``gaps`` ([first id, last id, first seen (epoch s)]) that were not yet visible then and
    are looked at again until the look-back expires (audit.services.audit_seal)."""

    watermark = models.BigIntegerField(default=0)
    gaps = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"sealed through id {self.watermark} ({len(self.gaps)} gaps)"


# The overview's pre-aggregated counts live in audit/insights/ and belong to this app.
from audit.insights.models import (  # noqa: E402, F401
    CheckCount,
    CheckCountDay,
    DecisionReviewer,
    DecisionWait,
    RollupMark,
    TokenCostDay,
)
