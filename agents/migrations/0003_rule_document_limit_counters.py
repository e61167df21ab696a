"""Rules keep one stored form, their policy-document mapping (``Rule.document``), instead of
a column per key; agents get their document's lists; running totals get counters."""

from __future__ import annotations

from decimal import Decimal

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

ENVIRONMENTS = {"test", "live"}


def _number(value: Decimal) -> int | float | str:
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


def rule_documents(apps, schema_editor):
    """The mapping each rule's old columns described (as agents.selectors read them)."""
    Rule = apps.get_model("agents", "Rule")
    for rule in Rule.objects.all().iterator():
        mapping = {"name": rule.name}
        if rule.description:
            mapping["description"] = rule.description
        mapping["action"] = rule.action_pattern
        mapping["effect"] = rule.effect
        if rule.conditions:
            mapping["when"] = rule.conditions
        if rule.max_amount is not None:
            mapping["max_amount"] = _number(rule.max_amount)
        if rule.amount_field and rule.amount_field != "amount":
            mapping["amount_field"] = rule.amount_field
        if rule.limit:
            mapping["limit"] = rule.limit
        approval = {}
        if rule.approval_timeout:
            approval["timeout"] = rule.approval_timeout
        if rule.approvals_required and rule.approvals_required != 1:
            approval["approvals_required"] = rule.approvals_required
        if approval:
            mapping["approval"] = approval
        if rule.environments and set(rule.environments) != ENVIRONMENTS:
            mapping["environments"] = sorted(rule.environments)
        if not rule.enabled:
            mapping["enabled"] = False
        rule.document = mapping
        rule.save(update_fields=["document"])


def rule_columns(apps, schema_editor):
    """Backwards: the columns from the mapping (keys the old columns cannot hold are lost)."""
    Rule = apps.get_model("agents", "Rule")
    for rule in Rule.objects.all().iterator():
        document = rule.document or {}
        approval = document.get("approval") or {}
        rule.conditions = document.get("when") if isinstance(document.get("when"), list) else []
        amount = document.get("max_amount")
        rule.max_amount = Decimal(str(amount)) if amount is not None else None
        rule.amount_field = document.get("amount_field", "amount")
        rule.limit = document.get("limit")
        rule.environments = document.get("environments") or sorted(ENVIRONMENTS)
        timeout = approval.get("timeout")
        rule.approval_timeout = timeout if isinstance(timeout, int) else None
        rule.approvals_required = approval.get("approvals_required", 1)
        rule.save()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_organization_time_zone"),
        ("agents", "0002_seed_model_prices"),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="policy_lists",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="rule",
            name="document",
            field=models.JSONField(default=dict),
        ),
        migrations.RunPython(rule_documents, rule_columns),
        migrations.RemoveField(model_name="rule", name="conditions"),
        migrations.RemoveField(model_name="rule", name="max_amount"),
        migrations.RemoveField(model_name="rule", name="amount_field"),
        migrations.RemoveField(model_name="rule", name="limit"),
        migrations.RemoveField(model_name="rule", name="environments"),
        migrations.RemoveField(model_name="rule", name="approval_timeout"),
        migrations.RemoveField(model_name="rule", name="approvals_required"),
        migrations.CreateModel(
            name="LimitCounter",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "key",
                    models.CharField(
                        help_text="SHA-256 of the identity.", max_length=64, unique=True
                    ),
                ),
                ("environment", models.CharField(max_length=8)),
                ("by_value", models.CharField(blank=True, max_length=200)),
                ("bucket_seconds", models.PositiveIntegerField()),
                ("version", models.BigIntegerField(db_default=0, default=0)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "agent",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="limit_counters",
                        to="agents.agent",
                    ),
                ),
                (
                    "organization",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.organization",
                    ),
                ),
                (
                    "rule",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="counters",
                        to="agents.rule",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="LimitBucket",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("start", models.BigIntegerField()),
                ("count", models.BigIntegerField()),
                ("total", models.DecimalField(decimal_places=12, max_digits=38)),
                (
                    "counter",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="buckets",
                        to="agents.limitcounter",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("counter", "start"), name="limit_bucket_unique_start"
                    )
                ],
            },
        ),
    ]
