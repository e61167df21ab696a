from __future__ import annotations

import json

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from wardenproject.ids import public_id


def new_agent_id() -> str:
    return public_id("agt")


def new_key_id() -> str:
    return public_id("key")


def new_rule_id() -> str:
    return public_id("rul")


def new_usage_id() -> str:
    return public_id("usg")


class Agent(models.Model):
    class DefaultDecision(models.TextChoices):
        ALLOW = "allow", "Allow and log"
        BLOCK = "block", "Block (default-deny)"

    public_id = models.CharField(max_length=32, unique=True, default=new_agent_id, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="agents"
    )
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)

    class Enforcement(models.TextChoices):
        ENFORCE = "enforce", "Enforce decisions"
        LOG_ONLY = "log_only", "Log only (allow every call, record what would have happened)"

    default_decision = models.CharField(
        max_length=8, choices=DefaultDecision.choices, default=DefaultDecision.ALLOW
    )
    # log_only: every decision is computed and recorded, every call is allowed (the answer's
    # reason says what would have happened); see agents/checks.py.
    enforcement = models.CharField(
        max_length=16, choices=Enforcement.choices, default=Enforcement.ENFORCE
    )
    # Bumped on every change to the agent or to a rule that applies to it, so a compiled
    # policy cached in any process can tell it is stale.
    policy_revision = models.PositiveIntegerField(default=0)
    # The policy document's named lists ({"blocked_domains": ["mailinator.com"]}), which its
    # rules use as `value: $lists.NAME`.
    policy_lists = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="agent_name_unique_in_org"
            )
        ]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A secret shown once; only its SHA-256 is stored (keys are 160+ bits of randomness)."""

    class Kind(models.TextChoices):
        AGENT = "agent", "Agent key"
        ORG = "org", "Organisation key"
        APPROVER = "approver", "Approver key"

    class Environment(models.TextChoices):
        TEST = "test", "Test"
        LIVE = "live", "Live"

    public_id = models.CharField(max_length=32, unique=True, default=new_key_id, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="api_keys"
    )
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    environment = models.CharField(
        max_length=8, choices=Environment.choices, default=Environment.LIVE
    )
    name = models.CharField(max_length=120)
    prefix = models.CharField(max_length=24, help_text="First characters, for recognising a key.")
    hashed_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when the key was rotated: valid until then."
    )
    replaced_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "kind"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or self.expires_at > now


class Rule(models.Model):
    class Effect(models.TextChoices):
        ALLOW = "allow", "Allow"
        REQUIRES_APPROVAL = "requires_approval", "Requires approval"
        BLOCK = "block", "Block"

    public_id = models.CharField(max_length=32, unique=True, default=new_rule_id, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="rules"
    )
    agent = models.ForeignKey(
        Agent,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="rules",
        help_text="Empty: the rule applies to every agent of the organisation.",
    )
    # The rule as its policy document writes it (agents.policy_document.rule_to_mapping of
    # the validated rule): the one stored form. The columns below repeat what lists, the
    # admin and searches need.
    document = models.JSONField(default=dict)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    action_pattern = models.CharField(max_length=200)
    effect = models.CharField(max_length=24, choices=Effect.choices)
    enabled = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)
    # Its running totals are being recounted from the audit log (a new limit, or one that
    # now counts differently, on a long history): until then its limit applies to every
    # call it would count (fails closed). See agents/limits.py.
    counters_pending = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "agent", "name"], name="rule_name_unique_per_agent"
            )
        ]

    def __str__(self) -> str:
        return self.name


class LimitCounter(models.Model):
    """One budget: one limited rule, one agent, one environment and one value of the limit's
    ``by`` key. Its running total is the sum of its ``LimitBucket`` rows in the window (at
    most 61), so a check's cost does not depend on the history behind it. ``version`` is
    bumped by every spend: a check spends a budget only if it is still at the version it read
    (agents/limits.py), so concurrent checks reserve exactly as much as there is."""

    key = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the identity.")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="limit_counters")
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="counters")
    environment = models.CharField(max_length=8)
    by_value = models.CharField(max_length=200, blank=True)
    bucket_seconds = models.PositiveIntegerField()
    version = models.BigIntegerField(default=0, db_default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.rule_id}/{self.environment}/{self.by_value}"


class LimitBucket(models.Model):
    """What a budget's calls added in one bucket of its window (``bucket_seconds`` long,
    starting at ``start``, Unix seconds). Buckets the window has left are deleted as the
    budget is spent."""

    counter = models.ForeignKey(LimitCounter, on_delete=models.CASCADE, related_name="buckets")
    start = models.BigIntegerField()
    count = models.BigIntegerField()
    total = models.DecimalField(max_digits=38, decimal_places=12)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["counter", "start"], name="limit_bucket_unique_start")
        ]

    def __str__(self) -> str:
        return f"{self.counter_id}@{self.start}"


class ShadowTally(models.Model):
    """How often a shadow rule applied to an agent's calls on one day (UTC), by the answer
    the call had (``was``) and the one it would have had with the rule enforcing
    (``would_be``): at most 9 rows per rule, agent and day. Written by the aggregation of
    check audit entries (``agents.shadow.shadow_tallies_update``), never by the check path;
    rows older than ``SHADOW_TALLY_DAYS`` are dropped by it."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="shadow_tallies")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    was = models.CharField(max_length=24)
    would_be = models.CharField(max_length=24)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "agent", "day", "was", "would_be"],
                name="shadow_tally_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}@{self.day} {self.was}->{self.would_be}: {self.count}"


