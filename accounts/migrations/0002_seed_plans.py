from __future__ import annotations

from django.db import migrations

# slug, name, rank, price, approvals, webhooks, quorum, agents, rules/agent, retention, req/min
PLANS = [
    ("free", "Free", 0, 0, False, False, False, 1, 10, 7, 60),
    ("pro", "Pro", 1, 49, True, True, False, 10, 100, 30, 1200),
    ("business", "Business", 2, 299, True, True, True, 100, 500, 365, 12000),
    ("enterprise", "Enterprise", 3, 0, True, True, True, None, None, None, None),
]


def seed_plans(apps, schema_editor):
    Plan = apps.get_model("accounts", "Plan")
    for slug, name, rank, price, approvals, hooks, quorum, agents, rules, days, rpm in PLANS:
        Plan.objects.update_or_create(
            slug=slug,
            defaults={
                "name": name,
                "rank": rank,
                "monthly_price_usd": price,
                "approval_workflows": approvals,
                "webhooks": hooks,
                "approval_quorum": quorum,
                "max_agents": agents,
                "max_rules_per_agent": rules,
                "audit_retention_days": days,
                "api_requests_per_minute": rpm,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(seed_plans, migrations.RunPython.noop)]
