"""The single answer to "may this organisation use feature X / is it within limit Y".

Every gate in Warden (API, pages, admin, commands, policy import) asks these functions, so
a plan change takes effect everywhere at once, and every refusal names the plan that
unlocks the feature.
"""

from __future__ import annotations

from enum import StrEnum

from django.conf import settings
from django.db.models import Q

from accounts.models import Organization, Plan
from wardenproject.errors import PlanRequired
from wardenproject.text import counted


class Feature(StrEnum):
    APPROVAL_WORKFLOWS = "approval_workflows"
    WEBHOOKS = "webhooks"
    APPROVAL_QUORUM = "approval_quorum"


class Limit(StrEnum):
    AGENTS = "max_agents"
    RULES_PER_AGENT = "max_rules_per_agent"
    AUDIT_RETENTION_DAYS = "audit_retention_days"
    API_REQUESTS_PER_MINUTE = "api_requests_per_minute"


FEATURE_LABELS = {
    Feature.APPROVAL_WORKFLOWS: "Approval workflows",
    Feature.WEBHOOKS: "Webhooks",
    Feature.APPROVAL_QUORUM: "Multi-approver quorum",
}
# Agreement with the label: "Webhooks need", "Multi-approver quorum needs".
FEATURE_VERBS = {
    Feature.APPROVAL_WORKFLOWS: "need",
    Feature.WEBHOOKS: "need",
    Feature.APPROVAL_QUORUM: "needs",
}
# (singular, plural): "allows 1 agent", "allows 5 agents".
LIMIT_LABELS = {
    Limit.AGENTS: ("agent", "agents"),
    Limit.RULES_PER_AGENT: ("rule per agent", "rules per agent"),
    Limit.AUDIT_RETENTION_DAYS: ("day of audit-log retention", "days of audit-log retention"),
    Limit.API_REQUESTS_PER_MINUTE: ("API request per minute", "API requests per minute"),
}


def plan_self_serve() -> bool:
    """May owners change their organisation's plan themselves (``WARDEN_SELF_SERVE_PLANS``,
    a self-hosted install)? Otherwise plan changes are the operator's (admin, ``warden_org``)."""
    return bool(settings.WARDEN_SELF_SERVE_PLANS)


def plan_allows(organization: Organization, feature: Feature | str) -> bool:
    return bool(getattr(organization.plan, Feature(feature).value))


def plan_cheapest_with(feature: Feature | str) -> Plan | None:
    return Plan.objects.filter(**{Feature(feature).value: True}).order_by("rank").first()


def plan_required_message(organization: Organization, feature: Feature | str) -> str:
    feature = Feature(feature)
    unlocking = plan_cheapest_with(feature)
    plan_name = unlocking.name if unlocking else "a higher"
    return (
        f"{FEATURE_LABELS[feature]} {FEATURE_VERBS[feature]} the {plan_name} plan or higher; "
        f"{organization.name} is on the {organization.plan.name} plan."
    )


def plan_require(organization: Organization, feature: Feature | str) -> None:
    """Raise ``PlanRequired`` naming the unlocking plan unless the feature is on."""
    if not plan_allows(organization, feature):
        raise PlanRequired(
            plan_required_message(organization, feature),
            extra={"feature": Feature(feature).value},
        )


def plan_limit(organization: Organization, limit: Limit | str) -> int | None:
    """The organisation's value for ``limit``; ``None`` means unlimited."""
    return getattr(organization.plan, Limit(limit).value)


def plan_within_limit(
    organization: Organization, limit: Limit | str, current: int, adding: int = 1
) -> bool:
    value = plan_limit(organization, limit)
    return value is None or current + adding <= value


def plan_require_within_limit(
    organization: Organization, limit: Limit | str, current: int, adding: int = 1
) -> None:
    """Raise ``PlanRequired`` if ``current + adding`` would pass the plan's limit."""
    limit = Limit(limit)
    if plan_within_limit(organization, limit, current, adding):
        return
    needed = current + adding
    field = limit.value
    unlocking = (
        Plan.objects.filter(rank__gt=organization.plan.rank)
        .filter(Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__gte": needed}))
        .order_by("rank")
        .first()
    )
    plan_name = unlocking.name if unlocking else "a higher"
    raise PlanRequired(
        f"The {organization.plan.name} plan allows "
        f"{counted(plan_limit(organization, limit), *LIMIT_LABELS[limit])}; "
        f"the {plan_name} plan or higher allows more.",
        extra={"limit": field},
    )