class ShadowTallyMark(models.Model):
    """The aggregation's watermark (one row): the id of the last check audit entry counted
    into ``ShadowTally``."""

    last_entry_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"shadow tallies up to entry {self.last_entry_id}"


class ModelPrice(models.Model):
    """Price table for token usage, editable in the admin (USD per million tokens)."""

    model = models.CharField(max_length=120, unique=True)
    # A negative price would lower an organisation's recorded cost: refused (the admin form
    # shows it on the field; the services raise ValidationFailed naming it).
    prompt_usd_per_million = models.DecimalField(
        max_digits=12, decimal_places=4, validators=[MinValueValidator(0)]
    )
    completion_usd_per_million = models.DecimalField(
        max_digits=12, decimal_places=4, validators=[MinValueValidator(0)]
    )

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model


class TokenUsage(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_usage_id, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="token_usage"
    )
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="token_usage"
    )
    model = models.CharField(max_length=120)
    prompt_tokens = models.PositiveIntegerField()
    completion_tokens = models.PositiveIntegerField()
    total_tokens = models.PositiveIntegerField()
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    session_id = models.CharField(max_length=200, blank=True)
    environment = models.CharField(max_length=8, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "created_at"])]

    def __str__(self) -> str:
        return f"{self.model}: {self.total_tokens} tokens"


class PolicyVersion(models.Model):
    """One numbered version (1, 2, 3 ... per agent) of an agent's effective policy: its
    document (what ``GET /api/v1/agents/{id}/policy`` answered then, as JSON) and the
    organisation-wide rules in force with it. Written in the transaction of every change
    that alters either; never changed afterwards. The check path names the version that
    decided each call (``AuditEntry.policy_version``)."""

    # The agent's organisation is the version's: readers find the agent in the caller's
    # organisation first. No index of its own: the unique (agent, number) index starts with it.
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="policy_versions", db_index=False
    )
    number = models.PositiveIntegerField()
    # JSON text, not JSONField: PostgreSQL's jsonb would reorder the keys, and a version is
    # shown (YAML, JSON, diffs) exactly as the live document is written.
    document_json = models.TextField(help_text="The agent's policy document (JSON).")
    organization_rules_json = models.TextField(
        default="[]", help_text="The organisation-wide rules in force with it (JSON list)."
    )
    created_at = models.DateTimeField(default=timezone.now)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who, as written then (the user's email, "command", "system"): survives the user.
    actor_label = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=24, blank=True, help_text="api, web, admin, command…")
    note = models.TextField(blank=True)
    summary = models.TextField(blank=True, help_text="What changed since the previous version.")
    restored_from = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["agent", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="policy_version_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} v{self.number}"

    @property
    def document(self) -> dict:
        return json.loads(self.document_json)

    @property
    def organization_rules(self) -> list:
        return json.loads(self.organization_rules_json)


from agents.mcp.models import McpServer  # noqa: E402, F401  (registered with this app)
