"""Pre-aggregated counts behind the overview and the token usage page (insights/rollup.py
writes them, never the check path): checks per hour and per UTC day, token usage per hour and
per UTC day, and token usage per session by hour and by UTC day."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils import timezone


class CheckCount(models.Model):
    """How many checks of one agent, environment, action and decision fell in one UTC hour."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    environment = models.CharField(max_length=8, blank=True)
    hour = models.DateTimeField()
    action = models.CharField(max_length=200, blank=True)
    decision = models.CharField(max_length=24, blank=True)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # Starts with (organization, hour): the overview's range reads use it too.
            models.UniqueConstraint(
                fields=["organization", "hour", "agent", "environment", "action", "decision"],
                name="insights_check_count_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.action} {self.decision}: {self.count}"


class CheckCountDay(models.Model):
    """The same counts per UTC day: what the 7- and 30-day overviews read."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    environment = models.CharField(max_length=8, blank=True)
    day = models.DateField()
    action = models.CharField(max_length=200, blank=True)
    decision = models.CharField(max_length=24, blank=True)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "day", "agent", "environment", "action", "decision"],
                name="insights_check_count_day_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.action} {self.decision}: {self.count}"


class TokenCostDay(models.Model):
    """Token usage of one agent (or none), model and environment on one UTC day."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # As on the usage rows: a deleted agent's usage stays, without its agent.
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.CharField(max_length=120)
    environment = models.CharField(max_length=8, blank=True)
    day = models.DateField()
    calls = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=6, default=Decimal(0))

    class Meta:
        indexes = [models.Index(fields=["organization", "day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.model}: {self.calls} calls"


class TokenCostHour(models.Model):
    """The same per UTC hour: what the 24-hour token usage page reads (kept 72 hours)."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.CharField(max_length=120)
    environment = models.CharField(max_length=8, blank=True)
    hour = models.DateTimeField()
    calls = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=6, default=Decimal(0))

    class Meta:
        indexes = [models.Index(fields=["organization", "hour"])]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.model}: {self.calls} calls"


class TokenSessionDay(models.Model):
    """Token usage of one session (a non-empty ``session_id``) of one agent (or none) and
    environment on one UTC day, all models together: the token usage page's most costly
    sessions over 7 and 30 days. ``total_tokens`` is the sum of the rows' own totals."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    environment = models.CharField(max_length=8, blank=True)
    session_id = models.CharField(max_length=200)
    day = models.DateField()
    calls = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=6, default=Decimal(0))

    class Meta:
        indexes = [models.Index(fields=["organization", "day"])]

    def __str__(self) -> str:
        return f"{self.day} session {self.session_id}: {self.calls} calls"


class TokenSessionHour(models.Model):
    """The same per UTC hour: the 24-hour page's sessions (kept 72 hours)."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    environment = models.CharField(max_length=8, blank=True)
    session_id = models.CharField(max_length=200)
    hour = models.DateTimeField()
    calls = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=6, default=Decimal(0))

    class Meta:
        indexes = [models.Index(fields=["organization", "hour"])]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h session {self.session_id}: {self.calls} calls"


class DecisionWait(models.Model):
    """How many approval requests of one agent and environment decided (approved or denied)
    on one UTC day waited for their decision a time in ``bucket``: bucket 0 is under a
    second, bucket k from 1.1^(k-1) to 1.1^k seconds (audit.insights.rollup.wait_bucket), so the
    overview's percentiles over days are within 10 % without reading every request."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    environment = models.CharField(max_length=8, blank=True)
    day = models.DateField()
    bucket = models.PositiveSmallIntegerField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "day", "agent", "environment", "bucket"],
                name="insights_decision_wait_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} bucket {self.bucket}: {self.count}"


class DecisionReviewer(models.Model):
    """How many approval requests of one agent and environment one reviewer (the decision's
    label) approved or denied on one UTC day."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    environment = models.CharField(max_length=8, blank=True)
    day = models.DateField()
    reviewer = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "day", "agent", "environment", "reviewer", "status"],
                name="insights_decision_reviewer_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.reviewer} {self.status}: {self.count}"


class RollupMark(models.Model):
    """The roll-up's watermarks (one row): the last check audit entry and the last token
    usage row counted. ``caught_up_to`` (``usage_caught_up_to``): the cutoff (start) of the
    last run that counted every check (usage row) before it, so every row above the
    watermark was written after about that time: where the overview's tail starts. Empty
    until a run caught up. ``decisions_through_*``: the (decided_at, id) of the last approval
    request decision counted (requests are changed when decided, so not read by id)."""

    last_entry_id = models.BigIntegerField(default=0)
    caught_up_to = models.DateTimeField(null=True, blank=True)
    last_usage_id = models.BigIntegerField(default=0)
    usage_caught_up_to = models.DateTimeField(null=True, blank=True)
    # Decisions are read by decision time: every request decided before (at, id) is counted.
    decisions_through_at = models.DateTimeField(null=True, blank=True)
    decisions_through_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"rolled up to entry {self.last_entry_id}, usage {self.last_usage_id}"
